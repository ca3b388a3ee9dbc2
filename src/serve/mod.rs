//! `egressgen serve` (also `egressgen --serve`): a local SNI proxy that
//! enforces the same allowlist as the rendered gateway.
//!
//! It behaves like the gateway's internal listener: `tls_inspector` +
//! `filter_chain_match.server_names` + `sni_dynamic_forward_proxy` +
//! `tcp_proxy`. This file holds the command-line options and startup: it
//! checks every flag and binds every address before serving anything, so bad
//! input exits 2 with nothing served. The work is done by:
//! - [`hello`]: the ClientHello codec (pure, no I/O);
//! - [`listen`]: binding, and how workers share an address;
//! - [`proxy`]: settings, starting and draining the workers;
//! - `worker`: each worker's event loop: accept, bounds, connect, relay;
//! - [`relay`] (and [`splice`] on Linux): moving bytes both ways;
//! - [`poll`]: socket readiness (epoll, or poll(2));
//! - [`sched`]: the workers' scheduling policy (`--sched`);
//! - [`sent`]: the hellos sent upstream, to refuse one that loops back;
//! - [`resolve`]: `--resolve` pins and the cached system resolver;
//! - [`log`]: the access log;
//! - [`learn`]: `--learn`'s report.

pub mod hello;
pub mod learn;
pub mod listen;
pub mod log;
pub mod poll;
pub mod proxy;
pub mod relay;
pub mod resolve;
pub mod sched;
pub mod sent;
#[cfg(target_os = "linux")]
pub mod splice;
mod worker;

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
use resolve::{Pin, Pins, SystemResolver};

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
    /// `ADDR=PORT` sends this listener's connections to upstream port PORT,
    /// one listener per port of a config with several `ports`.
    #[arg(long = "listen", value_name = "ADDR[=PORT]", default_value = "127.0.0.1:8443", value_parser = parse_listen)]
    pub listen: Vec<Listen>,
    /// Upstream port of listeners without `=PORT` [default: the config's port, else 443].
    #[arg(long, value_name = "PORT")]
    pub upstream_port: Option<u16>,
    /// Longest wait for a complete ClientHello.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout)]
    pub hello_timeout: Duration,
    /// Longest wait to resolve and connect upstream.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    pub connect_timeout: Duration,
    /// Close a connection after this long with no byte either way (Envoy's default is 1h;
    /// Envoy's `0s` turns the timeout off, which serve does not do: every wait is bounded).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub idle_timeout: Duration,
    /// Most connections open at once; more are closed at once and logged `UO`.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub max_connections: u32,
    /// On SIGINT/SIGTERM, how long open connections may take to finish (`0s`: close them at once).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Pin names to an address, like curl's --resolve (repeatable):
    /// `api.test.local=127.0.0.1`, `*.test.local=127.0.0.1:8443`, `*=[::1]:8443`.
    /// A pin to one of the proxy's own listeners is refused at startup, and a
    /// name that resolves to one is refused per connection (either would loop).
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
    /// Move each direction with splice(2) once it has passed 1 MiB (Linux):
    /// a third less proxy CPU per GiB, but a stream whose sender runs on this
    /// host can get slower (BENCHMARKS.md, serve finding 19). Off by default.
    #[arg(long)]
    pub splice: bool,
    /// Accepted and ignored: copying is the default now (was: turn splice
    /// off), so scripts written for earlier builds keep working.
    #[arg(long, hide = true, conflicts_with = "splice")]
    pub no_splice: bool,
    /// Worker threads, each with its own event loop and SO_REUSEPORT
    /// listeners [default: number of CPUs].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub workers: Option<u16>,
    /// Which worker takes a new connection: `cpu` gives a local one to the
    /// worker for the CPU its client connected from; the rest, and all with
    /// `hash`, go by the kernel's hash of the addresses.
    #[arg(long, value_enum, default_value = "cpu")]
    pub balance: listen::Balance,
    /// Scheduling policy of the worker threads (Linux). With `batch`
    /// (SCHED_BATCH) a worker woken by the network does not preempt the
    /// process running on its CPU; it runs when that one sleeps or at the
    /// next tick, and handles more at once. Next to an app and a backend
    /// that wait on I/O, that is less than half the proxy CPU per
    /// connection and more throughput, for a lower connection rate; next to
    /// CPU-bound processes it adds milliseconds per new connection
    /// (BENCHMARKS.md, serve finding 21).
    #[arg(long, value_enum, default_value = "normal")]
    pub sched: sched::Sched,
}

/// One `--listen ADDR[=PORT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    pub upstream_port: Option<u16>,
}

/// Parses `127.0.0.1:8443`, `[::1]:8443` or either with `=PORT`.
pub fn parse_listen(s: &str) -> Result<Listen, String> {
    let (addr, port) = match s.split_once('=') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr = addr.parse().map_err(|_| {
        format!(
            "{} is not an address like `127.0.0.1:8443` or `[::1]:8443`",
            quoted(addr)
        )
    })?;
    let upstream_port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(format!(
                    "{} is not an upstream port from 1 to 65535 (in `ADDR=PORT`)",
                    quoted(p)
                ));
            }
        },
    };
    Ok(Listen {
        addr,
        upstream_port,
    })
}

/// The upstream port of each listener. With a config, every port must be
/// one of its `ports`: the gateway forwards no other, so neither does serve.
fn upstream_ports(
    listen: &[Listen],
    flag: Option<u16>,
    config_ports: Option<&[u16]>,
) -> Result<Vec<u16>> {
    let list = |ports: &[u16]| {
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (i, l) in listen.iter().enumerate() {
        // With SO_REUSEPORT both would bind, and the kernel would split
        // connections between their upstream ports at random.
        if l.addr.port() != 0 && listen[..i].iter().any(|o| o.addr == l.addr) {
            bail!(
                "--listen {} is given twice\n  help: give each listener its own address",
                l.addr
            );
        }
    }
    listen
        .iter()
        .map(|l| {
            let port = match (l.upstream_port, flag, config_ports) {
                (Some(p), _, _) | (None, Some(p), _) => p,
                (None, None, Some([p])) => *p,
                (None, None, None) => 443,
                (None, None, Some(ports)) => bail!(
                    "the config has several upstream ports ({}), and --listen {} names none
  help: give each listener its port, e.g. --listen 127.0.0.1:8443={} --listen 127.0.0.1:9443={}",
                    list(ports),
                    l.addr,
                    ports[0],
                    ports.get(1).copied().unwrap_or(ports[0]),
                ),
            };
            if let Some(ports) = config_ports
                && !ports.contains(&port)
            {
                bail!(
                    "upstream port {port} is not one of the config's ports ({}): the gateway would not forward it
  help: use one of them, or add {port} to spec.ports",
                    list(ports)
                );
            }
            Ok(port)
        })
        .collect()
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
        "" => {
            return Err(format!(
                "{} needs a unit: ms, s, m or h (e.g. `2s`)",
                quoted(s)
            ));
        }
        _ if unit.starts_with('.') => {
            return Err(format!(
                "{} is not a whole number: give a smaller unit instead (e.g. `1500ms` for 1.5 s)",
                quoted(s)
            ));
        }
        _ => {
            return Err(format!(
                "{} has the unit {}; units are ms, s, m and h, in lower case (e.g. `24h` for a day)",
                quoted(s),
                quoted(unit)
            ));
        }
    };
    // Beyond a year is certainly a typo, and keeps deadlines from overflowing.
    if d > Duration::from_secs(366 * 86_400) {
        return Err(format!("{} is longer than a year", quoted(s)));
    }
    Ok(d)
}

/// A timeout: a duration above zero. Zero would end every connection at
/// once; unlike Envoy's `0s` (no timeout), serve bounds every wait.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d.is_zero() {
        return Err(format!(
            "{} would end every connection at once; give a duration above zero \
             (every wait is bounded, so there is no \"off\": for a long wait give e.g. `24h`)",
            quoted(s)
        ));
    }
    Ok(d)
}

/// Refuses a `--resolve` pin that sends connections to one of the proxy's
/// own listeners (`listening`: each address with its upstream port); see
/// [`listen::Own`].
fn refuse_loops(pinned: &[Pin], listening: &[(SocketAddr, u16)]) -> Result<()> {
    let mut own = listen::Own::new(listening.iter().map(|&(a, _)| a).collect());
    for pin in pinned {
        for &(_, upstream) in listening {
            let target = SocketAddr::new(pin.ip, pin.port.unwrap_or(upstream));
            if let Some(l) = own.reached_by(target, std::time::Instant::now()) {
                bail!(
                    "--resolve sends connections to {target}, this proxy's own listener {l}: each would dial the proxy again, until --max-connections
  help: pin names to the upstream servers' addresses"
                );
            }
        }
    }
    Ok(())
}

/// How long the exit waits for the last log lines and messages to be
/// written (a stderr that nobody reads must not hold the exit).
const EXIT_FLUSH: Duration = Duration::from_secs(1);

/// Runs `egressgen serve` until SIGINT, SIGTERM or SIGHUP.
pub fn run(args: ServeArgs) -> Result<u8> {
    let result = serve(args);
    // Before the caller prints an error, so the two stay in order.
    log::stderr().flush(EXIT_FLUSH);
    result
}

fn serve(args: ServeArgs) -> Result<u8> {
    let (allowlist, from_config) = allowlist(&args)?;
    let config_ports = from_config.as_ref().map(|c| c.ports.as_slice());
    let ports = upstream_ports(&args.listen, args.upstream_port, config_ports)?;
    let pins = Pins::parse(args.resolve.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
    let pinned: Vec<Pin> = pins.targets().collect();
    let settings = Settings {
        upstream_port: ports[0],
        hello_timeout: args.hello_timeout,
        connect_timeout: args.connect_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections as usize,
        drain_timeout: args.drain_timeout,
        learn: args.learn,
        splice: args.splice,
        backend: Default::default(),
        sched: args.sched,
    };
    if args.splice && !cfg!(target_os = "linux") {
        bail!(
            "--splice needs Linux (splice(2))
  help: leave it out: flows are copied"
        );
    }
    if args.sched == sched::Sched::Batch && !cfg!(target_os = "linux") {
        bail!(
            "--sched batch needs Linux (SCHED_BATCH)
  help: leave it out: the workers keep the system's default policy"
        );
    }
    if args.learn && args.access_log.as_deref().is_some_and(is_stdout) {
        bail!(
            "--learn prints its domain list on stdout, so an access log there (--access-log -, or a path to stdout) would mix log lines into it
  help: send the access log to a file (--access-log FILE) or leave it on stderr"
        );
    }
    let log = open_log(args.access_log.as_deref(), args.log_format)?;
    let fds = raise_fd_limit();
    // A connection needs 2 descriptors, 6 while spliced (two pipes).
    if fds.is_some_and(|n| n < 2 * settings.max_connections as u64 + 64) {
        log::say(format_args!(
            "egressgen serve: warning: the open-file limit ({}) is below 2 x --max-connections; connections past it fail (UF) instead of being refused (UO)",
            fds.unwrap_or(0)
        ));
    }
    let workers = args
        .workers
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let balance = args.balance;
    let listen = args.listen.clone();
    let entries = allowlist.len();
    let learn = args.learn;
    let proxy = Arc::new(Proxy {
        allowlist,
        resolver: match &from_config {
            Some(c) => SystemResolver::new(pins)
                .with_family(c.family)
                .with_limits(c.dns),
            None => SystemResolver::new(pins),
        },
        settings,
        log,
        learned: Default::default(),
    });
    // One event loop per worker thread, each with its own SO_REUSEPORT
    // listeners, as nginx's workers do; this thread's runtime handles
    // signals, DNS lookups and the drain (see `proxy`).
    let main_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let (shutdown, sockets) = main_rt.block_on(async {
        let shutdown = shutdown_signal()?;
        let mut sockets: Vec<Vec<(std::net::TcpListener, u16)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (l, &port) in listen.iter().zip(&ports) {
            let group = listen::bind_group(l.addr, workers, balance)?;
            for (w, socket) in sockets.iter_mut().zip(group) {
                w.push((socket, port));
            }
        }
        Ok::<_, anyhow::Error>((shutdown, sockets))
    })?;
    let listening = sockets[0]
        .iter()
        .map(|(l, port)| Ok((l.local_addr()?, *port)))
        .collect::<std::io::Result<Vec<_>>>()?;
    refuse_loops(&pinned, &listening)?;
    // Printed once every worker is set up, so a script that waits for
    // "listening on" never sees it from a proxy that then exits.
    let banner = banner(&listening, entries, learn);
    let drained = main_rt
        .block_on(proxy::serve_workers(
            proxy.clone(),
            sockets,
            || log::say(banner.trim_end()),
            shutdown,
        ))
        .context("cannot start the workers")?;
    // Dropping the runtime would wait for DNS lookups still running on its
    // blocking pool (getaddrinfo cannot be cancelled, and a dead name server
    // holds it for the resolver's full timeout), long after their
    // connections closed: the drain deadline must bound the exit.
    main_rt.shutdown_background();
    if drained.cut > 0 {
        log::say(format_args!(
            "egressgen serve: drain deadline passed; closed {} open connection{}",
            drained.cut,
            if drained.cut == 1 { "" } else { "s" }
        ));
    }
    if learn {
        let _ = crate::output::print(&proxy.learned.report());
    }
    // serve_workers flushed the log; a stuck output is not waited for again.
    proxy.log.flush(EXIT_FLUSH);
    let lost = proxy.log.lost();
    if lost > 0 {
        log::say(format_args!(
            "egressgen serve: warning: {lost} log line{} lost: the log output did not keep up",
            if lost == 1 { " was" } else { "s were" }
        ));
    }
    if drained.panicked {
        log::say(
            "error: a worker thread panicked, which is a bug in egressgen; the proxy stopped and drained the other workers' connections
  help: please report it, with the panic message above",
        );
        return Ok(exit::BUG);
    }
    Ok(exit::OK)
}

/// What `serve -c` takes from the config besides the allowlist: the
/// upstream ports, and the forward proxy's DNS settings (`spec.dns`).
struct FromConfig {
    ports: Vec<u16>,
    family: crate::config::LookupFamily,
    dns: resolve::DnsLimits,
}

/// The allowlist from `-c` or `--allow`, and what else the config sets.
fn allowlist(args: &ServeArgs) -> Result<(Allowlist, Option<FromConfig>)> {
    if let Some(path) = &args.config {
        let cfg = cli::load_config(Some(path), &[], &Overrides::default())?;
        let from = FromConfig {
            ports: cfg.ports.iter().map(|p| p.upstream).collect(),
            family: cfg.lookup_family,
            dns: {
                let envoy = resolve::DnsLimits::default();
                resolve::DnsLimits {
                    refresh: cfg.dns_cache.refresh.unwrap_or(envoy.refresh),
                    host_ttl: cfg.dns_cache.host_expiry.unwrap_or(envoy.host_ttl),
                    max_hosts: cfg
                        .dns_cache
                        .max_hosts
                        .map_or(envoy.max_hosts, |n| n as usize),
                }
            },
        };
        return Ok((cfg.allowlist, Some(from)));
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
        log::say(format_args!("note: --allow: {d}"));
    }
    Ok((list, None))
}

/// Whether an `--access-log` value is this process's stdout: `-`, or a
/// path to the same file (`/dev/stdout`, or the file stdout is redirected to).
fn is_stdout(spec: &str) -> bool {
    use std::os::fd::AsFd;
    spec == "-" || crate::output::same_file(std::path::Path::new(spec), std::io::stdout().as_fd())
}

fn open_log(spec: Option<&str>, format: Format) -> Result<AccessLog> {
    Ok(match spec {
        Some("off") => AccessLog::off(),
        Some("-") => AccessLog::new(Box::new(std::io::stdout()), format, true),
        None => AccessLog::stderr(format),
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot open access log {}: {e}\n  help: pass --access-log a file you may \
                         write to in an existing directory, `-` for stdout or `off`",
                        quoted(path)
                    )
                })?;
            AccessLog::new(Box::new(f), format, false)
        }
    })
}

/// Raises the soft open-file limit to the hard one, as servers usually do,
/// and returns the limit now in force.
fn raise_fd_limit() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return None;
        }
        if r.rlim_cur < r.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                r = raised;
            }
        }
    }
    // `rlim_t` is u64 on Linux and macOS, i64 on FreeBSD.
    #[allow(clippy::useless_conversion)]
    u64::try_from(r.rlim_cur).ok()
}

/// The lines printed once serving starts. Scripts wait for "listening on"
/// and parse the address: keep them bare.
fn banner(listening: &[(SocketAddr, u16)], entries: usize, learn: bool) -> String {
    let mut out = String::new();
    for (addr, _) in listening {
        out.push_str(&format!("egressgen serve: listening on {addr}\n"));
    }
    let upstream = match listening {
        [(_, first), rest @ ..] if rest.iter().all(|(_, p)| p == first) => {
            format!("upstream port {first}")
        }
        _ => {
            let each: Vec<String> = listening
                .iter()
                .map(|(addr, port)| format!("{port} ({addr})"))
                .collect();
            format!("upstream ports {}", each.join(", "))
        }
    };
    out.push_str(&format!(
        "egressgen serve: {entries} allowlist entr{}{}; {upstream}\n",
        if entries == 1 { "y" } else { "ies" },
        if learn {
            ", learn mode: forwarding every name"
        } else {
            ""
        },
    ));
    out
}

/// Whether this process was started with SIGHUP ignored (`nohup`).
fn hup_ignored() -> bool {
    // SAFETY: with a null new action, sigaction only reads the current one
    // into `old`.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGHUP, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_IGN
    }
}

/// A future that completes on SIGINT, SIGTERM or SIGHUP. SIGHUP (the
/// terminal closed, an SSH session dropped) drains like the others, so
/// `--learn` still prints its list and the log keeps its last lines.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    // Registered now, before "listening on" is printed, so a signal sent as
    // soon as the proxy says it is ready is never lost.
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    // Under `nohup` (SIGHUP ignored) it stays ignored: a handler would
    // undo what the user asked for.
    let mut hup = if hup_ignored() {
        None
    } else {
        Some(signal(SignalKind::hangup()).context("cannot handle SIGHUP")?)
    };
    Ok(async move {
        let hangup = async {
            match &mut hup {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = hangup => {}
        }
        log::say("egressgen serve: shutting down, draining open connections");
    })
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
        assert!(parse_duration("1.5s").unwrap_err().contains("`1500ms`"));
        assert!(parse_duration("1S").unwrap_err().contains("the unit `S`"));
        assert!(
            parse_duration("1d")
                .unwrap_err()
                .contains("`24h` for a day")
        );
        assert!(parse_duration("s").unwrap_err().contains("not a duration"));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_timeout("0ms").unwrap_err().contains("above zero"));
        assert_eq!(parse_timeout("1ms"), Ok(Duration::from_millis(1)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999999h").unwrap_err().contains("year"));
    }

    #[test]
    fn a_pin_to_an_own_listener_is_a_loop() {
        let a = |s: &str| s.parse::<SocketAddr>().unwrap();
        let reaches = |target: &str, listener: &str| {
            listen::Own::new(vec![a(listener)])
                .reached_by(a(target), std::time::Instant::now())
                .is_some()
        };
        assert!(reaches("127.0.0.1:8443", "127.0.0.1:8443"));
        assert!(reaches("127.0.0.1:8443", "0.0.0.0:8443"));
        assert!(reaches("127.0.0.2:8443", "0.0.0.0:8443"));
        assert!(reaches("0.0.0.0:8443", "127.0.0.1:8443"));
        assert!(reaches("0.0.0.0:8443", "0.0.0.0:8443"));
        assert!(reaches("[::1]:8443", "[::]:8443"));
        assert!(reaches("[::]:8443", "[::1]:8443"));
        assert!(!reaches("127.0.0.1:443", "127.0.0.1:8443"));
        assert!(!reaches("127.0.0.2:8443", "127.0.0.1:8443"));
        assert!(!reaches("[::1]:8443", "0.0.0.0:8443"));
        assert!(!reaches("10.0.0.1:8443", "127.0.0.1:8443"));
        // An IPv6 socket dials an IPv4-mapped address over IPv4.
        assert!(reaches("[::ffff:127.0.0.1]:8443", "127.0.0.1:8443"));
        assert!(reaches("[::ffff:127.0.0.1]:8443", "0.0.0.0:8443"));
        assert!(!reaches("[::ffff:127.0.0.1]:8443", "[::1]:8443"));
        // A documentation address (192.0.2.0/24) that is not this host's.
        let ifaces = listen::interface_ips();
        let other = (1..=254)
            .map(|n| std::net::IpAddr::from([192, 0, 2, n]))
            .find(|ip| !ifaces.contains(ip))
            .unwrap();
        assert!(!reaches(&format!("{other}:8443"), "0.0.0.0:8443"));
        // An address of one of this host's interfaces reaches a wildcard
        // listener, and only a wildcard one.
        for ip in listen::interface_ips() {
            let target = SocketAddr::new(ip, 8443).to_string();
            let wildcard = if ip.is_ipv4() {
                "0.0.0.0:8443"
            } else {
                "[::]:8443"
            };
            assert!(reaches(&target, wildcard), "{target}");
            assert!(!reaches(
                &target,
                if ip.is_ipv4() {
                    "0.0.0.0:443"
                } else {
                    "[::]:443"
                }
            ));
            if !ip.is_loopback() {
                let lo = if ip.is_ipv4() {
                    "127.0.0.1:8443"
                } else {
                    "[::1]:8443"
                };
                assert!(!reaches(&target, lo), "{target}");
            }
        }
        // A pin without a port takes the listener's upstream port.
        let pin = Pin {
            ip: "127.0.0.1".parse().unwrap(),
            port: None,
        };
        let err = refuse_loops(&[pin], &[(a("127.0.0.1:443"), 443)]).unwrap_err();
        assert!(
            err.to_string().contains("own listener 127.0.0.1:443"),
            "{err}"
        );
        assert!(refuse_loops(&[pin], &[(a("127.0.0.1:8443"), 443)]).is_ok());
    }
}
