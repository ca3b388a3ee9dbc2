//! Text output, modelled on ruff and rustc: one finding per line,
//! `FILE:LINE:COL: error[EG001] message`, then `  help: ...` when a fix is
//! known.

use std::fmt::Write;

use crate::escape::escaped;
use crate::lint::{Report, Severity};

/// Plain text, or with ANSI colours (bold location, red errors, yellow
/// warnings, cyan help) when `color` is set.
pub fn render(report: &Report, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let mut out = String::new();
    for f in &report.findings {
        let level = match f.severity {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
        };
        let _ = writeln!(
            out,
            "{}: {} {}",
            paint(
                "1",
                &format!("{}:{}:{}", escaped(&f.file), f.line, f.column)
            ),
            paint(level, &format!("{}[{}]", f.severity.as_str(), f.code)),
            f.message
        );
        if let Some(help) = &f.help {
            let _ = writeln!(out, "  {} {help}", paint("1;36", "help:"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::lint::{Finding, Report, Severity};

    #[test]
    fn colour_only_when_asked() {
        let report = Report {
            findings: vec![Finding {
                code: "EG018",
                severity: Severity::Error,
                message: "m".into(),
                help: Some("h".into()),
                file: "a.yaml".into(),
                line: 3,
                column: 5,
                resource: None,
                field_path: "spec".into(),
            }],
            ..Report::default()
        };
        assert_eq!(
            super::render(&report, false),
            "a.yaml:3:5: error[EG018] m\n  help: h\n"
        );
        assert_eq!(
            super::render(&report, true),
            "\x1b[1ma.yaml:3:5\x1b[0m: \x1b[1;31merror[EG018]\x1b[0m m\n  \x1b[1;36mhelp:\x1b[0m h\n"
        );
    }
}
