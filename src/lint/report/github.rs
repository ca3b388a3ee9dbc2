//! GitHub Actions workflow commands: one `::error file=...,line=...::`
//! (or `::warning`) annotation per finding, escaped as the Actions toolkit
//! escapes them (`%`, CR, LF; and `:` `,` in properties).

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
        let mut message = e.message.clone();
        if let Some(h) = &e.help {
            message.push_str("\nhelp: ");
            message.push_str(h);
        }
        let mut props = format!("file={}", property(&crate::escape::escaped(&e.file)));
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
        let mut message = f.message.clone();
        if let Some(h) = &f.help {
            message.push_str("\nhelp: ");
            message.push_str(h);
        }
        let _ = writeln!(
            out,
            "::{cmd} file={},line={},col={},title={}::{}",
            property(&crate::escape::escaped(&f.file)),
            f.line,
            f.column,
            property(f.code),
            data(&message)
        );
    }
    out
}
