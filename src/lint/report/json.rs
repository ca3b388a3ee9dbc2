//! JSON output: `{"findings": [...], "input_errors": [...], "summary": {...}}`.
//! Each finding has `code`, `severity`, `message`, `help`, `file`, `line`,
//! `column`, `resource` (`kind`, `namespace`, `name`) and `field_path`. Each
//! input error (input that stopped the run before any rule ran) has `file`,
//! `line` and `column` (`null` when the whole file is meant), `message` and
//! `help`.

use serde_json::json;

use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let input_errors: Vec<_> = report
        .input_errors
        .iter()
        .map(|e| {
            json!({
                "file": e.file,
                "line": e.at.map(|p| p.line),
                "column": e.at.map(|p| p.column),
                "message": e.message,
                "help": e.help,
            })
        })
        .collect();
    let doc = json!({
        "findings": report.findings,
        "input_errors": input_errors,
        "summary": {
            "errors": report.errors(),
            "warnings": report.warnings(),
            "files": report.files,
            "resources": report.resources,
        }
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}
