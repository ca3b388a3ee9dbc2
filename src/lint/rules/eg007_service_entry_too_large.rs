//! ## What it does
//! Reports a ServiceEntry with more than 256 `hosts`.
//!
//! ## Why is this bad?
//! The ServiceEntry CRD caps `spec.hosts` at 256 items (`maxItems: 256`), so
//! the API server rejects the object and none of its hosts are registered.
//!
//! ## Example
//! ```yaml
//! kind: ServiceEntry
//! metadata:
//!   name: wildcard
//! spec:
//!   hosts:        # 300 entries
//!   - a1.example.com
//!   # ...
//! ```
//!
//! ## Use instead
//! ```yaml
//! # Split into wildcard (256 hosts), wildcard-2 (44 hosts), ...
//! ```
//! `egressgen render` splits long lists this way.

use super::{Ctx, Rule};
use crate::lint::Severity;
use crate::lint::extract::Place;
use crate::render::SERVICE_ENTRY_MAX_HOSTS;

pub const RULE: Rule = Rule {
    code: "EG007",
    name: "service-entry-too-large",
    severity: Severity::Error,
    source: include_str!("eg007_service_entry_too_large.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for l in model.lists_of(Place::ServiceEntryHosts) {
        if l.hosts.len() > SERVICE_ENTRY_MAX_HOSTS {
            ctx.report(
                l.resource,
                l.at,
                &l.field_path,
                format!(
                    "ServiceEntry has {} hosts; the CRD allows at most {SERVICE_ENTRY_MAX_HOSTS}, so the API server rejects it",
                    l.hosts.len()
                ),
                Some(format!(
                    "split it into several ServiceEntries of at most {SERVICE_ENTRY_MAX_HOSTS} hosts (`egressgen render` does)"
                )),
            );
        }
    }
}
