//! How egressgen recognises the plugin calling conventions without breaking
//! its normal command line: argv[0] `EgressGateway`, Kustomize's
//! environment, and a ResourceList on stdin with no arguments.

mod plugin_support;

use std::process::{Command, Stdio};

use plugin_support::*;

fn config() -> std::path::PathBuf {
    examples().join("kustomize/base/egress.yaml")
}

fn rendered() -> String {
    let out = run(Command::new(bin()).args(["render", "-c"]).arg(config()));
    assert_ok(&out);
    stdout(&out)
}

fn with_stdin(cmd: &mut Command, input: &[u8]) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn called_as_egressgateway_it_is_the_kustomize_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("EgressGateway");
    std::os::unix::fs::symlink(bin(), &link).unwrap();
    let out = run(Command::new(&link)
        .arg(config())
        .env_remove("KUSTOMIZE_PLUGIN_CONFIG_STRING"));
    assert_ok(&out);
    assert_eq!(stdout(&out), rendered());
    let missing = run(Command::new(&link).env_remove("KUSTOMIZE_PLUGIN_CONFIG_STRING"));
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        stderr(&missing).contains("no config file argument"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn kustomize_environment_and_a_file_is_the_plugin() {
    let out = run(Command::new(bin())
        .arg(config())
        .env("KUSTOMIZE_PLUGIN_CONFIG_STRING", "kind: EgressGateway"));
    assert_ok(&out);
    assert_eq!(stdout(&out), rendered());
    // Without the environment, a file argument is a usage error as usual.
    let out = run(Command::new(bin())
        .arg(config())
        .env_remove("KUSTOMIZE_PLUGIN_CONFIG_STRING"));
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_resource_list_on_stdin_with_no_arguments_runs_the_generator() {
    let list = format!(
        "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\nfunctionConfig:\n{}",
        std::fs::read_to_string(config())
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let out = with_stdin(&mut Command::new(bin()), list.as_bytes());
    assert_ok(&out);
    let objs = objects(&stdout(&out));
    assert_eq!(objs[0]["kind"], "ResourceList");
    // Every object `render` would write, and nothing else.
    let rendered = Command::new(bin())
        .args(["render", "-c"])
        .arg(config())
        .output()
        .unwrap();
    let expected = objects(&stdout(&rendered)).len();
    assert!(expected > 10);
    assert_eq!(objs[0]["items"].as_array().unwrap().len(), expected);

    // Anything else on stdin: the usual usage error.
    for input in [&b""[..], b"hello\n", b"kind: ConfigMap\n"] {
        let out = with_stdin(&mut Command::new(bin()), input);
        assert_eq!(out.status.code(), Some(2), "{input:?}");
        assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
    }
}

#[test]
fn fn_reports_bad_input_as_an_error_result() {
    let out = with_stdin(Command::new(bin()).arg("fn"), b"kind: [\n");
    assert_eq!(out.status.code(), Some(1));
    let objs = objects(&stdout(&out));
    assert_eq!(objs[0]["results"][0]["severity"], "error");
    assert!(stderr(&out).contains("not valid YAML"), "{}", stderr(&out));
    let out = with_stdin(
        Command::new(bin()).arg("fn"),
        b"apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\n",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no functionConfig"),
        "{}",
        stderr(&out)
    );
}
