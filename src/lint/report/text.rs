//! Text output, modelled on ruff and rustc: one finding per line,
//! `FILE:LINE:COL: error[EG001] message`, then `  help: ...` when a fix is
//! known.

use std::fmt::Write;

use crate::escape::escaped;
use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for f in &report.findings {
        let _ = writeln!(
            out,
            "{}:{}:{}: {}[{}] {}",
            escaped(&f.file),
            f.line,
            f.column,
            f.severity.as_str(),
            f.code,
            f.message
        );
        if let Some(help) = &f.help {
            let _ = writeln!(out, "  help: {help}");
        }
    }
    out
}
