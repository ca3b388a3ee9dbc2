//! ## What it does
//! Reports a Gateway server port that is not a `targetPort` of the gateway
//! Service. Checked when the input holds that Service.
//!
//! ## Why is this bad?
//! A Gateway's `port.number` is the port the gateway pod listens on, so the
//! Service must forward to it. If it does not, sidecars connect to a port
//! nobody listens on and every egress connection is refused.
//!
//! ## Example
//! ```yaml
//! # Service: port 443, targetPort 8443
//! kind: Gateway
//! spec:
//!   servers:
//!   - port: {number: 443, name: tls-egress, protocol: TLS}
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: Gateway
//! spec:
//!   servers:
//!   - port: {number: 8443, name: tls-egress, protocol: TLS}
//! ```

use super::{Ctx, Rule, gateway_services};
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
    let mut targets: Vec<i64> = Vec::new();
    let mut named_target = false;
    for i in gateway_services(model) {
        let s = &model.resources[i];
        for p in s
            .spec()
            .and_then(|s| s.get("ports"))
            .map(Node::items)
            .unwrap_or(&[])
        {
            match p.get("targetPort") {
                Some(t) => match t.as_i64() {
                    Some(n) => targets.push(n),
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
    for (i, g) in model.of_kind("Gateway") {
        let servers = g
            .spec()
            .and_then(|s| s.get("servers"))
            .map(Node::items)
            .unwrap_or(&[]);
        for (si, server) in servers.iter().enumerate() {
            let Some(n) = server.path(&["port", "number"]) else {
                continue;
            };
            let Some(port) = n.as_i64() else { continue };
            if targets.contains(&port) {
                continue;
            }
            ctx.report(
                i,
                n.at,
                &format!("spec.servers[{si}].port.number"),
                format!("Gateway port {port} is not a targetPort of the gateway Service (targetPorts: {list})"),
                Some(format!(
                    "the Gateway port is the port the pod listens on: use the Service's targetPort ({})",
                    targets[0]
                )),
            );
        }
    }
}
