//! ## What it does
//! Reports a Gateway whose `selector` matches the pod labels of no
//! Deployment in the input. Checked when the input holds a Deployment.
//!
//! ## Why is this bad?
//! The Gateway's servers are only programmed into the pods it selects. If
//! the selector does not match the gateway Deployment, no pod opens the
//! listener and egress traffic has nowhere to go.
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

use super::{Ctx, Rule};
use crate::lint::Severity;
use crate::lint::extract::{labels, selects};

pub const RULE: Rule = Rule {
    code: "EG017",
    name: "selector-mismatch",
    severity: Severity::Error,
    source: include_str!("eg017_selector_mismatch.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let pods: Vec<(String, Vec<(String, String)>)> = model
        .of_kind("Deployment")
        .map(|(_, d)| {
            let l = labels(d.node.path(&["spec", "template", "metadata", "labels"]));
            (d.display(), l)
        })
        .collect();
    if pods.is_empty() {
        return;
    }
    for (i, g) in model.of_kind("Gateway") {
        let Some((key, sel_node)) = g.spec().and_then(|s| s.entry("selector")) else {
            continue;
        };
        let sel = labels(Some(sel_node));
        if sel.is_empty() || pods.iter().any(|(_, l)| selects(&sel, l)) {
            continue;
        }
        let show = |l: &[(String, String)]| {
            crate::escape::escaped(
                &l.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
        };
        let (dname, dlabels) = &pods[0];
        ctx.report(
            i,
            key.at,
            "spec.selector",
            format!(
                "Gateway selector {} matches no Deployment's pod labels ({dname} has {})",
                show(&sel),
                show(dlabels)
            ),
            Some("make the selector a subset of the gateway Deployment's `spec.template.metadata.labels`".into()),
        );
    }
}
