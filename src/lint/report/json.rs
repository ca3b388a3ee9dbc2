//! JSON output: `{"findings": [...], "summary": {...}}`. Each finding has
//! `code`, `severity`, `message`, `help`, `file`, `line`, `column`,
//! `resource` (`kind`, `namespace`, `name`) and `field_path`.

use serde_json::json;

use crate::lint::Report;

pub fn render(report: &Report) -> String {
    let doc = json!({
        "findings": report.findings,
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
