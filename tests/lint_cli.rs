//! `egressgen lint` from the outside: exit codes 0/1/2, stdin, bad input,
//! and agreement with `render --check`.

mod common;

use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;

use assert_cmd::Command;
use assert_cmd::assert::Assert;
use predicates::prelude::*;

fn egressgen() -> Command {
    Command::cargo_bin("egressgen").unwrap()
}

/// `egressgen lint ARGS`, run to completion.
fn lint<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Assert {
    egressgen().arg("lint").args(args).assert()
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/lint")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn clean_manifest_exits_0_with_a_summary_on_stderr() {
    lint([&fixture("clean_rendered.yaml")])
        .code(0)
        .stdout("")
        .stderr("All checks passed: 12 resources in 1 file.\n");
}

/// A pass that checked no egress wiring says so: in CI, a lint step
/// pointed at the wrong files must not read like a clean bill.
#[test]
fn input_without_istio_resources_passes_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let cm = dir.path().join("configmap.yaml");
    std::fs::write(
        &cm,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    lint([&cm]).code(0).stdout("").stderr(
        "All checks passed: 1 resource in 1 file.\n\
         note: no Istio resources in the input, so no egress wiring was checked\n  \
         help: point lint at the rendered manifests (Gateway, VirtualService, ServiceEntry, \
         DestinationRule, EnvoyFilter)\n",
    );

    // egressgen's own config, passed by mistake: named, with the two ways
    // to lint it.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/egress.yaml");
    lint([&example])
        .code(0)
        .stderr(predicate::str::contains(
            "egress.yaml:5:1: an egressgen config (kind: EgressGateway), not a manifest; it is not linted",
        ))
        .stderr(predicate::str::contains(
            "egress.yaml | egressgen lint -`), or check manifests against it",
        ))
        .stderr(predicate::str::contains("note: no Istio resources"));

    // From stdin there is no path to give back to render.
    egressgen()
        .args(["lint", "-"])
        .write_stdin(std::fs::read(&example).unwrap())
        .assert()
        .code(0)
        .stderr(predicate::str::contains(
            "note: <stdin>:5:1: an egressgen config",
        ))
        .stderr(predicate::str::contains(
            "(`egressgen render -c FILE | egressgen lint -`)",
        ));

    // Next to a manifest, the config is still pointed out; the wiring was
    // checked, so no second note.
    let clean = fixture("clean_rendered.yaml");
    lint([clean.as_str(), example.to_str().unwrap()])
        .code(0)
        .stderr(predicate::str::contains("an egressgen config"))
        .stderr(predicate::str::contains("no Istio resources").not());
}

#[test]
fn findings_exit_1_whatever_the_format() {
    for format in ["text", "json", "sarif", "github"] {
        lint(["--format", format, &fixture("eg011_missing_subset.yaml")])
            .code(1)
            .stdout(predicate::str::contains("EG011"))
            .stderr(predicate::str::contains("Found 1 error and 0 warnings"));
    }
}

#[test]
fn warnings_pass_unless_denied() {
    let f = fixture("eg020_mesh_wide_telemetry.yaml");
    lint([&f]).code(0);
    lint(["--deny-warnings", &f])
        .code(1)
        .stdout(predicate::str::contains("warning[EG020]"));
    lint(["--ignore", "EG020", "--deny-warnings", &f]).code(0);
}

#[test]
fn the_reference_manifest_fails_on_its_risky_scope() {
    lint([&fixture("seed_reference.yaml")])
        .code(1)
        .stdout(predicate::str::contains(
            ":188:5: error[EG018] EnvoyFilter istio-system/sni-magic",
        ))
        .stdout(predicate::str::contains(":267:9: error[EG019]"))
        .stdout(predicate::str::contains(":176:5: warning[EG020]"));
}

#[test]
fn stdin_is_named_by_stdin_filename() {
    let text = std::fs::read_to_string(fixture("eg016_missing_keepalive.yaml")).unwrap();
    egressgen()
        .args(["lint", "--stdin-filename", "deploy/egress.yaml", "-"])
        .write_stdin(text)
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with("deploy/egress.yaml:"));
}

#[test]
fn sarif_stdout_is_only_sarif_even_when_clean() {
    let out = lint(["--format", "sarif", &fixture("clean_rendered.yaml")])
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["runs"][0]["results"], serde_json::json!([]));
    assert_eq!(
        v["runs"][0]["invocations"],
        serde_json::json!([{ "executionSuccessful": true }])
    );
}

/// Input that stops the run (here YAML that does not parse, at 9:1) exits 2
/// in every format. The machine formats still print a document on stdout
/// that says why, so a CI step that uploads it shows the error instead of
/// failing on an empty file; the text format prints nothing there.
#[test]
fn input_errors_reach_the_machine_formats() {
    let (_dir, f) = unparseable_at_9_1();
    let shown = f.display().to_string();
    let stdout = |format: &str| {
        let out = lint(["--format", format, &shown])
            .code(2)
            .stderr(predicate::str::contains("lint stopped"))
            .get_output()
            .stdout
            .clone();
        String::from_utf8(out).unwrap()
    };
    let sarif: serde_json::Value = serde_json::from_str(&stdout("sarif")).unwrap();
    let run = &sarif["runs"][0];
    assert_eq!(run["results"], serde_json::json!([]));
    assert_eq!(run["invocations"][0]["executionSuccessful"], false);
    let note = &run["invocations"][0]["toolExecutionNotifications"][0];
    assert_eq!(note["level"], "error");
    assert!(
        note["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("invalid YAML: ")
    );
    let place = &note["locations"][0]["physicalLocation"];
    assert_eq!(place["artifactLocation"]["uri"], format!("file://{shown}"));
    assert_eq!(
        place["region"],
        serde_json::json!({ "startLine": 9, "startColumn": 1 })
    );

    let json: serde_json::Value = serde_json::from_str(&stdout("json")).unwrap();
    assert_eq!(json["findings"], serde_json::json!([]));
    let e = &json["input_errors"][0];
    assert_eq!(
        (&e["file"], &e["line"], &e["column"]),
        (
            &serde_json::json!(shown),
            &serde_json::json!(9),
            &serde_json::json!(1)
        )
    );

    let github = stdout("github");
    assert!(
        github.starts_with(&format!(
            "::error file={shown},line=9,col=1,title=invalid input::invalid YAML: "
        )),
        "{github}"
    );
    assert_eq!(stdout("text"), "");
}

/// An unreadable path is reported like a parse error, without a region.
#[test]
fn a_missing_path_is_a_sarif_tool_notification() {
    let out = lint(["--format", "sarif", "/nonexistent/egress.yaml"])
        .code(2)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let note = &v["runs"][0]["invocations"][0]["toolExecutionNotifications"][0];
    assert!(
        note["message"]["text"]
            .as_str()
            .unwrap()
            .contains("cannot read"),
        "{note}"
    );
    assert_eq!(
        note["locations"][0]["physicalLocation"],
        serde_json::json!({ "artifactLocation": { "uri": "file:///nonexistent/egress.yaml" } })
    );
}

/// A file name is untrusted: a repository can hold one with terminal
/// escapes, which must not reach a terminal or a CI log raw.
#[test]
fn file_names_in_input_errors_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ev\u{1b}[31mil.yaml"), "a: [\n").unwrap();
    let out = lint([dir.path()]).code(2).get_output().stderr.clone();
    let err = String::from_utf8(out).unwrap();
    assert!(
        err.contains("ev\\u{1b}[31mil.yaml:2:1: error: invalid YAML"),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

/// The `--config` path is untrusted too, and drift findings quote it: a
/// name with terminal escapes is shown escaped, and a plain name with a
/// space comes back in a `render` command that pastes into a shell as it
/// is printed and fixes the drift.
#[test]
fn file_and_config_paths_in_drift_findings_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("manifest.yaml");
    egressgen()
        .args(["render", "--domain", "api.github.com", "-o"])
        .arg(&manifest)
        .assert()
        .success();
    let example = std::fs::read_to_string("examples/egress.yaml").unwrap();

    let evil = dir.path().join("ev\u{1b}[31mil.yaml");
    std::fs::write(&evil, &example).unwrap();
    let out = lint([OsStr::new("-c"), evil.as_os_str(), manifest.as_os_str()])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(out.contains("ev\\u{1b}[31mil.yaml"), "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");

    // A finding that points at another place in the same file (EG001:
    // "it is in VirtualService sniHosts (FILE:LINE)") escapes it there too.
    let drifted = dir.path().join("m\u{1b}[31m.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &drifted,
        text.replacen("- api.github.com", "- api.gitlab.com", 1),
    )
    .unwrap();
    let out = lint([drifted.as_os_str()])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(
        out.contains("sniHosts (") && out.contains("m\\u{1b}[31m.yaml:"),
        "{out}"
    );
    assert!(!out.contains('\u{1b}'), "{out:?}");

    let spaced = dir.path().join("my egress.yaml");
    std::fs::write(&spaced, &example).unwrap();
    let out = lint([OsStr::new("-c"), spaced.as_os_str(), manifest.as_os_str()])
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let command = common::suggested_command(&out, "help: run `");
    assert_eq!(
        command,
        format!("egressgen render -c '{}'", spaced.display())
    );
    let rendered = common::run_suggested(command);
    assert!(rendered.status.success(), "{command}");
    std::fs::write(&manifest, rendered.stdout).unwrap();
    lint([OsStr::new("-c"), spaced.as_os_str(), manifest.as_os_str()]).code(0);
}

/// GitHub places an annotation by its file name, so the name is passed on as
/// it is (non-ASCII, backslash), but for what could act on a terminal.
#[test]
fn github_annotations_name_the_file_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(fixture("eg011_missing_subset.yaml")).unwrap();
    std::fs::write(dir.path().join("d\u{e9}ploy\\x\u{1b}[31m.yaml"), text).unwrap();
    let out = egressgen()
        .args(["lint", "--format", "github"])
        .arg(dir.path())
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    let want = format!(
        "::error file={}/d\u{e9}ploy\\x\\u{{1b}}[31m.yaml,line=",
        dir.path().display()
    );
    assert!(out.starts_with(&want), "{out}");
    assert!(!out.contains('\u{1b}'), "{out:?}");
}

#[test]
fn an_empty_stdin_filename_exits_2() {
    egressgen()
        .args(["lint", "--stdin-filename", "", "-"])
        .write_stdin("a: 1\n")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--stdin-filename"));
}

#[test]
fn missing_path_exits_2() {
    lint(["/nonexistent/egress.yaml"])
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains(
            "/nonexistent/egress.yaml: error: cannot read `/nonexistent/egress.yaml`: no such file or directory",
        ));
}

#[test]
fn directory_without_yaml_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "hello").unwrap();
    lint([dir.path()])
        .code(2)
        .stderr(predicate::str::contains("directory holds no YAML files"));
}

#[test]
fn binary_garbage_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("image.yaml");
    std::fs::write(&f, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe").unwrap();
    lint([&f]).code(2).stderr(predicate::str::contains(
        ":3:1: error: not a YAML text file: binary data (a NUL byte) at byte 8",
    ));
}

#[test]
fn huge_file_exits_2_without_reading_it_all() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("huge.yaml");
    // Sparse: costs no disk.
    let file = std::fs::File::create(&f).unwrap();
    file.set_len(300 * 1024 * 1024).unwrap();
    lint([&f])
        .code(2)
        .stderr(predicate::str::contains("input is larger than 256 MiB"));
}

/// A file whose YAML stops parsing at 9:1 (an unclosed flow sequence), in a
/// temporary folder that lives as long as the returned guard.
fn unparseable_at_9_1() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.yaml");
    std::fs::write(
        &f,
        "apiVersion: v1\nkind: Service\n---\napiVersion: networking.istio.io/v1\nkind: Gateway\nspec:\n  servers: [\n    {port: 1\n",
    )
    .unwrap();
    (dir, f)
}

#[test]
fn malformed_yaml_exits_2_with_file_line_col() {
    let (_dir, f) = unparseable_at_9_1();
    let shown = f.display().to_string();
    lint([&f])
        .code(2)
        .stdout("")
        .stderr(
            predicate::str::is_match(format!(
                "^{}:9:1: error: invalid YAML: ",
                regex_escape(&shown)
            ))
            .unwrap(),
        )
        .stderr(predicate::str::contains(
            "lint stopped: 1 error in the input; nothing was checked",
        ));
}

#[test]
fn malformed_multi_document_input_ends() {
    // Errors in several documents: the parser stops at the first one.
    let text = "a: [\n---\nb: [\n---\nc: {\n".repeat(2000);
    egressgen()
        .args(["lint", "-"])
        .write_stdin(text)
        .timeout(std::time::Duration::from_secs(20))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("<stdin>:"));
}

#[test]
fn unknown_ignore_code_and_bad_glob_exit_2() {
    lint(["--ignore", "EG999", &fixture("clean_rendered.yaml")])
        .code(2)
        .stderr(predicate::str::contains("--ignore `EG999`: no such code"));
    lint(["--exclude", "a[", &fixture("clean_rendered.yaml")])
        .code(2)
        .stderr(predicate::str::contains("--exclude `a[`"));
}

#[test]
fn explain_prints_the_rule_doc() {
    lint(["--explain", "eg019"])
        .code(0)
        .stdout(predicate::str::starts_with(
            "# EG019 (merge-without-port, error)",
        ))
        .stdout(predicate::str::contains("## Use instead"));
}

#[test]
fn render_check_passing_implies_lint_config_clean() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egress.yaml");
    let mut f = std::fs::File::create(&cfg).unwrap();
    writeln!(
        f,
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: big\nspec:\n  domains:"
    )
    .unwrap();
    for i in 0..20_000 {
        writeln!(f, "  - h{i}.example{}.com", i % 13).unwrap();
    }
    writeln!(f, "  - \"*.wikipedia.org\"").unwrap();
    drop(f);
    let manifest = dir.path().join("manifest.yaml");
    egressgen()
        .arg("render")
        .arg("-c")
        .arg(&cfg)
        .arg("-o")
        .arg(&manifest)
        .assert()
        .code(0);
    let check = || {
        egressgen()
            .args([OsStr::new("render"), OsStr::new("-c"), cfg.as_os_str()])
            .args([OsStr::new("--check"), manifest.as_os_str()])
            .assert()
    };
    check().code(0);
    lint([OsStr::new("-c"), cfg.as_os_str(), manifest.as_os_str()])
        .code(0)
        .stdout("");

    // Edit one host in the manifest: --check and lint --config both fail.
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replacen("- h7.example7.com\n", "- h7.example7.org\n", 1),
    )
    .unwrap();
    check().code(1);
    lint([OsStr::new("-c"), cfg.as_os_str(), manifest.as_os_str()])
        .code(1)
        .stdout(predicate::str::contains("error[EG003] `h7.example7.org`"))
        .stdout(predicate::str::contains("error[EG004] `h7.example7.com`"));
}

#[test]
fn exclude_glob_skips_a_folder() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_dirs/split");
    lint([&dir])
        .code(1)
        .stdout(predicate::str::contains("stray.example.com"));
    lint([
        dir.as_os_str(),
        OsStr::new("--exclude"),
        OsStr::new("charts/**"),
    ])
    .code(1)
    .stdout(predicate::str::contains("stray.example.com").not())
    .stderr(predicate::str::contains("in 3 files"));
}

fn regex_escape(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

#[test]
fn include_glob_replaces_the_yaml_default() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_dirs/split");
    lint([
        dir.as_os_str(),
        OsStr::new("--include"),
        OsStr::new("*.yml"),
    ])
    .code(0)
    .stderr(predicate::str::contains("1 resource in 1 file"));
}

#[test]
fn a_bad_config_exits_2_with_its_position() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egress.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: x\nspec:\n  domains:\n  - \"*w.example.com\"\n",
    )
    .unwrap();
    lint([
        OsStr::new("-c"),
        cfg.as_os_str(),
        OsStr::new(&fixture("clean_rendered.yaml")),
    ])
    .code(2)
    .stdout("")
    .stderr(predicate::str::contains(
        "egress.yaml:7:5: error: invalid domain `*w.example.com`",
    ))
    .stderr(predicate::str::starts_with("error:").not());
}

/// `--include '**'` takes every file but still does not follow a symlinked
/// folder (it used to fail reading the link as a file), and `--exclude`
/// skips a folder by its name at any depth, as it does a file.
#[cfg(unix)]
#[test]
fn include_and_exclude_treat_folders_consistently() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint_dirs/split");
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    std::fs::create_dir_all(tree.join("app/x")).unwrap();
    for f in [
        "serviceentry.yml",
        "virtualservice.yaml",
        "envoyfilter.yaml",
    ] {
        std::fs::copy(src.join(f), tree.join("app").join(f)).unwrap();
    }
    std::fs::copy(
        src.join("charts/ignored.yaml"),
        tree.join("app/x/stray.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink("../app", tree.join("app/link")).unwrap();
    lint([tree.as_os_str(), OsStr::new("--include"), OsStr::new("**")])
        .code(1)
        .stdout(predicate::str::contains("stray.example.com"))
        .stderr(predicate::str::contains("in 4 files"));
    lint([tree.as_os_str(), OsStr::new("--exclude"), OsStr::new("x")])
        .code(1)
        .stdout(predicate::str::contains("stray.example.com").not())
        .stderr(predicate::str::contains("in 3 files"));
}
