//! The KRM function as a spec: each `tests/inputs/krm/*.yaml` is a
//! ResourceList given to `egressgen fn` on stdin; its snapshot is the exit
//! code, the output ResourceList and stderr.

mod plugin_support;

use std::io::Write;
use std::process::{Command, Stdio};

use plugin_support::*;

#[test]
fn krm_inputs() {
    insta::glob!("inputs/krm/*.yaml", |path| {
        let input = std::fs::read(path).unwrap();
        let mut child = Command::new(bin())
            .arg("fn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        // Whatever happened, the output is one well-formed ResourceList.
        let docs = objects(&stdout(&out));
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["kind"], "ResourceList");
        let has_error = docs[0]["results"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r["severity"] == "error");
        assert_eq!(
            out.status.code() == Some(1),
            has_error,
            "exit code and error results agree"
        );
        let report = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            out.status.code().unwrap_or(-1),
            stdout(&out),
            stderr(&out)
        );
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(report);
        });
    });
}
