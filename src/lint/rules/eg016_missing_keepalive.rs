//! ## What it does
//! Reports a Gateway that no VirtualService names in its `gateways`, or
//! whose only routes match a port none of its servers listens on: the
//! "dummy route" that keeps the gateway listener alive is missing. Only the
//! egress Gateway is checked (see EG014): another team's ingress Gateway
//! may have its routes elsewhere.
//!
//! ## Why is this bad?
//! istiod only builds a gateway listener for servers that some route uses.
//! Without the keep-alive route it optimises the listener away, the
//! EnvoyFilter has no `tcp_proxy` to patch, and the SNI forwarder never
//! receives traffic.
//!
//! ## Example
//! ```yaml
//! kind: Gateway
//! metadata:
//!   name: egressgateway    # no VirtualService lists `egressgateway`
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: VirtualService
//! metadata:
//!   name: egressgateway-keepalive
//! spec:
//!   hosts: ["*"]
//!   gateways: [egressgateway]
//!   tcp:
//!   - match: [{gateways: [egressgateway], port: 8443}]
//!     route: [{destination: {host: dummy.local}, weight: 100}]
//! ```

use super::{Ctx, Rule, egress_gateways, name_pos};
use crate::lint::Severity;
use crate::lint::extract::gateway_names;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG016",
    name: "missing-keepalive",
    severity: Severity::Error,
    source: include_str!("eg016_missing_keepalive.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    // (namespace, name, match port) of every gateway a route names; the
    // port is `None` when the route does not restrict it.
    let mut used: Vec<(Option<String>, String, Option<i64>)> = Vec::new();
    for (_, vs) in model.of_kind("VirtualService") {
        let Some(spec) = vs.spec() else { continue };
        let vs_gateways = gateway_names(spec.get("gateways"));
        let mut named: Vec<(String, Option<i64>)> = Vec::new();
        for kind in ["tls", "tcp", "http"] {
            for route in spec.list(kind) {
                let matches = route.list("match");
                if matches.is_empty() {
                    named.extend(vs_gateways.iter().map(|g| (g.clone(), None)));
                }
                for m in matches {
                    let port = m.get("port").and_then(Node::as_i64);
                    let gws = match m.get("gateways") {
                        Some(g) => gateway_names(Some(g)),
                        None => vs_gateways.clone(),
                    };
                    named.extend(gws.into_iter().map(|g| (g, port)));
                }
            }
        }
        for (n, port) in named {
            match n.split_once('/') {
                Some((ns, name)) => used.push((Some(ns.to_string()), name.to_string(), port)),
                None => used.push((vs.namespace.clone(), n, port)),
            }
        }
    }
    for i in egress_gateways(model) {
        let g = &model.resources[i];
        let ports = g.server_ports();
        let mut named = false;
        let mut wrong_port = None;
        for (ns, name, port) in &used {
            if *name != g.name || !(ns.is_none() || g.namespace.is_none() || *ns == g.namespace) {
                continue;
            }
            match port {
                Some(p) if !ports.is_empty() && !ports.contains(p) => wrong_port = Some(*p),
                _ => named = true,
            }
        }
        if named {
            continue;
        }
        let message = match wrong_port {
            Some(p) => format!(
                "the only routes through {} match port {p}, which none of its servers listens on: istiod drops its listener and the SNI forwarder never receives traffic",
                g.display()
            ),
            None => format!(
                "no VirtualService routes through {}: istiod drops its listener and the SNI forwarder never receives traffic",
                g.display()
            ),
        };
        ctx.report(
            i,
            name_pos(g),
            "metadata.name",
            message,
            Some(format!(
                "add the keep-alive VirtualService with `gateways: [{}]` and a tcp route on the server port to dummy.local, as `egressgen render` writes",
                g.name
            )),
        );
    }
}
