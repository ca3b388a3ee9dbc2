//! ## What it does
//! Reports a mesh TLS route of the allowlist (a VirtualService route whose
//! match has `sniHosts`) whose destination is not the egress gateway
//! Service. Checked when the input holds the gateway's Service (a Service
//! whose selector picks the Gateway's pods).
//!
//! ## Why is this bad?
//! The allowed hosts are sent somewhere other than the gateway, so the
//! allowlist is not enforced there, or the traffic goes nowhere.
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
