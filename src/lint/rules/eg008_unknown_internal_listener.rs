//! ## What it does
//! Reports a cluster whose `envoy_internal_address.server_listener_name`
//! names no internal listener added by an EnvoyFilter.
//!
//! ## Why is this bad?
//! `sni_cluster`'s only endpoint is the internal listener. If the name does
//! not match a listener with `internal_listener: {}`, Envoy has nowhere to
//! send the connection and every egress connection fails.
//!
//! ## Example
//! ```yaml
//! envoy_internal_address:
//!   server_listener_name: sni-listener   # the listener is `sni_listener`
//! ```
//!
//! ## Use instead
//! ```yaml
//! envoy_internal_address:
//!   server_listener_name: sni_listener
//! ```

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG008",
    name: "unknown-internal-listener",
    severity: Severity::Error,
    source: include_str!("eg008_unknown_internal_listener.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let known: Vec<&str> = model
        .internal_listeners
        .iter()
        .map(|l| l.name.as_str())
        .collect();
    for r in &model.internal_address_refs {
        if known.contains(&r.name.as_str()) {
            continue;
        }
        let help = match known.first() {
            Some(k) => format!("name an existing internal listener, e.g. {}", quoted(k)),
            None => "add a LISTENER patch with this `name` and `internal_listener: {}`".to_string(),
        };
        ctx.report(
            r.resource,
            r.at,
            &r.field_path,
            format!(
                "internal address names listener {}, but no EnvoyFilter adds an internal listener of that name",
                quoted(&r.name)
            ),
            Some(help),
        );
    }
}
