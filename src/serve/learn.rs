//! `--learn`: remember the names an application connected to, and print
//! them on exit as a domain list ready to paste into `spec.domains`.
//!
//! Each name is marked with what the current allowlist says about it (the
//! verdict comes from [`crate::domain::Allowlist::decide`], recorded by the
//! proxy), and names of one site are grouped under the wildcard that would
//! cover them ([`crate::domain::group_under_wildcards`]). Memory is bounded:
//! at most [`MAX_NAMES`] distinct names are kept.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use crate::domain::{Denial, group_under_wildcards, is_exact_entry};
use crate::escape::quoted;
use crate::render::yaml::scalar;

/// Most distinct names remembered; more are counted, not kept.
pub const MAX_NAMES: usize = 10_000;

#[derive(Debug, Clone)]
enum Verdict {
    Allowed(String),
    Refused(&'static str),
}

#[derive(Debug)]
struct Seen {
    count: u64,
    verdict: Verdict,
}

#[derive(Debug, Default)]
struct State {
    names: BTreeMap<String, Seen>,
    /// Names that cannot be allowlist entries (IP literals, trailing dots,
    /// invalid bytes, no SNI), by reason.
    unlistable: BTreeMap<String, Seen>,
    connections: u64,
    dropped: u64,
}

/// The names seen so far. Cheap to call from every connection.
#[derive(Debug, Default)]
pub struct Learned {
    state: Mutex<State>,
}

impl Learned {
    /// A name the allowlist admitted, by `rule`.
    pub fn record_allowed(&self, name: &str, rule: &str) {
        self.add(name, Verdict::Allowed(rule.to_string()), false);
    }

    /// A name the allowlist refused, and why.
    pub fn record(&self, name: &str, why: &Denial<'_>) {
        let listable = matches!(why, Denial::NoMatch { .. });
        self.add(name, Verdict::Refused(why.code()), !listable);
    }

    fn add(&self, name: &str, verdict: Verdict, unlistable: bool) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.connections += 1;
        let full = s.names.len() + s.unlistable.len() >= MAX_NAMES;
        let map = if unlistable {
            &mut s.unlistable
        } else {
            &mut s.names
        };
        match map.get_mut(name) {
            Some(seen) => seen.count += 1,
            None if full => s.dropped += 1,
            None => {
                map.insert(name.to_string(), Seen { count: 1, verdict });
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.state
            .lock()
            .map(|s| s.connections == 0)
            .unwrap_or(true)
    }

    /// The report printed on exit: a YAML fragment for `spec.domains`, with
    /// comments saying what the allowlist would do with each name.
    pub fn report(&self) -> String {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        let refused = s
            .names
            .values()
            .filter(|n| matches!(n.verdict, Verdict::Refused(_)))
            .count();
        let _ = writeln!(
            out,
            "# egressgen serve --learn: {} name{} in {} connection{}; {} refused by the current allowlist (marked REFUSED).",
            s.names.len(),
            plural(s.names.len() as u64),
            s.connections,
            plural(s.connections),
            refused
        );
        if s.names.is_empty() {
            out.push_str("# No routable name was seen.\n");
        } else {
            out.push_str("# Paste under `spec:` in your EgressGateway file:\n  domains:\n");
        }
        let note = |name: &str| -> String {
            let seen = &s.names[name];
            let what = match &seen.verdict {
                Verdict::Allowed(rule) => format!("allowed by {rule}"),
                Verdict::Refused(code) => format!("REFUSED ({code})"),
            };
            format!("{} connection{}, {what}", seen.count, plural(seen.count))
        };
        for g in group_under_wildcards(s.names.keys().map(String::as_str)) {
            if let Some(w) = &g.wildcard {
                let _ = writeln!(out, "    # {w} covers:");
                for n in &g.covered {
                    let _ = writeln!(out, "    #   {n}: {}", note(n));
                }
                let _ = writeln!(out, "    - {}", scalar(&w.to_string()));
            }
            for n in &g.exact {
                // `null`, `yes` or `0x1f` are valid names, and must stay
                // strings when the list is pasted into a config.
                let _ = writeln!(out, "    - {}  # {}", scalar(n), note(n));
            }
        }
        // Names that are not valid entries never reach the groups above.
        for (n, seen) in s.names.iter().filter(|(n, _)| !is_exact_entry(n)) {
            let _ = writeln!(
                out,
                "    # not a valid entry: {} ({} connections)",
                quoted(n),
                seen.count
            );
        }
        if !s.unlistable.is_empty() {
            out.push_str("# Seen, but no allowlist entry can admit these:\n");
            for (n, seen) in &s.unlistable {
                let Verdict::Refused(code) = seen.verdict else {
                    continue;
                };
                let shown = if n.is_empty() {
                    "(no SNI)".to_string()
                } else {
                    quoted(n)
                };
                let _ = writeln!(
                    out,
                    "#   {shown}: {} connection{}, {code}",
                    seen.count,
                    plural(seen.count)
                );
            }
        }
        if s.dropped > 0 {
            let _ = writeln!(
                out,
                "# ...and {} more names not recorded (limit {MAX_NAMES}).",
                s.dropped
            );
        }
        out
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Allowlist, Decision};

    /// Names that YAML would read as a number are quoted, so the pasted list
    /// loads back as the same strings. Dotless names (`null`, `yes`) cannot
    /// be entries at all and are listed as invalid.
    #[test]
    fn report_quotes_names_yaml_would_retype() {
        let (list, _) = Allowlist::parse(["*.test.local"]).unwrap();
        let l = Learned::default();
        for sni in ["null", "yes", "1.0e3", "1.5e-3", "plain.example"] {
            match list.decide(sni) {
                Decision::Allowed { name, by } => l.record_allowed(&name, &by.to_string()),
                Decision::Denied { name, reason } => l.record(&name, &reason),
            }
        }
        let report = l.report();
        let listed: Vec<&str> = report
            .lines()
            .filter_map(|line| line.strip_prefix("    - "))
            .map(|entry| entry.split("  #").next().unwrap())
            .collect();
        assert_eq!(
            listed,
            ["\"1.0e3\"", "\"1.5e-3\"", "plain.example"],
            "{report}"
        );
        assert!(report.contains("# not a valid entry: `null`"), "{report}");
        // And the fragment reads back as those names, as strings.
        let yaml = report.split_once("  domains:\n").unwrap().1;
        let names: Vec<String> = serde_saphyr::from_str(
            &yaml
                .lines()
                .filter(|l| !l.trim_start().starts_with('#'))
                .map(|l| format!("{}\n", l.trim_start()))
                .collect::<String>(),
        )
        .unwrap();
        assert_eq!(names, ["1.0e3", "1.5e-3", "plain.example"]);
    }

    #[test]
    fn report_groups_and_marks_refusals() {
        let (list, _) = Allowlist::parse(["*.wikipedia.org"]).unwrap();
        let l = Learned::default();
        for sni in [
            "en.wikipedia.org",
            "en.wikipedia.org",
            "de.wikipedia.org",
            "api.github.com",
            "uploads.github.com",
            "github.com",
            "10.0.0.1",
            "",
            "a.example.com.",
        ] {
            match list.decide(sni) {
                Decision::Allowed { name, by } => l.record_allowed(&name, &by.to_string()),
                Decision::Denied { name, reason } => l.record(&name, &reason),
            }
        }
        assert_eq!(
            l.report(),
            "\
# egressgen serve --learn: 5 names in 9 connections; 3 refused by the current allowlist (marked REFUSED).
# Paste under `spec:` in your EgressGateway file:
  domains:
    # *.github.com covers:
    #   api.github.com: 1 connection, REFUSED (not_allowed)
    #   uploads.github.com: 1 connection, REFUSED (not_allowed)
    - \"*.github.com\"
    - github.com  # 1 connection, REFUSED (not_allowed)
    # *.wikipedia.org covers:
    #   de.wikipedia.org: 1 connection, allowed by *.wikipedia.org
    #   en.wikipedia.org: 2 connections, allowed by *.wikipedia.org
    - \"*.wikipedia.org\"
# Seen, but no allowlist entry can admit these:
#   (no SNI): 1 connection, no_sni
#   `10.0.0.1`: 1 connection, ip_literal
#   `a.example.com.`: 1 connection, trailing_dot
"
        );
    }
}
