//! Helpers shared by the integration tests.
#![allow(dead_code)]

use assert_cmd::Command;

/// The egressgen binary under test.
pub fn egressgen() -> Command {
    let mut cmd = Command::cargo_bin("egressgen").expect("the binary builds");
    cmd.env_remove("NO_COLOR").env("LC_ALL", "C");
    cmd
}

/// Every document of a multi-document YAML stream, as JSON values.
pub fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(yaml)
        .expect("rendered YAML parses")
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// `kind/namespace/name` of a document, for messages.
pub fn id(doc: &serde_json::Value) -> String {
    format!(
        "{}/{}/{}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["namespace"].as_str().unwrap_or(""),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}
