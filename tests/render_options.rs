//! `render` options: one snapshot per config in `tests/render/`, and every
//! rendered object checked against its Istio CRD or Kubernetes schema.
//!
//! `err-*.yaml` configs must be refused; their snapshot is the message a
//! user sees. Every other config renders, and its snapshot holds the
//! warnings and the manifest.

use egressgen::config::{self, Overrides};
use egressgen::render;
use egressgen::schema;

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

#[test]
fn render_options() {
    insta::glob!("render/*.yaml", |path| {
        let file = path.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let shown = format!("tests/render/{file}");
        let report = match config::parse(&shown, &text, &Overrides::default()) {
            Err(e) => {
                assert!(file.starts_with("err-"), "{file} was refused: {e}");
                format!("error: {e}\n")
            }
            Ok((cfg, notes)) => {
                assert!(!file.starts_with("err-"), "{file} was accepted");
                let r = render::render(&cfg).unwrap();
                assert_valid(&file, &r.manifest);
                let mut out = String::new();
                for n in notes {
                    out.push_str(&format!("{n}\n"));
                }
                for w in &r.warnings {
                    out.push_str(&format!("warning: {w}\n"));
                }
                out.push_str("--- manifest\n");
                out.push_str(&r.manifest);
                out
            }
        };
        insta::with_settings!({snapshot_path => "../snapshots", omit_expression => true, info => &text}, {
            insta::assert_snapshot!(report);
        });
    });
}

/// The shipped example renders valid objects too.
#[test]
fn example_is_valid() {
    let (cfg, _) = config::load(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/egress.yaml")),
        &Overrides::default(),
    )
    .unwrap();
    assert_valid(
        "examples/egress.yaml",
        &render::render(&cfg).unwrap().manifest,
    );
}
