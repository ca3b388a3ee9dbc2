//! `egressgen explain`: one snapshot per fixture in `tests/explain/`, and a
//! property test that its verdict is the rendered Envoy config's verdict.
//!
//! A fixture names the allowlist (`allow:` entries or a `config:` file) and
//! the host(s) to explain. The snapshot holds what a user sees: exit code,
//! stdout and stderr of the real binary.

use std::collections::HashSet;

use assert_cmd::Command;
use egressgen::config::{self, Overrides};
use egressgen::domain::{Allowlist, Pattern};
use egressgen::explain::explain;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    config: Option<String>,
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    hosts: Vec<String>,
}

#[test]
fn fixtures() {
    insta::glob!("explain/*.yaml", |path| {
        let text = std::fs::read_to_string(path).unwrap();
        let f: Fixture = serde_saphyr::from_str(&text).unwrap();
        let mut hosts = f.hosts.clone();
        hosts.extend(f.host.clone());
        let mut args: Vec<String> = vec!["explain".into()];
        match &f.config {
            Some(c) => args.extend(["-c".to_string(), c.clone()]),
            None => {
                for a in &f.allow {
                    args.push(format!("--allow={a}"));
                }
            }
        }
        let report = if hosts.iter().any(|h| h.contains('\0')) {
            // argv cannot carry NUL; ask the library the CLI calls.
            let cfg = config::from_domains(&f.allow, &Overrides::default())
                .unwrap()
                .0;
            let e = explain(hosts[0].as_bytes(), &cfg.allowlist);
            format!(
                "via: library (argv cannot carry NUL)\nallowed: {}\n--- stdout\n{}",
                e.allowed, e.text
            )
        } else {
            args.push("--".into());
            args.extend(hosts);
            let out = Command::cargo_bin("egressgen")
                .unwrap()
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .args(&args)
                .output()
                .unwrap();
            format!(
                "exit: {}\n--- stdout\n{}--- stderr\n{}",
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        };
        insta::with_settings!({snapshot_path => "../snapshots", omit_expression => true, info => &text}, {
            insta::assert_snapshot!(report);
        });
    });
}

#[cfg(unix)]
#[test]
fn non_utf8_host_is_refused_not_a_crash() {
    use std::os::unix::ffi::OsStringExt;
    let host = std::ffi::OsString::from_vec(b"a\xff.example.com".to_vec());
    let out = Command::cargo_bin("egressgen")
        .unwrap()
        .args(["explain", "--allow", "*.example.com"])
        .arg(host)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("refused: `a\\xff.example.com`: the SNI is not a valid DNS name"),
        "{stdout}"
    );
}

/// The `server_names` of each internal listener in the rendered
/// EnvoyFilter (one listener per upstream port), unioned over its chains.
fn rendered_server_names(manifest: &str) -> Vec<Vec<String>> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(manifest).unwrap();
    let mut listeners = Vec::new();
    for d in docs.iter().filter(|d| d["kind"] == "EnvoyFilter") {
        for patch in d["spec"]["configPatches"].as_array().unwrap() {
            let Some(chains) = patch["patch"]["value"]["filter_chains"].as_array() else {
                continue;
            };
            let mut names = Vec::new();
            for chain in chains {
                for n in chain["filter_chain_match"]["server_names"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    names.push(n.as_str().unwrap().to_string());
                }
            }
            listeners.push(names);
        }
    }
    listeners
}

fn label() -> impl Strategy<Value = String> {
    prop_oneof!["[a-cA-C]", "[a-cA-C][a-c0-9-]{0,3}[a-c]"]
}
fn name() -> impl Strategy<Value = String> {
    proptest::collection::vec(label(), 1..4).prop_map(|v| v.join("."))
}
/// A wildcard, or an exact name with a dot (a single label is refused).
fn entry() -> impl Strategy<Value = String> {
    prop_oneof![
        name().prop_map(|n| format!("*.{n}")),
        proptest::collection::vec(label(), 2..4).prop_map(|v| v.join(".")),
    ]
}
fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => name(),
        1 => name().prop_map(|n| format!("{n}.")),
        1 => name().prop_map(|n| format!("x.{n}")),
        1 => "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Render the allowlist, read the server_names back out of the YAML,
    /// and check that Envoy's lookup over them (after the TLS inspector's
    /// lowercasing) agrees with `explain` on every host.
    #[test]
    fn explain_agrees_with_the_rendered_envoy_filter(
        entries in proptest::collection::vec(entry(), 1..6),
        hosts in proptest::collection::vec(host(), 1..8),
        ports in prop_oneof![Just(vec![443u16]), Just(vec![443u16, 8443])],
    ) {
        let text = format!(
            "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: p\nspec:\n  ports: {ports:?}\n  domains: {}\n",
            serde_json::to_string(&entries).unwrap()
        );
        let (cfg, _) = config::parse("p.yaml", &text, &Overrides::default()).unwrap();
        let manifest = egressgen::render::render(&cfg).unwrap().manifest;
        let listeners = rendered_server_names(&manifest);
        // One internal listener per upstream port, each with the same names.
        prop_assert_eq!(listeners.len(), ports.len());
        for l in &listeners[1..] {
            prop_assert_eq!(l, &listeners[0]);
        }
        let names = listeners[0].clone();
        prop_assert!(!names.is_empty());
        let unique: HashSet<&String> = names.iter().collect();
        prop_assert_eq!(unique.len(), names.len(), "Envoy rejects duplicate server_names");
        let patterns: Vec<Pattern> = names.iter().map(|n| Pattern::parse(n).unwrap().0).collect();
        let (rendered, dropped) = Allowlist::new(patterns);
        prop_assert!(dropped.is_empty());
        // Every explained host, plus the entries themselves and their bare domains.
        let mut all = hosts.clone();
        for n in &names {
            all.push(n.trim_start_matches("*.").to_string());
            all.push(n.replace('*', "w"));
        }
        for h in &all {
            let envoy = rendered.lookup(&h.to_ascii_lowercase()).map(|p| p.to_string());
            let e = explain(h.as_bytes(), &cfg.allowlist);
            prop_assert_eq!(e.allowed, envoy.is_some(), "host {:?}: {}", h, e.text);
            prop_assert_eq!(e.matched_by.map(|p| p.to_string()), envoy);
        }
    }
}
