//! ## What it does
//! Reports an EnvoyFilter patch of the SNI forwarding wiring whose
//! `match.context` is missing, `ANY`, `SIDECAR_INBOUND` or
//! `SIDECAR_OUTBOUND` instead of `GATEWAY`. The wiring is: the CLUSTER
//! patches that add the internal listener's cluster (`sni_cluster`, whose
//! endpoint is an `envoy_internal_address`) and the dynamic forward proxy
//! cluster, the LISTENER patch that adds the internal listener, and the
//! patch that points the gateway listener's `tcp_proxy` at `sni_cluster`.
//! Other patches are not checked; a context that is no valid enum value is a
//! schema error (EG021).
//!
//! ## Why is this bad?
//! Istio applies a patch only where its context matches the proxy's
//! ([`PatchContext`](https://istio.io/latest/docs/reference/config/networking/envoy-filter/#EnvoyFilter-PatchContext)
//! in istio/api `networking/v1alpha3/envoy_filter.proto`; istiod's
//! `patchContextMatch` accepts the proxy's own context or `ANY`). A gateway
//! is generated in the `GATEWAY` context, so a `SIDECAR_OUTBOUND` or
//! `SIDECAR_INBOUND` patch never reaches it: the cluster, the internal
//! listener or the `tcp_proxy` hand-off is missing and every egress
//! connection fails. A missing context means `ANY` ("all
//! listeners/routes/clusters in both sidecars and gateways"; a LISTENER ADD
//! with `ANY` is added to sidecars' outbound listeners and gateways, see
//! `patchListeners` in istio/istio `envoyfilter/listener_patch.go`): every
//! sidecar the EnvoyFilter reaches gets the forwarder too, and the
//! `tcp_proxy` patch reroutes the sidecars' own TCP traffic to
//! `sni_cluster`.
//!
//! ## Example
//! ```yaml
//! - applyTo: LISTENER
//!   match:
//!     context: SIDECAR_OUTBOUND
//!   patch:
//!     operation: ADD
//!     value:
//!       name: sni_listener
//!       internal_listener: {}
//! ```
//!
//! ## Use instead
//! ```yaml
//! - applyTo: LISTENER
//!   match:
//!     context: GATEWAY
//!   patch:
//!     operation: ADD
//!     value:
//!       name: sni_listener
//!       internal_listener: {}
//! ```

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::extract::walk;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG024",
    name: "patch-context-not-gateway",
    severity: Severity::Error,
    source: include_str!("eg024_patch_context_not_gateway.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let patch_node = |resource: usize, index: usize| -> Option<&Node> {
        model.resources[resource]
            .spec()?
            .list("configPatches")
            .get(index)
    };
    // Clusters whose endpoint is an internal listener: a tcp_proxy that
    // sends to one of them is the gateway listener's hand-off.
    let sni_clusters: Vec<String> = model
        .patches
        .iter()
        .filter(|p| p.apply_to == "CLUSTER")
        .filter_map(|p| patch_node(p.resource, p.index)?.path(&["patch", "value"]))
        .filter(|v| has(v, |n| n.get("envoy_internal_address").is_some()))
        .filter_map(|v| v.get("name").and_then(Node::as_str).map(str::to_string))
        .collect();
    for p in &model.patches {
        let Some(node) = patch_node(p.resource, p.index) else {
            continue;
        };
        let Some(role) = wiring_role(&p.apply_to, node, &sni_clusters) else {
            continue;
        };
        let field_path = format!("spec.configPatches[{}].match.context", p.index);
        let (at, message) = match node.path(&["match", "context"]) {
            None => (
                node.entry("match").map_or(p.at, |(k, _)| k.at),
                format!(
                    "the {role} has no `match.context`, so it applies in every context (ANY): every sidecar this EnvoyFilter reaches gets it too"
                ),
            ),
            Some(c) => match c.as_str() {
                Some("ANY") => (
                    c.at,
                    format!(
                        "the {role} has `context: ANY`: every sidecar this EnvoyFilter reaches gets it too"
                    ),
                ),
                Some(side @ ("SIDECAR_INBOUND" | "SIDECAR_OUTBOUND")) => (
                    c.at,
                    format!(
                        "the {role} has `context: {side}`, which never matches on a gateway: the egress gateway never gets it"
                    ),
                ),
                // GATEWAY, or no valid enum value (EG021 reports that).
                _ => continue,
            },
        };
        ctx.report(
            p.resource,
            at,
            &field_path,
            message,
            Some("set `match.context: GATEWAY`".into()),
        );
    }
}

/// What a patch of the SNI forwarding wiring does, for messages; `None`
/// for any other patch.
fn wiring_role(apply_to: &str, patch: &Node, sni_clusters: &[String]) -> Option<String> {
    let value = patch.path(&["patch", "value"])?;
    let name = || {
        value
            .get("name")
            .and_then(Node::as_str)
            .map_or_else(|| "(unnamed)".to_string(), quoted)
    };
    match apply_to {
        "CLUSTER" => {
            if has(value, |n| n.get("envoy_internal_address").is_some()) {
                return Some(format!(
                    "patch adding the internal listener's cluster {}",
                    name()
                ));
            }
            let dfp = value
                .path(&["cluster_type", "name"])
                .and_then(Node::as_str)
                .is_some_and(|t| t == "envoy.clusters.dynamic_forward_proxy")
                || type_url(value.path(&["cluster_type", "typed_config"]))
                    .is_some_and(|t| t.ends_with(".dynamic_forward_proxy.v3.ClusterConfig"));
            dfp.then(|| format!("patch adding the forward proxy cluster {}", name()))
        }
        "LISTENER" if value.get("internal_listener").is_some() => {
            Some(format!("patch adding the internal listener {}", name()))
        }
        _ => {
            let mut target = None;
            walk(value, "", &mut |n, _| {
                let tc = n.get("typed_config");
                let is_tcp_proxy =
                    type_url(tc).is_some_and(|t| t.ends_with(".tcp_proxy.v3.TcpProxy"));
                if let (true, Some(c)) = (
                    is_tcp_proxy,
                    tc.and_then(|tc| tc.get("cluster")).and_then(Node::as_str),
                ) {
                    if sni_clusters.iter().any(|s| s == c) {
                        target = Some(c.to_string());
                    }
                }
            });
            target.map(|c| format!("patch pointing the gateway's tcp_proxy at {}", quoted(&c)))
        }
    }
}

/// The `@type` of a `typed_config`.
fn type_url(typed_config: Option<&Node>) -> Option<&str> {
    typed_config?.get("@type")?.as_str()
}

/// Some mapping under `node` (or `node` itself) satisfies `pred`.
fn has(node: &Node, pred: impl Fn(&Node) -> bool) -> bool {
    let mut found = false;
    walk(node, "", &mut |n, _| found |= pred(n));
    found
}
