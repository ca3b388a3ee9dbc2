//! `egressgen lint`: find allowlist drift, broken Envoy wiring, risky scope
//! and schema errors in existing manifests, with `file:line:col`.
//!
//! Data flow: [`load`] turns [`Source`]s into YAML trees with positions,
//! [`extract`] reads the Istio resources, the four host lists and the wiring
//! facts out of them, each rule in [`rules`] adds [`Finding`]s, and
//! [`report`] prints them (text, JSON, SARIF, GitHub annotations). Validity
//! and overlap of hosts are decided by [`crate::domain`], the same model
//! `render` uses; this module never matches hosts itself.
//!
//! The public API ([`Source`], [`Options`], [`run`], [`Report`], [`Finding`])
//! is also what the kpt validator calls; keep its fields stable.

pub mod command;
pub mod extract;
pub mod load;
pub mod report;
pub mod rules;

use serde::Serialize;

use crate::config::Config;
pub use load::{InputError, Pos};

/// One named input text: a file, stdin, or a resource list from kpt.
#[derive(Debug, Clone)]
pub struct Source {
    /// How the input is named in findings (a path, or `--stdin-filename`).
    pub name: String,
    pub text: String,
}

/// What to check and how strictly.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The source of truth (`--config`): every host list must equal its
    /// normalised domain list.
    pub config: Option<Config>,
    /// How the config is named in messages (its path, escaped).
    pub config_name: String,
    /// How to regenerate the manifests from the config, for help lines: a
    /// command in backticks, or an instruction.
    pub regenerate: String,
    /// Codes never reported (`--ignore EG001`).
    pub ignore: Vec<String>,
}

impl Options {
    /// Checks against `cfg`, read from the file at `path`.
    pub fn config_from_file(&mut self, cfg: Config, path: &str) {
        self.config = Some(cfg);
        self.config_name = crate::escape::escaped(path);
        self.regenerate = format!("`egressgen render -c {}`", crate::escape::shell_word(path));
    }

    /// Checks against `cfg`, given inline as a KRM functionConfig.
    pub fn config_inline(&mut self, cfg: Config) {
        self.config = Some(cfg);
        self.config_name = "functionConfig".into();
        self.regenerate =
            "the egressgen generator function (`egressgen fn`) with this functionConfig".into();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// The Kubernetes object a finding is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

/// One problem, at a real line and column of the user's file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `EG001` ...
    pub code: &'static str,
    pub severity: Severity,
    /// One line: what is wrong. Untrusted values are escaped.
    pub message: String,
    /// One line: what to do, when a fix is known.
    pub help: Option<String>,
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    pub resource: Option<ResourceRef>,
    /// Where in the resource, e.g. `spec.hosts[2]`.
    pub field_path: String,
}

/// The result of a lint run.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Sorted by file, line, column, code.
    pub findings: Vec<Finding>,
    /// Input that could not be parsed; when not empty, no rule ran.
    pub input_errors: Vec<InputError>,
    pub files: usize,
    /// Istio and Kubernetes objects that were linted.
    pub resources: usize,
    /// How many of them are Istio's.
    pub istio_resources: usize,
    /// egressgen configs found among the manifests: file and position.
    pub configs: Vec<(String, load::Pos)>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, s: Severity) -> usize {
        self.findings.iter().filter(|f| f.severity == s).count()
    }

    /// 0 clean, 1 errors (warnings too with `deny_warnings`), 2 bad input.
    pub fn exit_code(&self, deny_warnings: bool) -> u8 {
        if !self.input_errors.is_empty() {
            crate::cli::exit::USAGE
        } else if self.errors() > 0 || (deny_warnings && self.warnings() > 0) {
            crate::cli::exit::FINDINGS
        } else {
            crate::cli::exit::OK
        }
    }

    /// Notes printed after the summary when the input may not be what the
    /// user meant to check: a clean run that saw no egress wiring at all
    /// must not look like a pass in CI.
    pub fn notes(&self) -> Vec<String> {
        if !self.input_errors.is_empty() {
            return Vec::new();
        }
        let mut notes: Vec<String> = self
            .configs
            .iter()
            .map(|(file, at)| {
                let shown = crate::escape::escaped(file);
                // Stdin has no path to pass back to render.
                let path = if file == load::STDIN_NAME {
                    "FILE".to_string()
                } else {
                    shown.clone()
                };
                format!(
                    "note: {shown}:{}:{}: an egressgen config (kind: EgressGateway), not a manifest; it is not linted\n  \
                     help: lint what it renders (`egressgen render -c {path} | egressgen lint -`), \
                     or check manifests against it (`egressgen lint --config {path} MANIFESTS`)",
                    at.line, at.column
                )
            })
            .collect();
        if self.istio_resources == 0 {
            notes.push(
                "note: no Istio resources in the input, so no egress wiring was checked\n  \
                 help: point lint at the rendered manifests (Gateway, VirtualService, \
                 ServiceEntry, DestinationRule, EnvoyFilter)"
                    .to_string(),
            );
        }
        notes
    }

    /// The one-line summary printed on stderr.
    pub fn summary(&self) -> String {
        let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
        let scope = format!(
            "{} in {}",
            plural(self.resources, "resource"),
            plural(self.files, "file")
        );
        if !self.input_errors.is_empty() {
            return format!(
                "lint stopped: {} in the input; nothing was checked",
                plural(self.input_errors.len(), "error")
            );
        }
        if self.findings.is_empty() {
            return format!("All checks passed: {scope}.");
        }
        format!(
            "Found {} and {}: {scope}.",
            plural(self.errors(), "error"),
            plural(self.warnings(), "warning")
        )
    }
}

/// Lints `sources` as one set: resources that work together may sit in
/// different sources.
pub fn run(sources: &[Source], opts: &Options) -> Report {
    let mut report = Report {
        files: sources.len(),
        ..Report::default()
    };
    let mut docs = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        match load::parse(i, &s.name, &s.text) {
            Ok(d) => docs.extend(d),
            Err(e) => report.input_errors.push(e),
        }
    }
    if !report.input_errors.is_empty() {
        return report;
    }
    let names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
    let model = extract::Model::new(&names, docs);
    report.resources = model.resources.len();
    report.istio_resources = model.resources.iter().filter(|r| r.is_istio()).count();
    report.configs = model
        .configs
        .iter()
        .map(|&(source, at)| (names[source].to_string(), at))
        .collect();
    let mut ctx = rules::Ctx::new(&model, opts);
    for rule in rules::RULES {
        if opts
            .ignore
            .iter()
            .any(|c| c.eq_ignore_ascii_case(rule.code))
        {
            continue;
        }
        ctx.rule = rule;
        (rule.check)(&mut ctx);
    }
    let mut findings = ctx.finish();
    findings.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code, &a.message)
            .cmp(&(&b.file, b.line, b.column, b.code, &b.message))
    });
    findings.dedup();
    report.findings = findings;
    report
}
