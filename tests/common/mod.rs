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

/// The command a message suggests: the text in backticks after `intro`.
pub fn suggested_command<'a>(message: &'a str, intro: &str) -> &'a str {
    message
        .split_once(intro)
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(cmd, _)| cmd)
        .unwrap_or_else(|| panic!("no command after {intro:?} in:\n{message}"))
}

/// Runs a suggested `egressgen ...` command through `sh`, as a user
/// pasting it would, with the binary under test.
pub fn run_suggested(command: &str) -> std::process::Output {
    let args = command
        .strip_prefix("egressgen ")
        .unwrap_or_else(|| panic!("not an egressgen command: {command}"));
    let bin = assert_cmd::cargo::cargo_bin!("egressgen");
    std::process::Command::new("sh")
        .args(["-c", &format!("{} {args}", bin.display())])
        .output()
        .unwrap()
}
