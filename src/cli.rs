//! Command-line parsing and dispatch. Nothing here decides policy: each
//! subcommand hands its arguments to the module that does the work.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config, Overrides};
use crate::output;
use crate::plugin;
use crate::render;

/// Exit codes shared by every subcommand.
pub mod exit {
    /// Success.
    pub const OK: u8 = 0;
    /// `--check` found a difference, or `lint` found errors.
    pub const FINDINGS: u8 = 1;
    /// Bad input or usage.
    pub const USAGE: u8 = 2;
    /// A bug: `serve` stopped because a worker thread panicked (the code
    /// Rust gives a process that panics).
    pub const BUG: u8 = 101;
}

#[derive(Debug, Parser)]
#[command(
    name = "egressgen",
    version,
    about = "One SNI allowlist for Istio egress gateways: render the manifest, lint existing ones, enforce it locally.",
    after_help = "Exit codes: 0 ok, 1 differences or lint errors, 2 bad input or usage.\nDocs: README.md"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Render the complete egress-gateway manifest from one domain list.
    Render(RenderArgs),
    /// Find allowlist drift, broken wiring, risky scope and schema errors in manifests.
    Lint(LintArgs),
    /// Run a local SNI proxy that enforces the allowlist (also `--serve`).
    Serve(crate::serve::ServeArgs),
    /// Run as a KRM function (kpt, Kustomize): ResourceList on stdin and stdout.
    Fn(FnArgs),
    /// Set egressgen up as a Kustomize exec plugin.
    KustomizePlugin(KustomizePluginArgs),
    /// Say whether a host is allowed, by which entry, or why not (exit 0 allowed, 1 refused).
    Explain(ExplainArgs),
    /// Turn the Istio <=1.19 wildcard-egress recipe (SNI proxy, forward_downstream_sni,
    /// sni_verifier) into an EgressGateway config, and print a migration plan.
    Migrate(MigrateArgs),
    /// Print the JSON Schema of the EgressGateway config file.
    Schema,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Without a subcommand, generates: the functionConfig (an EgressGateway, or a ConfigMap with data.domains) is rendered into the items, replacing the objects of an earlier run.\nExit codes: 0 ok, 1 error results (invalid config, lint errors)."
)]
pub struct FnArgs {
    #[command(subcommand)]
    pub command: Option<FnCommand>,
}

#[derive(Debug, Subcommand)]
pub enum FnCommand {
    /// Validator: lint the items (against the functionConfig, else the package's EgressGateway) and report results.
    Lint,
}

#[derive(Debug, Args)]
pub struct KustomizePluginArgs {
    #[command(subcommand)]
    pub command: KustomizePluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum KustomizePluginCommand {
    /// Symlink this binary as Kustomize's EgressGateway exec plugin and print the kustomization snippet.
    Install {
        /// Plugin home to install into (default: $KUSTOMIZE_PLUGIN_HOME, else $XDG_CONFIG_HOME/kustomize/plugin, else ~/.config/kustomize/plugin).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Old manifests: files, directories (recursive *.yaml, *.yml) or `-` for stdin.
    #[arg(value_name = "OLD", required = true)]
    pub paths: Vec<PathBuf>,
    /// Write the config to FILE atomically (the plan goes to stdout); else
    /// the config goes to stdout and the plan to stderr.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Istio version `X.Y` to write as spec.istio.version.
    #[arg(long, value_name = "X.Y")]
    pub istio_version: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false))]
pub struct ExplainArgs {
    /// Host names to check, as a client would put them in its TLS SNI.
    #[arg(value_name = "HOST", required = true, value_parser = clap::value_parser!(std::ffi::OsString))]
    pub hosts: Vec<std::ffi::OsString>,
    /// EgressGateway config file whose allowlist to ask.
    #[arg(short = 'c', long = "config", value_name = "FILE", group = "source")]
    pub config: Option<PathBuf>,
    /// An allowlist entry (repeatable), instead of a config file.
    #[arg(long = "allow", value_name = "PATTERN", group = "source")]
    pub allow: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files, directories (recursive *.yaml, *.yml) or `-` for stdin.
    #[arg(value_name = "PATH", default_value = ".")]
    pub paths: Vec<PathBuf>,
    /// The EgressGateway config: every host list must equal its domains.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::lint::report::Format::Text)]
    pub format: crate::lint::report::Format,
    /// In directories, lint only files whose path (relative to the
    /// directory given) or name matches GLOB, e.g. '*.yml' or 'app/**'
    /// (globset; repeatable; replaces the *.yaml/*.yml default).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// In directories, skip files and folders whose path or name matches
    /// GLOB, e.g. 'charts/**' or 'vendor' (globset; repeatable).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Never report these codes (repeatable, or comma-separated).
    #[arg(long, value_name = "CODE", value_delimiter = ',')]
    pub ignore: Vec<String>,
    /// Count warnings as errors for the exit code.
    #[arg(long)]
    pub deny_warnings: bool,
    /// How stdin (`-`) is named in findings.
    #[arg(long, value_name = "NAME", default_value = crate::lint::load::STDIN_NAME,
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub stdin_filename: String,
    /// Print the documentation of one code (e.g. EG001) and exit.
    #[arg(long, value_name = "CODE")]
    pub explain: Option<String>,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").required(true).multiple(false))]
pub struct RenderArgs {
    /// EgressGateway config file.
    #[arg(short = 'c', long = "config", value_name = "FILE", group = "source")]
    pub config: Option<PathBuf>,
    /// A domain to allow (repeatable); renders with every default, no config file.
    #[arg(long = "domain", value_name = "DOMAIN", group = "source")]
    pub domains: Vec<String>,
    /// Istio version `X.Y`; picks the API versions (default 1.22, oldest 1.16).
    #[arg(long, value_name = "X.Y")]
    pub istio_version: Option<String>,
    /// Write the manifest to FILE atomically instead of stdout.
    #[arg(short = 'o', long, value_name = "FILE", conflicts_with = "check")]
    pub output: Option<PathBuf>,
    /// Exit 1 with a diff when FILE differs from what would be rendered.
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
}

/// Entry point used by `main`.
pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // Plugin calling conventions come before clap: Kustomize runs us as
    // `EgressGateway <tmpfile>`, and standalone Kustomize `exec` functions
    // pass a ResourceList on stdin with no arguments at all.
    let subcommands: Vec<String> = <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    if plugin::kustomize::is_invocation(&args, &subcommands) {
        return ExitCode::from(plugin::kustomize::run(&args));
    }
    if args.len() == 1 && !std::io::stdin().is_terminal() {
        if let Some(code) = plugin::autodetect() {
            return ExitCode::from(code);
        }
    }
    let cli = match Cli::try_parse_from(normalise_args(args)) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            // Config errors carry their own `file:line:col: error:` prefix.
            match e.downcast_ref::<config::Error>() {
                Some(ce) => eprintln!("{ce}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::from(exit::USAGE)
        }
    }
}

/// `egressgen --serve ...` is another spelling of `egressgen serve ...`.
fn normalise_args(mut args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    if args.get(1).is_some_and(|a| a == "--serve") {
        args[1] = "serve".into();
    }
    args
}

pub fn run(cli: Cli) -> Result<u8> {
    match cli.command {
        Command::Render(args) => render::command::run(&args),
        Command::Lint(args) => crate::lint::command::run(&args),
        Command::Schema => {
            output::print(&config::json_schema())?;
            Ok(exit::OK)
        }
        Command::Serve(args) => crate::serve::run(args),
        Command::Fn(args) => match args.command {
            None => Ok(plugin::run_generator()),
            Some(FnCommand::Lint) => Ok(plugin::run_validator()),
        },
        Command::KustomizePlugin(args) => match args.command {
            KustomizePluginCommand::Install { dir } => {
                output::print(&plugin::kustomize::install(dir.as_deref())?)?;
                Ok(exit::OK)
            }
        },
        Command::Explain(args) => crate::explain::run(args),
        Command::Migrate(args) => crate::migrate::run(args),
    }
}

/// Loads the config from `-c FILE` or from `--domain` flags, printing notes
/// (normalised or dropped domains) to stderr.
pub fn load_config(
    path: Option<&std::path::Path>,
    domains: &[String],
    overrides: &Overrides,
) -> Result<Config> {
    let (cfg, notes) = match path {
        Some(p) => config::load(p, overrides)?,
        None => config::from_domains(domains, overrides)?,
    };
    let mut err = std::io::stderr().lock();
    for n in notes {
        let _ = writeln!(err, "{n}");
    }
    Ok(cfg)
}
