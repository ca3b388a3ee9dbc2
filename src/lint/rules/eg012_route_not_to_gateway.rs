//! ## What it does
//! Reports a mesh TLS route of the allowlist (a VirtualService route whose
//! match has `sniHosts`) whose destination is not the egress gateway
//! Service. Checked when the input holds the gateway's Service (a Service
//! whose selector picks the Gateway's pods). Also reports such a
//! VirtualService whose `exportTo` reaches fewer namespaces than a
//! ServiceEntry of the allowlist (absent means `*`, `.` its own namespace).
//!
//! ## Why is this bad?
//! The allowed hosts are sent somewhere other than the gateway, so the
//! allowlist is not enforced there, or the traffic goes nowhere. Where the
//! ServiceEntry is visible and the route is not, sidecars know the hosts
//! but have no route for them, and send them straight out, past the
//! gateway.
//!
//! ## Example
//! ```yaml
//! route:
//! - destination:
//!     host: egressgateway.istio-system.svc.cluster.local   # Service is in istio-egress
//! ```
//!
//! ## Use instead
//! ```yaml
//! route:
//! - destination:
//!     host: egressgateway.istio-egress.svc.cluster.local
//! ```

use super::{Ctx, Rule, fqdn, gateway_services, mesh_tls_routes};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG012",
    name: "route-not-to-gateway",
    severity: Severity::Error,
    source: include_str!("eg012_route_not_to_gateway.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    check_export(ctx);
    let model = ctx.model;
    let services: Vec<String> = gateway_services(model)
        .into_iter()
        .map(|i| {
            let s = &model.resources[i];
            fqdn(&s.name, s.namespace.as_deref())
        })
        .collect();
    if services.is_empty() {
        return;
    }
    for i in mesh_tls_routes(model) {
        let vs = &model.resources[i];
        let Some(spec) = vs.spec() else { continue };
        for (ri, route) in spec.list("tls").iter().enumerate() {
            for (di, d) in route.list("route").iter().enumerate() {
                let Some(h) = d.path(&["destination", "host"]) else {
                    continue;
                };
                let Some(host) = h.as_str() else { continue };
                if services.contains(&fqdn(host, vs.namespace.as_deref())) {
                    continue;
                }
                ctx.report(
                    i,
                    h.at,
                    &format!("spec.tls[{ri}].route[{di}].destination.host"),
                    format!(
                        "routes the allowlist to {}, which is not the egress gateway Service",
                        quoted(host)
                    ),
                    Some(format!("route to {}", quoted(&services[0]))),
                );
            }
        }
    }
}

/// The namespaces a resource is exported to; `None` for every namespace.
fn export_set(r: &crate::lint::extract::Resource) -> Option<Vec<String>> {
    let list = r.spec().map_or(&[][..], |s| s.list("exportTo"));
    if list.is_empty() || list.iter().any(|e| e.as_str() == Some("*")) {
        return None;
    }
    let own = r.namespace.clone().unwrap_or_else(|| "default".into());
    Some(
        list.iter()
            .filter_map(|e| e.as_str())
            .map(|e| if e == "." { own.clone() } else { e.to_string() })
            .collect(),
    )
}

/// A mesh TLS route exported to fewer namespaces than a ServiceEntry of
/// the allowlist.
fn check_export(ctx: &mut Ctx) {
    use crate::lint::extract::Place;
    let model = ctx.model;
    let mut entries: Vec<usize> = model
        .lists_of(Place::ServiceEntryHosts)
        .map(|l| l.resource)
        .collect();
    entries.dedup();
    for i in mesh_tls_routes(model) {
        let vs = &model.resources[i];
        let Some(route) = export_set(vs) else {
            continue;
        };
        for &e in &entries {
            let se = &model.resources[e];
            let wider = match export_set(se) {
                None => true,
                Some(ns) => ns.iter().any(|n| !route.contains(n)),
            };
            if !wider {
                continue;
            }
            let at = vs
                .spec()
                .and_then(|s| s.entry("exportTo"))
                .map_or(vs.at, |(k, _)| k.at);
            ctx.report(
                i,
                at,
                "spec.exportTo",
                format!(
                    "the mesh TLS route is exported to fewer namespaces than {}, so sidecars in the namespaces it misses know the allowed hosts but have no route for them, and send them straight out, past the gateway",
                    se.display()
                ),
                Some("export the VirtualService to every namespace the ServiceEntry reaches (or narrow the ServiceEntry's `exportTo` to match)".into()),
            );
        }
    }
}
