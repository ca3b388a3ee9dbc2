//! `egressgen fn`: the KRM function (kpt, and Kustomize `exec` functions).
//!
//! Reads a `ResourceList` and writes one back. As a generator it renders the
//! `functionConfig` (an `EgressGateway`, or a ConfigMap whose `data` holds
//! `domains` and friends) and puts the objects among the items, replacing
//! the ones an earlier run generated, so running it twice changes nothing.
//! Every other item is passed through unchanged ([`node`] keeps scalars as
//! written). Problems become `results`; an error result always comes with
//! exit code 1, since kpt judges a function by its exit code alone.
//!
//! The ResourceList format: <https://kpt.dev/book/05-developing-functions/01-functions-specification>.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{self, Config, Overrides};
use crate::escape::{escaped, quoted};
use crate::plugin::node::{self, Node};
use crate::render;

/// Annotation on every object the generator made: the `EgressGateway` name.
/// A rerun replaces exactly the objects carrying its own name.
pub const GENERATED_BY: &str = "egressgen.io/generated-by";
/// Label on everything `egressgen render` writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

const PATH: &str = "internal.config.kubernetes.io/path";
const LEGACY_PATH: &str = "config.kubernetes.io/path";
const INDEX: &str = "internal.config.kubernetes.io/index";
const LEGACY_INDEX: &str = "config.kubernetes.io/index";
const LOCAL_CONFIG: &str = "config.kubernetes.io/local-config";

/// What the function writes and how it exits.
#[derive(Debug)]
pub struct Outcome {
    /// The output ResourceList.
    pub output: String,
    /// 0 ok, 1 when any result is an error.
    pub code: u8,
    /// Error messages, also printed on stderr (kpt shows them on failure).
    pub errors: Vec<String>,
}

/// Severity of a result, as kpt spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
    Info,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// The object a result is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
}

/// One entry of `results`.
#[derive(Debug, Clone)]
pub struct ResultItem {
    pub message: String,
    pub severity: Severity,
    pub resource: Option<ResourceRef>,
    /// Field path such as `spec.domains[1]`.
    pub field: Option<String>,
    /// File path and index of the object in it.
    pub file: Option<(String, Option<u64>)>,
}

impl ResultItem {
    fn new(severity: Severity, message: impl Into<String>) -> ResultItem {
        ResultItem {
            message: message.into(),
            severity,
            resource: None,
            field: None,
            file: None,
        }
    }

    pub fn to_node(&self) -> Node {
        let mut n = Node::map([
            ("message", Node::string(&self.message)),
            ("severity", Node::string(self.severity.as_str())),
        ]);
        if let Some(r) = &self.resource {
            let mut m = Node::map([
                ("apiVersion", Node::string(&r.api_version)),
                ("kind", Node::string(&r.kind)),
                ("name", Node::string(&r.name)),
            ]);
            if let Some(ns) = &r.namespace {
                m.set("namespace", Node::string(ns));
            }
            n.set("resourceRef", m);
        }
        if let Some(f) = &self.field {
            n.set("field", Node::map([("path", Node::string(f))]));
        }
        if let Some((path, index)) = &self.file {
            let mut m = Node::map([("path", Node::string(path))]);
            if let Some(i) = index {
                m.set("index", Node::int(*i));
            }
            n.set("file", m);
        }
        n
    }

    /// The result for stderr. Names from the input are escaped; messages
    /// quote their own untrusted values.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some((path, _)) = &self.file {
            s.push_str(&escaped(path));
            s.push_str(": ");
        }
        if let Some(r) = &self.resource {
            s.push_str(&format!("{}/{}: ", escaped(&r.kind), escaped(&r.name)));
        }
        if let Some(f) = &self.field {
            s.push_str(&escaped(f));
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

/// A parsed ResourceList: the whole document (to keep unknown fields) and
/// its items.
pub struct ResourceList {
    pub doc: Node,
    pub items: Vec<Node>,
    /// Each item's own text, when it can be written back as it came.
    raw: Vec<Option<String>>,
}

/// An item of the output list.
#[derive(Debug)]
pub enum Item {
    /// The input item at this index, unchanged.
    Input(usize),
    /// An object this function made.
    New(Node),
}

impl ResourceList {
    /// Every input item, unchanged.
    pub fn unchanged(&self) -> Vec<Item> {
        (0..self.items.len()).map(Item::Input).collect()
    }
}

impl ResourceList {
    /// Parses stdin text. Errors are messages for the user.
    pub fn parse(input: &str) -> Result<ResourceList, String> {
        let docs = node::parse(input).map_err(|e| match e.line {
            Some((l, c)) => format!("stdin:{l}:{c}: the ResourceList is not valid YAML: {e}"),
            None => format!("the ResourceList cannot be read: {e}"),
        })?;
        let [doc] = <[Node; 1]>::try_from(docs).map_err(|d| {
            format!(
                "expected one ResourceList document on stdin, got {}",
                d.len()
            )
        })?;
        if !matches!(doc, Node::Map(_))
            || doc.get("kind").and_then(Node::as_str) != Some("ResourceList")
        {
            return Err(
                "stdin is not a ResourceList (kind: ResourceList); run egressgen fn from kpt or Kustomize, or see README.md"
                    .to_string(),
            );
        }
        let items = match doc.get("items") {
            None => Vec::new(),
            Some(n) if n.is_null() => Vec::new(),
            Some(n) => n
                .as_seq()
                .cloned()
                .ok_or("the ResourceList's items is not a list")?,
        };
        let raw = node::verbatim_entries(input, "items", &items);
        Ok(ResourceList { doc, items, raw })
    }

    /// The output document: `items` and `results` replaced. Input items are
    /// written as they came when possible (comments, flow style and all),
    /// so tools that write them back leave the user's files alone.
    pub fn finish(mut self, items: Vec<Item>, results: &[ResultItem]) -> Outcome {
        if self.doc.get("items").is_none() {
            self.doc.set("items", Node::Seq(Vec::new()));
        }
        if results.is_empty() {
            self.doc.remove("results");
        } else {
            self.doc.set(
                "results",
                Node::Seq(results.iter().map(ResultItem::to_node).collect()),
            );
        }
        let out = self.write(&items, true);
        // Belt and braces: the copied texts were each checked alone; check
        // the whole output too, and write every item afresh if it differs.
        let copied = items
            .iter()
            .any(|i| matches!(i, Item::Input(n) if self.raw[*n].is_some()));
        let out = if copied && !self.reads_back(&out, &items) {
            self.write(&items, false)
        } else {
            out
        };
        outcome(out, results)
    }
}

impl ResourceList {
    /// The output text; `copy` writes input items as their own text.
    fn write(&self, items: &[Item], copy: bool) -> String {
        let Node::Map(pairs) = &self.doc else {
            unreachable!("parse checked that the ResourceList is a mapping")
        };
        let mut out = String::new();
        for (k, v) in pairs {
            if k.text != "items" {
                out.push_str(&node::to_string(&Node::Map(vec![(k.clone(), v.clone())])));
                continue;
            }
            if items.is_empty() {
                out.push_str("items: []\n");
                continue;
            }
            out.push_str("items:\n");
            for item in items {
                match item {
                    Item::Input(i) => match &self.raw[*i] {
                        Some(text) if copy => out.push_str(text),
                        _ => {
                            out.push_str(&node::to_string(&Node::Seq(vec![self.items[*i].clone()])))
                        }
                    },
                    Item::New(n) => out.push_str(&node::to_string(&Node::Seq(vec![n.clone()]))),
                }
            }
        }
        out
    }

    /// True when `out` holds exactly `items`.
    fn reads_back(&self, out: &str, items: &[Item]) -> bool {
        let Ok(docs) = node::parse(out) else {
            return false;
        };
        let Some(got) = docs
            .first()
            .and_then(|d| d.get("items"))
            .and_then(Node::as_seq)
        else {
            return items.is_empty();
        };
        got.len() == items.len()
            && got.iter().zip(items).all(|(g, want)| match want {
                Item::Input(i) => g.same_value(&self.items[*i]),
                Item::New(n) => g.same_value(n),
            })
    }
}

fn outcome(output: String, results: &[ResultItem]) -> Outcome {
    let errors: Vec<String> = results
        .iter()
        .filter(|r| r.severity == Severity::Error)
        .map(ResultItem::display)
        .collect();
    Outcome {
        output,
        code: if errors.is_empty() { 0 } else { 1 },
        errors,
    }
}

/// For input that is no ResourceList at all: a minimal one with the error.
pub fn failure(message: String) -> Outcome {
    let r = ResultItem::new(Severity::Error, message);
    let doc = Node::map([
        ("apiVersion", Node::string("config.kubernetes.io/v1")),
        ("kind", Node::string("ResourceList")),
        ("items", Node::Seq(Vec::new())),
        ("results", Node::Seq(vec![r.to_node()])),
    ]);
    outcome(node::to_string(&doc), &[r])
}

/// `apiVersion`, `kind`, `metadata.namespace`, `metadata.name` of an item.
pub fn resource_ref(item: &Node) -> Option<ResourceRef> {
    Some(ResourceRef {
        api_version: item.get("apiVersion")?.as_str()?.to_string(),
        kind: item.get("kind")?.as_str()?.to_string(),
        name: item.at(&["metadata", "name"])?.as_str()?.to_string(),
        namespace: item
            .at(&["metadata", "namespace"])
            .and_then(Node::as_str)
            .map(str::to_string),
    })
}

/// Identity for "the same object": API group (not version), kind,
/// namespace, name.
type Id = (String, String, String, String);

fn id(item: &Node) -> Option<Id> {
    let r = resource_ref(item)?;
    let group = crate::lint::extract::api_group(&r.api_version).to_string();
    Some((group, r.kind, r.namespace.unwrap_or_default(), r.name))
}

pub fn annotation<'a>(item: &'a Node, key: &str) -> Option<&'a str> {
    item.at(&["metadata", "annotations", key])
        .and_then(Node::as_str)
}

fn set_annotation(item: &mut Node, key: &str, value: &str) {
    item.map_entry("metadata")
        .map_entry("annotations")
        .set(key, Node::string(value));
}

/// The file and index kpt recorded for an item.
pub fn file_of(item: &Node) -> Option<(String, Option<u64>)> {
    let path = annotation(item, PATH).or_else(|| annotation(item, LEGACY_PATH))?;
    let index = annotation(item, INDEX)
        .or_else(|| annotation(item, LEGACY_INDEX))
        .and_then(|i| i.parse().ok());
    Some((path.to_string(), index))
}

/// The Kptfile and `local-config` objects are package metadata, not
/// resources: never generated, replaced or linted.
pub fn is_package_metadata(item: &Node) -> bool {
    item.get("kind").and_then(Node::as_str) == Some("Kptfile")
        || annotation(item, LOCAL_CONFIG) == Some("true")
}

/// The ResourceList's functionConfig, if one was given. `kpt fn eval`
/// without `--fn-config` or `-- KEY=VALUE` arguments passes an empty
/// ConfigMap named `function-input`, which counts as none.
pub fn given_function_config(list: &ResourceList) -> Option<&Node> {
    let fc = list.doc.get("functionConfig").filter(|n| !n.is_null())?;
    let kpt_default = fc.get("kind").and_then(Node::as_str) == Some("ConfigMap")
        && fc
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Node::as_str)
            == Some("function-input")
        && fc
            .get("data")
            .is_none_or(|d| d.is_null() || matches!(d, Node::Map(pairs) if pairs.is_empty()));
    (!kpt_default).then_some(fc)
}

/// Runs the generator on ResourceList text.
pub fn generate(input: &str) -> Outcome {
    let list = match ResourceList::parse(input) {
        Ok(l) => l,
        Err(e) => return failure(e),
    };
    let Some(fc) = given_function_config(&list) else {
        let r = ResultItem::new(
            Severity::Error,
            "no functionConfig: pass the EgressGateway file, e.g. `kpt fn eval DIR --exec \"egressgen fn\" --fn-config egress.yaml`",
        );
        let items = list.unchanged();
        return list.finish(items, &[r]);
    };
    let (cfg, notes) = match function_config(fc) {
        Ok(c) => c,
        Err(r) => {
            let items = list.unchanged();
            return list.finish(items, &[*r]);
        }
    };
    let fc_path = file_of(fc).map(|(p, _)| p);
    let mut results = notes;
    match generate_items(&cfg, &list.items, fc_path.as_deref()) {
        Ok((items, warnings)) => {
            results.extend(warnings);
            list.finish(items, &results)
        }
        Err(errors) => {
            results.extend(errors);
            let items = list.unchanged();
            list.finish(items, &results)
        }
    }
}

/// Renders `cfg` and merges the objects into `items`.
fn generate_items(
    cfg: &Config,
    items: &[Node],
    fc_path: Option<&str>,
) -> Result<(Vec<Item>, Vec<ResultItem>), Vec<ResultItem>> {
    let rendered =
        render::render(cfg).map_err(|e| vec![ResultItem::new(Severity::Error, e.to_string())])?;
    let mut objects = node::parse(&rendered.manifest).map_err(|e| {
        vec![ResultItem::new(
            Severity::Error,
            format!("internal error: the rendered manifest does not parse: {e}"),
        )]
    })?;
    let warnings = rendered
        .warnings
        .iter()
        .map(|w| ResultItem::new(Severity::Warning, w.clone()))
        .collect();
    let wanted: BTreeSet<Id> = objects.iter().filter_map(id).collect();

    // Drop what an earlier run generated; remember where it lived.
    let mut kept = Vec::with_capacity(items.len() + objects.len());
    let mut previous: BTreeMap<Id, (String, Option<u64>)> = BTreeMap::new();
    let mut insert_at = None;
    let mut conflicts = Vec::new();
    for (index, item) in items.iter().enumerate() {
        if is_package_metadata(item) {
            kept.push(Item::Input(index));
            continue;
        }
        let item_id = id(item);
        let ours = annotation(item, GENERATED_BY) == Some(cfg.name.as_str());
        let collides = item_id.as_ref().is_some_and(|i| wanted.contains(i));
        let by = annotation(item, GENERATED_BY);
        let rendered_before = by.is_none()
            && item
                .at(&["metadata", "labels", MANAGED_BY_LABEL])
                .and_then(Node::as_str)
                == Some("egressgen");
        if ours || (collides && rendered_before) {
            insert_at.get_or_insert(kept.len());
            if let (Some(i), Some(f)) = (item_id, file_of(item)) {
                previous.insert(i, f);
            }
            continue;
        }
        if collides {
            let why = match by {
                Some(other) => format!("is generated by EgressGateway {}", quoted(other)),
                None => "is not managed by egressgen".to_string(),
            };
            conflicts.push(ResultItem {
                message: format!(
                    "this object has the name of one EgressGateway {} generates, and {why}; rename one of them",
                    quoted(&cfg.name)
                ),
                severity: Severity::Error,
                resource: resource_ref(item),
                field: Some("metadata.name".into()),
                file: file_of(item),
            });
        }
        kept.push(Item::Input(index));
    }
    if !conflicts.is_empty() {
        return Err(conflicts);
    }

    // New objects go next to the functionConfig (or at the package root),
    // in one file, unless an earlier run's file is known.
    let default_path = previous
        .values()
        .next()
        .map(|(p, _)| p.clone())
        .unwrap_or_else(|| {
            let file = format!("egressgen-{}.yaml", cfg.name);
            match fc_path.and_then(|p| p.rsplit_once('/')) {
                Some((dir, _)) => format!("{dir}/{file}"),
                None => file,
            }
        });
    // After every index already used in that file (earlier objects
    // included, whose indices are reused).
    let mut next_index = items
        .iter()
        .filter_map(file_of)
        .filter(|(p, _)| *p == default_path)
        .filter_map(|(_, i)| i)
        .max()
        .map_or(0, |i| i + 1);
    for obj in &mut objects {
        let (path, index) = match id(obj).and_then(|i| previous.get(&i).cloned()) {
            Some((p, Some(i))) => (p, i),
            _ => {
                let i = next_index;
                next_index += 1;
                (default_path.clone(), i)
            }
        };
        set_annotation(obj, GENERATED_BY, &cfg.name);
        let index = index.to_string();
        for (k, v) in [
            (PATH, path.as_str()),
            (LEGACY_PATH, path.as_str()),
            (INDEX, index.as_str()),
            (LEGACY_INDEX, index.as_str()),
        ] {
            set_annotation(obj, k, v);
        }
    }
    let at = insert_at.unwrap_or(kept.len());
    kept.splice(at..at, objects.into_iter().map(Item::New));
    Ok((kept, warnings))
}

/// The config from a `functionConfig` (an `EgressGateway` object, or the
/// kpt ConfigMap form), with its notes as info results.
pub(crate) fn function_config(fc: &Node) -> Result<(Config, Vec<ResultItem>), Box<ResultItem>> {
    let file = file_of(fc);
    let kind = fc.get("kind").and_then(Node::as_str).unwrap_or_default();
    let api = fc
        .get("apiVersion")
        .and_then(Node::as_str)
        .unwrap_or_default();
    let (text, paths, from_configmap) = match (api, kind) {
        (_, config::KIND) => {
            let (text, paths) = node::to_string_with_paths(fc);
            (text, paths, false)
        }
        ("v1", "ConfigMap") => {
            let eg = from_configmap(fc).map_err(|(key, message)| {
                Box::new(ResultItem {
                    message,
                    severity: Severity::Error,
                    resource: resource_ref(fc),
                    field: Some(if key.is_empty() {
                        "data".to_string()
                    } else {
                        format!("data.{key}")
                    }),
                    file: file.clone(),
                })
            })?;
            let (text, paths) = node::to_string_with_paths(&eg);
            (text, paths, true)
        }
        _ => {
            return Err(Box::new(ResultItem {
                message: format!(
                    "the functionConfig is a {} ({}); expected an EgressGateway ({}) or a v1 ConfigMap whose data holds `domains`",
                    quoted(kind),
                    quoted(api),
                    config::API_VERSION
                ),
                severity: Severity::Error,
                resource: resource_ref(fc),
                field: None,
                file,
            }));
        }
    };
    // Positions in the text we parsed, back to the user's field.
    let field_at = |at: Option<&config::Pos>| {
        let field = at
            .and_then(|p| paths.get((p.line as usize).checked_sub(1)?))
            .filter(|p| !p.is_empty())
            .cloned();
        if from_configmap {
            // The name comes from `data.name` when given, else from the
            // ConfigMap's own name.
            let has_name = fc.at(&["data", "name"]).is_some();
            field.map(|f| match configmap_key_for(&f) {
                "name" if !has_name => "metadata.name".to_string(),
                key => format!("data.{key}"),
            })
        } else {
            field
        }
    };
    match config::parse("functionConfig", &text, &Overrides::default()) {
        Ok((cfg, notes)) => {
            let notes = notes
                .iter()
                .map(|n| ResultItem {
                    message: n.message.clone(),
                    severity: Severity::Info,
                    resource: resource_ref(fc),
                    field: field_at(n.at.as_ref()),
                    file: file.clone(),
                })
                .collect();
            Ok((cfg, notes))
        }
        Err(e) => {
            let mut message = e.message.clone();
            if let Some(help) = &e.help {
                message.push_str("\n  help: ");
                message.push_str(help);
            }
            Err(Box::new(ResultItem {
                message,
                severity: Severity::Error,
                resource: resource_ref(fc),
                field: field_at(e.at.as_ref()),
                file,
            }))
        }
    }
}

#[derive(Clone, Copy)]
enum Shape {
    Str,
    Int,
    Bool,
    List,
    Labels,
}

/// `data` keys of the ConfigMap form and where they go in an EgressGateway.
const CONFIGMAP_KEYS: &[(&str, &[&str], Shape)] = &[
    ("name", &["metadata", "name"], Shape::Str),
    ("domains", &["spec", "domains"], Shape::List),
    ("istioVersion", &["spec", "istio", "version"], Shape::Str),
    ("configNamespace", &["spec", "configNamespace"], Shape::Str),
    ("upstreamPort", &["spec", "upstreamPort"], Shape::Int),
    ("accessLog", &["spec", "accessLog"], Shape::Bool),
    ("lookupFamily", &["spec", "dns", "lookupFamily"], Shape::Str),
    ("gatewayName", &["spec", "gateway", "name"], Shape::Str),
    (
        "gatewayNamespace",
        &["spec", "gateway", "namespace"],
        Shape::Str,
    ),
    ("deployment", &["spec", "gateway", "deployment"], Shape::Str),
    (
        "serviceAccount",
        &["spec", "gateway", "serviceAccount"],
        Shape::Str,
    ),
    (
        "gatewayLabels",
        &["spec", "gateway", "labels"],
        Shape::Labels,
    ),
    (
        "servicePort",
        &["spec", "gateway", "servicePort"],
        Shape::Int,
    ),
    ("targetPort", &["spec", "gateway", "targetPort"], Shape::Int),
    ("replicas", &["spec", "gateway", "replicas"], Shape::Int),
    ("openshift", &["spec", "gateway", "openshift"], Shape::Bool),
];

/// The `data` key that sets an EgressGateway field path.
fn configmap_key_for(field: &str) -> &str {
    CONFIGMAP_KEYS
        .iter()
        .find(|(_, path, _)| {
            let p = path.join(".");
            field == p || field.starts_with(&format!("{p}[")) || field.starts_with(&format!("{p}."))
        })
        .map_or(field, |(k, _, _)| k)
}

/// Splits a list value: one entry per line or comma; `#` starts a comment
/// line; a leading `- ` is allowed so a YAML-looking list also works.
pub fn split_list(s: &str) -> Vec<&str> {
    s.split(['\n', ','])
        .map(|l| l.trim())
        .map(|l| l.strip_prefix("- ").map_or(l, str::trim))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// Builds an EgressGateway from the ConfigMap form. Errors name the key.
fn from_configmap(cm: &Node) -> Result<Node, (String, String)> {
    let empty = Node::Map(Vec::new());
    let data = match cm.get("data") {
        None => &empty,
        Some(d) if d.is_null() => &empty,
        Some(d @ Node::Map(_)) => d,
        Some(_) => return Err(("".into(), "the ConfigMap's data is not a mapping".into())),
    };
    let Node::Map(pairs) = data else {
        unreachable!("checked above")
    };
    let mut eg = Node::map([
        ("apiVersion", Node::string(config::API_VERSION)),
        ("kind", Node::string(config::KIND)),
    ]);
    let cm_name = cm
        .at(&["metadata", "name"])
        .and_then(Node::as_str)
        .unwrap_or("egress");
    eg.map_entry("metadata").set("name", Node::string(cm_name));
    for (k, v) in pairs {
        let key = k.text.as_str();
        let Some((_, path, shape)) = CONFIGMAP_KEYS.iter().find(|(n, _, _)| *n == key) else {
            let known: Vec<&str> = CONFIGMAP_KEYS.iter().map(|(n, _, _)| *n).collect();
            return Err((
                key.to_string(),
                format!(
                    "unknown key {} in the ConfigMap's data\n  help: the keys are {}",
                    quoted(key),
                    known.join(", ")
                ),
            ));
        };
        let text = v.as_str().unwrap_or_default();
        let bad = |what: &str| {
            (
                key.to_string(),
                format!("data.{key} is {}, expected {what}", quoted(text)),
            )
        };
        let value = match shape {
            Shape::Str => Node::string(text),
            Shape::Int => Node::int(
                text.trim()
                    .parse::<u64>()
                    .map_err(|_| bad("a whole number"))?,
            ),
            Shape::Bool => match text.trim() {
                "true" => Node::bool(true),
                "false" => Node::bool(false),
                _ => return Err(bad("`true` or `false`")),
            },
            Shape::List => Node::Seq(split_list(text).into_iter().map(Node::string).collect()),
            Shape::Labels => {
                let mut labels = Vec::new();
                for entry in split_list(text) {
                    let (lk, lv) = entry
                        .split_once('=')
                        .ok_or_else(|| bad("`key=value` pairs"))?;
                    labels.push((lk.trim(), Node::string(lv.trim())));
                }
                Node::map(labels)
            }
        };
        let (last, parents) = path.split_last().expect("paths are not empty");
        let mut at = &mut eg;
        for p in parents {
            at = at.map_entry(p);
        }
        at.set(last, value);
    }
    if eg.at(&["spec", "domains"]).is_none() {
        return Err((
            "domains".into(),
            "the ConfigMap has no data.domains; list the allowed domains there, one per line"
                .into(),
        ));
    }
    Ok(eg)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FC: &str = "functionConfig:\n  apiVersion: egressgen.io/v1alpha1\n  kind: EgressGateway\n  metadata:\n    name: web\n  spec:\n    domains:\n    - api.github.com\n";

    fn list(items: &str) -> String {
        format!("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n{items}{FC}")
    }

    #[test]
    fn generating_twice_changes_nothing() {
        let first = generate(&list(""));
        assert_eq!(first.code, 0, "{first:?}");
        let second = generate(&first.output);
        assert_eq!(second.code, 0, "{second:?}");
        assert_eq!(first.output, second.output);
        assert!(first.output.contains("egressgen.io/generated-by: web"));
        assert!(
            first
                .output
                .contains("internal.config.kubernetes.io/path: egressgen-web.yaml")
        );
    }

    #[test]
    fn other_items_pass_through_unchanged() {
        let item = "- apiVersion: v1 # comment\n  kind: ConfigMap\n  metadata: {name: keep, labels: {a: b}}\n  data:\n    a: 'yes'\n    b: .inf\n    c: |\n      line\n    d: >\n      folded\n";
        let out = generate(&list(item));
        assert_eq!(out.code, 0);
        assert!(
            out.output.starts_with(&format!(
                "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:\n{item}"
            )),
            "{}",
            out.output
        );
    }

    #[test]
    fn items_that_cannot_be_copied_are_emitted() {
        // An alias to another item's anchor: the text alone would not read
        // back, so the emitter writes the expanded value.
        let items = "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n  data: &d {k: v}\n- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: b\n  data: *d\n  x: |\n    \ttab first\n";
        let out = generate(&list(items));
        assert_eq!(out.code, 0, "{out:?}");
        assert!(
            out.output.contains(
                "- apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: a\n  data: &d {k: v}\n"
            ),
            "{}",
            out.output
        );
        assert!(
            out.output.contains("    name: b\n  data:\n    k: v\n"),
            "{}",
            out.output
        );
    }

    #[test]
    fn invalid_config_is_an_error_result() {
        let input = list("").replace("api.github.com", "bad..domain");
        let out = generate(&input);
        assert_eq!(out.code, 1);
        assert!(out.output.contains("severity: error"), "{}", out.output);
        assert!(
            out.output.contains("path: \"spec.domains[0]\""),
            "{}",
            out.output
        );
    }

    #[test]
    fn configmap_form() {
        let input = "apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems: []\nfunctionConfig:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: web\n  data:\n    domains: |\n      api.github.com\n      # comment\n      *.wikipedia.org\n    upstreamPort: \"8443\"\n";
        let out = generate(input);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.output.contains("\"*.wikipedia.org\""));
        let bad = generate(&input.replace("\"8443\"", "lots"));
        assert_eq!(bad.code, 1);
        assert!(
            bad.output.contains("path: data.upstreamPort"),
            "{}",
            bad.output
        );
        // The name comes from the ConfigMap's own name when data has none.
        let bad = generate(&input.replace("name: web", "name: Web_1"));
        assert_eq!(bad.code, 1);
        assert!(bad.output.contains("path: metadata.name"), "{}", bad.output);
        let bad = generate(&input.replace("  data:\n", "  data:\n    name: Web_1\n"));
        assert!(bad.output.contains("path: data.name"), "{}", bad.output);
    }

    #[test]
    fn objects_from_an_earlier_render_are_replaced_in_place() {
        // `egressgen render > manifest.yaml` before adopting the function:
        // the Service is replaced where it was, not duplicated.
        let item = "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: egressgateway\n    namespace: istio-egress\n    labels:\n      app.kubernetes.io/managed-by: egressgen\n    annotations:\n      config.kubernetes.io/path: manifest.yaml\n      config.kubernetes.io/index: '4'\n";
        let out = generate(&list(item));
        assert_eq!(out.code, 0, "{out:?}");
        let doc = node::parse(&out.output).unwrap().remove(0);
        let items = doc.get("items").and_then(Node::as_seq).unwrap();
        let services: Vec<&Node> = items
            .iter()
            .filter(|i| i.get("kind").and_then(Node::as_str) == Some("Service"))
            .collect();
        assert_eq!(services.len(), 1);
        assert_eq!(
            file_of(services[0]),
            Some(("manifest.yaml".into(), Some(4)))
        );
        assert_eq!(annotation(services[0], GENERATED_BY), Some("web"));
    }

    #[test]
    fn foreign_object_with_our_name_is_a_conflict() {
        let item = "- apiVersion: v1\n  kind: Service\n  metadata:\n    name: egressgateway\n    namespace: istio-egress\n";
        let out = generate(&list(item));
        assert_eq!(out.code, 1);
        assert!(
            out.output.contains("is not managed by egressgen"),
            "{}",
            out.output
        );
    }
}
