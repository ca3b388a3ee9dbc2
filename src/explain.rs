//! `egressgen explain HOST`: says whether a host is allowed, by which entry,
//! or why not.
//!
//! This is a thin layer of wording over [`Allowlist::decide`], the one place
//! that decides; it adds hints (the bare domain of a wildcard, a trailing
//! dot, an exact entry above the host) but never a verdict of its own.
//! [`explain`] neither loads configs nor prints; [`run`] is the command glue.

use std::fmt::Write;

use crate::domain::{Allowlist, Decision, Denial, Pattern};
use crate::escape::{escaped_bytes, quoted};

/// What `explain` says about one host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Explanation {
    /// The verdict, exactly as [`Allowlist::decide`] gave it.
    pub allowed: bool,
    /// The entry that admitted the host, when allowed.
    pub matched_by: Option<Pattern>,
    /// Lines for a human, already escaped for the terminal.
    pub text: String,
}

/// Explains the decision for `host`, given as raw bytes (a command-line
/// argument need not be UTF-8).
pub fn explain(host: &[u8], list: &Allowlist) -> Explanation {
    let shown = format!("`{}`", escaped_bytes(host));
    let mut text = String::new();
    match list.decide_bytes(host) {
        Decision::Allowed { name, by } => {
            let how = match by {
                Pattern::Exact(_) => format!("the exact entry `{by}`"),
                Pattern::Wildcard(suffix) => {
                    format!("`{by}` (a wildcard matches every name below `{suffix}`, at any depth)")
                }
            };
            let _ = writeln!(text, "allowed: {shown} matches {how}");
            if name.as_bytes() != host {
                let _ = writeln!(text, "  note: {}", lowercased_note(&name));
            }
            Explanation {
                allowed: true,
                matched_by: Some(by.clone()),
                text,
            }
        }
        Decision::Denied { name, reason } => {
            match &reason {
                Denial::NoMatch { bare_of: Some(_) } => {
                    let _ = writeln!(text, "refused: {shown} is {reason}");
                }
                _ => {
                    let _ = writeln!(text, "refused: {shown}: {reason}");
                }
            }
            let lowered = name.as_bytes() != host && std::str::from_utf8(host).is_ok();
            if lowered && !matches!(reason, Denial::InvalidName(_) | Denial::IpLiteral) {
                let _ = writeln!(text, "  note: {}", lowercased_note(&name));
            }
            for help in hints(&name, &reason, list) {
                let _ = writeln!(text, "  help: {help}");
            }
            Explanation {
                allowed: false,
                matched_by: None,
                text,
            }
        }
    }
}

fn lowercased_note(name: &str) -> String {
    format!(
        "read as {}: Envoy's TLS inspector lowercases the SNI before matching",
        quoted(name)
    )
}

/// What the user can do about a refusal.
fn hints(name: &str, reason: &Denial<'_>, list: &Allowlist) -> Vec<String> {
    match reason {
        Denial::NoSni => vec!["pass the DNS name the client connects to".into()],
        Denial::IpLiteral => vec![
            "the allowlist holds DNS names; a client that connects by IP address sends no name \
             to match (RFC 6066 §3 forbids IP literals in SNI), so the gateway refuses it; \
             connect by DNS name"
                .into(),
        ],
        Denial::TrailingDot => {
            // Ask the matcher about the name without its dot, so the hint
            // cannot disagree with the verdict the client would get.
            let bare = &name[..name.len() - 1];
            let without = match list.decide(bare) {
                Decision::Allowed { by, .. } => format!("is allowed by `{by}`"),
                Decision::Denied { .. } => "is refused too".to_string(),
            };
            vec![format!(
                "TLS clients drop the trailing dot before sending SNI (RFC 6066 §3); {} {without}",
                quoted(bare)
            )]
        }
        Denial::InvalidName(_) => vec![
            "a DNS name holds only a-z, 0-9, `-` and `.`; egressgen refuses anything else \
             before matching (deny by default). Envoy itself only rejects an empty SNI, NUL and \
             over-long names, so a gateway could still match such a name against a wildcard"
                .into(),
        ],
        Denial::NoMatch { bare_of: Some(_) } => Vec::new(),
        Denial::NoMatch { bare_of: None } => {
            let mut out: Vec<String> = list
                .exact_parents(name)
                .into_iter()
                .map(|p| {
                    format!(
                        "`{p}` is an exact entry and matches only itself; add `*.{p}` to allow the names below it"
                    )
                })
                .collect();
            let parent = name
                .split_once('.')
                .map(|(_, p)| p)
                .filter(|p| p.contains('.'));
            out.push(match parent {
                Some(p) => format!(
                    "add {} to spec.domains, or {} for every name below {}",
                    quoted(name),
                    quoted(&format!("*.{p}")),
                    quoted(p)
                ),
                None => format!("add {} to spec.domains", quoted(name)),
            });
            out
        }
    }
}

/// `egressgen explain`: loads the allowlist (notes go to stderr), explains
/// each host on stdout, and exits 0 when all are allowed, 1 otherwise.
pub fn run(args: crate::cli::ExplainArgs) -> anyhow::Result<u8> {
    let cfg = crate::cli::load_config(
        args.config.as_deref(),
        &args.allow,
        &crate::config::Overrides::default(),
    )?;
    let mut out = String::new();
    let mut all_allowed = true;
    for host in &args.hosts {
        let e = explain(host.as_encoded_bytes(), &cfg.allowlist);
        all_allowed &= e.allowed;
        out.push_str(&e.text);
    }
    crate::output::print(&out)?;
    Ok(if all_allowed {
        crate::cli::exit::OK
    } else {
        crate::cli::exit::FINDINGS
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries.iter().copied()).unwrap().0
    }

    #[test]
    fn verdict_is_decides_verdict() {
        let l = list(&["*.wikipedia.org", "api.github.com"]);
        for host in [
            "en.wikipedia.org",
            "EN.WIKIPEDIA.ORG",
            "wikipedia.org",
            "api.github.com.",
            "x.api.github.com",
            "10.0.0.1",
            "",
        ] {
            let want = matches!(l.decide(host), Decision::Allowed { .. });
            assert_eq!(explain(host.as_bytes(), &l).allowed, want, "{host}");
        }
    }

    #[test]
    fn non_utf8_is_refused_and_shown_escaped() {
        let l = list(&["*.example.com"]);
        let e = explain(b"a\xff.example.com", &l);
        assert!(!e.allowed);
        assert!(e.text.contains("`a\\xff.example.com`"), "{}", e.text);
        assert!(e.text.contains("\\xff (not UTF-8)"), "{}", e.text);
    }
}
