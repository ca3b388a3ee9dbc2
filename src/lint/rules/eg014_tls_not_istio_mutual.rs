//! ## What it does
//! Reports a server of the egress Gateway, or a DestinationRule for the
//! gateway Service, whose TLS mode is not `ISTIO_MUTUAL`. The egress Gateway
//! is the one in front of a Service that the mesh TLS route sends the
//! allowlist to; other Gateways (an ingress with `SIMPLE` TLS) are not
//! checked. When the input links no Gateway that way, every Gateway is.
//!
//! ## Why is this bad?
//! The design wraps the application's own TLS in Istio mTLS between the
//! sidecar and the gateway. With another mode the two sides disagree: the
//! gateway expects mTLS the sidecar does not send, or it accepts
//! connections from anything that can reach it, outside the mesh too.
//!
//! ## Example
//! ```yaml
//! kind: Gateway
//! spec:
//!   servers:
//!   - port: {number: 8443, name: tls-egress, protocol: TLS}
//!     hosts: ["*"]
//!     tls:
//!       mode: PASSTHROUGH
//! ```
//!
//! ## Use instead
//! ```yaml
//!     tls:
//!       mode: ISTIO_MUTUAL
//! ```

use super::{Ctx, Rule, egress_gateways, fqdn, gateway_services};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::load::{Node, Pos};

pub const RULE: Rule = Rule {
    code: "EG014",
    name: "tls-not-istio-mutual",
    severity: Severity::Error,
    source: include_str!("eg014_tls_not_istio_mutual.rs"),
    check,
};

const HELP: &str = "set `tls.mode: ISTIO_MUTUAL`";

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for i in egress_gateways(model) {
        let servers = model.resources[i].servers();
        for (si, server) in servers.iter().enumerate() {
            let (at, mode) = mode_of(server, server.at);
            if mode.as_deref() == Some("ISTIO_MUTUAL") {
                continue;
            }
            ctx.report(
                i,
                at,
                &format!("spec.servers[{si}].tls.mode"),
                format!(
                    "Gateway server TLS mode is {}, not ISTIO_MUTUAL",
                    shown(&mode)
                ),
                Some(HELP.into()),
            );
        }
    }
    let services: Vec<String> = gateway_services(model)
        .into_iter()
        .map(|i| {
            fqdn(
                &model.resources[i].name,
                model.resources[i].namespace.as_deref(),
            )
        })
        .collect();
    for (i, dr) in model.of_kind("DestinationRule") {
        let Some(spec) = dr.spec() else { continue };
        let Some(host) = spec.get("host").and_then(Node::as_str) else {
            continue;
        };
        if !services.contains(&fqdn(host, dr.namespace.as_deref())) {
            continue;
        }
        let policy = spec.get("trafficPolicy");
        let (at, mode) = match policy {
            Some(p) => mode_of(p, p.at),
            None => (super::spec_pos(dr), None),
        };
        if mode.as_deref() != Some("ISTIO_MUTUAL") {
            ctx.report(
                i,
                at,
                "spec.trafficPolicy.tls.mode",
                format!(
                    "DestinationRule for the gateway has TLS mode {}, not ISTIO_MUTUAL",
                    shown(&mode)
                ),
                Some(HELP.into()),
            );
        }
        let subsets = spec.list("subsets");
        for (si, s) in subsets.iter().enumerate() {
            let Some(p) = s.get("trafficPolicy") else {
                continue;
            };
            if p.get("tls").is_none() {
                continue;
            }
            let (at, mode) = mode_of(p, p.at);
            if mode.as_deref() != Some("ISTIO_MUTUAL") {
                ctx.report(
                    i,
                    at,
                    &format!("spec.subsets[{si}].trafficPolicy.tls.mode"),
                    format!("subset TLS mode is {}, not ISTIO_MUTUAL", shown(&mode)),
                    Some(HELP.into()),
                );
            }
        }
    }
}

/// The `tls.mode` under `node`, and where to point.
fn mode_of(node: &Node, fallback: Pos) -> (Pos, Option<String>) {
    match node.path(&["tls", "mode"]) {
        Some(m) => (m.at, m.scalar_text()),
        None => (node.entry("tls").map_or(fallback, |(k, _)| k.at), None),
    }
}

fn shown(mode: &Option<String>) -> String {
    match mode {
        Some(m) => quoted(m),
        None => "unset".into(),
    }
}
