//! ## What it does
//! Reports an entry of a host list that repeats another entry of the same
//! place, or that a wildcard in the same place already covers
//! (`api.example.com` next to `*.example.com`). Split ServiceEntries and
//! filter chains count as one place. Overlap is decided by
//! `domain::Allowlist`, as in `render`.
//!
//! ## Why is this bad?
//! Istio rejects duplicate hosts, and Envoy rejects filter chains with the
//! same `server_names`. A covered entry does nothing but make the lists
//! harder to compare.
//!
//! ## Example
//! ```yaml
//! hosts:
//! - "*.wikipedia.org"
//! - en.wikipedia.org
//! ```
//!
//! ## Use instead
//! ```yaml
//! hosts:
//! - "*.wikipedia.org"
//! ```

use std::collections::HashMap;

use super::{Ctx, Rule};
use crate::domain::{Allowlist, Pattern};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::extract::Place;

pub const RULE: Rule = Rule {
    code: "EG006",
    name: "overlapping-host",
    severity: Severity::Error,
    source: include_str!("eg006_overlapping_host.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    // With several upstream ports each port has its own sniHosts match and
    // internal listener, which repeat the hosts legitimately: compare lists
    // within one scope only.
    let mut scopes: Vec<(Place, &str)> = Vec::new();
    for l in &model.lists {
        if !scopes.contains(&(l.place, l.scope.as_str())) {
            scopes.push((l.place, l.scope.as_str()));
        }
    }
    for (place, scope) in scopes {
        // Each valid pattern's occurrences: (list, host) indices, in order.
        let mut occurrences: HashMap<Pattern, Vec<(usize, usize)>> = HashMap::new();
        let mut patterns = Vec::new();
        for (li, l) in model
            .lists
            .iter()
            .enumerate()
            .filter(|(_, l)| l.place == place && l.scope == scope)
        {
            for (hi, h) in l.hosts.iter().enumerate() {
                if let Ok((p, _)) = &h.parsed {
                    occurrences.entry(p.clone()).or_default().push((li, hi));
                    patterns.push(p.clone());
                }
            }
        }
        let dropped = Allowlist::overlaps(patterns);
        let mut dup_seen: HashMap<Pattern, usize> = HashMap::new();
        for d in dropped {
            let occ = &occurrences[&d.entry];
            let (index, message, first) = match &d.covered_by {
                None => {
                    let n = dup_seen.entry(d.entry.clone()).or_default();
                    *n += 1;
                    (
                        *n,
                        format!(
                            "duplicate host {} in {}",
                            quoted(&d.entry.to_string()),
                            place.describe()
                        ),
                        occ[0],
                    )
                }
                Some(w) => {
                    let first = occurrences.get(w).map_or(occ[0], |o| o[0]);
                    (
                        0,
                        format!(
                            "host {} in {} is already covered by {}; Istio rejects overlapping hosts",
                            quoted(&d.entry.to_string()),
                            place.describe(),
                            quoted(&w.to_string())
                        ),
                        first,
                    )
                }
            };
            let Some(&(li, hi)) = occ.get(index) else {
                continue;
            };
            let l = &model.lists[li];
            let h = &l.hosts[hi];
            let other = &model.lists[first.0];
            let other_at = ctx.loc(other.resource, other.hosts[first.1].at);
            ctx.report(
                l.resource,
                h.at,
                &h.field_path,
                format!("{message} (see {other_at})"),
                Some("remove this entry".into()),
            );
        }
    }
}
