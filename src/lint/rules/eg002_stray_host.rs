//! ## What it does
//! Reports a host at the very line where it appears, when it is in only some
//! of the four copies of the allowlist (see EG001 for the four).
//!
//! ## Why is this bad?
//! A host slipped into one list by hand, or left behind when it was removed
//! from the others, is where drift starts. EG001 points at the list that
//! lacks the host; this finding points at the stray entry itself, so it can
//! be found and removed by its own line.
//!
//! ## Example
//! ```yaml
//! filter_chain_match:
//!   server_names:
//!   - "*.wikipedia.org"
//!   - pastebin.com        # in no other list
//! ```
//!
//! ## Use instead
//! ```yaml
//! filter_chain_match:
//!   server_names:
//!   - "*.wikipedia.org"
//! ```
//! Or add the host to the other three lists, if it should be allowed.

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG002",
    name: "stray-host",
    severity: Severity::Error,
    source: include_str!("eg002_stray_host.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    if ctx.opts.config.is_some() {
        return;
    }
    let model = ctx.model;
    let places = model.present_places();
    if places.len() < 2 {
        return;
    }
    let all = places.iter().fold(0, |bits, p| bits | p.bit());
    for l in &model.lists {
        for h in &l.hosts {
            let Some(key) = &h.key else {
                continue;
            };
            let here = model.places_of(key);
            if here & all == all {
                continue;
            }
            let missing: Vec<&str> = places
                .iter()
                .filter(|p| here & p.bit() == 0)
                .map(|p| p.describe())
                .collect();
            if missing.is_empty() {
                continue;
            }
            ctx.report(
                l.resource,
                h.at,
                &h.field_path,
                format!(
                    "{} is in {} but missing from {}",
                    quoted(&h.raw),
                    l.place.describe(),
                    missing.join(", ")
                ),
                Some("remove the stray entry, or add it to every list".into()),
            );
        }
    }
}
