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
