//! Shared by the plugin tests: the real tools, and reading their output.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use egressgen::plugin::node::{self, Node, Style};
use serde_json::Value;

pub fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("egressgen")
}

/// The repository's `examples/` folder.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// Fails loudly when a tool these tests need is missing: they prove the
/// integration with the real thing and must never pass by skipping.
pub fn require(tool: &str, version_args: &[&str]) {
    match Command::new(tool).args(version_args).output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "`{tool} {}` failed: {}",
            version_args.join(" "),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "`{tool}` is required by the plugin tests and was not found ({e}). Install it: see README.md (Use with Kustomize / Use with kpt)"
        ),
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).unwrap();
        }
    }
}

/// Every file under `dir` with its contents, by relative path.
pub fn snapshot_dir(dir: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// A scalar's value as a YAML 1.2 core-schema reader sees it.
fn scalar_value(text: &str, style: Style) -> Value {
    if style != Style::Plain {
        return Value::String(text.to_string());
    }
    match text {
        "" | "~" | "null" => Value::Null,
        "true" => Value::Bool(true),
        "false" => Value::Bool(false),
        _ => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_string())),
    }
}

/// The value of a node, for comparing objects regardless of key order and
/// quoting style.
pub fn value(n: &Node) -> Value {
    match n {
        Node::Scalar(s) => scalar_value(&s.text, s.style),
        Node::Seq(items) => Value::Array(items.iter().map(value).collect()),
        Node::Map(pairs) => Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.text.clone(), value(v)))
                .collect(),
        ),
        Node::Tagged(_, inner) => value(inner),
    }
}

/// The objects of a multi-document manifest.
pub fn objects(manifest: &str) -> Vec<Value> {
    node::parse(manifest)
        .unwrap_or_else(|e| panic!("output is not YAML: {e}\n{manifest}"))
        .iter()
        .map(value)
        .collect()
}

pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `kind/namespace/name` -> object.
pub fn by_id(objs: &[Value]) -> BTreeMap<String, Value> {
    objs.iter()
        .map(|o| {
            (
                format!(
                    "{}/{}/{}",
                    s(o, &["kind"]),
                    s(o, &["metadata", "namespace"]),
                    s(o, &["metadata", "name"])
                ),
                o.clone(),
            )
        })
        .collect()
}

pub fn of_kind<'a>(objs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| s(o, &["kind"]) == kind).collect()
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

fn subset(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> bool {
    !a.is_empty() && a.iter().all(|(k, v)| b.get(k) == Some(v))
}

/// The wiring between the generated objects, checked independently of the
/// lint engine: selectors against the pod labels, the VirtualService and
/// DestinationRule host against the Service, the RoleBinding against the
/// ServiceAccount. Empty when the manifest can work.
pub fn wiring_problems(objs: &[Value]) -> Vec<String> {
    let mut problems = Vec::new();
    let deployments = of_kind(objs, "Deployment");
    let [dep] = deployments.as_slice() else {
        return vec![format!(
            "expected one Deployment, got {}",
            deployments.len()
        )];
    };
    let ns = s(dep, &["metadata", "namespace"]);
    let pod = labels(dep.pointer("/spec/template/metadata/labels"));
    let services = of_kind(objs, "Service");
    let [svc] = services.as_slice() else {
        return vec![format!("expected one Service, got {}", services.len())];
    };
    if s(svc, &["metadata", "namespace"]) != ns {
        problems.push("Service and Deployment are in different namespaces".into());
    }
    if !subset(&labels(svc.pointer("/spec/selector")), &pod) {
        problems.push("Service selector does not match the pod labels".into());
    }
    if !subset(&labels(dep.pointer("/spec/selector/matchLabels")), &pod) {
        problems.push("Deployment selector does not match its pod labels".into());
    }
    for ef in of_kind(objs, "EnvoyFilter") {
        if s(ef, &["metadata", "namespace"]) != ns {
            problems.push("EnvoyFilter is not in the gateway pods' namespace".into());
        }
        if !subset(&labels(ef.pointer("/spec/workloadSelector/labels")), &pod) {
            problems.push("EnvoyFilter workloadSelector does not match the pod labels".into());
        }
    }
    for gw in of_kind(objs, "Gateway") {
        if !subset(&labels(gw.pointer("/spec/selector")), &pod) {
            problems.push("Gateway selector does not match the pod labels".into());
        }
    }
    let host = format!(
        "{}.{}.svc.cluster.local",
        s(svc, &["metadata", "name"]),
        s(svc, &["metadata", "namespace"])
    );
    for vs in of_kind(objs, "VirtualService") {
        for route in vs
            .pointer("/spec/tls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for d in route["route"].as_array().into_iter().flatten() {
                let h = d
                    .pointer("/destination/host")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if h != host {
                    problems.push(format!(
                        "VirtualService {} routes to {h}, but the Service is {host}",
                        s(vs, &["metadata", "name"])
                    ));
                }
            }
        }
    }
    for dr in of_kind(objs, "DestinationRule") {
        if s(dr, &["spec", "host"]) != host {
            problems.push(format!("DestinationRule host is not {host}"));
        }
    }
    let sa_name = dep
        .pointer("/spec/template/spec/serviceAccountName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !of_kind(objs, "ServiceAccount").iter().any(|sa| {
        s(sa, &["metadata", "name"]) == sa_name && s(sa, &["metadata", "namespace"]) == ns
    }) {
        problems.push(format!("no ServiceAccount {sa_name} in {ns}"));
    }
    for rb in of_kind(objs, "RoleBinding") {
        for subj in rb["subjects"].as_array().into_iter().flatten() {
            if subj["name"] != sa_name || subj["namespace"] != ns {
                problems.push("RoleBinding subject is not the gateway's ServiceAccount".into());
            }
        }
    }
    problems
}
