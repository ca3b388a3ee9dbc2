//! ## What it does
//! Reports an entry of the four host lists that `render` would refuse: a
//! partial wildcard (`*w.example.com`, `foo.*.com`), a bare `*`, an IP
//! literal, a name without a dot (`intranet`), a malformed name, or a name
//! that is not in normal form
//! (uppercase, trailing dot). The rules are `domain::Pattern::parse`, the
//! same as `render`'s.
//!
//! ## Why is this bad?
//! Envoy's `server_names` only supports a whole leftmost `*.` label and
//! never strips a trailing dot, so `example.com.` never matches. Envoy
//! lowercases both the SNI and `server_names`, but Istio compares
//! VirtualService and ServiceEntry hosts as written, so `API.example.com`
//! next to `api.example.com` elsewhere makes the lists disagree. A bare `*` allows every destination. SNI
//! never carries an IP address, so an IP entry matches nothing. Istio reads
//! a dotless VirtualService host as a Kubernetes short name in the
//! VirtualService's namespace, so the route misses the name and sidecars
//! send it straight out, past the gateway.
//!
//! ## Example
//! ```yaml
//! server_names:
//! - "*wikipedia.org"
//! - 198.51.100.7
//! ```
//!
//! ## Use instead
//! ```yaml
//! server_names:
//! - "*.wikipedia.org"
//! - api.example.com     # the DNS name the client puts in its SNI
//! ```

use super::{Ctx, Rule};
use crate::domain::Normalised;
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG005",
    name: "invalid-host",
    severity: Severity::Error,
    source: include_str!("eg005_invalid_host.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for l in &model.lists {
        for h in &l.hosts {
            match &h.parsed {
                Err(e) => ctx.report(
                    l.resource,
                    h.at,
                    &h.field_path,
                    format!(
                        "invalid host {} in {}: {e}",
                        quoted(&h.raw),
                        l.place.describe()
                    ),
                    Some(e.help().to_string()),
                ),
                Ok((p, notes)) if !notes.is_empty() => {
                    let why: Vec<String> = notes.iter().map(|n| n.to_string()).collect();
                    // Envoy lowercases `server_names` and the SNI alike
                    // (`filter_chain_manager_impl.cc`), so only the dot
                    // breaks matching; case only breaks Istio's host
                    // comparisons across the lists.
                    let effect = if notes.contains(&Normalised::TrailingDotRemoved) {
                        "an SNI never ends in a dot, so it would never match"
                    } else {
                        "Envoy ignores case, but Istio compares hosts as written, so it disagrees with the lowercase name elsewhere"
                    };
                    ctx.report(
                        l.resource,
                        h.at,
                        &h.field_path,
                        format!(
                            "host {} in {} is not in normal form: {effect}",
                            quoted(&h.raw),
                            l.place.describe()
                        ),
                        Some(format!(
                            "write {} ({})",
                            quoted(&p.to_string()),
                            why.join("; ")
                        )),
                    );
                }
                Ok(_) => {}
            }
        }
    }
}
