//! ## What it does
//! Reports an EnvoyFilter patch of the SNI forwarding wiring whose
//! `match.context` keeps it from the gateway (`SIDECAR_*`) or hands it to
//! sidecars (missing or `ANY`). The wiring is: the
//! CLUSTER patches that add the internal listener's cluster (`sni_cluster`,
//! whose endpoint is an `envoy_internal_address`) and the dynamic forward
//! proxy cluster, the LISTENER patch that adds the internal listener, and the
//! patch that points the gateway listener's `tcp_proxy` at `sni_cluster`.
//! Other patches are not checked; a context that is no valid enum value is a
//! schema error (EG021).
//! A missing context or `ANY` is reported when the EnvoyFilter reaches
//! sidecars: it has neither `workloadSelector` labels nor `targetRefs`, or
//! its `workloadSelector` matches the pod labels of a Deployment in the
//! input that is no gateway's (no Gateway's `selector` matches its pods, and
//! they are not injected with Istio's `gateway` template); an EnvoyFilter
//! that reaches only gateway pods may leave the context out.
//! `SIDECAR_INBOUND` or `SIDECAR_OUTBOUND` is reported when the EnvoyFilter
//! is meant for a gateway: it has `targetRefs` (which name gateways only),
//! its `workloadSelector` labels and some Gateway's `selector` are one a
//! subset of the other, or another of its patches has context `GATEWAY` or
//! `ANY`; an app team's sidecar-only EnvoyFilter that selects app pods is not
//! reported, whatever clusters it adds.
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
//! `sni_cluster`. Without a `workloadSelector` an EnvoyFilter reaches every
//! proxy in its namespace (in the root namespace, the mesh).
//!
//! ## Example
//! ```yaml
//! # In an EnvoyFilter whose workloadSelector is the Gateway's selector.
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

use super::eg018_unscoped_envoyfilter::ROOT_NAMESPACE;
use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::extract::{Model, labels, selects, walk};
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
    let scope = Scope::new(model);
    for p in &model.patches {
        let Some(node) = patch_node(p.resource, p.index) else {
            continue;
        };
        let Some(role) = wiring_role(&p.apply_to, node, &sni_clusters) else {
            continue;
        };
        let field_path = format!("spec.configPatches[{}].match.context", p.index);
        let (at, message, help) = match node.path(&["match", "context"]) {
            None => {
                let Some(reach) = scope.reaches_sidecars(p.resource) else {
                    continue;
                };
                (
                    node.entry("match").map_or(p.at, |(k, _)| k.at),
                    format!(
                        "the {role} has no `match.context`, so it applies in every context (ANY), and {reach}"
                    ),
                    "set `match.context: GATEWAY`, so that only gateways get it",
                )
            }
            Some(c) => match c.as_str() {
                Some("ANY") => {
                    let Some(reach) = scope.reaches_sidecars(p.resource) else {
                        continue;
                    };
                    (
                        c.at,
                        format!("the {role} has `context: ANY`, and {reach}"),
                        "set `match.context: GATEWAY`, so that only gateways get it",
                    )
                }
                Some(side @ ("SIDECAR_INBOUND" | "SIDECAR_OUTBOUND")) => {
                    let Some(target) = scope.targets_gateways(p.resource) else {
                        continue;
                    };
                    (
                        c.at,
                        format!(
                            "the {role} has `context: {side}`, which never matches on a gateway, but {target}: the gateway never gets it"
                        ),
                        "set `match.context: GATEWAY`",
                    )
                }
                // GATEWAY, or no valid enum value (EG021 reports that).
                _ => continue,
            },
        };
        ctx.report(p.resource, at, &field_path, message, Some(help.into()));
    }
}

/// The pod annotation naming Istio's injection templates.
const GATEWAY_TEMPLATE: &str = "inject.istio.io/templates";

/// Label sets (a Deployment's pod labels, a selector).
type Labels = Vec<(String, String)>;

/// Which proxies an EnvoyFilter reaches, judged from the input's Gateways
/// and Deployments.
struct Scope<'a> {
    model: &'a Model,
    /// Each Gateway with a non-empty `selector`: its display name and the
    /// selector. A Gateway without one names no pods to go by.
    gateways: Vec<(String, Labels)>,
    /// Each Deployment that is no gateway's: display name, namespace, pod
    /// template labels.
    app_pods: Vec<(String, Option<&'a str>, Labels)>,
}

impl<'a> Scope<'a> {
    fn new(model: &'a Model) -> Scope<'a> {
        let gateways: Vec<(String, Labels)> = model
            .of_kind("Gateway")
            .map(|(_, g)| (g.display(), labels(g.node.path(&["spec", "selector"]))))
            .filter(|(_, sel)| !sel.is_empty())
            .collect();
        // A Deployment is a gateway's when a Gateway selects its pods or
        // Istio injects them with its `gateway` template (the annotation
        // Istio's gateway charts and our render set).
        let app_pods = model
            .of_kind("Deployment")
            .filter(|(_, d)| {
                let template = d
                    .node
                    .path(&[
                        "spec",
                        "template",
                        "metadata",
                        "annotations",
                        GATEWAY_TEMPLATE,
                    ])
                    .and_then(Node::as_str);
                !template.is_some_and(|t| t.split(',').any(|t| t.trim() == "gateway"))
            })
            .map(|(_, d)| {
                let l = labels(d.node.path(&["spec", "template", "metadata", "labels"]));
                (d.display(), d.namespace.as_deref(), l)
            })
            .filter(|(_, _, l)| !gateways.iter().any(|(_, g)| selects(g, l)))
            .collect();
        Scope {
            model,
            gateways,
            app_pods,
        }
    }

    /// Why EnvoyFilter `i` reaches sidecars, if it does: it selects no
    /// workloads in particular, or its `workloadSelector` matches the pods of
    /// a Deployment that no Gateway selects.
    fn reaches_sidecars(&self, i: usize) -> Option<String> {
        let ef = &self.model.resources[i];
        let spec = ef.spec()?;
        // targetRefs name Gateway API Gateways or GatewayClasses only.
        if spec.get("targetRefs").is_some() || spec.get("targetRef").is_some() {
            return None;
        }
        let everywhere = match ef.namespace.as_deref() {
            Some(ROOT_NAMESPACE) => {
                "every sidecar in the mesh (it is in the root namespace)".to_string()
            }
            Some(ns) => format!("every sidecar in namespace {}", quoted(ns)),
            None => "every sidecar in the namespace it is applied to".to_string(),
        };
        let Some(selector) = spec.get("workloadSelector") else {
            return Some(format!(
                "the EnvoyFilter has no workloadSelector: {everywhere} gets it too"
            ));
        };
        let sel = labels(selector.get("labels"));
        if sel.is_empty() {
            // istiod matches an empty label set against every proxy.
            return Some(format!(
                "the EnvoyFilter's workloadSelector has no labels: {everywhere} gets it too"
            ));
        }
        // Outside the root namespace a workload selector only reaches pods in
        // the EnvoyFilter's own namespace; an unwritten namespace matches any.
        let scoped = ef.namespace.as_deref().filter(|ns| *ns != ROOT_NAMESPACE);
        let (name, _, _) = self.app_pods.iter().find(|(_, ns, pod)| {
            (scoped.is_none() || ns.is_none() || *ns == scoped) && selects(&sel, pod)
        })?;
        Some(format!(
            "the EnvoyFilter's workloadSelector matches the pods of {name}, which no Gateway selects: their sidecars get it too"
        ))
    }

    /// Why EnvoyFilter `i` is meant for a gateway, if it is: it has
    /// `targetRefs`, its `workloadSelector` labels and a Gateway's selector
    /// are one a subset of the other, or some patch of it has context
    /// `GATEWAY` or `ANY`.
    fn targets_gateways(&self, i: usize) -> Option<String> {
        let spec = self.model.resources[i].spec()?;
        if spec.get("targetRefs").is_some() || spec.get("targetRef").is_some() {
            return Some("the EnvoyFilter targets gateways through `targetRefs`".into());
        }
        let sel = labels(spec.path(&["workloadSelector", "labels"]));
        if !sel.is_empty() {
            if let Some((name, _)) = self
                .gateways
                .iter()
                .find(|(_, g)| selects(&sel, g) || selects(g, &sel))
            {
                return Some(format!(
                    "the EnvoyFilter's workloadSelector selects the pods of {name}"
                ));
            }
        }
        self.model
            .patches
            .iter()
            .any(|q| q.resource == i && q.reaches_gateways())
            .then(|| {
                "the EnvoyFilter's other patches reach gateways (context GATEWAY or ANY)".into()
            })
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
