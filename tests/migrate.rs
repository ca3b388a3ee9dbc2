//! `egressgen migrate`: one snapshot per input in `tests/migrate/` (a file
//! or a directory of files, written from the Istio docs of each version),
//! and the round trip: the migrated config renders, and `lint` finds the
//! rendered manifest clean against it.
//!
//! `err-*` inputs must be refused with exit 2.

use std::path::Path;

use assert_cmd::Command;

fn egressgen() -> Command {
    let mut c = Command::cargo_bin("egressgen").unwrap();
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn migrate_case(input: &Path) {
    let name = input.file_name().unwrap().to_string_lossy().to_string();
    let rel = input
        .strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap()
        .to_string_lossy()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egress.yaml");
    let out = egressgen()
        .args(["migrate", &rel, "-o"])
        .arg(&cfg)
        .output()
        .unwrap();
    let code = out.status.code().unwrap_or(-1);
    let stdout =
        String::from_utf8_lossy(&out.stdout).replace(&cfg.display().to_string(), "OUT/egress.yaml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut report = format!("exit: {code}\n--- stdout\n{stdout}--- stderr\n{stderr}");
    if name.starts_with("err-") {
        assert_eq!(code, 2, "{name}: {report}");
        assert!(!cfg.exists(), "{name}: wrote a config on bad input");
    } else {
        assert!(code == 0 || code == 1, "{name}: {report}");
        let config = std::fs::read_to_string(&cfg).unwrap();
        report.push_str("--- OUT/egress.yaml\n");
        report.push_str(&config);

        // Round trip: render, then lint the manifest against the config.
        let manifest = dir.path().join("manifest.yaml");
        let r = egressgen()
            .args(["render", "-c"])
            .arg(&cfg)
            .arg("-o")
            .arg(&manifest)
            .output()
            .unwrap();
        assert_eq!(
            r.status.code(),
            Some(0),
            "{name}: render: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        let l = egressgen()
            .args(["lint", "-c"])
            .arg(&cfg)
            .arg(&manifest)
            .output()
            .unwrap();
        assert_eq!(
            l.status.code(),
            Some(0),
            "{name}: lint of the migrated manifest:\n{}{}",
            String::from_utf8_lossy(&l.stdout),
            String::from_utf8_lossy(&l.stderr)
        );
    }
    insta::with_settings!({snapshot_path => "../snapshots", omit_expression => true, input_file => input}, {
        insta::assert_snapshot!(name, report);
    });
}

#[test]
fn migrate_fixtures() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/migrate");
    let mut entries: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    assert!(entries.len() >= 6);
    for e in entries {
        migrate_case(&e);
    }
}

#[test]
fn config_goes_to_stdout_and_plan_to_stderr_without_o() {
    let out = egressgen()
        .args(["migrate", "tests/migrate/sni-cluster.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("kind: EgressGateway"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Migration plan"));
}

#[test]
fn istio_version_is_written_and_checked() {
    let out = egressgen()
        .args([
            "migrate",
            "tests/migrate/sni-cluster.yaml",
            "--istio-version",
            "1.18",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("version: \"1.18\""));
    let out = egressgen()
        .args([
            "migrate",
            "tests/migrate/sni-cluster.yaml",
            "--istio-version",
            "1.9",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Istio 1.9 is not supported"));
}

#[test]
fn reads_stdin() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/migrate/sni-cluster.yaml"
    ))
    .unwrap();
    let out = egressgen()
        .args(["migrate", "-"])
        .write_stdin(text)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("- en.wikipedia.org"));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("<stdin>:58:1  VirtualService istio-system/egress-sni")
    );
}

/// Files and directories mix: the domain lists are unioned across them.
#[test]
fn mixes_files_and_directories() {
    let out = egressgen()
        .args([
            "migrate",
            "tests/migrate/istio-1.19-istio-stats",
            "tests/migrate/sni-cluster.yaml",
        ])
        .output()
        .unwrap();
    let config = String::from_utf8_lossy(&out.stdout);
    let plan = String::from_utf8_lossy(&out.stderr);
    for d in ["- \"*.wikipedia.org\"", "- api.github.com"] {
        assert!(config.contains(d), "{d} missing:\n{config}");
    }
    // en.wikipedia.org is covered by the wildcard from the other input.
    assert!(
        plan.contains("dropped `en.wikipedia.org`: already covered by `*.wikipedia.org`"),
        "{plan}"
    );
    assert!(plan.contains("03-wikipedia.yaml") && plan.contains("sni-cluster.yaml"));
    // Lists of one kind are compared as their union (routes may be split
    // over several VirtualServices), so two complete recipes agree.
    assert_eq!(out.status.code(), Some(0), "{plan}");
}
