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

/// The plan deletes only the old gateway's own HorizontalPodAutoscaler:
/// one that scales a Deployment of the same name in another namespace is
/// another team's.
#[test]
fn only_the_old_gateways_autoscaler_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("workloads.yaml");
    let hpa = |ns: &str| {
        format!(
            "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata:\n  name: gw\n  namespace: {ns}\nspec:\n  scaleTargetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: gw\n  minReplicas: 1\n  maxReplicas: 3\n"
        )
    };
    std::fs::write(
        &extra,
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: gw\n  namespace: istio-system\nspec:\n  selector:\n    matchLabels:\n      istio: egressgateway-with-sni-proxy\n  template:\n    metadata:\n      labels:\n        istio: egressgateway-with-sni-proxy\n    spec:\n      containers:\n      - name: proxy\n        image: proxyv2\n---\n{}---\n{}",
            hpa("istio-system"),
            hpa("shop")
        ),
    )
    .unwrap();
    let out = egressgen()
        .args(["migrate", "tests/migrate/istio-1.19-istio-stats"])
        .arg(&extra)
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&out.stderr);
    assert!(
        plan.contains("kubectl delete horizontalpodautoscalers gw -n istio-system"),
        "{plan}"
    );
    assert!(!plan.contains("-n shop"), "{plan}");
}

/// The allowlist does not depend on input order: a ServiceEntry is part
/// of the recipe when it names a host the routes name, not when another
/// ServiceEntry pulled in before it does.
#[test]
fn the_allowlist_does_not_depend_on_input_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let route = write(
        "route.yaml",
        "apiVersion: networking.istio.io/v1alpha3\nkind: VirtualService\nmetadata:\n  name: r\n  namespace: egress\nspec:\n  hosts: [\"*.wikipedia.org\"]\n  gateways: [mesh, gw]\n  tls:\n  - match:\n    - gateways: [mesh]\n      port: 443\n      sniHosts: [\"*.wikipedia.org\"]\n    route:\n    - destination:\n        host: istio-egressgateway.istio-system.svc.cluster.local\n        subset: wikipedia\n---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: f\n  namespace: egress\nspec:\n  configPatches:\n  - applyTo: NETWORK_FILTER\n    patch:\n      operation: INSERT_FIRST\n      value:\n        name: forward_downstream_sni\n",
    );
    let se = |name: &str, hosts: &str| {
        format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: {name}\n  namespace: egress\nspec:\n  hosts: {hosts}\n  ports:\n  - number: 443\n    name: tls\n    protocol: TLS\n  resolution: DNS\n"
        )
    };
    let unrelated = write("b.yaml", &se("b", "[foo.example.com, bar.example.com]"));
    let related = write("c.yaml", &se("c", "[\"*.wikipedia.org\", foo.example.com]"));
    let config = |order: [&std::path::Path; 3]| {
        let out = egressgen().arg("migrate").args(order).output().unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let one = config([&route, &unrelated, &related]);
    let other = config([&route, &related, &unrelated]);
    assert_eq!(one, other);
    assert!(
        one.contains("foo.example.com") && !one.contains("bar.example.com"),
        "{one}"
    );
}

/// A file that does not parse is told as lint tells it: the location first,
/// then `error:`, and the file name escaped so it cannot drive the terminal.
#[test]
fn bad_yaml_is_located_like_lint_with_the_file_name_escaped() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a\x1b[31mred.yaml"), "x: [\n").unwrap();
    let out = egressgen().arg("migrate").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains('\x1b'), "{stderr}");
    let want = format!(
        "{}/a\\u{{1b}}[31mred.yaml:2:1: error: invalid YAML",
        dir.path().display()
    );
    assert!(stderr.starts_with(&want), "{stderr}");
}
