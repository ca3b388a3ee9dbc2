//! SARIF 2.1.0 output, as GitHub code scanning reads it: every rule in
//! `tool.driver.rules`, one result per finding with a 1-based `startLine`,
//! and `results: []` when clean. Input that stopped the run (unparseable
//! YAML, an unreadable path) is reported as SARIF reports a tool that could
//! not do its work (§3.20.14, §3.20.21): `invocations[0]` with
//! `executionSuccessful: false` and one `toolExecutionNotifications` entry,
//! with its location, per error.

use serde_json::{Value, json};

use crate::lint::rules::RULES;
use crate::lint::{Report, Severity};

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
    }
}

pub fn render(report: &Report) -> String {
    let rules: Vec<Value> = RULES
        .iter()
        .map(|r| {
            json!({
                "id": r.code,
                "name": r.name,
                "shortDescription": { "text": r.summary() },
                "fullDescription": { "text": r.section("Why is this bad?").replace('\n', " ") },
                "help": { "text": r.doc(), "markdown": r.doc() },
                "helpUri": format!("https://github.com/egressgen/egressgen#{}", r.code.to_ascii_lowercase()),
                "defaultConfiguration": { "level": level(r.severity) },
            })
        })
        .collect();
    let results: Vec<Value> = report
        .findings
        .iter()
        .map(|f| {
            let text = super::with_help(&f.message, f.help.as_deref());
            let rule_index = RULES.iter().position(|r| r.code == f.code).unwrap_or(0);
            let mut result = json!({
                "ruleId": f.code,
                "ruleIndex": rule_index,
                "level": level(f.severity),
                "message": { "text": text },
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": { "uri": uri(&f.file) },
                        "region": {
                            "startLine": f.line.max(1),
                            "startColumn": f.column.max(1),
                        }
                    }
                }],
            });
            if let Some(r) = &f.resource {
                let name = match &r.namespace {
                    Some(ns) => format!("{}/{ns}/{}", r.kind, r.name),
                    None => format!("{}/{}", r.kind, r.name),
                };
                result["locations"][0]["logicalLocations"] =
                    json!([{ "name": name, "fullyQualifiedName": format!("{name}#{}", f.field_path), "kind": "resource" }]);
            }
            result
        })
        .collect();
    let notifications: Vec<Value> = report
        .input_errors
        .iter()
        .map(|e| {
            let text = super::with_help(&e.message, e.help.as_deref());
            let mut location = json!({ "artifactLocation": { "uri": uri(&e.file) } });
            if let Some(at) = e.at {
                location["region"] = json!({
                    "startLine": at.line.max(1),
                    "startColumn": at.column.max(1),
                });
            }
            json!({
                "level": "error",
                "message": { "text": text },
                "locations": [{ "physicalLocation": location }],
            })
        })
        .collect();
    let mut invocation = json!({ "executionSuccessful": notifications.is_empty() });
    if !notifications.is_empty() {
        invocation["toolExecutionNotifications"] = Value::Array(notifications);
    }
    let doc = json!({
        "$schema": SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {
                "driver": {
                    "name": "egressgen",
                    "version": env!("CARGO_PKG_VERSION"),
                    "informationUri": "https://github.com/egressgen/egressgen",
                    "rules": rules,
                }
            },
            "invocations": [invocation],
            "results": results,
        }]
    });
    let mut s = serde_json::to_string_pretty(&doc).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

/// A path as a URI reference: bytes other than unreserved ones and `/`
/// percent-encoded (RFC 3986), a backslash too, since it is an ordinary
/// file-name byte on Unix.
fn uri(path: &str) -> String {
    let path = path.strip_prefix("./").unwrap_or(path);
    // Absolute paths become file URIs; code scanning resolves relative ones
    // against the repository root.
    let mut out = String::with_capacity(path.len() + 7);
    if path.starts_with('/') {
        out.push_str("file://");
    }
    for b in path.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri("./deploy/egress gw.yaml"), "deploy/egress%20gw.yaml");
        assert_eq!(uri("/repo/a.yaml"), "file:///repo/a.yaml");
        assert_eq!(uri("<stdin>"), "%3Cstdin%3E");
        assert_eq!(uri("odd/back\\slash.yaml"), "odd/back%5Cslash.yaml");
    }
}
