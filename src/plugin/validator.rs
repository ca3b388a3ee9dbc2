//! `egressgen fn lint`: the lint rules as a KRM validator (kpt `validators:`,
//! `kpt fn eval --exec "egressgen fn lint"`).
//!
//! Items are grouped by the file kpt says they came from and handed to
//! [`crate::lint::run`] as one set; each finding becomes a result with
//! `resourceRef`, `field.path` and `file` (path and index). A
//! `functionConfig` (an `EgressGateway`, or the ConfigMap form), or else the
//! package's only `EgressGateway` item, is the source of truth, so a package
//! whose host lists drifted from it fails.
//! Items are passed through untouched; exit 1 on any error.

use std::collections::BTreeMap;

use crate::lint::{self, Source};
use crate::plugin::krm::{
    self, Outcome, ResourceList, ResultItem, Severity, file_of, is_package_metadata, resource_ref,
};
use crate::plugin::node::{self, Node};

/// Name of the source holding items kpt gave no file for.
const NO_FILE: &str = "<resource list>";

/// One source built from items: its documents' first lines and items.
struct Group {
    source: Source,
    /// (first line of the document, index of the item in the input).
    starts: Vec<(u32, usize)>,
}

pub fn validate(input: &str) -> Outcome {
    let list = match ResourceList::parse(input) {
        Ok(l) => l,
        Err(e) => return krm::failure(e),
    };
    let items = list.items.clone();
    let mut opts = lint::Options::default();
    // The functionConfig, else the package's own EgressGateway when it has
    // exactly one (so a validator needs no configPath).
    let given = krm::given_function_config(&list);
    let in_package: Vec<&Node> = items
        .iter()
        .filter(|i| i.get("kind").and_then(Node::as_str) == Some(crate::config::KIND))
        .collect();
    let fc = given.or(match in_package.as_slice() {
        [one] => Some(*one),
        _ => None,
    });
    if let Some(fc) = fc {
        match krm::function_config(fc) {
            Ok((cfg, _notes)) => match file_of(fc) {
                Some((path, _)) => opts.config_from_file(cfg, &path),
                None => opts.config_inline(cfg),
            },
            Err(r) => {
                let unchanged = list.unchanged();
                return list.finish(unchanged, &[*r]);
            }
        }
    }
    let groups = group(&items);
    let sources: Vec<Source> = groups.iter().map(|g| g.source.clone()).collect();
    let report = lint::run(&sources, &opts);
    let mut results = Vec::new();
    for e in &report.input_errors {
        let mut r = ResultItem {
            message: e.message.clone(),
            severity: Severity::Error,
            resource: None,
            field: None,
            file: Some((e.file.clone(), None)),
        };
        if let Some(h) = &e.help {
            r.message.push_str("\n  help: ");
            r.message.push_str(h);
        }
        results.push(r);
    }
    for f in &report.findings {
        let item = groups
            .iter()
            .find(|g| g.source.name == f.file)
            .and_then(|g| g.starts.iter().rev().find(|(line, _)| *line <= f.line))
            .map(|&(_, i)| i);
        let mut message = format!("{}: {}", f.code, f.message);
        if let Some(h) = &f.help {
            message.push_str("\n  help: ");
            message.push_str(h);
        }
        let resource = item.and_then(|i| resource_ref(&items[i])).or_else(|| {
            f.resource.as_ref().map(|r| krm::ResourceRef {
                api_version: String::new(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                namespace: r.namespace.clone(),
            })
        });
        let file = match item.and_then(|i| file_of(&items[i])) {
            Some(f) => Some(f),
            None if f.file != NO_FILE => Some((f.file.clone(), None)),
            None => None,
        };
        results.push(ResultItem {
            message,
            severity: match f.severity {
                lint::Severity::Error => Severity::Error,
                lint::Severity::Warning => Severity::Warning,
            },
            resource,
            field: (!f.field_path.is_empty()).then(|| f.field_path.clone()),
            file,
        });
    }
    let unchanged = list.unchanged();
    list.finish(unchanged, &results)
}

/// Items by file, in their order in the file, as multi-document sources.
fn group(items: &[Node]) -> Vec<Group> {
    let mut by_file: BTreeMap<String, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        if is_package_metadata(item) {
            continue;
        }
        let (path, index) = file_of(item).unwrap_or_else(|| (NO_FILE.to_string(), None));
        by_file
            .entry(path)
            .or_default()
            .push((index.unwrap_or(i as u64), i));
    }
    by_file
        .into_iter()
        .map(|(name, mut docs)| {
            docs.sort();
            let mut text = String::new();
            let mut starts = Vec::with_capacity(docs.len());
            let mut line = 1u32;
            for (k, (_, i)) in docs.iter().enumerate() {
                if k > 0 {
                    text.push_str("---\n");
                    line += 1;
                }
                starts.push((line, *i));
                let doc = node::to_string(&items[*i]);
                line += doc.matches('\n').count() as u32;
                text.push_str(&doc);
            }
            Group {
                source: Source { name, text },
                starts,
            }
        })
        .collect()
}
