//! ## What it does
//! Reports mesh configuration in the input that lets sidecars reach
//! destinations outside the service registry: an IstioOperator or the
//! `istio` ConfigMap (`data.mesh`) whose `outboundTrafficPolicy.mode` is
//! `ALLOW_ANY` or unset (Istio's default is `ALLOW_ANY`), and a Sidecar with
//! `outboundTrafficPolicy.mode: ALLOW_ANY`. Only checked when such a
//! resource is in the input.
//!
//! ## Why is this bad?
//! With `ALLOW_ANY` a sidecar passes traffic for unknown hosts straight
//! through, so an application can reach the internet without going through
//! the egress gateway and its allowlist. `REGISTRY_ONLY` makes the gateway
//! the way out for anything not in the registry (egressgen's ServiceEntry
//! registers the allowed names). NetworkPolicies (`spec.networkPolicy`) are
//! still needed against pods that bypass their sidecar.
//!
//! ## Example
//! ```yaml
//! kind: IstioOperator
//! spec:
//!   meshConfig:
//!     accessLogFile: /dev/stdout
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: IstioOperator
//! spec:
//!   meshConfig:
//!     outboundTrafficPolicy:
//!       mode: REGISTRY_ONLY
//! ```

use super::{Ctx, Rule, spec_pos};
use crate::lint::Severity;
use crate::lint::load::{self, Node};

pub const RULE: Rule = Rule {
    code: "EG022",
    name: "allow-any-outbound",
    severity: Severity::Warning,
    source: include_str!("eg022_allow_any_outbound.rs"),
    check,
};

const HELP: &str = "set `meshConfig.outboundTrafficPolicy.mode: REGISTRY_ONLY`, so traffic to unlisted hosts cannot bypass the egress gateway";

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for (i, r) in model.resources.iter().enumerate() {
        match r.kind.as_str() {
            "IstioOperator" => {
                let mesh = r.spec().and_then(|s| s.get("meshConfig"));
                let mode = mesh
                    .and_then(|m| m.path(&["outboundTrafficPolicy", "mode"]))
                    .and_then(Node::as_str);
                if mode != Some("REGISTRY_ONLY") {
                    let at = mesh.map_or_else(|| spec_pos(r), |m| m.at);
                    report(
                        ctx,
                        i,
                        at,
                        "spec.meshConfig.outboundTrafficPolicy.mode",
                        mode,
                    );
                }
            }
            "ConfigMap" if r.name == "istio" || r.name.starts_with("istio-") => {
                let Some(mesh) = r.node.path(&["data", "mesh"]) else {
                    continue;
                };
                let Some(text) = mesh.as_str() else { continue };
                // The mesh config is YAML inside a string; an unparsable one
                // is istiod's problem, not this rule's.
                let Ok(docs) = load::parse(0, "mesh", text) else {
                    continue;
                };
                let mode = docs.first().and_then(|d| {
                    d.root
                        .path(&["outboundTrafficPolicy", "mode"])
                        .and_then(Node::as_str)
                        .map(str::to_string)
                });
                if mode.as_deref() != Some("REGISTRY_ONLY") {
                    report(ctx, i, mesh.at, "data.mesh", mode.as_deref());
                }
            }
            "Sidecar" => {
                let Some(m) = r
                    .spec()
                    .and_then(|s| s.path(&["outboundTrafficPolicy", "mode"]))
                else {
                    continue;
                };
                if m.as_str() == Some("ALLOW_ANY") {
                    report(
                        ctx,
                        i,
                        m.at,
                        "spec.outboundTrafficPolicy.mode",
                        Some("ALLOW_ANY"),
                    );
                }
            }
            _ => {}
        }
    }
}

fn report(ctx: &mut Ctx, i: usize, at: load::Pos, path: &str, mode: Option<&str>) {
    let r = ctx.resource(i);
    let what = match mode {
        Some(m) => format!("`{}`", crate::escape::escaped(m)),
        None => "unset (Istio's default is ALLOW_ANY)".to_string(),
    };
    let message = format!(
        "{}: outboundTrafficPolicy.mode is {what}, so sidecars pass traffic for unlisted hosts straight out, around the egress gateway",
        r.display()
    );
    ctx.report(i, at, path, message, Some(HELP.into()));
}
