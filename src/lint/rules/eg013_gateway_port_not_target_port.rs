//! ## What it does
//! Reports an egress Gateway server port (see EG014 for which Gateways
//! count) that is neither a `port` nor a `targetPort` of a Service in front
//! of the Gateway's pods, and one that Istio would move. For a
//! label-selected gateway, istiod binds a server whose number equals a
//! Service `port` to that port's `targetPort` (`resolvePorts` in istio/istio
//! `pilot/pkg/model/gateway.go`), so a server on 443 with a Service
//! `443 -> 8443` listens on 8443, like Istio's own ingress gateway. With
//! several upstream ports, a Service port `8443 -> 8444` beside a server
//! meant for listener 8443 moves that server to 8444. Checked when the input
//! holds that Service.
//!
//! ## Why is this bad?
//! A Gateway's `port.number` is the port the gateway pod listens on (after
//! that translation), so the Service must forward to it. If it does not,
//! sidecars connect to a port nobody listens on and every egress connection
//! is refused.
//!
//! ## Example
//! ```yaml
//! # Service: port 443, targetPort 8443
//! kind: Gateway
//! spec:
//!   servers:
//!   - port: {number: 9443, name: tls-egress, protocol: TLS}
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: Gateway
//! spec:
//!   servers:
//!   - port: {number: 8443, name: tls-egress, protocol: TLS}
//! ```

use super::{Ctx, Rule, egress_gateways, services_of_gateway};
use crate::lint::Severity;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG013",
    name: "gateway-port-not-target-port",
    severity: Severity::Error,
    source: include_str!("eg013_gateway_port_not_target_port.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for g in egress_gateways(model) {
        check_gateway(ctx, g);
    }
}

/// Compares Gateway `g`'s servers with the Services in front of its own
/// pods: another gateway's Service (an ingress on 80 and 443) says nothing
/// about where this one listens.
fn check_gateway(ctx: &mut Ctx, g: usize) {
    let model = ctx.model;
    let mut targets: Vec<i64> = Vec::new();
    // (port, targetPort) pairs, for Istio's Gateway port translation.
    let mut translations: Vec<(i64, i64)> = Vec::new();
    let mut named_target = false;
    for i in services_of_gateway(model, g) {
        let s = &model.resources[i];
        for p in s
            .spec()
            .and_then(|s| s.get("ports"))
            .map(Node::items)
            .unwrap_or(&[])
        {
            match p.get("targetPort") {
                Some(t) => match t.as_i64() {
                    Some(n) => {
                        targets.push(n);
                        if let Some(port) = p.get("port").and_then(Node::as_i64) {
                            translations.push((port, n));
                        }
                    }
                    // A named targetPort resolves through the pod spec.
                    None => named_target = true,
                },
                None => targets.extend(p.get("port").and_then(Node::as_i64)),
            }
        }
    }
    if targets.is_empty() || named_target {
        return;
    }
    let list = targets
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let servers = model.resources[g].servers();
    for (si, server) in servers.iter().enumerate() {
        let Some(n) = server.path(&["port", "number"]) else {
            continue;
        };
        let Some(port) = n.as_i64() else { continue };
        // The first Service port with this number wins, as in istiod.
        let bound = translations
            .iter()
            .find(|(p, _)| *p == port)
            .map_or(port, |(_, t)| *t);
        if targets.contains(&port) && bound != port {
            ctx.report(
                g,
                n.at,
                &format!("spec.servers[{si}].port.number"),
                format!(
                    "Gateway port {port} is also a Service port that targets {bound}, so istiod binds this server to {bound}, not {port}"
                ),
                Some(format!(
                    "give the Service port that targets {bound} another number, or use the same number for port and targetPort"
                )),
            );
            continue;
        }
        // A server on a Service port listens on its targetPort, as
        // istio's own ingress does (Gateway 443, Service 443 -> 8443).
        if targets.contains(&port) || bound != port {
            continue;
        }
        ctx.report(
            g,
            n.at,
            &format!("spec.servers[{si}].port.number"),
            format!("Gateway port {port} is neither a port nor a targetPort of the gateway Service (targetPorts: {list})"),
            Some(format!(
                "the Gateway port is the port the pod listens on: use the Service's targetPort ({})",
                targets[0]
            )),
        );
    }
}
