//! `render` production options: every config in `tests/render/` renders
//! objects valid against their Istio CRD or Kubernetes schema that `lint`
//! finds clean; the multi-port layout, long lists, the examples and the
//! JSON schema. Snapshots of the manifests come from `tests/render.rs`.

use egressgen::config::{self, Config, Overrides};
use egressgen::lint::{self, Options, Source};
use egressgen::render;
use egressgen::schema;

/// `lint` understands the layout: no findings, with and without the config.
/// Every config in `tests/render/`: file name and path, in name order.
fn render_fixtures() -> Vec<(String, std::path::PathBuf)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/render");
    let mut all: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().to_string(),
                path,
            )
        })
        .collect();
    all.sort();
    all
}

/// A render fixture's config and the manifest it renders to.
fn render_fixture(path: &std::path::Path) -> (Config, String) {
    let (cfg, _) = config::load(path, &Overrides::default()).unwrap();
    let manifest = render::render(&cfg).unwrap().manifest;
    (cfg, manifest)
}

fn assert_lints_clean(name: &str, cfg: &Config, manifest: &str) {
    let src = Source {
        name: format!("{name} (rendered)"),
        text: manifest.to_string(),
    };
    let mut with_config = Options::default();
    with_config.config_from_file(cfg.clone(), name);
    for opts in [Options::default(), with_config] {
        let report = lint::run(std::slice::from_ref(&src), &opts);
        assert!(
            report.findings.is_empty() && report.input_errors.is_empty(),
            "{name}: lint (config: {}) found {:#?}",
            opts.config.is_some(),
            report.findings
        );
    }
}

/// Every document of a manifest is a known kind and valid against its schema.
fn assert_valid(name: &str, manifest: &str) {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(manifest)
        .unwrap_or_else(|e| panic!("{name}: rendered YAML does not parse: {e}"));
    assert!(!docs.is_empty());
    for d in &docs {
        let api = d["apiVersion"].as_str().unwrap();
        let kind = d["kind"].as_str().unwrap();
        let violations = schema::validate(api, kind, d)
            .unwrap_or_else(|| panic!("{name}: no schema for {api} {kind}"));
        assert!(
            violations.is_empty(),
            "{name}: {kind} {} breaks its schema: {violations:#?}",
            d["metadata"]["name"]
        );
    }
}

/// Every render fixture (their snapshots come from `tests/render.rs`):
/// valid objects and a clean lint, with and without the config. The
/// options' refusals live in `tests/errors/` (snapshotted by
/// `tests/errors.rs`).
#[test]
fn option_fixtures_are_valid_and_lint_clean() {
    let mut checked = 0;
    for (file, path) in render_fixtures() {
        let text = std::fs::read_to_string(&path).unwrap();
        let (cfg, _) = config::parse(&file, &text, &Overrides::default())
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let r = render::render(&cfg).unwrap();
        assert_valid(&file, &r.manifest);
        assert_lints_clean(&file, &cfg, &r.manifest);
        checked += 1;
    }
    assert!(checked >= 15);
}

/// The shipped examples render valid objects that lint clean too.
#[test]
fn examples_are_valid() {
    for name in ["examples/egress.yaml", "examples/production.yaml"] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
        let (cfg, notes) = config::load(&path, &Overrides::default()).unwrap();
        assert!(notes.is_empty(), "{name}: {notes:?}");
        let r = render::render(&cfg).unwrap();
        assert!(r.warnings.is_empty(), "{name}: {:?}", r.warnings);
        assert_valid(name, &r.manifest);
        assert_lints_clean(name, &cfg, &r.manifest);
    }
}

/// Multi-port wiring that lost a port is caught: the ServiceEntry must
/// declare every upstream port.
#[test]
fn lint_catches_a_port_missing_from_the_multi_port_layout() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/render/multi-port.yaml"
    ))
    .unwrap();
    let (cfg, _) = config::parse("multi-port.yaml", &text, &Overrides::default()).unwrap();
    let manifest = render::render(&cfg).unwrap().manifest;
    let broken = manifest.replacen(
        "  - number: 8443\n    name: tls-8443\n    protocol: TLS\n",
        "",
        1,
    );
    assert_ne!(broken, manifest);
    let report = lint::run(
        &[Source {
            name: "broken.yaml".into(),
            text: broken,
        }],
        &Options::default(),
    );
    let codes: Vec<&str> = report.findings.iter().map(|f| f.code).collect();
    assert_eq!(codes, ["EG015"], "{:#?}", report.findings);
    assert!(
        report.findings[0]
            .message
            .contains("lack upstream port 8443")
    );
}

/// Every accepted config validates against `egressgen schema`, and the
/// schema knows every new option (editors complete from it).
#[test]
fn accepted_configs_match_the_json_schema() {
    let schema: serde_json::Value = serde_json::from_str(&config::json_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut checked = 0;
    for (name, path) in render_fixtures() {
        if name.starts_with("err-") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
        checked += 1;
    }
    assert!(checked >= 10);
    let text = config::json_schema();
    for field in [
        "podDisruptionBudget",
        "topologySpread",
        "autoscaling",
        "allowedClients",
        "networkPolicy",
        "refreshRate",
        "hostTtl",
        "maxHosts",
        "ports",
    ] {
        assert!(
            text.contains(&format!("\"{field}\"")),
            "schema lacks {field}"
        );
    }
}

/// Long lists with several ports: every VirtualService still fits the
/// object limit (each host is repeated once per port's sniHosts), and lint
/// finds the split layout clean.
#[test]
fn long_lists_with_several_ports_stay_under_the_object_limit() {
    let domains: String = (0..6_000)
        .map(|i| format!("  - host-{i}.example{}.com\n", i % 31))
        .collect();
    let text = format!(
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: big\nspec:\n  ports: [443, 8443, 9443]\n  domains:\n{domains}"
    );
    let (cfg, _) = config::parse("big.yaml", &text, &Overrides::default()).unwrap();
    let r = render::render(&cfg).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&r.manifest).unwrap();
    let vs: Vec<&serde_json::Value> = docs
        .iter()
        .filter(|d| {
            d["kind"] == "VirtualService" && d["metadata"]["name"] != "egressgateway-keepalive"
        })
        .collect();
    assert!(vs.len() > 1, "expected a split, got {}", vs.len());
    for v in &vs {
        let bytes = serde_json::to_string(v).unwrap().len();
        assert!(
            bytes < render::OBJECT_LIMIT_BYTES,
            "{} is {bytes} bytes",
            v["metadata"]["name"]
        );
        assert_eq!(v["spec"]["tls"].as_array().unwrap().len(), 3);
    }
    assert_lints_clean("big.yaml", &cfg, &r.manifest);
}

/// Istio's `resolvePorts` (istio/istio `pilot/pkg/model/gateway.go`) for a
/// label-selected gateway: a Gateway server port that equals a Service port
/// binds to the first such port's `targetPort`, else to the number as is.
fn istio_resolve_port(number: u64, service_ports: &[(u64, u64)]) -> u64 {
    service_ports
        .iter()
        .find(|(port, _)| *port == number)
        .map_or(number, |(_, target)| *target)
}

/// Every Gateway server binds where the EnvoyFilter and the keep-alive
/// route expect it, after Istio's Service-port translation, for every
/// render fixture (the multi-port ones are the interesting case).
#[test]
fn gateway_servers_bind_where_the_envoy_filter_patches() {
    for (file, path) in render_fixtures() {
        let (cfg, manifest) = render_fixture(&path);
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&manifest).unwrap();
        let of = |kind: &'static str| docs.iter().filter(move |d| d["kind"] == kind);
        let service_ports: Vec<(u64, u64)> = of("Service")
            .flat_map(|s| s["spec"]["ports"].as_array().unwrap().clone())
            .map(|p| {
                (
                    p["port"].as_u64().unwrap(),
                    p["targetPort"].as_u64().unwrap(),
                )
            })
            .collect();
        let patched: Vec<u64> = of("EnvoyFilter")
            .flat_map(|f| f["spec"]["configPatches"].as_array().unwrap().clone())
            .filter_map(|p| p["match"]["listener"]["portNumber"].as_u64())
            .collect();
        let servers: Vec<u64> = of("Gateway")
            .flat_map(|g| g["spec"]["servers"].as_array().unwrap().clone())
            .map(|s| s["port"]["number"].as_u64().unwrap())
            .collect();
        assert_eq!(servers.len(), cfg.ports.len(), "{file}");
        for n in &servers {
            let bound = istio_resolve_port(*n, &service_ports);
            assert_eq!(
                bound, *n,
                "{file}: Gateway server {n} would bind to {bound}"
            );
            assert!(
                patched.contains(n),
                "{file}: no EnvoyFilter patch for listener {n}"
            );
        }
        // The container exposes every bound port.
        let container_ports: Vec<u64> = of("Deployment")
            .flat_map(|d| {
                d["spec"]["template"]["spec"]["containers"][0]["ports"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|p| p["containerPort"].as_u64().unwrap())
            .collect();
        for n in &servers {
            assert!(
                container_ports.contains(n),
                "{file}: container lacks port {n}"
            );
        }
    }
}

/// The real client reads every layout: `kubectl kustomize` builds each
/// rendered manifest (it refuses malformed objects and two objects with the
/// same kind, namespace and name) and keeps every object.
#[test]
fn kubectl_kustomize_builds_every_layout() {
    let kubectl = std::process::Command::new("kubectl")
        .args(["version", "--client"])
        .output();
    assert!(
        kubectl.is_ok_and(|o| o.status.success()),
        "this test needs kubectl (https://kubernetes.io/docs/tasks/tools/): \
         curl -LO https://dl.k8s.io/release/v1.32.4/bin/linux/amd64/kubectl && install kubectl /usr/local/bin/"
    );
    let ids = |manifest: &str| -> Vec<String> {
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(manifest).unwrap();
        let mut ids: Vec<String> = docs
            .iter()
            .map(|d| {
                format!(
                    "{} {}/{}",
                    d["kind"].as_str().unwrap(),
                    d["metadata"]["namespace"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect();
        ids.sort();
        ids
    };
    for (file, path) in render_fixtures() {
        let (_, manifest) = render_fixture(&path);
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("manifest.yaml"), &manifest).unwrap();
        std::fs::write(
            tmp.path().join("kustomization.yaml"),
            "resources:\n- manifest.yaml\n",
        )
        .unwrap();
        let out = std::process::Command::new("kubectl")
            .arg("kustomize")
            .arg(tmp.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: kubectl kustomize: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let built = String::from_utf8(out.stdout).unwrap();
        assert_eq!(ids(&built), ids(&manifest), "{file}");
    }
}

/// The port limit is 16: sixteen upstream ports render and lint clean.
/// (Seventeen are refused: `tests/errors/ports-too-many.yaml`.)
#[test]
fn sixteen_ports_are_accepted() {
    let ports: Vec<String> = (0..16).map(|i| (9000 + i).to_string()).collect();
    let text = format!(
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: many\nspec:\n  ports: [{}]\n  domains: [\"*.wikipedia.org\"]\n",
        ports.join(", ")
    );
    let (cfg, _) = config::parse("many.yaml", &text, &Overrides::default()).unwrap();
    assert_eq!(cfg.ports.len(), 16);
    let r = render::render(&cfg).unwrap();
    assert_lints_clean("many.yaml", &cfg, &r.manifest);
}

/// DNS durations in every unit reach Envoy as protobuf JSON seconds.
#[test]
fn dns_durations_in_hours_and_minutes_are_rendered_in_seconds() {
    let text = "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: dns\nspec:\n  domains: [\"*.wikipedia.org\"]\n  dns:\n    refreshRate: 5m\n    hostTtl: 2h\n";
    let (cfg, _) = config::parse("dns.yaml", text, &Overrides::default()).unwrap();
    let manifest = render::render(&cfg).unwrap().manifest;
    assert!(
        manifest.contains("dns_refresh_rate: \"300s\""),
        "{manifest}"
    );
    assert!(manifest.contains("host_ttl: \"7200s\""), "{manifest}");
    assert_lints_clean("dns.yaml", &cfg, &manifest);
}

/// `minReplicas` may equal `maxReplicas` (1 <= min <= max).
#[test]
fn autoscaling_with_min_equal_to_max_is_accepted() {
    let text = "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: hpa\nspec:\n  domains: [\"*.wikipedia.org\"]\n  gateway:\n    autoscaling:\n      minReplicas: 3\n      maxReplicas: 3\n    resources:\n      requests: {cpu: 250m}\n";
    let (cfg, _) = config::parse("hpa.yaml", text, &Overrides::default()).unwrap();
    let manifest = render::render(&cfg).unwrap().manifest;
    assert!(manifest.contains("minReplicas: 3"), "{manifest}");
    assert!(manifest.contains("maxReplicas: 3"), "{manifest}");
}
