//! ## What it does
//! Reports an EnvoyFilter `MERGE` patch on a listener, filter chain or
//! filter whose match has no `listener.portNumber`.
//!
//! ## Why is this bad?
//! Without a port, the patch merges into every matching filter of every
//! listener of the selected proxies: the `tcp_proxy` of each TLS
//! passthrough listener is rerouted to `sni_cluster`, not only the egress
//! listener's.
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

use super::{Ctx, Rule};
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
    for p in &model.patches {
        let listener_level = matches!(
            p.apply_to.as_str(),
            "LISTENER" | "FILTER_CHAIN" | "NETWORK_FILTER" | "HTTP_FILTER" | "LISTENER_FILTER"
        );
        if p.operation != "MERGE" || !listener_level || p.port_match {
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
            Some("add `match.listener.portNumber` with the Gateway port (e.g. 8443)".into()),
        );
    }
}
