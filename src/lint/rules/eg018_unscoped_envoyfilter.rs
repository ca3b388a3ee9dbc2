//! ## What it does
//! Reports an EnvoyFilter with neither `workloadSelector` nor `targetRefs`.
//!
//! ## Why is this bad?
//! Without a selector, an EnvoyFilter in the root namespace (`istio-system`)
//! patches every proxy in the mesh, and elsewhere every proxy in its
//! namespace. The SNI forwarder's patches then land on every gateway,
//! ingress gateways included, where they reroute or break traffic.
//!
//! ## Example
//! ```yaml
//! kind: EnvoyFilter
//! metadata:
//!   name: sni-magic
//!   namespace: istio-system
//! spec:
//!   configPatches: []
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: EnvoyFilter
//! metadata:
//!   name: egressgateway-sni-forwarder
//!   namespace: istio-egress
//! spec:
//!   workloadSelector:
//!     labels:
//!       istio: egressgateway
//!   configPatches: []
//! ```

use super::{Ctx, Rule, spec_pos};
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG018",
    name: "unscoped-envoyfilter",
    severity: Severity::Error,
    source: include_str!("eg018_unscoped_envoyfilter.rs"),
    check,
};

/// Istio's default `meshConfig.rootNamespace`.
pub const ROOT_NAMESPACE: &str = "istio-system";

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for (i, ef) in model.of_kind("EnvoyFilter") {
        let spec = ef.spec();
        let scoped = spec.is_some_and(|s| {
            s.get("workloadSelector").is_some()
                || s.get("targetRefs").is_some()
                || s.get("targetRef").is_some()
        });
        if scoped {
            continue;
        }
        let scope = match ef.namespace.as_deref() {
            Some(ROOT_NAMESPACE) => {
                "every proxy in the mesh (it is in the root namespace)".to_string()
            }
            Some(ns) => format!("every proxy in namespace {}", crate::escape::quoted(ns)),
            None => "every proxy in the namespace it is applied to".to_string(),
        };
        ctx.report(
            i,
            spec_pos(ef),
            "spec.workloadSelector",
            format!("{} has no workloadSelector, so it patches {scope}", ef.display()),
            Some("add `workloadSelector.labels` matching the egress gateway pods (e.g. `istio: egressgateway`)".into()),
        );
    }
}
