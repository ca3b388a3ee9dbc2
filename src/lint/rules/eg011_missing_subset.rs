//! ## What it does
//! Reports a VirtualService route whose `destination.subset` is not defined
//! by a DestinationRule for that host, or only by one that sidecars never
//! read: Istio looks up a DestinationRule in the client's namespace, the
//! host's namespace and the root namespace (`istio-system`) only, so a rule
//! for the gateway in any other namespace is invisible to the application
//! sidecars, and so is one whose `exportTo` does not include `*`. Checked
//! when the input holds at least one DestinationRule.
//!
//! ## Why is this bad?
//! Istio sends traffic for an undefined subset nowhere: the sidecar answers
//! with `NR` (no route) or a reset, and the allowed hosts become unreachable.
//!
//! ## Example
//! ```yaml
//! # VirtualService
//! destination:
//!   host: egressgateway.istio-egress.svc.cluster.local
//!   subset: wikipedia          # the DestinationRule defines `wildcard`
//! ```
//!
//! ## Use instead
//! ```yaml
//! destination:
//!   host: egressgateway.istio-egress.svc.cluster.local
//!   subset: wildcard
//! ```

use super::eg018_unscoped_envoyfilter::ROOT_NAMESPACE;
use super::{Ctx, Rule, fqdn};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG011",
    name: "missing-subset",
    severity: Severity::Error,
    source: include_str!("eg011_missing_subset.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    // (host FQDN, subset names, visible to every sidecar) per DestinationRule.
    let rules: Vec<(String, Vec<String>, bool)> = model
        .of_kind("DestinationRule")
        .filter_map(|(_, dr)| {
            let spec = dr.spec()?;
            let host = fqdn(spec.get("host")?.as_str()?, dr.namespace.as_deref());
            let subsets = spec
                .list("subsets")
                .iter()
                .filter_map(|s| s.get("name")?.as_str().map(str::to_string))
                .collect();
            // The host's namespace is the second label of its FQDN.
            let host_ns = host.split('.').nth(1).unwrap_or_default();
            let ns = dr.namespace.as_deref().unwrap_or("default");
            // `exportTo` (absent: `*`) must reach every namespace too; a
            // rule exported to `.` or a list serves only those namespaces.
            let export = spec.list("exportTo");
            let everywhere = export.is_empty() || export.iter().any(|e| e.as_str() == Some("*"));
            let visible = (ns == host_ns || ns == ROOT_NAMESPACE) && everywhere;
            Some((host, subsets, visible))
        })
        .collect();
    if rules.is_empty() {
        return;
    }
    for (i, vs) in model.of_kind("VirtualService") {
        let Some(spec) = vs.spec() else { continue };
        for kind in ["tls", "tcp", "http"] {
            for (ri, route) in spec.list(kind).iter().enumerate() {
                for (di, d) in route.list("route").iter().enumerate() {
                    let Some(dest) = d.get("destination") else {
                        continue;
                    };
                    let (Some(host), Some(subset)) =
                        (dest.get("host").and_then(Node::as_str), dest.get("subset"))
                    else {
                        continue;
                    };
                    let Some(name) = subset.as_str() else {
                        continue;
                    };
                    let full = fqdn(host, vs.namespace.as_deref());
                    let for_host: Vec<&Vec<String>> = rules
                        .iter()
                        .filter(|(h, _, visible)| *h == full && *visible)
                        .map(|(_, s, _)| s)
                        .collect();
                    if for_host.iter().any(|s| s.iter().any(|n| n == name)) {
                        continue;
                    }
                    let hidden = rules.iter().any(|(h, s, visible)| {
                        *h == full && !visible && s.iter().any(|n| n == name)
                    });
                    let (message, help) = if hidden {
                        (
                            format!(
                                "routes to subset {} of {}, but the DestinationRule that defines it is in a namespace sidecars do not read, or not exported to every namespace",
                                quoted(name),
                                quoted(host)
                            ),
                            format!(
                                "move the DestinationRule to the host's namespace ({}) or to the root namespace `{ROOT_NAMESPACE}`, and export it to `*`",
                                quoted(full.split('.').nth(1).unwrap_or_default())
                            ),
                        )
                    } else if for_host.is_empty() {
                        (
                            format!(
                                "routes to subset {} of {}, but no DestinationRule is for that host",
                                quoted(name),
                                quoted(host)
                            ),
                            "add a DestinationRule for the host that defines the subset"
                                .to_string(),
                        )
                    } else {
                        let known: Vec<String> = for_host
                            .iter()
                            .flat_map(|s| s.iter())
                            .map(|n| quoted(n))
                            .collect();
                        (
                            format!(
                                "routes to subset {} of {}, which its DestinationRule does not define",
                                quoted(name),
                                quoted(host)
                            ),
                            if known.is_empty() {
                                "add the subset to the DestinationRule's `subsets`".to_string()
                            } else {
                                format!(
                                    "use a defined subset ({}) or add this one",
                                    known.join(", ")
                                )
                            },
                        )
                    };
                    ctx.report(
                        i,
                        subset.at,
                        &format!("spec.{kind}[{ri}].route[{di}].destination.subset"),
                        message,
                        Some(help),
                    );
                }
            }
        }
    }
}
