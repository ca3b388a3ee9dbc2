//! `egressgen render`: every config in `tests/render/` is rendered and
//! snapshotted, and every rendered object is checked against the real
//! Istio CRD schemas and the Kubernetes schemas in `schemas/`.

mod common;

use std::path::Path;

use common::{documents, egressgen, id};
use egressgen::{config, render, schema};

fn render_file(path: &Path) -> String {
    let (cfg, _) = config::load(path, &config::Overrides::default()).expect("fixture is valid");
    render::render(&cfg).expect("renders").manifest
}

/// What a user sees: the manifest on stdout and the notes on stderr.
#[test]
fn rendered_manifest() {
    insta::glob!("render/*.yaml", |path| {
        let relative = path.strip_prefix(env!("CARGO_MANIFEST_DIR")).unwrap();
        let out = egressgen()
            .arg("render")
            .arg("-c")
            .arg(relative)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8(out.stderr).unwrap();
        let mut shown = String::new();
        for line in stderr.lines() {
            shown.push_str("# stderr: ");
            shown.push_str(line);
            shown.push('\n');
        }
        shown.push_str(&String::from_utf8(out.stdout).unwrap());
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(shown);
        });
    });
}

/// Strict: an unknown field anywhere is an error, except where the CRD
/// preserves unknown fields (EnvoyFilter patch values).
#[test]
fn every_rendered_object_is_valid_against_its_schema() {
    insta::glob!("render/*.yaml", |path| {
        for doc in documents(&render_file(path)) {
            let api = doc["apiVersion"].as_str().unwrap();
            let kind = doc["kind"].as_str().unwrap();
            let violations = schema::validate(api, kind, &doc)
                .unwrap_or_else(|| panic!("no schema shipped for {api} {kind}"));
            assert!(
                violations.is_empty(),
                "{}: {} {violations:#?}",
                path.display(),
                id(&doc)
            );
        }
    });
}

#[test]
fn the_schema_check_catches_a_typo_in_rendered_output() {
    let manifest =
        render_file(Path::new("tests/render/reference.yaml")).replace("sniHosts:", "sniHost:");
    let bad: Vec<String> = documents(&manifest)
        .iter()
        .filter(|d| {
            !schema::validate(
                d["apiVersion"].as_str().unwrap(),
                d["kind"].as_str().unwrap(),
                d,
            )
            .unwrap()
            .is_empty()
        })
        .map(id)
        .collect();
    assert_eq!(
        bad,
        ["VirtualService/istio-system/direct-wildcard-through-egress-gateway"]
    );
}

/// The four places hold the same list, in the same order.
#[test]
fn the_four_lists_agree() {
    let docs = documents(&render_file(Path::new("tests/render/several-domains.yaml")));
    let strings = |v: &serde_json::Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let of = |kind: &str| {
        docs.iter()
            .find(|d| d["kind"] == kind && d["spec"]["hosts"][0] != "*")
            .unwrap()
    };
    let vs = of("VirtualService");
    let hosts = strings(&vs["spec"]["hosts"]);
    assert_eq!(
        hosts,
        [
            "1password.com",
            "*.s3.amazonaws.com",
            "api.github.com",
            "objects.githubusercontent.com",
            "xn--bcher-kva.example",
            "*.wikipedia.org"
        ]
    );
    assert_eq!(
        strings(&vs["spec"]["tls"][0]["match"][0]["sniHosts"]),
        hosts
    );
    assert_eq!(strings(&of("ServiceEntry")["spec"]["hosts"]), hosts);
    let ef = of("EnvoyFilter");
    let listener = ef["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["applyTo"] == "LISTENER")
        .unwrap();
    assert_eq!(
        strings(
            &listener["patch"]["value"]["filter_chains"][0]["filter_chain_match"]["server_names"]
        ),
        hosts
    );
}

/// The reference's defects are fixed: the EnvoyFilter only touches the
/// gateway's pods and listener port, and access logs are scoped.
#[test]
fn envoy_filter_and_telemetry_are_scoped_to_the_gateway() {
    let docs = documents(&render_file(Path::new("tests/render/every-option.yaml")));
    let ef = docs.iter().find(|d| d["kind"] == "EnvoyFilter").unwrap();
    let deployment = docs.iter().find(|d| d["kind"] == "Deployment").unwrap();
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    for (k, v) in ef["spec"]["workloadSelector"]["labels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(&pod_labels[k], v, "selector label {k}");
    }
    let merge = ef["spec"]["configPatches"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["patch"]["operation"] == "MERGE")
        .unwrap();
    assert_eq!(merge["match"]["listener"]["portNumber"], 9443);
    let gateway = docs.iter().find(|d| d["kind"] == "Gateway").unwrap();
    assert_eq!(gateway["spec"]["servers"][0]["port"]["number"], 9443);
    let service = docs.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(service["spec"]["ports"][0]["targetPort"], 9443);
    // accessLog: false drops the Telemetry.
    assert!(docs.iter().all(|d| d["kind"] != "Telemetry"));
    let with_log = documents(&render_file(Path::new("tests/render/reference.yaml")));
    let telemetry = with_log.iter().find(|d| d["kind"] == "Telemetry").unwrap();
    assert_eq!(
        telemetry["spec"]["selector"]["matchLabels"]["istio"],
        "egressgateway"
    );
}

/// The gateway gets no access to Secrets (the reference's Role reads them
/// all; only a Gateway `credentialName` needs them): for every config, no
/// Role names `secrets`, and with `openshift: false` there is no Role.
#[test]
fn the_gateway_gets_no_access_to_secrets() {
    for entry in std::fs::read_dir("tests/render").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = documents(&render_file(&path));
        for role in docs.iter().filter(|d| d["kind"] == "Role") {
            let rules = serde_json::to_string(&role["rules"]).unwrap();
            assert!(!rules.contains("secrets"), "{}: {rules}", path.display());
        }
        if text.contains("openshift: false") {
            assert!(
                docs.iter()
                    .all(|d| d["kind"] != "Role" && d["kind"] != "RoleBinding"),
                "{}",
                path.display()
            );
        }
    }
}

/// Same input, same bytes; and the order of the input list does not matter.
#[test]
fn deterministic_and_order_independent() {
    let a = egressgen()
        .args([
            "render",
            "--domain",
            "b.example.com",
            "--domain",
            "*.a.example",
        ])
        .output()
        .unwrap();
    let b = egressgen()
        .args([
            "render",
            "--domain",
            "*.a.example",
            "--domain",
            "b.example.com",
        ])
        .output()
        .unwrap();
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
}

/// 20,000 names: every object fits the CRD limits and the 256 KiB
/// last-applied annotation, except the EnvoyFilter, which is warned about.
#[test]
fn twenty_thousand_domains_split_into_valid_objects() {
    let domains: Vec<String> = (0..20_000)
        .map(|i| format!("service-{i:05}.region-{}.example-{}.com", i % 7, i % 13))
        .collect();
    let (cfg, _) = config::from_domains(&domains, &config::Overrides::default()).unwrap();
    let rendered = render::render(&cfg).unwrap();
    let docs = documents(&rendered.manifest);
    let count = |kind: &str| docs.iter().filter(|d| d["kind"] == kind).count();
    assert_eq!(count("ServiceEntry"), 20_000usize.div_ceil(256));
    assert!(count("VirtualService") > 2, "VirtualServices are split");
    let mut seen_hosts = 0;
    for doc in &docs {
        let api = doc["apiVersion"].as_str().unwrap();
        let kind = doc["kind"].as_str().unwrap();
        let violations = schema::validate(api, kind, doc).unwrap();
        assert!(violations.is_empty(), "{}: {violations:?}", id(doc));
        let json = serde_json::to_string(doc).unwrap().len();
        if kind == "EnvoyFilter" {
            assert!(json > render::OBJECT_LIMIT_BYTES);
        } else {
            assert!(
                json < render::OBJECT_LIMIT_BYTES,
                "{} is {json} bytes",
                id(doc)
            );
        }
        if kind == "VirtualService" && doc["spec"]["hosts"][0] != "*" {
            seen_hosts += doc["spec"]["hosts"].as_array().unwrap().len();
        }
    }
    assert_eq!(seen_hosts, 20_000);
    assert_eq!(rendered.warnings.len(), 1);
    assert!(rendered.warnings[0].contains("kubectl apply --server-side"));
}

/// The EnvoyFilter repeats every name for each upstream port. Past the
/// 1.5 MiB etcd stores by default, no way of applying it works, and the
/// warning says so instead of suggesting server-side apply.
#[test]
fn an_envoy_filter_past_etcds_limit_is_warned_about() {
    let mut cfg_text = String::from(
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: big\nspec:\n  ports: [443, 8443, 9443]\n  domains:\n",
    );
    for i in 0..16_000 {
        cfg_text.push_str(&format!(
            "  - service-{i:05}.region-{}.example-{}.com\n",
            i % 7,
            i % 13
        ));
    }
    let (cfg, _) = config::parse("big.yaml", &cfg_text, &config::Overrides::default()).unwrap();
    let rendered = render::render(&cfg).unwrap();
    let filter = documents(&rendered.manifest)
        .into_iter()
        .find(|d| d["kind"] == "EnvoyFilter")
        .unwrap();
    assert!(serde_json::to_string(&filter).unwrap().len() > render::ETCD_LIMIT_BYTES);
    assert_eq!(rendered.warnings.len(), 1, "{:?}", rendered.warnings);
    assert!(
        rendered.warnings[0].contains("etcd stores by default")
            && !rendered.warnings[0].contains("apply with `kubectl apply --server-side`"),
        "{}",
        rendered.warnings[0]
    );
}
