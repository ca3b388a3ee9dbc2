//! Bad input: every file in `tests/errors/` must fail with exit code 2, no
//! output on stdout, and the message snapshotted here (what is wrong,
//! `file:line:col`, what to do).

mod common;

use common::egressgen;

#[test]
fn bad_config() {
    insta::glob!("errors/*.yaml", |path| {
        let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let out = egressgen()
            .args(["render", "-c"])
            .arg(relative)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", relative.display());
        assert!(out.stdout.is_empty(), "nothing is rendered on error");
        let stderr = String::from_utf8(out.stderr).expect("messages are UTF-8");
        assert!(
            !stderr.chars().any(|c| c.is_control() && c != '\n'),
            "control characters reach the terminal: {stderr:?}"
        );
        assert!(
            stderr.contains("\n  help: "),
            "{}: no help line says what to do: {stderr}",
            relative.display()
        );
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(stderr);
        });
    });
}
