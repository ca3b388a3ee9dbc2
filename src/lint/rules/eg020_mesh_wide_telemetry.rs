//! ## What it does
//! Reports a Telemetry resource in the root namespace (`istio-system`) with
//! no `selector` and no `targetRefs`.
//!
//! ## Why is this bad?
//! Such a Telemetry is the mesh-wide default: it turns on access logging for
//! every proxy in the mesh (costly at scale), and it replaces whatever
//! mesh-wide Telemetry the platform team already has.
//!
//! ## Example
//! ```yaml
//! kind: Telemetry
//! metadata:
//!   name: mesh-default
//!   namespace: istio-system
//! spec:
//!   accessLogging:
//!   - providers: [{name: envoy}]
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: Telemetry
//! metadata:
//!   name: egressgateway-access-log
//!   namespace: istio-egress
//! spec:
//!   selector:
//!     matchLabels:
//!       istio: egressgateway
//!   accessLogging:
//!   - providers: [{name: envoy}]
//! ```

use super::eg018_unscoped_envoyfilter::ROOT_NAMESPACE;
use super::{Ctx, Rule, spec_pos};
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG020",
    name: "mesh-wide-telemetry",
    severity: Severity::Warning,
    source: include_str!("eg020_mesh_wide_telemetry.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for (i, t) in model.of_kind("Telemetry") {
        if t.namespace.as_deref() != Some(ROOT_NAMESPACE) {
            continue;
        }
        let scoped = t.spec().is_some_and(|s| {
            s.get("selector").is_some()
                || s.get("targetRefs").is_some()
                || s.get("targetRef").is_some()
        });
        if scoped {
            continue;
        }
        ctx.report(
            i,
            spec_pos(t),
            "spec.selector",
            format!(
                "{} has no selector in the root namespace, so it applies to every proxy in the mesh",
                t.display()
            ),
            Some("move it to the gateway's namespace with `selector.matchLabels` for the gateway pods".into()),
        );
    }
}
