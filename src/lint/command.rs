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
            Ok((cfg, _notes)) => opts.config_from_file(cfg, &path.display().to_string()),
            Err(e) => {
                let _ = writeln!(err, "{e}");
                return Ok(exit::USAGE);
            }
        }
    }
    let filter = match Filter::new(&args.include, &args.exclude) {
        Ok(f) => f,
        Err(e) => {
            let _ = writeln!(err, "{e}");
            return Ok(exit::USAGE);
        }
    };
    drop(err);
    // An unreadable path stops the run like a parse error: reported on
    // stderr, and in the JSON, SARIF or GitHub output a CI step uploads.
    let report = match read_paths(&args.paths, &filter, &args.stdin_filename) {
        Ok(sources) => super::run(&sources, &opts),
        Err(e) => Report {
            input_errors: vec![e],
            ..Report::default()
        },
    };
    Ok(print(&report, args.format, args.deny_warnings))
}

/// Prints the report and returns the exit code. Input errors go to stderr;
/// the machine formats also carry them on stdout (so an uploaded SARIF file
/// says why nothing was checked), the text format prints nothing there.
pub fn print(report: &Report, format: Format, deny_warnings: bool) -> u8 {
    let mut err = std::io::stderr().lock();
    for e in &report.input_errors {
        let _ = writeln!(err, "{e}");
    }
    if report.input_errors.is_empty() || format != Format::Text {
        let out = report::render_with_color(report, format, crate::output::stdout_color());
        let _ = crate::output::print(&out);
    }
    let _ = writeln!(err, "{}", report.summary());
    for note in report.notes() {
        let _ = writeln!(err, "{note}");
    }
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
