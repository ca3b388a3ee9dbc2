//! ## What it does
//! Reports an EnvoyFilter `MERGE` patch on a listener, filter chain or
//! filter whose match has no `listener.portNumber`, or (when the input holds
//! Gateways) one that reaches gateways (`context: GATEWAY` or `ANY`) whose
//! `portNumber` is no port a Gateway server listens on: the server's number,
//! or the `targetPort` istiod binds it to when the number is a port of a
//! Service in front of the Gateway (see EG013).
//!
//! ## Why is this bad?
//! Without a port, the patch merges into every matching filter of every
//! listener of the selected proxies: the `tcp_proxy` of each TLS
//! passthrough listener is rerouted to `sni_cluster`, not only the egress
//! listener's. With a port no Gateway server listens on, it patches nothing:
//! the egress listener keeps sending traffic to the keep-alive route's dummy
//! destination and every connection fails.
//!
//! ## Example
//! ```yaml
//! - applyTo: NETWORK_FILTER
//!   match:
//!     context: GATEWAY
//!     listener:
//!       filterChain:
//!         filter:
//!           name: envoy.filters.network.tcp_proxy
//!   patch:
//!     operation: MERGE
//! ```
//!
//! ## Use instead
//! ```yaml
//! - applyTo: NETWORK_FILTER
//!   match:
//!     context: GATEWAY
//!     listener:
//!       portNumber: 8443
//!       filterChain:
//!         filter:
//!           name: envoy.filters.network.tcp_proxy
//!   patch:
//!     operation: MERGE
//! ```

use super::{Ctx, Rule, listener_ports};
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG019",
    name: "merge-without-port",
    severity: Severity::Error,
    source: include_str!("eg019_merge_without_port.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let mut gateway_ports: Vec<i64> = model
        .of_kind("Gateway")
        .flat_map(|(i, _)| listener_ports(model, i))
        .collect();
    gateway_ports.sort_unstable();
    gateway_ports.dedup();
    for p in &model.patches {
        let listener_level = matches!(
            p.apply_to.as_str(),
            "LISTENER" | "FILTER_CHAIN" | "NETWORK_FILTER" | "HTTP_FILTER" | "LISTENER_FILTER"
        );
        if p.operation != "MERGE" || !listener_level {
            continue;
        }
        if let Some(port) = p.port_match {
            // A port that no Gateway server listens on patches nothing: the
            // gateway listener keeps routing to the keep-alive's dummy host.
            // Only for patches that reach gateways: a sidecar patch matches
            // the sidecar's own listener ports.
            if let (Some(port), false, true) =
                (port, gateway_ports.is_empty(), p.reaches_gateways())
            {
                if !gateway_ports.contains(&port) {
                    ctx.report(
                        p.resource,
                        p.at,
                        &format!("spec.configPatches[{}].match.listener.portNumber", p.index),
                        format!(
                            "MERGE patch on {} matches listener port {port}, but no Gateway server listens on it, so the patch changes nothing",
                            p.apply_to
                        ),
                        Some(format!(
                            "use the port a Gateway server listens on ({}; a server port that is also a port of the gateway's Service listens on its targetPort)",
                            gateway_ports
                                .iter()
                                .map(i64::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                    );
                }
            }
            continue;
        }
        ctx.report(
            p.resource,
            p.at,
            &format!("spec.configPatches[{}].match.listener.portNumber", p.index),
            format!(
                "MERGE patch on {} has no listener port match, so it changes that filter on every listener",
                p.apply_to
            ),
            Some("add `match.listener.portNumber` with the port the Gateway server listens on (e.g. 8443)".into()),
        );
    }
}
