//! ## What it does
//! Reports a Gateway that no VirtualService names in its `gateways`: the
//! "dummy route" that keeps the gateway listener alive is missing.
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

use super::{Ctx, Rule, name_pos};
use crate::lint::Severity;
use crate::lint::extract::gateway_names;

pub const RULE: Rule = Rule {
    code: "EG016",
    name: "missing-keepalive",
    severity: Severity::Error,
    source: include_str!("eg016_missing_keepalive.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    // (namespace, name) of every gateway any route names.
    let mut used: Vec<(Option<String>, String)> = Vec::new();
    for (_, vs) in model.of_kind("VirtualService") {
        let Some(spec) = vs.spec() else { continue };
        let has_route = ["tls", "tcp", "http"]
            .iter()
            .any(|k| !spec.list(k).is_empty());
        if !has_route {
            continue;
        }
        let mut names = gateway_names(spec.get("gateways"));
        for kind in ["tls", "tcp", "http"] {
            for route in spec.list(kind) {
                for m in route.list("match") {
                    if let Some(g) = m.get("gateways") {
                        names.extend(gateway_names(Some(g)));
                    }
                }
            }
        }
        for n in names {
            match n.split_once('/') {
                Some((ns, name)) => used.push((Some(ns.to_string()), name.to_string())),
                None => used.push((vs.namespace.clone(), n)),
            }
        }
    }
    for (i, g) in model.of_kind("Gateway") {
        let named = used.iter().any(|(ns, name)| {
            *name == g.name && (ns.is_none() || g.namespace.is_none() || *ns == g.namespace)
        });
        if named {
            continue;
        }
        ctx.report(
            i,
            name_pos(g),
            "metadata.name",
            format!(
                "no VirtualService routes through {}: istiod drops its listener and the SNI forwarder never receives traffic",
                g.display()
            ),
            Some(format!(
                "add the keep-alive VirtualService with `gateways: [{}]` and a tcp route to dummy.local, as `egressgen render` writes",
                g.name
            )),
        );
    }
}
