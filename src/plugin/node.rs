//! A YAML tree that passes Kubernetes objects through unchanged, and its
//! emitter.
//!
//! KRM functions must hand back every item they do not own exactly as they
//! got it. A typed round trip (YAML -> JSON value -> YAML) would turn `.inf`
//! into null, lose big integers and restyle strings, so this tree never
//! resolves scalars: each keeps its text, its style and its tag as read, and
//! the emitter writes it back so any YAML 1.1 or 1.2 reader resolves it to the
//! same value. Mappings keep their key order. Not kept: comments, anchors
//! (aliases are expanded) and flow style (collections are written in block
//! style). Values we create are quoted whenever a plain scalar could read
//! back as anything else, so no input can add a key or a document.

use std::fmt::Write;

use saphyr::{Yaml, YamlLoader};

/// Inputs larger than this are refused rather than read.
pub const MAX_INPUT_BYTES: usize = 256 * 1024 * 1024;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    /// `|` or `>` blocks; folded blocks are written back as literal blocks,
    /// which hold the same string.
    Block,
}

/// A scalar as written: unresolved text, style and tag (`!!str`, `!foo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    pub tag: Option<String>,
}

/// One YAML node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys are scalars (Kubernetes objects are JSON, so nothing else occurs).
    Map(Vec<(Scalar, Node)>),
    /// A collection with a local tag such as `!foo`.
    Tagged(String, Box<Node>),
}

/// A YAML syntax error, or YAML this tree cannot carry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub message: String,
    /// 1-based line and column, when known.
    pub line: Option<(usize, usize)>,
}

impl Node {
    /// A string value: plain when unambiguous, double-quoted otherwise.
    pub fn string(s: &str) -> Node {
        let style = if crate::render::yaml::is_plain_safe(s) {
            Style::Plain
        } else {
            Style::DoubleQuoted
        };
        Node::Scalar(Scalar {
            text: s.to_string(),
            style,
            tag: None,
        })
    }

    /// An integer value.
    pub fn int(n: u64) -> Node {
        Node::Scalar(Scalar {
            text: n.to_string(),
            style: Style::Plain,
            tag: None,
        })
    }

    /// A boolean value.
    pub fn bool(b: bool) -> Node {
        Node::Scalar(Scalar {
            text: if b { "true" } else { "false" }.to_string(),
            style: Style::Plain,
            tag: None,
        })
    }

    /// A mapping from string keys.
    pub fn map<K: AsRef<str>>(pairs: impl IntoIterator<Item = (K, Node)>) -> Node {
        Node::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (key(k.as_ref()), v))
                .collect(),
        )
    }

    /// The node under a tag, if any.
    fn untagged(&self) -> &Node {
        match self {
            Node::Tagged(_, inner) => inner,
            other => other,
        }
    }

    /// The value under `k` in a mapping.
    pub fn get(&self, k: &str) -> Option<&Node> {
        match self.untagged() {
            Node::Map(pairs) => pairs.iter().find(|(key, _)| key.text == k).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value under `k` in a mapping, mutable.
    pub fn get_mut(&mut self, k: &str) -> Option<&mut Node> {
        let node = match self {
            Node::Tagged(_, inner) => inner.as_mut(),
            other => other,
        };
        match node {
            Node::Map(pairs) => pairs
                .iter_mut()
                .find(|(key, _)| key.text == k)
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a path of mapping keys.
    pub fn at(&self, path: &[&str]) -> Option<&Node> {
        path.iter().try_fold(self, |n, k| n.get(k))
    }

    /// Sets `k` in a mapping (replacing the value in place, or appending).
    /// Does nothing on other nodes.
    pub fn set(&mut self, k: &str, value: Node) {
        let node = match self {
            Node::Tagged(_, inner) => inner.as_mut(),
            other => other,
        };
        if let Node::Map(pairs) = node {
            match pairs.iter_mut().find(|(key, _)| key.text == k) {
                Some((_, v)) => *v = value,
                None => pairs.push((key(k), value)),
            }
        }
    }

    /// Removes `k` from a mapping.
    pub fn remove(&mut self, k: &str) {
        if let Node::Map(pairs) = self {
            pairs.retain(|(key, _)| key.text != k);
        }
    }

    /// The mapping under `k`, created (or replacing a null) when missing.
    pub fn map_entry(&mut self, k: &str) -> &mut Node {
        let needs_new = !matches!(self.get(k), Some(Node::Map(_)));
        if needs_new {
            self.set(k, Node::Map(Vec::new()));
        }
        match self.get_mut(k) {
            Some(n) => n,
            None => unreachable!("set just inserted the key"),
        }
    }

    /// The text of a scalar that is not null. Plain `true` or `3` come back
    /// as their text; callers compare with strings they expect.
    pub fn as_str(&self) -> Option<&str> {
        match self.untagged() {
            Node::Scalar(s) if !s.is_null() => Some(&s.text),
            _ => None,
        }
    }

    /// True for a plain null (`~`, `null`, empty) or a missing value.
    pub fn is_null(&self) -> bool {
        matches!(self, Node::Scalar(s) if s.is_null())
    }

    pub fn as_seq(&self) -> Option<&Vec<Node>> {
        match self.untagged() {
            Node::Seq(items) => Some(items),
            _ => None,
        }
    }
}

impl Node {
    /// Equal values: like `==`, except that quoted and block styles of a
    /// string count as the same (all read as that string).
    pub fn same_value(&self, other: &Node) -> bool {
        match (self, other) {
            (Node::Scalar(a), Node::Scalar(b)) => a.same_value(b),
            (Node::Seq(a), Node::Seq(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.same_value(y))
            }
            (Node::Map(a), Node::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((ka, va), (kb, vb))| ka.same_value(kb) && va.same_value(vb))
            }
            (Node::Tagged(ta, a), Node::Tagged(tb, b)) => ta == tb && a.same_value(b),
            _ => false,
        }
    }
}

impl Scalar {
    fn same_value(&self, other: &Scalar) -> bool {
        self.text == other.text
            && self.tag == other.tag
            && (self.style == Style::Plain) == (other.style == Style::Plain)
    }

    /// A plain null: `~`, `null` (any case YAML allows) or nothing.
    pub fn is_null(&self) -> bool {
        self.style == Style::Plain
            && self.tag.is_none()
            && matches!(self.text.as_str(), "" | "~" | "null" | "Null" | "NULL")
    }
}

fn key(k: &str) -> Scalar {
    match Node::string(k) {
        Node::Scalar(s) => s,
        _ => unreachable!("Node::string gives a scalar"),
    }
}

/// Parses every document in `text`. Empty documents are skipped.
pub fn parse(text: &str) -> Result<Vec<Node>, Error> {
    if text.len() > MAX_INPUT_BYTES {
        return Err(Error {
            message: format!("input is larger than {} MiB", MAX_INPUT_BYTES >> 20),
            line: None,
        });
    }
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let mut loader: YamlLoader<Yaml> = YamlLoader::default();
    // Keep every scalar as written: see the module doc.
    loader.early_parse(false);
    let scan = |e: &saphyr::ScanError| Error {
        message: e.info().to_string(),
        line: Some((e.marker().line(), e.marker().col() + 1)),
    };
    parser.load(&mut loader, true).map_err(|e| scan(&e))?;
    if let Some(e) = loader.error() {
        return Err(scan(e));
    }
    loader
        .into_documents()
        .into_iter()
        .filter(|d| !d.is_badvalue())
        .map(from_yaml)
        .collect()
}

fn unsupported(what: &str) -> Error {
    Error {
        message: format!("unsupported YAML: {what}"),
        line: None,
    }
}

fn tag_text(tag: &saphyr::Tag) -> Result<String, Error> {
    let simple = !tag.suffix.is_empty()
        && tag
            .suffix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'));
    if !simple {
        return Err(unsupported("a tag with unusual characters"));
    }
    if tag.is_yaml_core_schema() {
        Ok(format!("!!{}", tag.suffix))
    } else if tag.handle == "!" {
        Ok(format!("!{}", tag.suffix))
    } else {
        Err(unsupported("a named tag handle (`%TAG`)"))
    }
}

fn from_yaml(y: Yaml) -> Result<Node, Error> {
    Ok(match y {
        Yaml::Representation(text, style, tag) => {
            Node::Scalar(scalar(text.into_owned(), style, tag)?)
        }
        Yaml::Sequence(items) => {
            Node::Seq(items.into_iter().map(from_yaml).collect::<Result<_, _>>()?)
        }
        Yaml::Mapping(map) => {
            let mut pairs = Vec::with_capacity(map.len());
            for (k, v) in map {
                let Yaml::Representation(text, style, tag) = k else {
                    return Err(unsupported("a mapping key that is not a scalar"));
                };
                pairs.push((scalar(text.into_owned(), style, tag)?, from_yaml(v)?));
            }
            Node::Map(pairs)
        }
        Yaml::Tagged(tag, inner) => Node::Tagged(tag_text(&tag)?, Box::new(from_yaml(*inner)?)),
        Yaml::Value(_) | Yaml::Alias(_) | Yaml::BadValue => {
            return Err(unsupported("an unresolved value"));
        }
    })
}

fn scalar(
    text: String,
    style: saphyr::ScalarStyle,
    tag: Option<std::borrow::Cow<'_, saphyr::Tag>>,
) -> Result<Scalar, Error> {
    let style = match style {
        saphyr::ScalarStyle::Plain => Style::Plain,
        saphyr::ScalarStyle::SingleQuoted => Style::SingleQuoted,
        saphyr::ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
        saphyr::ScalarStyle::Literal | saphyr::ScalarStyle::Folded => Style::Block,
    };
    let tag = match tag {
        Some(t) => Some(tag_text(&t)?),
        None => None,
    };
    Ok(Scalar { text, style, tag })
}

/// The source text of each entry of the sequence under `key` in the first
/// document, as a ready-to-write sequence entry (`-` and the entry, ending
/// in a newline), when writing that text back reads as exactly `entries[i]`.
/// This keeps comments, flow style and formatting of items a function does
/// not own; `None` entries must be written with the emitter.
pub fn verbatim_entries(text: &str, key: &str, entries: &[Node]) -> Vec<Option<String>> {
    use saphyr::{LoadableYamlNode, MarkedYaml};
    let mut out = vec![None; entries.len()];
    let Ok(docs) = MarkedYaml::load_from_str(text) else {
        return out;
    };
    let Some(seq) = docs
        .first()
        .and_then(|d| d.data.as_mapping_get(key))
        .and_then(|v| v.data.as_sequence())
    else {
        return out;
    };
    if seq.len() != entries.len() {
        return out;
    }
    // Markers count characters; find the byte offsets in one pass.
    let mut wanted: Vec<usize> = seq
        .iter()
        .flat_map(|n| [n.span.start.index(), n.span.end.index()])
        .collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut bytes = std::collections::HashMap::with_capacity(wanted.len());
    let mut want = wanted.iter().peekable();
    for (ci, (bi, _)) in text
        .char_indices()
        .chain(std::iter::once((text.len(), ' ')))
        .enumerate()
    {
        while want.peek().is_some_and(|&&w| w == ci) {
            bytes.insert(ci, bi);
            want.next();
        }
        if want.peek().is_none() {
            break;
        }
    }
    for (i, (n, entry)) in seq.iter().zip(entries).enumerate() {
        let (Some(&a), Some(&b)) = (
            bytes.get(&n.span.start.index()),
            bytes.get(&n.span.end.index()),
        ) else {
            continue;
        };
        let col = n.span.start.col();
        if a >= b || col == 0 || !matches!(entry, Node::Map(_)) {
            continue;
        }
        let body = &text[a..b];
        // As read, or without trailing blank lines and comments before the
        // next entry; the first that reads back identically wins.
        let trimmed = body.trim_end();
        for candidate in [body, trimmed] {
            let mut chunk = String::with_capacity(candidate.len() + col + 1);
            chunk.push('-');
            chunk.extend(std::iter::repeat_n(' ', col - 1));
            chunk.push_str(candidate);
            if !chunk.ends_with('\n') {
                chunk.push('\n');
            }
            let reads_back = parse(&chunk).is_ok_and(
                |d| matches!(d.as_slice(), [Node::Seq(s)] if s.len() == 1 && s[0] == *entry),
            );
            if reads_back {
                out[i] = Some(chunk);
                break;
            }
        }
    }
    out
}

/// Writes `node` as one YAML document (no `---`), in block style with
/// two-space indentation.
pub fn to_string(node: &Node) -> String {
    let mut e = Emitter::default();
    e.top(node);
    e.out
}

/// Like [`to_string`], and also the field path (`spec.domains[1]`) of the
/// node that starts on each line, to map a parser's line back to a field.
pub fn to_string_with_paths(node: &Node) -> (String, Vec<String>) {
    let mut e = Emitter {
        track: true,
        ..Emitter::default()
    };
    e.top(node);
    (e.out, e.paths)
}

#[derive(Default)]
struct Emitter {
    out: String,
    track: bool,
    /// `paths[i]`: the path of the deepest node starting on line `i + 1`.
    paths: Vec<String>,
    path: Vec<String>,
    /// (bytes scanned, newlines in them), for `line`.
    counted: (usize, usize),
}

impl Emitter {
    fn top(&mut self, node: &Node) {
        match node {
            Node::Map(pairs) if !pairs.is_empty() => self.map(pairs, 0, false),
            Node::Seq(items) if !items.is_empty() => self.seq(items, 0),
            other => {
                self.after_indicator(other, 0, 0);
                self.out.push('\n');
            }
        }
    }

    /// Lines written so far, counted incrementally.
    fn line(&mut self) -> usize {
        let (done, lines) = self.counted;
        let more = self.out.as_bytes()[done..]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        self.counted = (self.out.len(), lines + more);
        lines + more
    }

    fn mark(&mut self) {
        if !self.track {
            return;
        }
        let line = self.line();
        if self.paths.len() <= line {
            self.paths.resize(line + 1, String::new());
        }
        let mut p = String::new();
        for seg in &self.path {
            if !seg.starts_with('[') && !p.is_empty() {
                p.push('.');
            }
            p.push_str(seg);
        }
        self.paths[line] = p;
    }

    fn indent(&mut self, n: usize) {
        self.out.extend(std::iter::repeat_n(' ', n));
    }

    /// Block mapping at `indent`. With `inline_first`, the first key goes on
    /// the current line (after `- `).
    fn map(&mut self, pairs: &[(Scalar, Node)], indent: usize, inline_first: bool) {
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 || !inline_first {
                self.indent(indent);
            }
            self.path.push(k.text.clone());
            self.mark();
            self.key(k);
            self.out.push(':');
            // Sequences under a key sit at the key's indentation, as kubectl
            // writes them.
            let child = if matches!(v.untagged(), Node::Seq(s) if !s.is_empty()) {
                indent
            } else {
                indent + 2
            };
            self.after_indicator(v, child, indent + 2);
            self.out.push('\n');
            self.path.pop();
        }
    }

    fn seq(&mut self, items: &[Node], indent: usize) {
        for (i, item) in items.iter().enumerate() {
            self.indent(indent);
            self.path.push(format!("[{i}]"));
            self.mark();
            self.out.push('-');
            match item {
                Node::Map(pairs) if !pairs.is_empty() => {
                    self.out.push(' ');
                    self.map(pairs, indent + 2, true);
                }
                other => {
                    self.after_indicator(other, indent + 2, indent + 2);
                    self.out.push('\n');
                }
            }
            self.path.pop();
        }
    }

    /// Writes a node after `key:` or `-`, without the final newline.
    /// `child` is the indentation of a nested collection, `block` that of a
    /// literal block's lines.
    fn after_indicator(&mut self, node: &Node, child: usize, block: usize) {
        match node {
            Node::Scalar(s) => {
                if s.is_null() && s.text.is_empty() {
                    // `key:` with nothing after it: keep it that way.
                    return;
                }
                self.out.push(' ');
                self.scalar(s, block);
            }
            Node::Seq(items) if items.is_empty() => self.out.push_str(" []"),
            Node::Map(pairs) if pairs.is_empty() => self.out.push_str(" {}"),
            Node::Seq(items) => {
                self.out.push('\n');
                self.seq(items, child);
                self.out.pop();
            }
            Node::Map(pairs) => {
                self.out.push('\n');
                self.map(pairs, child, false);
                self.out.pop();
            }
            Node::Tagged(tag, inner) => {
                self.out.push(' ');
                self.out.push_str(tag);
                let inner_child = if matches!(inner.as_ref(), Node::Seq(_)) {
                    child
                } else {
                    block
                };
                self.after_indicator(inner, inner_child, block);
            }
        }
    }

    fn key(&mut self, k: &Scalar) {
        if let Some(tag) = &k.tag {
            self.out.push_str(tag);
            self.out.push(' ');
        }
        if k.style == Style::Plain && !k.text.is_empty() {
            self.out.push_str(&k.text);
        } else {
            self.out.push_str(&double_quoted(&k.text));
        }
    }

    fn scalar(&mut self, s: &Scalar, block_indent: usize) {
        if let Some(tag) = &s.tag {
            self.out.push_str(tag);
            self.out.push(' ');
        }
        match s.style {
            Style::Plain if !s.text.is_empty() => self.out.push_str(&s.text),
            Style::Plain => self.out.push_str("\"\""),
            Style::SingleQuoted if !s.text.contains('\n') && printable(&s.text) => {
                self.out.push('\'');
                self.out.push_str(&s.text.replace('\'', "''"));
                self.out.push('\'');
            }
            Style::Block if literal_safe(&s.text) => self.literal(&s.text, block_indent),
            _ => self.out.push_str(&double_quoted(&s.text)),
        }
    }

    /// A `|` block. The chomping indicator keeps the exact trailing line
    /// breaks; an indentation indicator keeps leading spaces.
    fn literal(&mut self, text: &str, indent: usize) {
        let trailing = text.len() - text.trim_end_matches('\n').len();
        let chomp = match trailing {
            0 => "-",
            1 => "",
            _ => "+",
        };
        self.out.push('|');
        if text.split('\n').any(|l| l.starts_with(' ')) {
            let _ = write!(self.out, "2");
        }
        self.out.push_str(chomp);
        let body = text.strip_suffix('\n').unwrap_or(text);
        for line in body.split('\n') {
            self.out.push('\n');
            if !line.is_empty() {
                self.indent(indent);
                self.out.push_str(line);
            }
        }
        // The caller's newline ends the last line; with `|+` the empty
        // lines of `body` are the kept line breaks.
    }
}

/// Characters YAML allows unescaped (`c-printable`), minus the ones some
/// readers treat as line breaks or byte-order marks.
fn printable_char(c: char) -> bool {
    matches!(c, '\t' | ' '..='~' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}' | '\u{10000}'..)
        && !matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

fn printable(s: &str) -> bool {
    s.chars().all(printable_char)
}

/// A literal block can hold `s` exactly: printable lines, at least one
/// non-blank character, no tab at the start of a line (a tab there could be
/// read as indentation by lax readers).
fn literal_safe(s: &str) -> bool {
    s.chars().all(|c| c == '\n' || printable_char(c))
        && s.chars().any(|c| !c.is_whitespace())
        && !s
            .split('\n')
            .any(|l| l.starts_with('\t') || l.ends_with(' ') && l.trim().is_empty())
}

/// A YAML double-quoted scalar holding exactly `s`.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c != '\t' && printable_char(c) => out.push(c),
            c if (c as u32) <= 0xff => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if (c as u32) <= 0xffff => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08x}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(text: &str) -> String {
        let docs = parse(text).unwrap();
        assert_eq!(docs.len(), 1);
        to_string(&docs[0])
    }

    /// The same values, whatever the quoting style: every non-plain style
    /// reads as a string.
    fn semantic(n: &Node) -> Node {
        let sc = |s: &Scalar| Scalar {
            style: if s.style == Style::Plain {
                Style::Plain
            } else {
                Style::DoubleQuoted
            },
            ..s.clone()
        };
        match n {
            Node::Scalar(s) => Node::Scalar(sc(s)),
            Node::Seq(items) => Node::Seq(items.iter().map(semantic).collect()),
            Node::Map(pairs) => {
                Node::Map(pairs.iter().map(|(k, v)| (sc(k), semantic(v))).collect())
            }
            Node::Tagged(t, inner) => Node::Tagged(t.clone(), Box::new(semantic(inner))),
        }
    }

    /// Whatever we write reads back as the same values.
    fn stable(text: &str) {
        let first = parse(text).unwrap();
        let written: String = first
            .iter()
            .map(to_string)
            .collect::<Vec<_>>()
            .join("---\n");
        let again = parse(&written).unwrap();
        let norm = |d: &[Node]| d.iter().map(semantic).collect::<Vec<_>>();
        assert_eq!(norm(&first), norm(&again), "written:\n{written}");
    }

    #[test]
    fn scalars_keep_their_text_and_style() {
        let text = "a: yes\nb: 'yes'\nc: \"0x10\"\nd: .inf\ne: 123456789012345678901234567890\nf:\ng: ~\nh: !!str 12\n";
        assert_eq!(round(text), text);
    }

    #[test]
    fn collections_are_written_in_block_style() {
        let text = "items:\n- a: 1\n  b: [x, {y: z}]\n- - nested\n- {}\nempty: []\n";
        let out = round(text);
        assert_eq!(
            out,
            "items:\n- a: 1\n  b:\n  - x\n  - y: z\n-\n  - nested\n- {}\nempty: []\n"
        );
        stable(text);
    }

    #[test]
    fn blocks_keep_exact_content() {
        for text in [
            "s: |\n  line 1\n    indented\n  line 3\n",
            "s: |-\n  no final newline\n",
            "s: |+\n  kept\n\n\nt: 1\n",
            "s: |2\n    leading spaces\n  x\n",
            "s: >\n  folded\n  text\n\n  para\n",
            "- |\n  in a list\n",
            "a:\n  - |2\n     x\n    y\n  - b: |2\n       z\n",
            "s: \"tab\\tand\\u0085nel\\u2028ls\\x7f\"\n",
            "s: 'it''s'\n",
            "s: \"multi\\nline\"\n",
            "s: \" \\n\"\n",
            "s: |\n  \ttab first\n",
        ] {
            stable(text);
        }
    }

    #[test]
    fn hostile_values_stay_one_scalar() {
        let mut m = Node::map([("k", Node::string("v\n---\nkind: Secret\n- evil: 1 # x"))]);
        m.set("a", Node::string("yes"));
        let out = to_string(&m);
        let back = parse(&out).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            back[0].get("k").and_then(Node::as_str),
            Some("v\n---\nkind: Secret\n- evil: 1 # x")
        );
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("a: \"yes\""), "{out}");
    }

    #[test]
    fn paths_name_each_line() {
        let docs = parse("spec:\n  domains:\n  - a\n  - b\n  gateway:\n    name: x\n").unwrap();
        let (text, paths) = to_string_with_paths(&docs[0]);
        let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap();
        assert_eq!(paths[line_of("- b")], "spec.domains[1]");
        assert_eq!(paths[line_of("name: x")], "spec.gateway.name");
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("a: [\n").unwrap_err();
        assert!(e.line.is_some(), "{e:?}");
    }

    proptest::proptest! {
        /// Any string, in any style we may write it in, reads back as
        /// exactly that string and as nothing more.
        #[test]
        fn any_string_round_trips(text in "\\PC*|[ -~\n\t\r\u{85}\u{2028}\u{feff}'\"#:-]{0,40}") {
            for style in [Style::Plain, Style::SingleQuoted, Style::DoubleQuoted, Style::Block] {
                let value = if style == Style::Plain {
                    Node::string(&text)
                } else {
                    Node::Scalar(Scalar { text: text.clone(), style, tag: None })
                };
                let doc = Node::map([("k", value), ("after", Node::string("x"))]);
                let out = to_string(&doc);
                let back = parse(&out).unwrap();
                proptest::prop_assert_eq!(back.len(), 1, "{}", out);
                let got = back[0].get("k").unwrap();
                let Node::Scalar(sc) = got else { panic!("not a scalar: {out}") };
                proptest::prop_assert_eq!(&sc.text, &text, "{}", out);
                proptest::prop_assert!(sc.style != Style::Plain || crate::render::yaml::is_plain_safe(&text), "{}", out);
                proptest::prop_assert_eq!(back[0].get("after").and_then(Node::as_str), Some("x"));
            }
        }
    }
}
