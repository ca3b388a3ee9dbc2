//! ## What it does
//! Reports a Gateway `selector`, an EnvoyFilter `workloadSelector.labels` or
//! a Telemetry `selector.matchLabels` that matches the pod labels of no
//! Deployment in the input (for EnvoyFilter and Telemetry outside the root
//! namespace: no Deployment in their own namespace). Checked when the input
//! holds a Deployment. Of the Gateways, only the egress Gateway counts (see
//! EG014). An EnvoyFilter whose patches all have a `SIDECAR_*` context is
//! not checked: it selects application pods.
//!
//! ## Why is this bad?
//! The Gateway's servers are only programmed into the pods it selects. If
//! the selector does not match the gateway Deployment, no pod opens the
//! listener and egress traffic has nowhere to go. An EnvoyFilter that
//! selects no gateway pod installs no SNI forwarder, so the listener sends
//! everything to the keep-alive route's dummy destination. A relabelling
//! transformer (Kustomize `labels`/`commonLabels` with selectors, a changed
//! label value) breaks exactly this.
//!
//! ## Example
//! ```yaml
//! # Deployment pods: labels {istio: egressgateway}
//! kind: Gateway
//! spec:
//!   selector:
//!     istio: egress-gateway
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: Gateway
//! spec:
//!   selector:
//!     istio: egressgateway
//! ```

use super::eg018_unscoped_envoyfilter::ROOT_NAMESPACE;
use super::{Ctx, Rule, egress_gateways};
use crate::lint::Severity;
use crate::lint::extract::{labels, selects};

/// A Deployment's display name, namespace and pod labels.
type Pod = (String, Option<String>, Vec<(String, String)>);

pub const RULE: Rule = Rule {
    code: "EG017",
    name: "selector-mismatch",
    severity: Severity::Error,
    source: include_str!("eg017_selector_mismatch.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let pods: Vec<Pod> = model
        .of_kind("Deployment")
        .map(|(_, d)| {
            let l = labels(d.node.path(&["spec", "template", "metadata", "labels"]));
            (d.display(), d.namespace.clone(), l)
        })
        .collect();
    if pods.is_empty() {
        return;
    }
    // (kind, path to the selector map, field shown, namespaced)
    let selectors: [(&str, &[&str], &str, bool); 3] = [
        ("Gateway", &["spec", "selector"], "spec.selector", false),
        (
            "EnvoyFilter",
            &["spec", "workloadSelector", "labels"],
            "spec.workloadSelector.labels",
            true,
        ),
        (
            "Telemetry",
            &["spec", "selector", "matchLabels"],
            "spec.selector.matchLabels",
            true,
        ),
    ];
    let show = |l: &[(String, String)]| {
        crate::escape::escaped(
            &l.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    };
    let egress = egress_gateways(model);
    for (kind, path, field, namespaced) in selectors {
        for (i, r) in model.of_kind(kind) {
            let Some(sel_node) = r.node.path(path) else {
                continue;
            };
            // Another gateway's Gateway (an ingress whose Deployment the
            // input does not hold) is not this check's business.
            if kind == "Gateway" && !egress.contains(&i) {
                continue;
            }
            // An EnvoyFilter whose patches all target sidecars selects app
            // pods, which need not be in the input.
            if kind == "EnvoyFilter"
                && !model
                    .patches
                    .iter()
                    .any(|p| p.resource == i && p.reaches_gateways())
            {
                continue;
            }
            let sel = labels(Some(sel_node));
            // Outside the root namespace, a workload selector only reaches
            // pods in the resource's own namespace.
            let scoped = namespaced
                && r.namespace
                    .as_deref()
                    .is_some_and(|ns| ns != ROOT_NAMESPACE);
            let candidates: Vec<&Pod> = pods
                .iter()
                .filter(|(_, ns, _)| !scoped || ns.as_deref() == r.namespace.as_deref())
                .collect();
            if sel.is_empty() || candidates.iter().any(|(_, _, l)| selects(&sel, l)) {
                continue;
            }
            let (dname, _, dlabels) = candidates.first().copied().unwrap_or(&pods[0]);
            ctx.report(
                i,
                sel_node.at,
                field,
                format!(
                    "{kind} selector {} matches no Deployment's pod labels ({dname} has {})",
                    show(&sel),
                    show(dlabels)
                ),
                Some(
                    "make the selector a subset of the gateway Deployment's `spec.template.metadata.labels`"
                        .into(),
                ),
            );
        }
    }
}
