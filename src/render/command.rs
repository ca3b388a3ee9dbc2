//! `egressgen render` as a command: load the config, render it, then print
//! the manifest, write it atomically (`-o`), or diff it against a file
//! (`--check`) and pick the exit code.

use anyhow::Result;

use crate::cli::{RenderArgs, exit, load_config};
use crate::config::Overrides;
use crate::escape::{quoted_path, shell_word};
use crate::output;

/// `egressgen render`: exit 0, or 1 when `--check` finds a difference.
pub fn run(args: &RenderArgs) -> Result<u8> {
    let overrides = Overrides {
        istio_version: args.istio_version.clone(),
    };
    let cfg = load_config(args.config.as_deref(), &args.domains, &overrides)?;
    let rendered = super::render(&cfg)?;
    for w in &rendered.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(path) = &args.check {
        let current = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read {}: {e}\n  help: pass --check the manifest file `render -o` wrote",
                quoted_path(path)
            )
        })?;
        if current == rendered.manifest {
            eprintln!("{} is up to date", crate::escape::path(path));
            return Ok(exit::OK);
        }
        let diff = output::unified_diff(
            &crate::escape::path(path),
            &current,
            "rendered",
            &rendered.manifest,
            output::stdout_color(),
        );
        output::print(&diff)?;
        eprintln!(
            "{} differs from the rendered manifest; to update it, run `{}`",
            crate::escape::path(path),
            render_to(args, path)
        );
        return Ok(exit::FINDINGS);
    }
    match &args.output {
        Some(path) => output::write_atomic(path, rendered.manifest.as_bytes())
            .map_err(|e| anyhow::anyhow!(output::write_error(path, &e)))?,
        None => output::print(&rendered.manifest)?,
    }
    Ok(exit::OK)
}

/// The `render` command that writes what `args` render to `path`.
fn render_to(args: &RenderArgs, path: &std::path::Path) -> String {
    let mut cmd = String::from("egressgen render");
    let mut arg = |flag: &str, value: &str| {
        cmd.push_str(&format!(" {flag} {}", shell_word(value)));
    };
    match &args.config {
        Some(c) => arg("-c", &c.display().to_string()),
        None => args.domains.iter().for_each(|d| arg("--domain", d)),
    }
    if let Some(v) = &args.istio_version {
        arg("--istio-version", v);
    }
    arg("-o", &path.display().to_string());
    cmd
}
