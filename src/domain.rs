//! The domain model: parse, validate, normalise and match allowlist entries.
//!
//! Every part of egressgen that asks "is this host allowed?" asks
//! [`Allowlist::decide`]; `render`, `lint`, `serve` and `explain` all go
//! through this module. It knows nothing of YAML, templates or sockets.
//!
//! Semantics follow Envoy's `filter_chain_match.server_names` lookup
//! (`source/common/listener_manager/filter_chain_manager_impl.cc`,
//! `findFilterChainForServerName`): the exact name first, then `*` + each
//! `.suffix` of the name from the longest to the shortest, never the whole
//! name. So `*.example.com` matches `a.example.com` and `a.b.example.com`,
//! but never `example.com`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

/// Longest DNS name, RFC 1035 §2.3.4 (without the trailing dot).
pub const MAX_NAME_LEN: usize = 253;
/// Longest DNS label, RFC 1035 §2.3.4.
pub const MAX_LABEL_LEN: usize = 63;

/// One allowlist entry: an exact DNS name or a `*.` wildcard.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Pattern {
    /// `api.example.com`
    Exact(String),
    /// `*.example.com`, stored as its suffix `example.com`.
    Wildcard(String),
}

/// What normalisation changed in an entry, so callers can tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Normalised {
    /// Uppercase ASCII was lowercased. DNS is case-insensitive, and Envoy
    /// lowercases the SNI and every `server_names` entry before matching
    /// (`filter_chain_manager_impl.cc`); one case keeps the four lists, which
    /// Istio compares as written, identical.
    Lowercased,
    /// One trailing dot was removed. SNI never carries it (RFC 6066 §3: "without
    /// a trailing dot"), so `example.com.` in `server_names` would never match.
    TrailingDotRemoved,
}

impl fmt::Display for Normalised {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Normalised::Lowercased => "lowercased (DNS names are case-insensitive)",
            Normalised::TrailingDotRemoved => "trailing dot removed (SNI never carries one)",
        })
    }
}

/// Why an entry is not a valid allowlist pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("empty domain")]
    Empty,
    #[error("a bare `*` would allow every destination")]
    BareWildcard,
    #[error(
        "`*` must be the whole leftmost label followed by a dot (`*.example.com`); Envoy rejects partial wildcards"
    )]
    PartialWildcard,
    #[error("IP literals are not allowed; the allowlist holds DNS names (SNI never carries an IP)")]
    IpLiteral,
    #[error("the top-level label `{0}` is all digits, which Istio rejects")]
    NumericTld(String),
    #[error(
        "`{0}` has no dot, so Istio reads it in a VirtualService as the Kubernetes short name `{0}.<namespace>.svc.cluster.local` and the route misses it"
    )]
    SingleLabel(String),
    #[error("empty label (two dots in a row, or a leading dot)")]
    EmptyLabel,
    #[error("label `{label}` is {len} characters long; the limit is 63")]
    LabelTooLong { label: String, len: usize },
    #[error("name is {0} characters long; the limit is 253")]
    NameTooLong(usize),
    #[error("label `{0}` starts or ends with a hyphen")]
    HyphenAtEdge(String),
    #[error("character {0} is not allowed; use a-z, 0-9, `-` and `.` (punycode `xn--` for IDNs)")]
    BadChar(String),
}

impl DomainError {
    /// A one-line suggestion of what to do instead.
    pub fn help(&self) -> &'static str {
        match self {
            DomainError::Empty => "remove the empty entry",
            DomainError::BareWildcard => {
                "list the domains you need; `egressgen serve --learn` shows what an app talks to"
            }
            DomainError::PartialWildcard => {
                "use `*.example.com`, which matches every name below example.com"
            }
            DomainError::IpLiteral => "use the DNS name the client puts in its TLS SNI",
            DomainError::NumericTld(_) => "use a DNS name, not an IP address or number",
            DomainError::SingleLabel(_) => {
                "write the fully qualified name the client puts in its SNI, e.g. `intranet.corp.example`"
            }
            DomainError::EmptyLabel
            | DomainError::LabelTooLong { .. }
            | DomainError::NameTooLong(_)
            | DomainError::HyphenAtEdge(_) => "fix the spelling of the name",
            DomainError::BadChar(_) => {
                "write internationalised names in punycode, e.g. `xn--bcher-kva.example`"
            }
        }
    }
}

impl Pattern {
    /// Parses one allowlist entry, normalising case and one trailing dot.
    pub fn parse(input: &str) -> Result<(Pattern, Vec<Normalised>), DomainError> {
        let mut notes = Vec::new();
        let mut s = input.to_string();
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            s.make_ascii_lowercase();
            notes.push(Normalised::Lowercased);
        }
        if s.len() > 1 && s.ends_with('.') && !s.ends_with("..") {
            s.pop();
            notes.push(Normalised::TrailingDotRemoved);
        }
        if s.is_empty() {
            return Err(DomainError::Empty);
        }
        if s == "*" {
            return Err(DomainError::BareWildcard);
        }
        let (wildcard, name) = match s.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, s.as_str()),
        };
        if name.contains('*') || (!wildcard && s.starts_with('*')) {
            return Err(DomainError::PartialWildcard);
        }
        validate_name(name)?;
        // Istio expands a VirtualService host without a dot relative to the
        // VirtualService's namespace (`ResolveShortnameToFQDN`, istio/istio
        // `pilot/pkg/model/config.go`) but takes ServiceEntry hosts as
        // written, so the route would never apply and the sidecar would send
        // the name straight out, past the gateway. `*.name` has a dot.
        if !wildcard && !name.contains('.') {
            return Err(DomainError::SingleLabel(name.to_string()));
        }
        let name = name.to_string();
        Ok((
            if wildcard {
                Pattern::Wildcard(name)
            } else {
                Pattern::Exact(name)
            },
            notes,
        ))
    }

    /// True when every name this pattern matches is also matched by `self`
    /// and the two differ, i.e. `other` is redundant next to `self`.
    pub fn covers(&self, other: &Pattern) -> bool {
        let Pattern::Wildcard(suffix) = self else {
            return false;
        };
        let name = match other {
            Pattern::Exact(n) | Pattern::Wildcard(n) => n,
        };
        is_strict_subdomain(name, suffix)
    }

    /// The DNS name without any `*.`.
    pub fn name(&self) -> &str {
        match self {
            Pattern::Exact(n) | Pattern::Wildcard(n) => n,
        }
    }

    /// Sort key that groups entries by registrable domain: labels reversed,
    /// then exact before wildcard.
    fn sort_key(&self) -> (Vec<&str>, bool) {
        (
            self.name().rsplit('.').collect(),
            matches!(self, Pattern::Wildcard(_)),
        )
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pattern::Exact(n) => f.write_str(n),
            Pattern::Wildcard(n) => write!(f, "*.{n}"),
        }
    }
}

/// [`Pattern::sort_key`], owned, for sorting without re-allocating.
fn sort_key_owned(p: &Pattern) -> (Vec<String>, bool) {
    let (labels, wildcard) = p.sort_key();
    (labels.into_iter().map(str::to_string).collect(), wildcard)
}

/// `name` is below `suffix` by at least one label.
fn is_strict_subdomain(name: &str, suffix: &str) -> bool {
    name.len() > suffix.len()
        && name.ends_with(suffix)
        && name.as_bytes()[name.len() - suffix.len() - 1] == b'.'
}

/// Checks a lowercase name without wildcard or trailing dot.
fn validate_name(name: &str) -> Result<(), DomainError> {
    if name.is_empty() {
        return Err(DomainError::EmptyLabel);
    }
    if is_ip_literal(name) {
        return Err(DomainError::IpLiteral);
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(DomainError::BadChar(describe_char(c)));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(DomainError::NameTooLong(name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > MAX_LABEL_LEN {
            return Err(DomainError::LabelTooLong {
                label: label.to_string(),
                len: label.len(),
            });
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(DomainError::HyphenAtEdge(label.to_string()));
        }
    }
    let tld = name.rsplit('.').next().unwrap_or(name);
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DomainError::NumericTld(tld.to_string()));
    }
    Ok(())
}

/// IPv4 dotted quads, IPv6 (bare or bracketed), with or without a zone.
pub fn is_ip_literal(s: &str) -> bool {
    let s = s.trim_end_matches('.');
    if s.parse::<IpAddr>().is_ok() {
        return true;
    }
    let inner = s.strip_prefix('[').and_then(|r| r.strip_suffix(']'));
    let candidate = inner.unwrap_or(s);
    let no_zone = candidate.split('%').next().unwrap_or(candidate);
    no_zone.parse::<Ipv6Addr>().is_ok()
}

/// Names a character safely for a terminal: printable ASCII in backticks,
/// anything else as a Unicode escape.
fn describe_char(c: char) -> String {
    if c.is_ascii_graphic() {
        format!("`{c}`")
    } else if c == ' ' {
        "` ` (space)".to_string()
    } else {
        format!("U+{:04X}", c as u32)
    }
}

/// An entry the allowlist dropped, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub entry: Pattern,
    /// `None` for an exact duplicate, else the wildcard that covers it.
    pub covered_by: Option<Pattern>,
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.covered_by {
            None => write!(f, "dropped duplicate `{}`", self.entry),
            Some(w) => write!(f, "dropped `{}`: already covered by `{w}`", self.entry),
        }
    }
}

/// A normalised, de-duplicated set of patterns, and the one matcher.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    entries: Vec<Pattern>,
    /// Exact names, to their index in `entries`.
    exact: HashMap<String, usize>,
    /// Wildcard entries by suffix (`example.com` for `*.example.com`), to
    /// their index in `entries`. Envoy keys them `*.example.com`; keying by
    /// the suffix lets a lookup probe without building a string.
    wildcard: HashMap<String, usize>,
}

/// The answer to "may a connection with this SNI pass?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision<'a> {
    Allowed {
        /// The SNI after Envoy's lowercasing.
        name: String,
        by: &'a Pattern,
    },
    Denied {
        name: String,
        reason: Denial<'a>,
    },
}

/// Why a server name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial<'a> {
    /// The ClientHello carried no SNI (or an empty one).
    NoSni,
    /// The SNI is an IP address; Envoy never matches those against names.
    IpLiteral,
    /// The SNI ends with a dot. Envoy compares it literally, so
    /// `a.example.com.` matches neither `a.example.com` nor `*.example.com`.
    TrailingDot,
    /// The SNI holds a byte that cannot be in a DNS name (NUL, space, `_`,
    /// ...). This is stricter than Envoy, which only rejects an empty name,
    /// NUL and over-long names (BoringSSL's SNI parser) and would match
    /// `a_b.example.com` against `*.example.com` byte for byte; egressgen
    /// refuses such names by policy (deny by default).
    InvalidName(DomainError),
    /// A valid name that no entry matches. `bare_of` is set when the name is
    /// the bare domain of a wildcard entry (`example.com` vs `*.example.com`).
    NoMatch { bare_of: Option<&'a Pattern> },
}

impl Denial<'_> {
    /// Short machine-friendly reason, used in logs.
    pub fn code(&self) -> &'static str {
        match self {
            Denial::NoSni => "no_sni",
            Denial::IpLiteral => "ip_literal",
            Denial::TrailingDot => "trailing_dot",
            Denial::InvalidName(_) => "invalid_name",
            Denial::NoMatch { .. } => "not_allowed",
        }
    }
}

impl fmt::Display for Denial<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::NoSni => f.write_str("the client sent no SNI"),
            Denial::IpLiteral => f.write_str("the SNI is an IP literal"),
            Denial::TrailingDot => f.write_str(
                "the SNI ends with a dot; Envoy compares names literally, so it matches no entry",
            ),
            Denial::InvalidName(e) => write!(f, "the SNI is not a valid DNS name: {e}"),
            Denial::NoMatch { bare_of: Some(w) } => write!(
                f,
                "not matched by `{w}`: a wildcard never matches the bare domain; add `{}`",
                w.name()
            ),
            Denial::NoMatch { bare_of: None } => f.write_str("no allowlist entry matches"),
        }
    }
}

impl Allowlist {
    /// Builds an allowlist, dropping duplicates and entries covered by a
    /// wildcard. Istio rejects duplicate VirtualService hosts and Envoy a
    /// `server_names` entry repeated across chains; a covered entry is
    /// accepted but matches nothing its wildcard does not, so the rendered
    /// lists stay minimal. Entries come out sorted by registrable domain.
    pub fn new(patterns: impl IntoIterator<Item = Pattern>) -> (Allowlist, Vec<Dropped>) {
        let (kept, dropped) = collapse(patterns);
        // Compute each key once: building it per comparison allocated
        // n log n vectors, which dominated `lint` on 20,000-entry lists.
        let mut keyed: Vec<_> = kept.into_iter().map(|p| (sort_key_owned(&p), p)).collect();
        keyed.sort_by(|a, b| a.0.cmp(&b.0));
        let kept: Vec<Pattern> = keyed.into_iter().map(|(_, p)| p).collect();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for (i, p) in kept.iter().enumerate() {
            match p {
                Pattern::Exact(n) => exact.insert(n.clone(), i),
                Pattern::Wildcard(n) => wildcard.insert(n.clone(), i),
            };
        }
        (
            Allowlist {
                entries: kept,
                exact,
                wildcard,
            },
            dropped,
        )
    }

    /// What [`Allowlist::new`] would drop, and why, without building the
    /// list: `lint` asks this of every host list it reads.
    pub fn overlaps(patterns: impl IntoIterator<Item = Pattern>) -> Vec<Dropped> {
        collapse(patterns).1
    }
}

/// Splits patterns into the kept ones (in input order) and the dropped
/// duplicates and covered entries.
fn collapse(patterns: impl IntoIterator<Item = Pattern>) -> (Vec<Pattern>, Vec<Dropped>) {
    let mut dropped = Vec::new();
    let mut seen = HashSet::new();
    let mut unique = Vec::new();
    for p in patterns {
        if seen.insert(p.clone()) {
            unique.push(p);
        } else {
            dropped.push(Dropped {
                entry: p,
                covered_by: None,
            });
        }
    }
    let wildcards: HashSet<&str> = unique
        .iter()
        .filter_map(|p| match p {
            Pattern::Wildcard(s) => Some(s.as_str()),
            Pattern::Exact(_) => None,
        })
        .collect();
    let mut kept = Vec::with_capacity(unique.len());
    for p in &unique {
        // The widest wildcard above this entry, if any: walk up the labels.
        let mut covering = None;
        let mut rest = p.name();
        while let Some((_, parent)) = rest.split_once('.') {
            if wildcards.contains(parent) {
                covering = Some(parent);
            }
            rest = parent;
        }
        match covering {
            Some(w) => dropped.push(Dropped {
                entry: p.clone(),
                covered_by: Some(Pattern::Wildcard(w.to_string())),
            }),
            None => kept.push(p.clone()),
        }
    }
    (kept, dropped)
}

impl Allowlist {
    /// Parses raw entries; the first invalid one is an error.
    pub fn parse<'s>(
        entries: impl IntoIterator<Item = &'s str>,
    ) -> Result<(Allowlist, Vec<Dropped>), (String, DomainError)> {
        let mut patterns = Vec::new();
        for e in entries {
            let (p, _) = Pattern::parse(e).map_err(|err| (e.to_string(), err))?;
            patterns.push(p);
        }
        Ok(Allowlist::new(patterns))
    }

    /// The kept entries, sorted.
    pub fn entries(&self) -> &[Pattern] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry that admits `server_name` under Envoy's `server_names`
    /// lookup, taking the name exactly as given (no lowercasing, no
    /// validation). This is the rendered Envoy config's behaviour.
    pub fn lookup(&self, server_name: &str) -> Option<&Pattern> {
        if let Some(&i) = self.exact.get(server_name) {
            return Some(&self.entries[i]);
        }
        // Envoy: `pos = server_name.find('.', 1)`, then while
        // `pos < size - 1`, try `"*" + server_name.substr(pos)`.
        // The suffix is never the whole name and never a lone trailing dot.
        let bytes = server_name.as_bytes();
        for pos in 1..bytes.len().saturating_sub(1) {
            if bytes[pos] != b'.' {
                continue;
            }
            if let Some(&i) = self.wildcard.get(&server_name[pos + 1..]) {
                return Some(&self.entries[i]);
            }
        }
        None
    }

    /// The decision for a server name as a client sent it: the single place
    /// that decides whether a host is allowed.
    ///
    /// Like Envoy's TLS inspector, ASCII uppercase is lowercased first. Names
    /// that cannot be DNS names are refused before matching.
    pub fn decide(&self, sni: &str) -> Decision<'_> {
        let name = sni.to_ascii_lowercase();
        let reason = if name.is_empty() {
            Denial::NoSni
        } else if is_ip_literal(&name) {
            Denial::IpLiteral
        } else if name.ends_with('.') && validate_name(&name[..name.len() - 1]).is_ok() {
            Denial::TrailingDot
        } else if let Err(e) = validate_name(&name) {
            Denial::InvalidName(e)
        } else if let Some(by) = self.lookup(&name) {
            return Decision::Allowed { name, by };
        } else {
            let bare_of = self.entries.iter().find(|p| match p {
                Pattern::Wildcard(n) => *n == name,
                Pattern::Exact(_) => false,
            });
            Denial::NoMatch { bare_of }
        };
        Decision::Denied { name, reason }
    }

    /// [`Allowlist::decide`] for a server name as raw bytes (an SNI off the
    /// wire, or a command-line argument). A name that is not UTF-8 cannot be
    /// a DNS name and is refused as invalid.
    pub fn decide_bytes(&self, sni: &[u8]) -> Decision<'_> {
        match std::str::from_utf8(sni) {
            Ok(s) => self.decide(s),
            Err(e) => {
                let bad = sni[e.valid_up_to()];
                Decision::Denied {
                    name: String::from_utf8_lossy(sni).to_ascii_lowercase(),
                    reason: Denial::InvalidName(DomainError::BadChar(format!(
                        "\\x{bad:02x} (not UTF-8)"
                    ))),
                }
            }
        }
    }

    /// Exact entries that name a parent of `name`. They do not match `name`
    /// (an exact entry matches only itself); callers use this to explain a
    /// refusal, never to decide one.
    pub fn exact_parents(&self, name: &str) -> Vec<&Pattern> {
        self.entries
            .iter()
            .filter(|p| matches!(p, Pattern::Exact(n) if is_strict_subdomain(name, n)))
            .collect()
    }
}

/// Whether `name` is an exact entry as written: valid, already normalised
/// (lowercase, no trailing dot). [`group_under_wildcards`] keeps only these.
pub fn is_exact_entry(name: &str) -> bool {
    matches!(Pattern::parse(name), Ok((Pattern::Exact(ref e), _)) if e == name)
}

/// Names seen together, and the wildcard that would cover them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// `*.suffix` covering every name in `covered`, when two or more names
    /// sit below a common suffix of the same site.
    pub wildcard: Option<Pattern>,
    /// Names the wildcard covers (sorted).
    pub covered: Vec<String>,
    /// Names of the same site the wildcard does not cover, such as the bare
    /// domain (a wildcard never matches it), to list exactly.
    pub exact: Vec<String>,
}

/// Groups valid, lowercase DNS names by site for an allowlist suggestion
/// (`serve --learn`). A site is the last two labels, or three under a
/// two-letter country code with a short second level (`co.uk`, `com.au`);
/// a heuristic, not the Public Suffix List, so the result is a suggestion.
/// Within a site, two or more names below a common suffix get `*.suffix`,
/// the narrowest wildcard covering them all. Names that are not
/// [`is_exact_entry`] are skipped; groups come out sorted like [`Allowlist::entries`].
pub fn group_under_wildcards<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<Group> {
    let mut sites: std::collections::BTreeMap<Vec<&str>, Vec<&str>> = Default::default();
    for n in names {
        if !is_exact_entry(n) {
            continue;
        }
        let labels: Vec<&str> = n.rsplit('.').collect();
        let keep = if labels.len() >= 3 && labels[0].len() == 2 && labels[1].len() <= 3 {
            3
        } else {
            2
        };
        let site: Vec<&str> = labels.into_iter().take(keep).collect();
        sites.entry(site).or_default().push(n);
    }
    let mut groups = Vec::new();
    for (site, mut members) in sites {
        members.sort();
        members.dedup();
        let site_name: String = site.iter().rev().copied().collect::<Vec<_>>().join(".");
        let below: Vec<&str> = members
            .iter()
            .copied()
            .filter(|n| is_strict_subdomain(n, &site_name))
            .collect();
        if below.len() < 2 {
            groups.push(Group {
                wildcard: None,
                covered: Vec::new(),
                exact: members.iter().map(|s| s.to_string()).collect(),
            });
            continue;
        }
        // Longest common label suffix of the names below the site, excluding
        // each name's own first label so the wildcard is strictly above all.
        let parents: Vec<Vec<&str>> = below
            .iter()
            .map(|n| {
                n.split_once('.')
                    .map_or("", |(_, p)| p)
                    .rsplit('.')
                    .collect()
            })
            .collect();
        let mut common = parents[0].clone();
        for p in &parents[1..] {
            let same = common.iter().zip(p).take_while(|(a, b)| a == b).count();
            common.truncate(same);
        }
        let suffix: String = common.iter().rev().copied().collect::<Vec<_>>().join(".");
        let (covered, exact) = members
            .iter()
            .map(|s| s.to_string())
            .partition(|n| is_strict_subdomain(n, &suffix));
        groups.push(Group {
            wildcard: Some(Pattern::Wildcard(suffix)),
            covered,
            exact,
        });
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn list(entries: &[&str]) -> Allowlist {
        Allowlist::parse(entries.iter().copied()).unwrap().0
    }

    #[test]
    fn accepts_names_wildcards_and_punycode() {
        for ok in [
            "example.com",
            "*.wikipedia.org",
            "xn--bcher-kva.example",
            "a-b.c0.io",
            "*.local",
        ] {
            assert!(Pattern::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_what_envoy_and_istio_reject() {
        let cases: &[(&str, DomainError)] = &[
            ("", DomainError::Empty),
            ("*", DomainError::BareWildcard),
            ("*w.example.com", DomainError::PartialWildcard),
            ("foo.*.com", DomainError::PartialWildcard),
            ("*.*.example.com", DomainError::PartialWildcard),
            ("w*.example.com", DomainError::PartialWildcard),
            ("1.2.3.4", DomainError::IpLiteral),
            ("::1", DomainError::IpLiteral),
            ("[2001:db8::1]", DomainError::IpLiteral),
            ("a..com", DomainError::EmptyLabel),
            (".example.com", DomainError::EmptyLabel),
            ("-a.com", DomainError::HyphenAtEdge("-a".into())),
            ("a-.com", DomainError::HyphenAtEdge("a-".into())),
            ("a b.com", DomainError::BadChar("` ` (space)".into())),
            ("a\u{0}.com", DomainError::BadChar("U+0000".into())),
            ("bücher.de", DomainError::BadChar("U+00FC".into())),
            ("a_b.com", DomainError::BadChar("`_`".into())),
            ("example.123", DomainError::NumericTld("123".into())),
            ("localhost", DomainError::SingleLabel("localhost".into())),
            ("Intranet.", DomainError::SingleLabel("intranet".into())),
        ];
        for (input, want) in cases {
            assert_eq!(Pattern::parse(input).unwrap_err(), *want, "{input:?}");
        }
        let long_label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            Pattern::parse(&long_label),
            Err(DomainError::LabelTooLong { len: 64, .. })
        ));
        let long_name = format!("{}.com", vec!["a".repeat(60); 5].join("."));
        assert!(matches!(
            Pattern::parse(&long_name),
            Err(DomainError::NameTooLong(_))
        ));
    }

    #[test]
    fn normalises_case_and_one_trailing_dot() {
        let (p, notes) = Pattern::parse("*.Wikipedia.ORG.").unwrap();
        assert_eq!(p.to_string(), "*.wikipedia.org");
        assert_eq!(
            notes,
            vec![Normalised::Lowercased, Normalised::TrailingDotRemoved]
        );
        assert_eq!(
            Pattern::parse("example.com..").unwrap_err(),
            DomainError::EmptyLabel
        );
    }

    #[test]
    fn wildcard_matches_every_depth_but_never_the_bare_domain() {
        let l = list(&["*.example.com", "api.github.com"]);
        assert!(l.lookup("a.example.com").is_some());
        assert!(l.lookup("a.b.example.com").is_some());
        assert!(l.lookup("example.com").is_none());
        assert!(l.lookup("api.github.com").is_some());
        assert!(l.lookup("github.com").is_none());
        assert!(l.lookup("x.api.github.com").is_none());
        assert!(l.lookup("evilexample.com").is_none());
    }

    #[test]
    fn narrower_wildcard_is_dropped_and_the_wider_one_answers() {
        let (l, dropped) = Allowlist::new([
            Pattern::Wildcard("example.com".into()),
            Pattern::Wildcard("a.example.com".into()),
        ]);
        // The narrower wildcard is covered and dropped, so the wider one answers.
        assert_eq!(dropped.len(), 1);
        assert_eq!(
            l.lookup("x.a.example.com").unwrap().to_string(),
            "*.example.com"
        );
    }

    #[test]
    fn collapses_duplicates_and_covered_entries() {
        let (l, dropped) = Allowlist::parse([
            "api.example.com",
            "*.example.com",
            "*.a.example.com",
            "example.com",
            "API.example.com",
            "api.github.com",
            "api.github.com",
        ])
        .unwrap();
        let kept: Vec<String> = l.entries().iter().map(|p| p.to_string()).collect();
        assert_eq!(kept, ["example.com", "*.example.com", "api.github.com"]);
        let msgs: Vec<String> = dropped.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            msgs,
            [
                "dropped duplicate `api.example.com`",
                "dropped duplicate `api.github.com`",
                "dropped `api.example.com`: already covered by `*.example.com`",
                "dropped `*.a.example.com`: already covered by `*.example.com`",
            ]
        );
    }

    #[test]
    fn decide_follows_envoy_and_explains_refusals() {
        let l = list(&["*.wikipedia.org"]);
        assert!(
            matches!(l.decide("EN.Wikipedia.org"), Decision::Allowed { ref name, .. } if name == "en.wikipedia.org")
        );
        let deny = |sni: &str| match l.decide(sni) {
            Decision::Denied { reason, .. } => reason.code(),
            Decision::Allowed { .. } => "allowed",
        };
        assert_eq!(deny(""), "no_sni");
        assert_eq!(deny("10.0.0.1"), "ip_literal");
        assert_eq!(deny("en.wikipedia.org."), "trailing_dot");
        assert_eq!(deny("en\0.wikipedia.org"), "invalid_name");
        assert_eq!(deny("a b.wikipedia.org"), "invalid_name");
        assert_eq!(deny("wikipedia.org"), "not_allowed");
        let Decision::Denied { reason, .. } = l.decide("wikipedia.org") else {
            panic!()
        };
        assert_eq!(
            reason.to_string(),
            "not matched by `*.wikipedia.org`: a wildcard never matches the bare domain; add `wikipedia.org`"
        );
    }

    #[test]
    fn covers_means_every_name_below_the_wildcard() {
        let p = |s: &str| Pattern::parse(s).unwrap().0;
        let w = p("*.example.com");
        for below in ["a.example.com", "a.b.example.com", "*.a.example.com"] {
            assert!(w.covers(&p(below)), "{below}");
        }
        for not in [
            "example.com",
            "*.example.com",
            "evilexample.com",
            "a.example.org",
        ] {
            assert!(!w.covers(&p(not)), "{not}");
        }
        // An exact entry matches only itself, so it covers nothing.
        assert!(!p("example.com").covers(&p("a.example.com")));
    }

    #[test]
    fn names_at_the_rfc_1035_limits_are_accepted() {
        let a = |n: usize| "a".repeat(n);
        let label_63 = format!("{}.com", a(63));
        assert!(Pattern::parse(&label_63).is_ok());
        let name_253 = format!("{}.{}.{}.{}", a(63), a(63), a(63), a(61));
        assert_eq!(name_253.len(), MAX_NAME_LEN);
        assert!(Pattern::parse(&name_253).is_ok());
        assert!(Pattern::parse(&format!("*.{name_253}")).is_ok());
        assert_eq!(
            Pattern::parse(&format!("a{name_253}")).unwrap_err(),
            DomainError::NameTooLong(254)
        );
    }

    /// A literal transcription of Envoy's `findFilterChainForServerName`
    /// (filter_chain_manager_impl.cc), over its `server_names_map` keys.
    fn envoy_find(server_names: &HashSet<String>, server_name: &str) -> Option<String> {
        if server_names.contains(server_name) {
            return Some(server_name.to_string());
        }
        // size_t pos = server_name.find('.', 1);
        // while (pos < server_name.size() - 1 && pos != std::string::npos) {
        let find = |from: usize| -> Option<usize> {
            server_name
                .get(from..)
                .and_then(|s| s.find('.'))
                .map(|i| i + from)
        };
        let mut pos = find(1);
        while let Some(p) = pos {
            if p >= server_name.len().wrapping_sub(1) {
                break;
            }
            let wildcard = format!("*{}", &server_name[p..]);
            if server_names.contains(&wildcard) {
                return Some(wildcard);
            }
            pos = find(p + 1);
        }
        None
    }

    fn label() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c]",
            "[a-c][a-c0-9-]{0,3}[a-c]",
            Just("xn--d".to_string())
        ]
    }
    fn name() -> impl Strategy<Value = String> {
        proptest::collection::vec(label(), 1..5).prop_map(|v| v.join("."))
    }
    /// An allowlist entry: a wildcard, or an exact name of two labels or
    /// more (a single label is refused).
    fn entry() -> impl Strategy<Value = String> {
        prop_oneof![
            name().prop_map(|n| format!("*.{n}")),
            proptest::collection::vec(label(), 2..5).prop_map(|v| v.join(".")),
        ]
    }
    /// Server names as a client may send them, including odd dots.
    fn sni() -> impl Strategy<Value = String> {
        prop_oneof![
            name(),
            name().prop_map(|n| format!("{n}.")),
            name().prop_map(|n| format!(".{n}")),
            name().prop_map(|n| n.replacen('.', "..", 1)),
            "[a-c.]{0,8}",
        ]
    }

    #[test]
    fn groups_names_under_the_narrowest_covering_wildcard() {
        let g = group_under_wildcards([
            "en.wikipedia.org",
            "de.wikipedia.org",
            "github.com",
            "api.github.com",
            "uploads.github.com",
            "api.stripe.com",
            "a.x.example.co.uk",
            "b.x.example.co.uk",
            "b.x.example.co.uk",
            "not valid",
            "10.0.0.1",
        ]);
        let show: Vec<String> = g
            .iter()
            .map(|g| {
                format!(
                    "{} {:?} {:?}",
                    g.wildcard.as_ref().map_or("-".into(), |w| w.to_string()),
                    g.covered,
                    g.exact
                )
            })
            .collect();
        assert_eq!(
            show,
            [
                "*.github.com [\"api.github.com\", \"uploads.github.com\"] [\"github.com\"]",
                "- [] [\"api.stripe.com\"]",
                "*.wikipedia.org [\"de.wikipedia.org\", \"en.wikipedia.org\"] []",
                "*.x.example.co.uk [\"a.x.example.co.uk\", \"b.x.example.co.uk\"] []",
            ]
        );
        // Every suggested wildcard admits exactly what it claims to.
        for grp in &g {
            if let Some(w) = &grp.wildcard {
                let (l, _) = Allowlist::new([w.clone()]);
                assert!(grp.covered.iter().all(|n| l.lookup(n).is_some()));
                assert!(grp.exact.iter().all(|n| l.lookup(n).is_none()));
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn lookup_equals_envoy(entries in proptest::collection::vec(entry(), 0..8), sni in sni()) {
            let l = list(&entries.iter().map(String::as_str).collect::<Vec<_>>());
            let keys: HashSet<String> = l.entries().iter().map(|p| p.to_string()).collect();
            let ours = l.lookup(&sni).map(|p| p.to_string());
            prop_assert_eq!(ours, envoy_find(&keys, &sni));
        }

        #[test]
        fn dropping_covered_entries_never_changes_a_decision(entries in proptest::collection::vec(entry(), 0..8), sni in sni()) {
            // All entries, as Envoy would see them without collapsing.
            let all: HashSet<String> = entries.iter().cloned().collect();
            let l = list(&entries.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(l.lookup(&sni).is_some(), envoy_find(&all, &sni).is_some());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = Pattern::parse(&s);
            let _ = list(&["*.a.b"]).decide(&s);
        }
    }
}
