//! `egressgen serve` (also `egressgen --serve`): a local SNI proxy that
//! enforces the same allowlist as the rendered gateway.
//!
//! It behaves like the gateway's internal listener: `tls_inspector` +
//! `filter_chain_match.server_names` + `sni_dynamic_forward_proxy` +
//! `tcp_proxy`. This file holds the command-line options and startup: it
//! checks every flag and binds every address before serving anything, so bad
//! input exits 2 with nothing served. The work is done by:
//! - [`hello`]: the ClientHello codec (pure, no I/O);
//! - [`proxy`]: accept, bounds, relay, drain;
//! - [`resolve`]: `--resolve` pins and the cached system resolver;
//! - [`log`]: the access log;
//! - [`learn`]: `--learn`'s report.

pub mod hello;
pub mod learn;
pub mod log;
pub mod proxy;
pub mod resolve;
#[cfg(target_os = "linux")]
pub mod splice;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::cli::{self, exit};
use crate::config::Overrides;
use crate::domain::Allowlist;
use crate::escape::quoted;
use log::{AccessLog, Format};
use proxy::{Proxy, Settings};
use resolve::{Pins, SystemResolver};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("source").multiple(false))]
pub struct ServeArgs {
    /// EgressGateway config file whose `spec.domains` is the allowlist.
    #[arg(short = 'c', long = "config", value_name = "FILE", group = "source")]
    pub config: Option<PathBuf>,
    /// An allowlist entry (repeatable): `api.example.com` or `*.example.com`.
    #[arg(long = "allow", value_name = "PATTERN", group = "source")]
    pub allow: Vec<String>,
    /// Address to listen on (repeatable; IPv4 or IPv6, port 0 picks one).
    #[arg(long = "listen", value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: Vec<SocketAddr>,
    /// Port to connect to upstream [default: the config's upstreamPort, else 443].
    #[arg(long, value_name = "PORT")]
    pub upstream_port: Option<u16>,
    /// Longest wait for a complete ClientHello.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub hello_timeout: Duration,
    /// Longest wait to resolve and connect upstream.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Close a connection after this long with no byte either way (Envoy's default is 1h).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Most connections open at once; more are closed at once and logged `UO`.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// On SIGINT/SIGTERM, how long open connections may take to finish.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Pin names to an address, like curl's --resolve (repeatable):
    /// `api.test.local=127.0.0.1`, `*.test.local=127.0.0.1:8443`, `*=[::1]:8443`.
    #[arg(long = "resolve", value_name = "PATTERN=IP[:PORT]")]
    pub resolve: Vec<String>,
    /// Access log destination: a file, `-` for stdout, `off` [default: stderr].
    #[arg(long, value_name = "PATH|-|off")]
    pub access_log: Option<String>,
    /// Access log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: Format,
    /// Forward every name and print, on exit, the domain list the app needs.
    #[arg(long)]
    pub learn: bool,
    /// Never use splice(2); by default flows past 1 MiB use it (Linux).
    #[arg(long)]
    pub no_splice: bool,
    /// Worker threads [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
}

/// Parses `500ms`, `2s`, `1m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{} is not a duration like `2s` or `500ms`", quoted(s)))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(format!(
                "{} needs a unit: ms, s, m or h (e.g. `2s`)",
                quoted(s)
            ));
        }
    };
    // Beyond a year is certainly a typo, and keeps deadlines from overflowing.
    if d > Duration::from_secs(366 * 86_400) {
        return Err(format!("{} is longer than a year", quoted(s)));
    }
    Ok(d)
}

/// Runs `egressgen serve` until SIGINT or SIGTERM.
pub fn run(args: ServeArgs) -> Result<u8> {
    let (allowlist, config_port) = allowlist(&args)?;
    let pins = Pins::parse(args.resolve.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
    let settings = Settings {
        upstream_port: args.upstream_port.or(config_port).unwrap_or(443),
        hello_timeout: args.hello_timeout,
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout.max(Duration::from_millis(1)),
        max_connections: args.max_connections as usize,
        drain_timeout: args.drain_timeout,
        learn: args.learn,
        splice: cfg!(target_os = "linux") && !args.no_splice,
    };
    let log = open_log(args.access_log.as_deref(), args.log_format)?;
    let workers = args
        .workers
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
    }
    .context("cannot start the runtime")?;
    let listen = args.listen.clone();
    let entries = allowlist.len();
    let learn = args.learn;
    let proxy = Arc::new(Proxy {
        allowlist,
        resolver: SystemResolver::new(pins),
        settings,
        log,
        learned: Default::default(),
    });
    let drained = runtime.block_on(async {
        let mut listeners = Vec::new();
        for addr in &listen {
            listeners.push(bind(*addr)?);
        }
        let mut err = std::io::stderr().lock();
        for l in &listeners {
            let addr = l.local_addr()?;
            writeln!(err, "egressgen serve: listening on {addr}")?;
        }
        writeln!(
            err,
            "egressgen serve: {} allowlist entr{}{}; upstream port {}",
            entries,
            if entries == 1 { "y" } else { "ies" },
            if learn {
                ", learn mode: forwarding every name"
            } else {
                ""
            },
            proxy.settings.upstream_port
        )?;
        drop(err);
        Ok::<_, anyhow::Error>(proxy::serve(proxy.clone(), listeners, shutdown_signal()).await)
    })?;
    if drained.cut > 0 {
        eprintln!(
            "egressgen serve: drain deadline passed; closed {} open connection{}",
            drained.cut,
            if drained.cut == 1 { "" } else { "s" }
        );
    }
    runtime.shutdown_timeout(Duration::from_millis(100));
    if learn {
        print!("{}", proxy.learned.report());
        let _ = std::io::stdout().flush();
    }
    let _ = proxy.log.flush();
    Ok(exit::OK)
}

/// The allowlist from `-c` or `--allow`, and the config's upstream port.
fn allowlist(args: &ServeArgs) -> Result<(Allowlist, Option<u16>)> {
    if let Some(path) = &args.config {
        let cfg = cli::load_config(Some(path), &[], &Overrides::default())?;
        return Ok((cfg.allowlist, Some(cfg.upstream_port)));
    }
    if args.allow.is_empty() && !args.learn {
        bail!(
            "no allowlist: pass -c egress.yaml or --allow PATTERN\n  help: to find out which names an app needs, run with --learn"
        );
    }
    let (list, dropped) =
        Allowlist::parse(args.allow.iter().map(String::as_str)).map_err(|(entry, e)| {
            anyhow::anyhow!("--allow {}: {e}\n  help: {}", quoted(&entry), e.help())
        })?;
    for d in dropped {
        eprintln!("note: --allow: {d}");
    }
    Ok((list, None))
}

fn open_log(spec: Option<&str>, format: Format) -> Result<AccessLog> {
    Ok(match spec {
        Some("off") => AccessLog::off(),
        Some("-") => AccessLog::new(Box::new(std::io::stdout()), format, true),
        None => AccessLog::new(Box::new(std::io::stderr()), format, true),
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open access log {}", quoted(path)))?;
            AccessLog::new(Box::new(f), format, false)
        }
    })
}

/// Binds with `SO_REUSEADDR`, and `IPV6_V6ONLY` on IPv6 so `0.0.0.0:P` and
/// `[::]:P` can be listened on together.
fn bind(addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let what = || format!("cannot listen on {addr}");
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).with_context(what)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).with_context(what)?;
    }
    socket.set_reuse_address(true).with_context(what)?;
    socket.set_nonblocking(true).with_context(what)?;
    socket.bind(&addr.into()).with_context(what)?;
    socket.listen(4096).with_context(what)?;
    tokio::net::TcpListener::from_std(socket.into()).with_context(what)
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("egressgen serve: shutting down, draining open connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("2").unwrap_err().contains("needs a unit"));
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999h").unwrap_err().contains("year"));
    }
}
