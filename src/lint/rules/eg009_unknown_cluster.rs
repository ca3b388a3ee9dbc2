//! ## What it does
//! Reports a `tcp_proxy` in an EnvoyFilter patch whose `cluster` names a
//! cluster that no EnvoyFilter `CLUSTER` patch adds: the internal listener's
//! `dynamic_forward_proxy_cluster`, or the gateway listener's `sni_cluster`.
//! Clusters that Istio generates (`outbound|...`, `PassthroughCluster`,
//! `BlackHoleCluster`) are not reported.
//!
//! ## Why is this bad?
//! Envoy answers a connection routed to an unknown cluster by closing it
//! (`NC`, no cluster found): every egress connection fails.
//!
//! ## Example
//! ```yaml
//! typed_config:
//!   "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
//!   cluster: dynamic_forward_proxy     # the cluster is dynamic_forward_proxy_cluster
//! ```
//!
//! ## Use instead
//! ```yaml
//! typed_config:
//!   "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
//!   cluster: dynamic_forward_proxy_cluster
//! ```

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG009",
    name: "unknown-cluster",
    severity: Severity::Error,
    source: include_str!("eg009_unknown_cluster.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let known: Vec<&str> = model.clusters.iter().map(|c| c.name.as_str()).collect();
    for r in &model.tcp_proxy_clusters {
        let istio_generated = r.name.contains('|')
            || matches!(
                r.name.as_str(),
                "PassthroughCluster"
                    | "BlackHoleCluster"
                    | "InboundPassthroughClusterIpv4"
                    | "InboundPassthroughClusterIpv6"
            );
        if istio_generated || known.contains(&r.name.as_str()) {
            continue;
        }
        let help = if known.is_empty() {
            "add the CLUSTER patch that defines it".to_string()
        } else {
            format!(
                "use one of the clusters the EnvoyFilters add: {}",
                known
                    .iter()
                    .map(|k| quoted(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        ctx.report(
            r.resource,
            r.at,
            &r.field_path,
            format!(
                "tcp_proxy routes to cluster {}, which no EnvoyFilter CLUSTER patch adds",
                quoted(&r.name)
            ),
            Some(help),
        );
    }
}
