//! The legacy Kustomize exec plugin, and `egressgen kustomize-plugin install`.
//!
//! `kubectl kustomize --enable-alpha-plugins` runs
//! `$KUSTOMIZE_PLUGIN_HOME/egressgen.io/v1alpha1/egressgateway/EgressGateway`
//! (a symlink to egressgen) for every `EgressGateway` listed under
//! `generators:`. As observed with Kustomize 5.5: `argv[0]` is that path,
//! `argv[1]` a temporary file holding Kustomize's re-serialised copy of the
//! config (comments gone, so its line numbers are not the user's), further
//! arguments come from `argsOneLiner`/`argsFromFile`, the environment holds
//! `KUSTOMIZE_PLUGIN_CONFIG_STRING` and `KUSTOMIZE_PLUGIN_CONFIG_ROOT`, and
//! the working directory is the kustomization's. Kustomize reads stdout as the
//! manifest, swallows stderr on success and shows it on failure.
//!
//! This module does not transform anything Kustomize builds: the manifest is
//! exactly `egressgen render`'s.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

use crate::config::{self, Overrides};
use crate::escape::quoted;
use crate::plugin::node::{self, Node};
use crate::render;

/// The plugin's file name: Kustomize runs the config's Kind.
pub const PLUGIN_NAME: &str = "EgressGateway";
/// Where the plugin lives under the plugin home: group/version/lowercase kind.
pub const PLUGIN_DIR: &[&str] = &["egressgen.io", "v1alpha1", "egressgateway"];
/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

/// True when Kustomize started us as its exec plugin: `argv[0]`'s file name
/// is `EgressGateway`, or Kustomize's environment is set and `argv[1]` is a
/// file rather than one of our `subcommands` or an option.
pub fn is_invocation(args: &[OsString], subcommands: &[String]) -> bool {
    let argv0 = args.first().map(Path::new).and_then(Path::file_name);
    if argv0 == Some(OsStr::new(PLUGIN_NAME)) {
        return true;
    }
    if std::env::var_os("KUSTOMIZE_PLUGIN_CONFIG_STRING").is_none() {
        return false;
    }
    match args.get(1) {
        Some(a) => {
            let s = a.to_string_lossy();
            !s.starts_with('-') && !subcommands.iter().any(|c| *c == s) && Path::new(a).is_file()
        }
        None => false,
    }
}

/// Runs as the plugin: the manifest on stdout, or the reason on stderr and
/// exit code 2.
pub fn run(args: &[OsString]) -> u8 {
    match generate(args) {
        Ok(manifest) => {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            match out.write_all(manifest.as_bytes()).and_then(|_| out.flush()) {
                Ok(()) => crate::cli::exit::OK,
                Err(e) => {
                    eprintln!("egressgen: cannot write the manifest: {e}");
                    crate::cli::exit::USAGE
                }
            }
        }
        Err(message) => {
            eprintln!("egressgen (Kustomize EgressGateway generator): {message}");
            crate::cli::exit::USAGE
        }
    }
}

fn generate(args: &[OsString]) -> Result<String, String> {
    let Some(tmp) = args.get(1).map(PathBuf::from) else {
        return Err("no config file argument; Kustomize passes one. To render by hand, run `egressgen render -c FILE`".into());
    };
    if args.len() > 2 {
        return Err(
            "this generator takes no arguments; remove `argsOneLiner` and `argsFromFile` from the EgressGateway config"
                .into(),
        );
    }
    let text = read_bounded(&tmp)?;
    let tmp_name = tmp.display().to_string();
    match config::parse(&tmp_name, &text, &Overrides::default()) {
        Ok((cfg, notes)) => {
            // Kustomize hides stderr on success; these show only when run by hand.
            for n in notes {
                eprintln!("{n}");
            }
            let rendered = render::render(&cfg).map_err(|e| e.to_string())?;
            for w in &rendered.warnings {
                eprintln!("warning: {w}");
            }
            Ok(rendered.manifest)
        }
        Err(e) => Err(explain(&e, &text, &tmp_name)),
    }
}

fn read_bounded(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| {
        format!(
            "cannot read the config {}: {e}",
            quoted(&path.display().to_string())
        )
    })?;
    let mut text = String::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| {
            format!(
                "cannot read the config {}: {e}",
                quoted(&path.display().to_string())
            )
        })?;
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(format!(
            "the config is larger than {} MiB",
            MAX_CONFIG_BYTES >> 20
        ));
    }
    Ok(text)
}

/// A config error, told against the user's own file when it can be found
/// (its line numbers then match); otherwise against Kustomize's copy.
fn explain(err: &config::Error, text: &str, tmp_name: &str) -> String {
    let root = std::env::var_os("KUSTOMIZE_PLUGIN_CONFIG_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok());
    let name = node::parse(text)
        .ok()
        .and_then(|d| d.into_iter().next())
        .and_then(|d| {
            d.at(&["metadata", "name"])
                .and_then(Node::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default();
    let original = root.and_then(|r| original_file(text, &r));
    if let Some(original) = original {
        let path = original.display().to_string();
        if let Ok(original_text) = read_bounded(&original) {
            let one = only_document(&path, &original_text, &name);
            let original_text = one.as_deref().unwrap_or(&original_text);
            if let Err(e) = config::parse(&path, original_text, &Overrides::default()) {
                return match e.at {
                    Some(_) => format!("invalid EgressGateway config\n{e}"),
                    None => format!("invalid EgressGateway config {path}\n{e}"),
                };
            }
        }
    }
    format!(
        "invalid EgressGateway config {} (positions refer to Kustomize's re-serialised copy {tmp_name})\n{err}",
        quoted(&name)
    )
}

/// In a file of several YAML documents (Kustomize reads each), the text of
/// the EgressGateway named `name` alone, the other lines blanked so that
/// line numbers still match the file. `None` for a file of one document.
fn only_document(path: &str, text: &str, name: &str) -> Option<String> {
    let docs = crate::lint::load::parse(0, path, text).ok()?;
    if docs.len() < 2 {
        return None;
    }
    let doc = docs.iter().find(|d| {
        d.root.get("kind").and_then(|k| k.as_str()) == Some(config::KIND)
            && d.root.path(&["metadata", "name"]).and_then(|n| n.as_str()) == Some(name)
    })?;
    // From the document's first line to the next document marker, which
    // stands at the start of a line.
    let first = doc.root.at.line as usize;
    let mut out = String::with_capacity(text.len());
    let mut inside = false;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if i + 1 == first {
            inside = true;
        } else if inside && (line.starts_with("---") || line.starts_with("...")) {
            inside = false;
        }
        out.push_str(if inside { line } else { "\n" });
    }
    Some(out)
}

/// The file the config came from: Kustomize's `config.kubernetes.io/origin`
/// annotation (with `buildMetadata: [originAnnotations]`), or the
/// kustomization's `generators:` entry holding an EgressGateway of that name.
fn original_file(text: &str, root: &Path) -> Option<PathBuf> {
    let doc = node::parse(text).ok()?.into_iter().next()?;
    let origin = doc
        .at(&["metadata", "annotations", "config.kubernetes.io/origin"])
        .and_then(Node::as_str)
        .and_then(|o| node::parse(o).ok())
        .and_then(|d| d.into_iter().next())
        .and_then(|o| o.get("path").and_then(Node::as_str).map(str::to_string));
    if let Some(p) = origin {
        let p = lexical(&root.join(p));
        if p.is_file() {
            return Some(p);
        }
    }
    let name = doc.at(&["metadata", "name"]).and_then(Node::as_str)?;
    let kustomization = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| root.join(f))
        .find(|p| p.is_file())?;
    let k = node::parse(&read_bounded(&kustomization).ok()?)
        .ok()?
        .into_iter()
        .next()?;
    k.get("generators")?
        .as_seq()?
        .iter()
        .filter_map(Node::as_str)
        .find_map(|entry| {
            let p = root.join(entry);
            let docs = node::parse(&read_bounded(&p).ok()?).ok()?;
            docs.iter()
                .any(|d| {
                    d.get("kind").and_then(Node::as_str) == Some(config::KIND)
                        && d.at(&["metadata", "name"]).and_then(Node::as_str) == Some(name)
                })
                .then_some(p)
        })
}

/// `a/b/../c` as `a/c`, without touching the file system (for messages).
fn lexical(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Kustomize's plugin home: `$KUSTOMIZE_PLUGIN_HOME`, else
/// `$XDG_CONFIG_HOME/kustomize/plugin`, else `~/.config/kustomize/plugin`.
pub fn plugin_home() -> Result<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("KUSTOMIZE_PLUGIN_HOME") {
        return Ok(p);
    }
    if let Some(p) = var("XDG_CONFIG_HOME") {
        return Ok(p.join("kustomize").join("plugin"));
    }
    match var("HOME") {
        Some(h) => Ok(h.join(".config").join("kustomize").join("plugin")),
        None => bail!(
            "cannot find the Kustomize plugin home: set XDG_CONFIG_HOME or HOME, or pass --dir"
        ),
    }
}

/// Symlinks the running binary as the plugin under `home` (the plugin home
/// by default). Returns what to tell the user.
pub fn install(home: Option<&Path>) -> Result<String> {
    let home = match home {
        Some(h) => h.to_path_buf(),
        None => plugin_home()?,
    };
    let dir = PLUGIN_DIR.iter().fold(home.clone(), |p, d| p.join(d));
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create {}", crate::escape::path(&dir)))?;
    let exe = std::env::current_exe()
        .and_then(|e| e.canonicalize())
        .context("cannot find the egressgen binary to link to")?;
    let link = dir.join(PLUGIN_NAME);
    let already = std::fs::read_link(&link).is_ok_and(|t| t == exe);
    if !already {
        // Replace atomically: a new link beside it, renamed over.
        let tmp = dir.join(format!(
            ".{PLUGIN_NAME}.egressgen-{}.tmp",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&tmp);
        symlink(&exe, &tmp)
            .with_context(|| format!("cannot create a symlink in {}", crate::escape::path(&dir)))?;
        if let Err(e) = std::fs::rename(&tmp, &link) {
            let _ = std::fs::remove_file(&tmp);
            return Err(e)
                .with_context(|| format!("cannot install {}", crate::escape::path(&link)));
        }
    }
    let mut report = format!(
        "{} {} -> {}\n",
        if already {
            "Already installed:"
        } else {
            "Installed"
        },
        crate::escape::path(&link),
        crate::escape::path(&exe)
    );
    let default_home = plugin_home().ok();
    if default_home.as_deref() != Some(home.as_path()) {
        report.push_str(&format!(
            "\nThis is not Kustomize's default plugin home; before building, run:\n  export KUSTOMIZE_PLUGIN_HOME={}\n",
            crate::escape::shell_word(&home.to_string_lossy())
        ));
    }
    report.push_str(
        "\nList your EgressGateway file as a generator in kustomization.yaml:\n\n  generators:\n  - egress.yaml\n\nthen build with plugins enabled and apply (`kubectl apply -k` cannot run plugins):\n\n  kubectl kustomize --enable-alpha-plugins DIR | kubectl apply -f -\n",
    );
    Ok(report)
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    // Kustomize exec plugins are a Unix feature; a copy works elsewhere.
    std::fs::copy(target, link).map(|_| ())
}
