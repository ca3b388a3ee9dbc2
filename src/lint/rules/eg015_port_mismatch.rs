//! ## What it does
//! Reports ports that disagree: the mesh TLS route's match `port`, the
//! ServiceEntry `ports[].number` and the SNI forward proxy's `port_value`.
//! The reference is the config's upstream ports (`ports`, or `upstreamPort`)
//! with `--config`, else the forward proxies' `port_value`s (where traffic
//! really goes; one internal listener per upstream port), else the route's
//! match port. Every route port and `port_value` must be a reference port,
//! and every ServiceEntry must declare each reference port.
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
            for (mi, m) in route.list("match").iter().enumerate() {
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
    let (reference, source): (Vec<i64>, String) = match &ctx.opts.config {
        Some(cfg) => (
            cfg.ports.iter().map(|p| i64::from(p.upstream)).collect(),
            format!("the config's upstream ports ({})", ctx.opts.config_name),
        ),
        None => {
            let (refs, what) = if model.port_values.is_empty() {
                (
                    route_ports.iter().take(1).collect::<Vec<_>>(),
                    "the VirtualService match port",
                )
            } else {
                (
                    model.port_values.iter().collect(),
                    "the forward proxies' port_value",
                )
            };
            let Some(r) = refs.first() else { return };
            let mut ports: Vec<i64> = Vec::new();
            for p in &refs {
                if !ports.contains(&p.port) {
                    ports.push(p.port);
                }
            }
            (ports, format!("{what} ({})", ctx.loc(r.resource, r.at)))
        }
    };
    let shown = reference
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    for (what, ports) in [
        ("VirtualService match port", &route_ports),
        ("forward proxy port_value", &model.port_values),
    ] {
        for p in ports {
            if !reference.contains(&p.port) {
                let message = format!(
                    "{what} {} disagrees with {source}, which is {shown}",
                    p.port
                );
                report(ctx, message, p, &shown);
            }
        }
    }
    // A ServiceEntry may list other ports too, but must declare each
    // upstream port: the sidecar only intercepts declared ports.
    for (i, _) in model.of_kind("ServiceEntry") {
        let mine: Vec<&PortAt> = se_ports.iter().filter(|p| p.resource == i).collect();
        let Some(first) = mine.first() else { continue };
        for r in &reference {
            if !mine.iter().any(|p| p.port == *r) {
                let message =
                    format!("ServiceEntry ports lack upstream port {r} ({source} is {shown})");
                report(ctx, message, first, &shown);
            }
        }
    }
}

fn report(ctx: &mut Ctx, message: String, p: &PortAt, reference: &str) {
    ctx.report(
        p.resource,
        p.at,
        &p.field_path,
        message,
        Some(format!(
            "use the same upstream ports (usually 443) for the route matches, the ServiceEntry and port_value: {reference}"
        )),
    );
}
