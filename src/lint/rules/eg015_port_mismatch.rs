//! ## What it does
//! Reports ports that disagree: the mesh TLS route's match `port`, the
//! ServiceEntry `ports[].number` and the SNI forward proxy's `port_value`.
//! The reference is the config's `upstreamPort` with `--config`, else the
//! forward proxy's `port_value` (where traffic really goes), else the route's
//! match port.
//!
//! ## Why is this bad?
//! The sidecar only intercepts the port the VirtualService matches and the
//! ServiceEntry declares, and the gateway connects upstream on `port_value`.
//! When they differ, traffic on one port is never routed to the gateway, or
//! the gateway dials the wrong port.
//!
//! ## Example
//! ```yaml
//! # VirtualService
//! tls:
//! - match:
//!   - port: 443
//! # ServiceEntry
//! ports:
//! - {number: 8443, name: tls, protocol: TLS}
//! ```
//!
//! ## Use instead
//! ```yaml
//! ports:
//! - {number: 443, name: tls, protocol: TLS}
//! ```

use super::{Ctx, Rule, mesh_tls_routes};
use crate::lint::Severity;
use crate::lint::extract::PortAt;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG015",
    name: "port-mismatch",
    severity: Severity::Error,
    source: include_str!("eg015_port_mismatch.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let mut route_ports = Vec::new();
    for i in mesh_tls_routes(model) {
        let spec = model.resources[i].spec();
        for (ri, route) in spec
            .and_then(|s| s.get("tls"))
            .map(Node::items)
            .unwrap_or(&[])
            .iter()
            .enumerate()
        {
            for (mi, m) in route
                .get("match")
                .map(Node::items)
                .unwrap_or(&[])
                .iter()
                .enumerate()
            {
                if m.get("sniHosts").is_none() {
                    continue;
                }
                if let Some(p) = m.get("port") {
                    if let Some(port) = p.as_i64() {
                        route_ports.push(PortAt {
                            resource: i,
                            port,
                            at: p.at,
                            field_path: format!("spec.tls[{ri}].match[{mi}].port"),
                        });
                    }
                }
            }
        }
    }
    let mut se_ports = Vec::new();
    for (i, se) in model.of_kind("ServiceEntry") {
        let ports = se
            .spec()
            .and_then(|s| s.get("ports"))
            .map(Node::items)
            .unwrap_or(&[]);
        for (pi, p) in ports.iter().enumerate() {
            if let Some(n) = p.get("number") {
                if let Some(port) = n.as_i64() {
                    se_ports.push(PortAt {
                        resource: i,
                        port,
                        at: n.at,
                        field_path: format!("spec.ports[{pi}].number"),
                    });
                }
            }
        }
    }
    let (reference, source) = match &ctx.opts.config {
        Some(cfg) => (
            i64::from(cfg.upstream_port),
            format!("the config's upstreamPort ({})", ctx.opts.config_name),
        ),
        None => {
            let r = model.port_values.first().or(route_ports.first());
            let Some(r) = r else { return };
            let what = if model.port_values.is_empty() {
                "the VirtualService match port"
            } else {
                "the forward proxy's port_value"
            };
            (r.port, format!("{what} ({})", ctx.loc(r.resource, r.at)))
        }
    };
    for (what, ports) in [
        ("VirtualService match port", &route_ports),
        ("ServiceEntry port", &se_ports),
        ("forward proxy port_value", &model.port_values),
    ] {
        // A ServiceEntry may list several ports; one must be the reference.
        if what == "ServiceEntry port" {
            for (i, _) in model.of_kind("ServiceEntry") {
                let mine: Vec<&PortAt> = ports.iter().filter(|p| p.resource == i).collect();
                if mine.is_empty() || mine.iter().any(|p| p.port == reference) {
                    continue;
                }
                report(ctx, what, mine[0], reference, &source);
            }
            continue;
        }
        for p in ports {
            if p.port != reference {
                report(ctx, what, p, reference, &source);
            }
        }
    }
}

fn report(ctx: &mut Ctx, what: &str, p: &PortAt, reference: i64, source: &str) {
    ctx.report(
        p.resource,
        p.at,
        &p.field_path,
        format!("{what} {} disagrees with {source}, which is {reference}", p.port),
        Some(format!(
            "use one port (the remote TLS port, usually 443) for the route match, the ServiceEntry and port_value: {reference}"
        )),
    );
}
