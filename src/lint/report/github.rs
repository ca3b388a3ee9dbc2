//! GitHub Actions workflow commands: one `::error file=...,line=...::`
//! (or `::warning`) annotation per finding, escaped as the Actions toolkit
//! escapes them (`%`, CR, LF; and `:` `,` in properties). The file name is
//! kept as it is, so GitHub finds the file, except for characters that could
//! act on a terminal.

use std::fmt::Write;

use crate::lint::{Report, Severity};

fn data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn property(s: &str) -> String {
    data(s).replace(':', "%3A").replace(',', "%2C")
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for e in &report.input_errors {
        let message = super::with_help(&e.message, e.help.as_deref());
        let mut props = format!(
            "file={}",
            property(&crate::escape::controls_escaped(&e.file))
        );
        if let Some(at) = e.at {
            let _ = write!(props, ",line={},col={}", at.line, at.column);
        }
        let _ = writeln!(
            out,
            "::error {props},title=invalid input::{}",
            data(&message)
        );
    }
    for f in &report.findings {
        let cmd = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let message = super::with_help(&f.message, f.help.as_deref());
        let _ = writeln!(
            out,
            "::{cmd} file={},line={},col={},title={}::{}",
            property(&crate::escape::controls_escaped(&f.file)),
            f.line,
            f.column,
            property(f.code),
            data(&message)
        );
    }
    out
}
