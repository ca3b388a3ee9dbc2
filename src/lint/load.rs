//! Reading lint input: paths to sources, sources to YAML trees with real
//! line/column positions.
//!
//! This module turns files, directories (recursive `*.yaml`/`*.yml`, with
//! globset include/exclude) and stdin into [`Source`]s, and each source into
//! documents of [`Node`]s. It knows nothing of Istio: `extract` reads the
//! resources out of the trees.
//!
//! The tree is built from `saphyr-parser` events with an explicit stack, not
//! with saphyr's recursive `Parser::load`: a line such as `- - - - ...` nests
//! one level per two bytes and would overflow the stack there. Depth, alias
//! expansion and input size are all bounded, and parsing stops at the first
//! error, so no input can hang, panic or exhaust memory.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use globset::{GlobSet, GlobSetBuilder};
use saphyr::Scalar;
use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::Source;
use crate::escape::quoted;

/// Largest input accepted, per file and for stdin.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// How stdin (`-`) is named unless `--stdin-filename` says otherwise.
pub const STDIN_NAME: &str = "<stdin>";
/// Deepest nesting of mappings and sequences accepted. Kubernetes objects
/// are a few dozen levels deep at most.
pub const MAX_DEPTH: usize = 256;
/// Most nodes that alias expansion (`*anchor`) may create in one source.
pub const MAX_ALIAS_NODES: usize = 100_000;

/// A 1-based position in a source; `column` counts characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    fn from_span(span: &Span) -> Pos {
        Pos {
            line: u32::try_from(span.start.line()).unwrap_or(u32::MAX).max(1),
            column: u32::try_from(span.start.col() + 1).unwrap_or(u32::MAX),
        }
    }
}

/// A YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub at: Pos,
    pub value: Value,
    /// The boolean kubectl reads for this plain scalar where YAML 1.2 reads
    /// a string: `yes`, `on`, `y` and the like (see [`kubectl_bool`]).
    pub kubectl_bool: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in document order, keys with their own positions.
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The value under string key `key`, if this is a mapping that has it.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.entry(key).map(|(_, v)| v)
    }

    /// The key node and value node under `key`.
    pub fn entry(&self, key: &str) -> Option<(&Node, &Node)> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(k, v)| (k, v)),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn path(&self, keys: &[&str]) -> Option<&Node> {
        keys.iter().try_fold(self, |n, k| n.get(k))
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match &self.value {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// Items of the sequence under `key`; empty when it is missing or not
    /// a sequence.
    pub fn list(&self, key: &str) -> &[Node] {
        self.get(key).map(Node::items).unwrap_or(&[])
    }

    /// Items of a sequence; empty for anything else.
    pub fn items(&self) -> &[Node] {
        match &self.value {
            Value::Seq(items) => items,
            _ => &[],
        }
    }

    /// Entries of a mapping; empty for anything else.
    pub fn entries(&self) -> &[(Node, Node)] {
        match &self.value {
            Value::Map(entries) => entries,
            _ => &[],
        }
    }

    /// A scalar shown as text (for ports, labels and messages).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            Value::Str(s) => Some(s.clone()),
            Value::Int(i) => Some(i.to_string()),
            Value::Float(f) => Some(f.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// The node as JSON, for schema validation: as the API server gets it
    /// from kubectl, so `yes` is a boolean (see [`kubectl_bool`]).
    /// Non-string keys become their text, as Kubernetes would reject them
    /// anyway.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        if let Some(b) = self.kubectl_bool {
            return J::Bool(b);
        }
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(items.iter().map(Node::to_json).collect()),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.scalar_text().unwrap_or_default(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// One YAML document of a source.
#[derive(Debug, Clone)]
pub struct Document {
    /// Index into the sources given to [`super::run`].
    pub source: usize,
    pub root: Node,
}

/// Input that cannot be linted: the user must fix it (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    pub file: String,
    pub at: Option<Pos>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A file name is untrusted too (a repository can hold any name).
        let file = crate::escape::escaped(&self.file);
        match self.at {
            Some(at) => write!(f, "{file}:{}:{}: ", at.line, at.column)?,
            None if !self.file.is_empty() => write!(f, "{file}: ")?,
            None => {}
        }
        write!(f, "error: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for InputError {}

/// Parses every document of `text`. Stops at the first error.
pub fn parse(source: usize, name: &str, text: &str) -> Result<Vec<Document>, InputError> {
    let err = |at: Option<Pos>, message: String| InputError {
        file: name.to_string(),
        at,
        help: Some(yaml_help(&message).into()),
        message,
    };
    let mut docs = Vec::new();
    let mut builder = Builder::default();
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            err(
                Some(Pos {
                    line: u32::try_from(m.line()).unwrap_or(u32::MAX).max(1),
                    column: u32::try_from(m.col() + 1).unwrap_or(u32::MAX),
                }),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        match builder.event(event, &span) {
            Ok(Some(root)) => docs.push(Document { source, root }),
            Ok(None) => {}
            Err(message) => {
                let at = builder.error_at.unwrap_or_else(|| Pos::from_span(&span));
                return Err(err(Some(at), message));
            }
        }
    }
    Ok(docs)
}

/// What to do about a YAML error, by what the parser (or the builder below)
/// said.
fn yaml_help(message: &str) -> &'static str {
    if message.contains("tabs") {
        "indent with spaces: YAML does not allow tabs in indentation"
    } else if message.contains("duplicate key") {
        "remove one of the two"
    } else if message.contains("unknown anchor") {
        "define the anchor (`&name`) before an alias (`*name`) uses it"
    } else if message.contains("nesting deeper") || message.contains("aliases expand") {
        "lint only Kubernetes manifests; leave other YAML out with --exclude"
    } else {
        "fix the YAML here; quote a value that holds `: ` or ` #`, or starts with `*`, `&`, `!`, \
         `[` or `{`"
    }
}

/// A collection being built: its start, its items, and a pending key.
enum Open {
    Seq(Node, Option<usize>),
    Map(Node, Option<Node>, Option<usize>),
}

#[derive(Default)]
struct Builder {
    stack: Vec<Open>,
    anchors: std::collections::HashMap<usize, Node>,
    alias_nodes: usize,
    root: Option<Node>,
    /// Where an error is, when not at the current event.
    error_at: Option<Pos>,
}

impl Builder {
    /// Feeds one event; returns a finished document.
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<Option<Node>, String> {
        let at = Pos::from_span(span);
        match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                self.anchors.clear();
                self.root = None;
            }
            Event::DocumentEnd => return Ok(self.root.take()),
            Event::Scalar(text, style, anchor, tag) => {
                let kubectl_bool = (style == ScalarStyle::Plain && tag.is_none())
                    .then(|| kubectl_bool(&text))
                    .flatten();
                let value = scalar(text, style, tag.as_ref());
                self.push(
                    Node {
                        at,
                        value,
                        kubectl_bool,
                    },
                    anchor,
                )?;
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .get(&id)
                    .cloned()
                    .ok_or_else(|| "alias to an unknown anchor".to_string())?;
                self.alias_nodes += count_nodes(&node);
                if self.alias_nodes > MAX_ALIAS_NODES {
                    return Err(format!(
                        "aliases expand to more than {MAX_ALIAS_NODES} nodes; refusing (a \"billion laughs\" input?)"
                    ));
                }
                self.push(Node { at, ..node }, 0)?;
            }
            Event::SequenceStart(anchor, _) => {
                self.open(Open::Seq(
                    Node {
                        at,
                        value: Value::Seq(Vec::new()),
                        kubectl_bool: None,
                    },
                    (anchor > 0).then_some(anchor),
                ))?;
            }
            Event::MappingStart(anchor, _) => {
                self.open(Open::Map(
                    Node {
                        at,
                        value: Value::Map(Vec::new()),
                        kubectl_bool: None,
                    },
                    None,
                    (anchor > 0).then_some(anchor),
                ))?;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(n, a)) => (n, a),
                    Some(Open::Map(mut n, _, a)) => {
                        merge_keys(&mut n);
                        (n, a)
                    }
                    None => return Err("unbalanced collection end".into()),
                };
                self.push(node, anchor.unwrap_or(0))?;
            }
        }
        Ok(None)
    }

    fn open(&mut self, open: Open) -> Result<(), String> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(format!(
                "nesting deeper than {MAX_DEPTH} levels; this is not a Kubernetes manifest"
            ));
        }
        self.stack.push(open);
        Ok(())
    }

    /// Adds a finished node to the open collection, or makes it the root.
    fn push(&mut self, node: Node, anchor: usize) -> Result<(), String> {
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq(seq, _)) => {
                if let Value::Seq(items) = &mut seq.value {
                    items.push(node);
                }
            }
            Some(Open::Map(map, key, _)) => match key.take() {
                None => *key = Some(node),
                Some(k) => {
                    if let Value::Map(entries) = &mut map.value {
                        // Several merge keys are allowed (go-yaml applies each).
                        if let Some(name) = k.as_str().filter(|n| *n != "<<") {
                            if entries.iter().any(|(old, _)| old.as_str() == Some(name)) {
                                self.error_at = Some(k.at);
                                return Err(format!(
                                    "duplicate key {}; YAML requires unique keys and kubectl rejects them",
                                    quoted(name)
                                ));
                            }
                        }
                        entries.push((k, node));
                    }
                }
            },
        }
        Ok(())
    }
}

/// Resolves YAML merge keys (`<<: *base`, `<<: [*a, *b]`) in a mapping as
/// kubectl does. Its YAML reader (`sigs.k8s.io/yaml`'s fork of go-yaml v2,
/// `decoder.mapping`) applies a mapping's entries in document order, each
/// setting its key: a merge sets every key of the merged mapping, over
/// what came before it, and a later key overrides a merge. In a list of
/// merged mappings the earlier ones win (applied last). Merged entries
/// keep their positions (in the anchored mapping). A `<<` whose value is
/// no mapping stays as it is, for the schema check to report.
fn merge_keys(map: &mut Node) {
    let Value::Map(entries) = &mut map.value else {
        return;
    };
    let is_merge = |k: &Node| k.as_str() == Some("<<");
    if !entries.iter().any(|(k, _)| is_merge(k)) {
        return;
    }
    let set = |out: &mut Vec<(Node, Node)>, k: Node, v: Node| match out
        .iter_mut()
        .find(|(o, _)| o.as_str().is_some() && o.as_str() == k.as_str())
    {
        Some(slot) => *slot = (k, v),
        None => out.push((k, v)),
    };
    let mut out: Vec<(Node, Node)> = Vec::new();
    for (key, value) in std::mem::take(entries) {
        if !is_merge(&key) {
            set(&mut out, key, value);
            continue;
        }
        let sources = match value.value {
            Value::Map(_) => vec![value],
            Value::Seq(items) if items.iter().all(|i| matches!(i.value, Value::Map(_))) => {
                items.into_iter().rev().collect()
            }
            _ => {
                out.push((key, value));
                continue;
            }
        };
        for source in sources {
            if let Value::Map(merged) = source.value {
                for (k, v) in merged {
                    set(&mut out, k, v);
                }
            }
        }
    }
    *entries = out;
}

/// The boolean that kubectl, reading YAML 1.1 (`sigs.k8s.io/yaml` on
/// go-yaml v2, `resolve.go`), makes of a plain scalar that YAML 1.2 reads
/// as a string. The API server then refuses it where a string belongs
/// (kubernetes/kubernetes#34146).
pub fn kubectl_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" => Some(true),
        "n" | "N" | "no" | "No" | "NO" | "off" | "Off" | "OFF" => Some(false),
        _ => None,
    }
}

/// Resolves a scalar by the YAML 1.2 core schema, as saphyr does, and a
/// `!!binary` one to its decoded text, as kubectl sends it.
fn scalar(
    text: Cow<'_, str>,
    style: ScalarStyle,
    tag: Option<&Cow<'_, saphyr_parser::Tag>>,
) -> Value {
    if tag.is_some_and(|t| t.is_yaml_core_schema() && t.suffix == "binary")
        && let Some(decoded) = binary(&text)
    {
        return Value::Str(decoded);
    }
    match Scalar::parse_from_cow_and_metadata(text.clone(), style, tag) {
        Some(Scalar::Null) => Value::Null,
        Some(Scalar::Boolean(b)) => Value::Bool(b),
        Some(Scalar::Integer(i)) => Value::Int(i),
        Some(Scalar::FloatingPoint(f)) => Value::Float(f.into_inner()),
        Some(Scalar::String(s)) => Value::Str(s.into_owned()),
        // A core-schema tag whose text does not fit (`!!int abc`): keep the text.
        None => Value::Str(text.into_owned()),
    }
}

/// The text kubectl makes of a `!!binary` scalar: go-yaml v2 decodes it
/// with Go's `base64.StdEncoding`, which skips line breaks, and
/// `encoding/json` sends bytes that are not UTF-8 as U+FFFD. So a host
/// written as `!!binary ZXZpbC5leGFtcGxlLmNvbQ==` is linted as the
/// `evil.example.com` the cluster gets. `None` for data that is not
/// base64, which kubectl refuses.
fn binary(text: &str) -> Option<String> {
    use base64::Engine;
    use base64::engine::{GeneralPurpose, GeneralPurposeConfig};
    // Go's StdEncoding is not Strict: it ignores bits after the last byte
    // (`YR==` is `a`, as `YQ==` is).
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let packed: String = text.chars().filter(|c| !matches!(c, '\n' | '\r')).collect();
    let bytes = GO_STD.decode(packed).ok()?;
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

fn count_nodes(node: &Node) -> usize {
    let mut n = 0;
    let mut todo = vec![node];
    while let Some(x) = todo.pop() {
        n += 1;
        match &x.value {
            Value::Seq(items) => todo.extend(items),
            Value::Map(entries) => todo.extend(entries.iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
    n
}

/// Which files under a directory to lint.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
}

impl Filter {
    /// Builds a filter from `--include` and `--exclude` globs (globset syntax;
    /// `*` does not cross `/`, `**` does).
    pub fn new(include: &[String], exclude: &[String]) -> Result<Filter, InputError> {
        let build = |globs: &[String], flag: &str| -> Result<Option<GlobSet>, InputError> {
            if globs.is_empty() {
                return Ok(None);
            }
            let mut b = GlobSetBuilder::new();
            for g in globs {
                let glob = globset::GlobBuilder::new(g)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| InputError {
                        file: String::new(),
                        at: None,
                        message: format!("{flag} {}: {e}", quoted(g)),
                        help: Some("globs use globset syntax, e.g. 'charts/**'".into()),
                    })?;
                b.add(glob);
            }
            b.build().map(Some).map_err(|e| InputError {
                file: String::new(),
                at: None,
                message: format!("{flag}: {e}"),
                help: None,
            })
        };
        Ok(Filter {
            include: build(include, "--include")?,
            exclude: build(exclude, "--exclude")?,
        })
    }

    /// `rel` is the path relative to the directory given on the command line.
    fn wants(&self, rel: &Path, shown: &Path) -> bool {
        let matches = |set: &GlobSet| {
            set.is_match(rel)
                || set.is_match(shown)
                || rel.file_name().is_some_and(|n| set.is_match(n))
        };
        // A folder is excluded by its path or by its name, as a file is.
        if self.exclude.as_ref().is_some_and(|s| {
            matches(s)
                || rel.ancestors().skip(1).any(|a| {
                    !a.as_os_str().is_empty()
                        && (s.is_match(a) || a.file_name().is_some_and(|n| s.is_match(n)))
                })
        }) {
            return false;
        }
        match &self.include {
            Some(set) => matches(set),
            None => is_yaml_name(rel),
        }
    }
}

fn is_yaml_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// Reads every path: files as given, directories recursively through
/// `filter`, `-` from stdin (named `stdin_name`). Sources come out in a
/// stable order: arguments in order, directory entries sorted.
pub fn read_paths(
    paths: &[PathBuf],
    filter: &Filter,
    stdin_name: &str,
) -> Result<Vec<Source>, InputError> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            let text = read_limited(std::io::stdin().lock(), stdin_name)?;
            sources.push(Source {
                name: stdin_name.to_string(),
                text,
            });
            continue;
        }
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|e| InputError {
            file: shown.clone(),
            at: None,
            message: format!("cannot read {}: {}", quoted(&shown), io_reason(&e)),
            help: Some("pass existing files or directories, or `-` for stdin".into()),
        })?;
        if meta.is_dir() {
            let mut files = Vec::new();
            walk(path, path, filter, &mut files, 0)?;
            if files.is_empty() {
                return Err(InputError {
                    file: shown,
                    at: None,
                    message: "directory holds no YAML files (looked for *.yaml and *.yml, recursively)".into(),
                    help: Some("point lint at the folder with your manifests, or check --include/--exclude".into()),
                });
            }
            for f in files {
                sources.push(read_file(&f)?);
            }
        } else {
            sources.push(read_file(path)?);
        }
    }
    Ok(sources)
}

/// Symlinked directories are not followed, so a link loop cannot hang us.
fn walk(
    root: &Path,
    dir: &Path,
    filter: &Filter,
    out: &mut Vec<PathBuf>,
    depth: usize,
) -> Result<(), InputError> {
    if depth > 64 {
        return Ok(());
    }
    let shown = dir.display().to_string();
    let rd = std::fs::read_dir(dir).map_err(|e| InputError {
        file: shown.clone(),
        at: None,
        message: format!("cannot list {}: {}", quoted(&shown), io_reason(&e)),
        help: None,
    })?;
    let mut entries: Vec<_> = rd.filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let Ok(ft) = entry.file_type() else { continue };
        let rel = path.strip_prefix(root).unwrap_or(&path);
        if ft.is_dir() {
            // Skip hidden folders such as .git.
            if entry.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            walk(root, &path, filter, out, depth + 1)?;
        } else if filter.wants(rel, &path)
            && (ft.is_file()
                // A link to a file is read; a link to a folder is not followed.
                || ft.is_symlink() && std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()))
        {
            out.push(path);
        }
    }
    Ok(())
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn read_file(path: &Path) -> Result<Source, InputError> {
    let name = path.display().to_string();
    let f = std::fs::File::open(path).map_err(|e| InputError {
        file: name.clone(),
        at: None,
        message: format!("cannot read {}: {}", quoted(&name), io_reason(&e)),
        help: None,
    })?;
    // Refuse a huge regular file before reading a byte of it.
    if f.metadata()
        .is_ok_and(|m| m.is_file() && m.len() > MAX_INPUT_BYTES)
    {
        return Err(too_large(&name));
    }
    let text = read_limited(f, &name)?;
    Ok(Source { name, text })
}

/// Reads at most [`MAX_INPUT_BYTES`] and checks the bytes are text.
fn read_limited(r: impl Read, name: &str) -> Result<String, InputError> {
    let mut buf = Vec::new();
    r.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| InputError {
            file: name.to_string(),
            at: None,
            message: format!("cannot read {}: {}", quoted(name), io_reason(&e)),
            help: None,
        })?;
    if buf.len() as u64 > MAX_INPUT_BYTES {
        return Err(too_large(name));
    }
    text_from_bytes(buf, name)
}

fn too_large(name: &str) -> InputError {
    InputError {
        file: name.to_string(),
        at: None,
        message: format!(
            "input is larger than {} MiB; refusing to lint it",
            MAX_INPUT_BYTES / 1024 / 1024
        ),
        help: Some("split the manifest into several files".into()),
    }
}

/// UTF-8 without NUL bytes, or a message that says where it is not.
pub fn text_from_bytes(buf: Vec<u8>, name: &str) -> Result<String, InputError> {
    if let Some(i) = buf.iter().position(|&b| b == 0) {
        return Err(not_text(&buf, i, "binary data (a NUL byte)", name));
    }
    String::from_utf8(buf).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        not_text(e.as_bytes(), at, "invalid UTF-8", name)
    })
}

/// "Not text" at byte `at` of `buf`, with its line and column.
fn not_text(buf: &[u8], at: usize, what: &str, name: &str) -> InputError {
    let before = &buf[..at.min(buf.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    let column = String::from_utf8_lossy(&before[line_start..])
        .chars()
        .count()
        + 1;
    InputError {
        file: name.to_string(),
        at: Some(Pos {
            line: u32::try_from(line).unwrap_or(u32::MAX),
            column: u32::try_from(column).unwrap_or(u32::MAX),
        }),
        message: format!("not a YAML text file: {what} at byte {at}"),
        help: Some("egressgen reads UTF-8 YAML manifests; check the path".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `!!binary` decodes as go-yaml v2 (Go's `base64.StdEncoding`) does:
    /// line breaks skipped, padding required, stray low bits ignored.
    #[test]
    fn binary_scalars_decode_as_go_does() {
        assert_eq!(binary("YQ==").as_deref(), Some("a"));
        assert_eq!(binary("YR==").as_deref(), Some("a"));
        assert_eq!(
            binary("ZXZp\nbC5leGFtcGxl\r\nLmNvbR==").as_deref(),
            Some("evil.example.com")
        );
        assert_eq!(binary("YQ"), None);
        assert_eq!(binary("Y Q=="), None);
    }

    #[test]
    fn positions_are_real_lines_across_documents() {
        let text = "a: 1\n---\n# c\nkind: List\nitems:\n  - name: \"x\"\n";
        let docs = parse(0, "t", text).unwrap();
        assert_eq!(docs.len(), 2);
        let item = &docs[1].root.get("items").unwrap().items()[0];
        let (k, v) = item.entry("name").unwrap();
        assert_eq!((k.at.line, k.at.column), (6, 5));
        assert_eq!(v.as_str(), Some("x"));
        assert_eq!(v.at.line, 6);
    }

    #[test]
    fn merge_keys_are_resolved_as_kubectl_does() {
        let text = "base: &b {hosts: [a.com], port: 1, tls: b}\nmore: &m {port: 2, tls: m}\nse:\n  <<: [*b, *m]\n  port: 3\nlate:\n  hosts: [own.com]\n  <<: *b\n  <<: *m\nbad:\n  <<: 5\n";
        let docs = parse(0, "t", text).unwrap();
        let se = docs[0].root.get("se").unwrap();
        // A later key overrides the merge; in a list, the earlier mapping wins.
        assert_eq!(se.get("port").unwrap().as_i64(), Some(3));
        assert_eq!(se.get("tls").unwrap().as_str(), Some("b"));
        // A merged entry keeps its own position, in the anchored mapping.
        assert_eq!(se.get("hosts").unwrap().at.line, 1);
        // A merge after a key overrides it, and a later merge an earlier one.
        let late = docs[0].root.get("late").unwrap();
        assert_eq!(
            late.get("hosts").unwrap().items()[0].as_str(),
            Some("a.com")
        );
        assert_eq!(late.get("tls").unwrap().as_str(), Some("m"));
        // Not mergeable: left for the schema check to report.
        assert!(docs[0].root.get("bad").unwrap().get("<<").is_some());
    }

    #[test]
    fn core_schema_scalars() {
        let docs = parse(0, "t", "a: 443\nb: '443'\nc: true\nd: ~\ne: yes\n").unwrap();
        let r = &docs[0].root;
        assert_eq!(r.get("a").unwrap().as_i64(), Some(443));
        assert_eq!(r.get("b").unwrap().as_str(), Some("443"));
        assert_eq!(r.get("c").unwrap().value, Value::Bool(true));
        assert_eq!(r.get("d").unwrap().value, Value::Null);
        assert_eq!(r.get("e").unwrap().as_str(), Some("yes"));
    }

    #[test]
    fn deep_nesting_and_alias_bombs_are_refused() {
        let deep = "- ".repeat(100_000) + "x\n";
        assert!(
            parse(0, "t", &deep)
                .unwrap_err()
                .message
                .contains("nesting")
        );
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..8 {
            let prev = if i == 0 {
                "a".to_string()
            } else {
                format!("b{}", i - 1)
            };
            bomb.push_str(&format!(
                "b{i}: &b{i} [{}]\n",
                vec![format!("*{prev}"); 10].join(", ")
            ));
        }
        assert!(
            parse(0, "t", &bomb)
                .unwrap_err()
                .message
                .contains("aliases")
        );
    }

    #[test]
    fn errors_carry_the_position() {
        let e = parse(0, "m.yaml", "a: 1\n---\nb: [1, 2\n").unwrap_err();
        assert_eq!(e.file, "m.yaml");
        assert!(e.at.unwrap().line >= 3, "{e}");
        let e = parse(0, "m.yaml", "a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.at.unwrap().line, 2, "{e}");
    }
}
