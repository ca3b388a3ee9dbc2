//! egressgen as a KRM function, run by the real `kpt`: `fn eval`, the
//! source | eval | sink pipe, and a Kptfile pipeline with `fn render`.

mod plugin_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use plugin_support::*;
use tempfile::TempDir;

const USER_FILE: &str = "# The team's own config: must come back byte for byte.\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app # trailing comment\n  namespace: apps\ndata:\n  flag: \"yes\"\n  ratio: .inf\n  script: |\n    echo hi\n      indented\n";

struct Pkg {
    dir: TempDir,
}

impl Pkg {
    /// A kpt package with one user file.
    fn new() -> Pkg {
        require("kpt", &["version"]);
        let dir = tempfile::tempdir().unwrap();
        let pkg = Pkg { dir };
        std::fs::create_dir_all(pkg.pkg()).unwrap();
        assert_ok(&run(Command::new("kpt")
            .args(["pkg", "init"])
            .arg(pkg.pkg())));
        std::fs::write(pkg.pkg().join("app.yaml"), USER_FILE).unwrap();
        std::fs::copy(examples().join("kpt/egress.yaml"), pkg.path("egress.yaml")).unwrap();
        pkg
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn pkg(&self) -> PathBuf {
        self.path("pkg")
    }

    /// Someone edits the generated VirtualService by hand: drift.
    fn edit_a_generated_host_by_hand(&self) {
        let file = self.pkg().join("egressgen-wildcard.yaml");
        let text = std::fs::read_to_string(&file).unwrap();
        std::fs::write(
            &file,
            text.replacen("  - api.github.com\n", "  - api.gitlab.com\n", 1),
        )
        .unwrap();
    }

    fn exec(&self) -> String {
        format!("{} fn", bin().display())
    }

    fn eval(&self, config: &Path) -> Output {
        run(Command::new("kpt")
            .args(["fn", "eval"])
            .arg(self.pkg())
            .args(["--exec", &self.exec(), "--fn-config"])
            .arg(config))
    }
}

/// What `egressgen render` makes of a config: the objects the generator
/// must add, in order.
fn rendered(config: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(bin())
        .args(["render", "-c"])
        .arg(config)
        .output()
        .unwrap();
    assert_ok(&out);
    objects(&stdout(&out))
}

fn generated(dir: &Path, name: &str) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join(format!("egressgen-{name}.yaml")))
        .unwrap_or_else(|e| panic!("no generated file in {}: {e}", dir.display()));
    objects(&text)
}

#[test]
fn fn_eval_generates_and_a_second_run_changes_nothing() {
    let pkg = Pkg::new();
    let before = snapshot_dir(&pkg.pkg());
    let out = pkg.eval(&pkg.path("egress.yaml"));
    assert_ok(&out);
    let first = snapshot_dir(&pkg.pkg());
    // Everything that was there is unchanged; one file was added.
    for (f, text) in &before {
        assert_eq!(first.get(f), Some(text), "{f} changed");
    }
    assert_eq!(
        first
            .keys()
            .filter(|k| !before.contains_key(*k))
            .collect::<Vec<_>>(),
        ["egressgen-wildcard.yaml"]
    );
    let objs = generated(&pkg.pkg(), "wildcard");
    assert_eq!(objs.len(), rendered(&pkg.path("egress.yaml")).len());
    for o in &objs {
        assert_eq!(
            s(o, &["metadata", "annotations", "egressgen.io/generated-by"]),
            "wildcard"
        );
        assert_eq!(
            s(o, &["metadata", "labels", "app.kubernetes.io/managed-by"]),
            "egressgen"
        );
    }
    assert_eq!(wiring_problems(&objs), Vec::<String>::new());
    // The same objects `egressgen render` writes, plus the annotation.
    let rendered = run(Command::new(bin())
        .args(["render", "-c"])
        .arg(pkg.path("egress.yaml")));
    assert_ok(&rendered);
    let mut expected = objects(&stdout(&rendered));
    for o in &mut expected {
        o["metadata"]["annotations"]["egressgen.io/generated-by"] = "wildcard".into();
    }
    assert_eq!(by_id(&objs), by_id(&expected));

    let out = pkg.eval(&pkg.path("egress.yaml"));
    assert_ok(&out);
    assert_eq!(
        snapshot_dir(&pkg.pkg()),
        first,
        "a second run changed the package"
    );
}

#[test]
fn a_changed_config_replaces_the_generated_objects() {
    let pkg = Pkg::new();
    assert_ok(&pkg.eval(&pkg.path("egress.yaml")));
    let cfg = std::fs::read_to_string(pkg.path("egress.yaml")).unwrap();
    std::fs::write(
        pkg.path("egress.yaml"),
        cfg.replace("api.github.com", "api.github.com\n    - example.org")
            .replace("  domains:", "  accessLog: false\n  domains:"),
    )
    .unwrap();
    assert_ok(&pkg.eval(&pkg.path("egress.yaml")));
    let objs = generated(&pkg.pkg(), "wildcard");
    // Telemetry is gone, nothing is duplicated, the new domain is in.
    assert_eq!(objs.len(), rendered(&pkg.path("egress.yaml")).len());
    assert!(of_kind(&objs, "Telemetry").is_empty());
    let se = of_kind(&objs, "ServiceEntry");
    assert_eq!(se.len(), 1);
    assert!(
        se[0]["spec"]["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h == "example.org")
    );
}

#[test]
fn source_eval_sink_pipe() {
    let pkg = Pkg::new();
    let out_dir = pkg.path("out");
    let mut source = Command::new("kpt")
        .args(["fn", "source"])
        .arg(pkg.pkg())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut eval = Command::new("kpt")
        .args(["fn", "eval", "-", "--exec", &pkg.exec(), "--fn-config"])
        .arg(pkg.path("egress.yaml"))
        .stdin(source.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let sink = run(Command::new("kpt")
        .args(["fn", "sink"])
        .arg(&out_dir)
        .stdin(eval.stdout.take().unwrap()));
    assert!(source.wait().unwrap().success());
    assert!(eval.wait().unwrap().success());
    assert_ok(&sink);
    assert_eq!(
        std::fs::read_to_string(out_dir.join("app.yaml")).unwrap(),
        USER_FILE
    );
    assert_eq!(
        generated(&out_dir, "wildcard").len(),
        rendered(&pkg.path("egress.yaml")).len()
    );
}

#[test]
fn kptfile_pipeline_with_fn_render() {
    require("kpt", &["version"]);
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("egress");
    copy_dir(&examples().join("kpt"), &pkg);
    std::fs::write(pkg.join("app.yaml"), USER_FILE).unwrap();
    // The example says `exec: egressgen fn`; put the test binary on PATH.
    let path = format!(
        "{}:{}",
        bin().parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let render = || {
        run(Command::new("kpt")
            .args(["fn", "render", "--allow-exec"])
            .arg(&pkg)
            .env("PATH", &path))
    };
    assert_ok(&render());
    let first = snapshot_dir(&pkg);
    assert_eq!(
        generated(&pkg, "wildcard").len(),
        rendered(&pkg.join("egress.yaml")).len()
    );
    assert_eq!(first["app.yaml"], USER_FILE);
    assert_ok(&render());
    assert_eq!(
        snapshot_dir(&pkg),
        first,
        "a second render changed the package"
    );
}

#[test]
fn a_bare_exec_with_no_arguments_is_detected() {
    // Kptfile `exec:` with no arguments, as standalone Kustomize's exec
    // functions call it: the ResourceList on stdin is detected.
    let pkg = Pkg::new();
    std::fs::copy(pkg.path("egress.yaml"), pkg.pkg().join("egress.yaml")).unwrap();
    let kptfile = pkg.pkg().join("Kptfile");
    let mut k = std::fs::read_to_string(&kptfile).unwrap();
    k.push_str(&format!(
        "pipeline:\n  mutators:\n  - exec: {}\n    configPath: egress.yaml\n",
        bin().display()
    ));
    std::fs::write(&kptfile, k).unwrap();
    assert_ok(&run(Command::new("kpt")
        .args(["fn", "render", "--allow-exec"])
        .arg(pkg.pkg())));
    assert_eq!(
        generated(&pkg.pkg(), "wildcard").len(),
        rendered(&pkg.path("egress.yaml")).len()
    );
}

#[test]
fn invalid_config_fails_with_the_reason_and_leaves_the_package() {
    let pkg = Pkg::new();
    let before = snapshot_dir(&pkg.pkg());
    let cfg = std::fs::read_to_string(pkg.path("egress.yaml")).unwrap();
    std::fs::write(
        pkg.path("egress.yaml"),
        cfg.replace("api.github.com", "api..github.com"),
    )
    .unwrap();
    let out = pkg.eval(&pkg.path("egress.yaml"));
    assert!(!out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("invalid domain `api..github.com`"), "{err}");
    assert!(err.contains("spec.domains[1]"), "{err}");
    assert!(err.contains("[error]") || err.contains("error"), "{err}");
    assert_eq!(snapshot_dir(&pkg.pkg()), before);
}

#[test]
fn configmap_function_config_from_key_values() {
    // `kpt fn eval ... -- key=value` passes a ConfigMap functionConfig.
    let pkg = Pkg::new();
    let out = run(Command::new("kpt")
        .args(["fn", "eval"])
        .arg(pkg.pkg())
        .args([
            "--exec",
            &pkg.exec(),
            "--",
            "name=web",
            "domains=api.github.com,*.wikipedia.org",
            "gatewayNamespace=egress",
        ]));
    assert_ok(&out);
    let objs = generated(&pkg.pkg(), "web");
    assert_eq!(wiring_problems(&objs), Vec::<String>::new());
    assert_eq!(
        s(of_kind(&objs, "Deployment")[0], &["metadata", "namespace"]),
        "egress"
    );
    let bad = run(Command::new("kpt")
        .args(["fn", "eval"])
        .arg(pkg.pkg())
        .args(["--exec", &pkg.exec(), "--", "domain=typo.example"]));
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("unknown key `domain`"),
        "{}",
        stderr(&bad)
    );
}

fn results(dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("results.yaml")).unwrap();
    let doc = objects(&text).remove(0);
    // kpt's FunctionResultList: one item per function run, each with results.
    doc["items"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|run| run["results"].as_array().cloned().unwrap_or_default())
        .collect()
}

#[test]
fn validator_fails_on_a_drifted_package() {
    let pkg = Pkg::new();
    assert_ok(&pkg.eval(&pkg.path("egress.yaml")));
    let lint = |results_dir: &Path| {
        run(Command::new("kpt")
            .args(["fn", "eval"])
            .arg(pkg.pkg())
            .args([
                "--exec",
                &format!("{} fn lint", bin().display()),
                "--fn-config",
            ])
            .arg(pkg.path("egress.yaml"))
            .arg("--results-dir")
            .arg(results_dir))
    };
    let clean = pkg.path("clean-results");
    assert_ok(&lint(&clean));
    let before = snapshot_dir(&pkg.pkg());

    // Someone edits the generated VirtualService by hand.
    pkg.edit_a_generated_host_by_hand();
    let drifted = pkg.path("drift-results");
    let out = lint(&drifted);
    assert!(!out.status.success(), "{}", stderr(&out));
    let items = results(&drifted);
    let stray = items
        .iter()
        .find(|r| {
            r["message"]
                .as_str()
                .unwrap_or_default()
                .starts_with("EG003")
        })
        .unwrap_or_else(|| panic!("no EG003 in {items:#?}"));
    assert_eq!(stray["severity"], "error");
    assert_eq!(stray["resourceRef"]["kind"], "VirtualService");
    assert_eq!(
        stray["resourceRef"]["name"],
        "direct-wildcard-through-egress-gateway"
    );
    assert!(
        stray["resourceRef"]["apiVersion"]
            .as_str()
            .unwrap()
            .starts_with("networking.istio.io/")
    );
    assert_eq!(stray["field"]["path"], "spec.hosts[0]");
    assert_eq!(stray["file"]["path"], "egressgen-wildcard.yaml");
    // The index of the VirtualService in the generated file, which holds
    // render's objects in render's order.
    let index = rendered(&pkg.path("egress.yaml"))
        .iter()
        .position(|o| o["metadata"]["name"] == "direct-wildcard-through-egress-gateway")
        .unwrap();
    assert_eq!(stray["file"]["index"], index);
    let missing = items
        .iter()
        .filter_map(|r| r["message"].as_str())
        .find(|m| m.starts_with("EG004"))
        .unwrap_or_else(|| panic!("no EG004 in {items:#?}"));
    // --fn-config reaches the function inline: there is no file to pass to
    // `egressgen render -c`, so the help names the generator instead.
    assert!(
        missing.contains("help: run the egressgen generator function (`egressgen fn`) with this functionConfig and apply the result"),
        "{missing}"
    );
    // A validator never changes the package.
    let after = snapshot_dir(&pkg.pkg());
    assert_eq!(after.len(), before.len());
    assert_eq!(after["app.yaml"], USER_FILE);
}

/// `kpt fn eval` without `--fn-config` passes an empty ConfigMap named
/// `function-input` as the functionConfig. The validator takes that as no
/// config and checks the package against its own EgressGateway; the
/// generator, which needs a config, says so.
#[test]
fn fn_eval_without_fn_config_uses_the_package_config() {
    let pkg = Pkg::new();
    assert_ok(&pkg.eval(&pkg.path("egress.yaml")));
    std::fs::copy(pkg.path("egress.yaml"), pkg.pkg().join("egress.yaml")).unwrap();
    let eval = |exec: &str| {
        run(Command::new("kpt")
            .args(["fn", "eval"])
            .arg(pkg.pkg())
            .args(["--exec", &format!("{} {exec}", bin().display())]))
    };
    assert_ok(&eval("fn lint"));

    pkg.edit_a_generated_host_by_hand();
    let out = eval("fn lint");
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("EG003: `api.gitlab.com` is in VirtualService hosts but not in the config's domains (egress.yaml)"),
        "{}",
        stderr(&out)
    );

    let out = eval("fn");
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no functionConfig: pass the EgressGateway file"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn validator_in_a_kptfile_pipeline_fails_the_render() {
    // A package that keeps its rendered objects and only validates them.
    let pkg = Pkg::new();
    assert_ok(&pkg.eval(&pkg.path("egress.yaml")));
    std::fs::copy(pkg.path("egress.yaml"), pkg.pkg().join("egress.yaml")).unwrap();
    let kptfile = pkg.pkg().join("Kptfile");
    let mut k = std::fs::read_to_string(&kptfile).unwrap();
    k.push_str(&format!(
        "pipeline:\n  validators:\n  - exec: {} fn lint\n    configPath: egress.yaml\n",
        bin().display()
    ));
    std::fs::write(&kptfile, k).unwrap();
    let render = || {
        run(Command::new("kpt")
            .args(["fn", "render", "--allow-exec"])
            .arg(pkg.pkg()))
    };
    assert_ok(&render());
    // The wiring breaks: the Service is renamed by hand.
    let file = pkg.pkg().join("egressgen-wildcard.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen(
            "  name: egressgateway\n  namespace: istio-egress\n",
            "  name: egress\n  namespace: istio-egress\n",
            1,
        ),
    )
    .unwrap();
    let out = render();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("EG012"), "{}", stderr(&out));

    // Without configPath, the package's own EgressGateway is the config:
    // a domain edited into the generated objects only is drift.
    std::fs::write(
        &file,
        text.replacen("  - api.github.com\n", "  - api.gitlab.com\n", 1),
    )
    .unwrap();
    let kptfile_text = std::fs::read_to_string(&kptfile).unwrap();
    std::fs::write(
        &kptfile,
        kptfile_text.replace("    configPath: egress.yaml\n", ""),
    )
    .unwrap();
    let out = render();
    assert!(!out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("EG003"), "{}", stderr(&out));
}
