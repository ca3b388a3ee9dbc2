//! egressgen as a legacy Kustomize exec plugin, run by the real
//! `kubectl kustomize --enable-alpha-plugins` on the examples.

mod plugin_support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use plugin_support::*;
use tempfile::TempDir;

/// A temp dir with the plugin installed under `xdg/` by
/// `egressgen kustomize-plugin install`, and the examples copied in.
struct Sandbox {
    dir: TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        require("kubectl", &["version", "--client"]);
        let dir = tempfile::tempdir().unwrap();
        let sb = Sandbox { dir };
        let out = run(sb
            .env(&mut Command::new(bin()))
            .args(["kustomize-plugin", "install"]));
        assert_ok(&out);
        let text = stdout(&out);
        assert!(
            text.contains("generators:") && text.contains("--enable-alpha-plugins"),
            "{text}"
        );
        assert!(
            sb.xdg()
                .join("kustomize/plugin/egressgen.io/v1alpha1/egressgateway/EgressGateway")
                .exists()
        );
        copy_dir(&examples().join("kustomize"), &sb.path("kustomize"));
        sb
    }

    fn xdg(&self) -> PathBuf {
        self.dir.path().join("xdg")
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("XDG_CONFIG_HOME", self.xdg())
            .env_remove("KUSTOMIZE_PLUGIN_HOME")
            .env_remove("KUSTOMIZE_PLUGIN_CONFIG_STRING")
    }

    fn build(&self, rel: &str) -> Output {
        run(self
            .env(&mut Command::new("kubectl"))
            .args(["kustomize", "--enable-alpha-plugins"])
            .arg(self.path(rel)))
    }

    fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// `egressgen lint -` on a built manifest.
fn lint(manifest: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(bin())
        .args(["lint", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(manifest.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn render(config: &Path) -> String {
    let out = run(Command::new(bin()).args(["render", "-c"]).arg(config));
    assert_ok(&out);
    stdout(&out)
}

#[test]
fn generator_output_is_the_rendered_manifest() {
    let sb = Sandbox::new();
    let out = sb.build("kustomize/base");
    assert_ok(&out);
    let built = by_id(&objects(&stdout(&out)));
    let rendered = by_id(&objects(&render(&sb.path("kustomize/base/egress.yaml"))));
    assert_eq!(
        built.keys().collect::<Vec<_>>(),
        rendered.keys().collect::<Vec<_>>()
    );
    assert_eq!(built, rendered);
    assert!(wiring_problems(&built.into_values().collect::<Vec<_>>()).is_empty());
}

#[test]
fn namespace_and_labels_on_top_keep_the_wiring() {
    let sb = Sandbox::new();
    let out = sb.build("kustomize/overlay");
    assert_ok(&out);
    let objs = objects(&stdout(&out));
    let base = objects(&render(&sb.path("kustomize/base/egress.yaml")));
    assert_eq!(objs.len(), base.len(), "{}", stdout(&out));
    for o in &objs {
        assert_eq!(s(o, &["metadata", "namespace"]), "istio-egress", "{o}");
        assert_eq!(s(o, &["metadata", "labels", "team"]), "payments", "{o}");
        assert_eq!(
            s(o, &["metadata", "annotations", "owner"]),
            "platform",
            "{o}"
        );
    }
    assert_eq!(wiring_problems(&objs), Vec::<String>::new());
}

#[test]
fn renaming_transformers_break_the_wiring() {
    let sb = Sandbox::new();
    for (overlay, expect) in [
        (
            "namePrefix: prod-\n",
            "routes to egressgateway.istio-egress.svc.cluster.local",
        ),
        (
            "namespace: apps\n",
            "routes to egressgateway.istio-egress.svc.cluster.local",
        ),
    ] {
        sb.write(
            "bad/kustomization.yaml",
            &format!("resources:\n- ../kustomize/base\n{overlay}"),
        );
        let out = sb.build("bad");
        assert_ok(&out);
        let problems = wiring_problems(&objects(&stdout(&out)));
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{overlay}: {problems:?}"
        );
        // And `egressgen lint` catches it: the route no longer reaches the
        // gateway Service.
        let linted = lint(&stdout(&out));
        assert_eq!(
            linted.status.code(),
            Some(1),
            "{overlay}: {}",
            stdout(&linted)
        );
        assert!(
            stdout(&linted).contains("error[EG012]"),
            "{overlay}: {}",
            stdout(&linted)
        );
    }
}

#[test]
fn invalid_config_fails_the_build_with_the_reason() {
    let sb = Sandbox::new();
    let cfg = sb.path("kustomize/base/egress.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, text.replace("api.github.com", "api..github.com")).unwrap();
    let out = sb.build("kustomize/base");
    assert!(!out.status.success());
    let err = stderr(&out);
    // The user's own file and line (Kustomize's copy has no comments, so
    // its line numbers would be off by the three comment lines).
    let line = text
        .lines()
        .position(|l| l.contains("api.github.com"))
        .unwrap()
        + 1;
    let expected = format!(
        "{}:{line}:7: error: invalid domain `api..github.com`",
        cfg.display()
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    assert!(err.contains("help:"), "{err}");
    assert!(stdout(&out).is_empty());
}

/// A generator file may hold several EgressGateways, one per document, as
/// Kustomize reads it. An error in one is told against that document's
/// lines in the user's file; it used to say the file must hold exactly
/// one document.
#[test]
fn invalid_config_in_a_file_of_several_is_told_at_its_line() {
    let sb = Sandbox::new();
    let doc = |name: &str, domain: &str| {
        format!(
            "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: {name}\nspec:\n  gateway:\n    name: {name}\n    namespace: {name}\n    deployment: {name}\n    serviceAccount: {name}\n  domains:\n  - {domain}\n"
        )
    };
    sb.write(
        "multi/egress.yaml",
        &format!(
            "# Two gateways.\n{}---\n# The second one.\n{}",
            doc("first", "api.github.com"),
            doc("second", "a..com")
        ),
    );
    sb.write("multi/kustomization.yaml", "generators:\n- egress.yaml\n");
    let out = sb.build("multi");
    assert!(!out.status.success());
    let err = stderr(&out);
    let expected = format!(
        "{}:27:5: error: invalid domain `a..com`",
        sb.path("multi/egress.yaml").display()
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    assert!(!err.contains("multiple YAML documents"), "{err}");
}

#[test]
fn invalid_config_via_a_base_is_told_against_kustomizes_copy() {
    // The generator file is not in the kustomization being built, so the
    // error names the generator and says where the positions come from.
    let sb = Sandbox::new();
    sb.write(
        "two/egress.yaml",
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: broken\nspec:\n  domains: []\n",
    );
    sb.write("two/kustomization.yaml", "resources:\n- egress.yaml\n");
    sb.write("one/kustomization.yaml", "generators:\n- ../two\n");
    let out = sb.build("one");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("invalid EgressGateway config `broken`"),
        "{err}"
    );
    assert!(err.contains("spec.domains is empty"), "{err}");

    // With origin annotations, Kustomize says where the config came from.
    sb.write(
        "one/kustomization.yaml",
        "generators:\n- ../two\nbuildMetadata: [originAnnotations]\n",
    );
    let out = sb.build("one");
    assert!(!out.status.success());
    let err = stderr(&out);
    let original = sb.path("two/egress.yaml");
    assert!(
        err.contains("invalid EgressGateway config")
            && err.contains(&format!(
                "{}:6:12: error: spec.domains is empty",
                original.display()
            )),
        "{err}"
    );
}

#[test]
fn plugin_arguments_are_refused() {
    let sb = Sandbox::new();
    let cfg = sb.path("kustomize/base/egress.yaml");
    let text = std::fs::read_to_string(&cfg).unwrap();
    std::fs::write(&cfg, format!("{text}argsOneLiner: --verbose\n")).unwrap();
    let out = sb.build("kustomize/base");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("takes no arguments"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn normal_commands_work_inside_a_kustomize_environment() {
    // Another plugin may call `egressgen render` with Kustomize's
    // environment set; that must stay a normal render.
    let cfg = examples().join("kustomize/base/egress.yaml");
    let out = run(Command::new(bin())
        .args(["render", "-c"])
        .arg(&cfg)
        .env("KUSTOMIZE_PLUGIN_CONFIG_STRING", "kind: Other")
        .env("KUSTOMIZE_PLUGIN_CONFIG_ROOT", "/"));
    assert_ok(&out);
    assert_eq!(stdout(&out), render(&cfg));
    let out = run(Command::new(bin())
        .arg("schema")
        .env("KUSTOMIZE_PLUGIN_CONFIG_STRING", "x"));
    assert_ok(&out);
}

#[test]
fn install_is_idempotent_and_honours_dir() {
    let sb = Sandbox::new();
    let again = run(sb
        .env(&mut Command::new(bin()))
        .args(["kustomize-plugin", "install"]));
    assert_ok(&again);
    assert!(
        stdout(&again).starts_with("Already installed:"),
        "{}",
        stdout(&again)
    );
    let home = sb.path("plugins");
    let out = run(sb
        .env(&mut Command::new(bin()))
        .args(["kustomize-plugin", "install", "--dir"])
        .arg(&home));
    assert_ok(&out);
    assert!(stdout(&out).contains(&format!("export KUSTOMIZE_PLUGIN_HOME={}", home.display())));
    // Kustomize finds it there through KUSTOMIZE_PLUGIN_HOME.
    let built = run(Command::new("kubectl")
        .args(["kustomize", "--enable-alpha-plugins"])
        .arg(sb.path("kustomize/base"))
        .env("KUSTOMIZE_PLUGIN_HOME", &home)
        .env("XDG_CONFIG_HOME", sb.path("nowhere")));
    assert_ok(&built);
    assert_eq!(
        objects(&stdout(&built)).len(),
        objects(&render(&sb.path("kustomize/base/egress.yaml"))).len()
    );
}
