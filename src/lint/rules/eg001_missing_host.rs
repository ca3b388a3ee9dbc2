//! ## What it does
//! Reports a host that is in some of the four copies of the allowlist but
//! missing from another, at the list it is missing from. The four copies are
//! the VirtualService `hosts`, the `sniHosts` of its mesh TLS route, the
//! ServiceEntry `hosts` (unioned over split ServiceEntries) and the
//! EnvoyFilter internal-listener `server_names` (unioned over chains).
//!
//! ## Why is this bad?
//! Each copy does a different job. Without the VirtualService entry the
//! sidecar never sends the host to the gateway; without the ServiceEntry a
//! `REGISTRY_ONLY` sidecar blocks it; without the `server_names` entry the
//! gateway closes the connection. Traffic silently fails, or one list lets
//! through what the others were meant to stop.
//!
//! ## Example
//! ```yaml
//! kind: ServiceEntry
//! spec:
//!   hosts:            # api.github.com is in the VirtualService, not here
//!   - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: ServiceEntry
//! spec:
//!   hosts:
//!   - api.github.com
//!   - "*.wikipedia.org"
//! ```
//! Better: render all four lists from one config with `egressgen render`.
//! With `--config`, EG003 and EG004 compare against the config instead.

use std::collections::BTreeSet;

use super::{Ctx, Rule, first_list_locs};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG001",
    name: "missing-host",
    severity: Severity::Error,
    source: include_str!("eg001_missing_host.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    if ctx.opts.config.is_some() {
        return;
    }
    let model = ctx.model;
    if model.present_places().len() < 2 {
        return;
    }
    let locs = first_list_locs(ctx);
    // Every host key, in first-seen order.
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for l in &ctx.model.lists {
        for h in &l.hosts {
            let Some(k) = &h.key else { continue };
            if seen.insert(k.clone()) {
                order.push(k);
            }
        }
    }
    let places = ctx.model.present_places();
    for key in order {
        let have: Vec<_> = places.iter().filter(|p| model.has(**p, key)).collect();
        if have.len() == places.len() {
            continue;
        }
        let where_ = have
            .iter()
            .map(|p| format!("{} ({})", p.describe(), locs[p]))
            .collect::<Vec<_>>()
            .join(", ");
        for p in places.iter().filter(|p| !model.has(**p, key)) {
            let Some(list) = ctx.model.lists_of(*p).next() else {
                continue;
            };
            let (resource, at, path) = (list.resource, list.at, list.field_path.clone());
            ctx.report(
                resource,
                at,
                &path,
                format!("{} is missing from {}; it is in {where_}", quoted(key), p.describe()),
                Some(format!(
                    "add {} here, or remove it from the other lists; `egressgen render` writes all four from one list",
                    quoted(key)
                )),
            );
        }
    }
}
