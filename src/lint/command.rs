//! `egressgen lint` as a command: read the paths, run the rules, print the
//! report on stdout and the summary on stderr, pick the exit code.

use std::io::Write;

use anyhow::Result;

use super::load::{Filter, read_paths};
use super::report::{self, Format};
use super::{Options, Report, rules};
use crate::cli::{LintArgs, exit};
use crate::config::{self, Overrides};

pub fn run(args: &LintArgs) -> Result<u8> {
    if let Some(code) = &args.explain {
        return Ok(explain(code));
    }
    let mut err = std::io::stderr().lock();
    for code in &args.ignore {
        if rules::find(code).is_none() {
            let _ = writeln!(
                err,
                "error: --ignore {}: no such code; `egressgen lint --explain EG001` documents each",
                crate::escape::quoted(code)
            );
            return Ok(exit::USAGE);
        }
    }
    let mut opts = Options {
        ignore: args.ignore.iter().map(|c| c.to_ascii_uppercase()).collect(),
        ..Options::default()
    };
    if let Some(path) = &args.config {
        match config::load(path, &Overrides::default()) {
            Ok((cfg, _notes)) => {
                opts.config = Some(cfg);
                opts.config_name = path.display().to_string();
            }
            Err(e) => {
                let _ = writeln!(err, "{e}");
                return Ok(exit::USAGE);
            }
        }
    }
    let sources = Filter::new(&args.include, &args.exclude)
        .and_then(|f| read_paths(&args.paths, &f, &args.stdin_filename));
    let sources = match sources {
        Ok(s) => s,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return Ok(exit::USAGE);
        }
    };
    let report = super::run(&sources, &opts);
    Ok(print(&report, args.format, args.deny_warnings))
}

/// Prints the report and returns the exit code.
pub fn print(report: &Report, format: Format, deny_warnings: bool) -> u8 {
    let mut err = std::io::stderr().lock();
    if !report.input_errors.is_empty() {
        for e in &report.input_errors {
            let _ = writeln!(err, "{e}");
        }
    } else {
        let out = report::render_with_color(report, format, crate::output::stdout_color());
        let _ = crate::output::print(&out);
    }
    let _ = writeln!(err, "{}", report.summary());
    report.exit_code(deny_warnings)
}

fn explain(code: &str) -> u8 {
    match rules::find(code) {
        Some(rule) => {
            let _ = crate::output::print(&format!(
                "# {} ({}, {})\n\n{}",
                rule.code,
                rule.name,
                rule.severity.as_str(),
                rule.doc()
            ));
            exit::OK
        }
        None => {
            eprintln!(
                "error: no lint code {}; codes are EG001 to EG{:03}",
                crate::escape::quoted(code),
                rules::RULES.len()
            );
            exit::USAGE
        }
    }
}
