//! The proxy: accept, read the ClientHello, ask the allowlist, connect, relay.
//!
//! Each worker thread runs its own event loop over its own listeners
//! (`serve::worker`): a level-triggered poller, a slab of connections, and
//! a heap of deadlines. A connection is a small state machine, not a task:
//! an owned loop costs 10-14 µs less CPU per connection than tokio's task,
//! waker and readiness path, and halves the added p50 latency (BENCHMARKS.md,
//! serve finding 15). Tokio still runs the control side: signals, the drain,
//! the log flusher, and the DNS lookups that the resolver cannot answer at
//! once from its pins or cache.
//!
//! Every wait is bounded: the hello by `hello_timeout` and
//! [`super::hello::MAX_WIRE`], resolution and connection by `connect_timeout`, the
//! relay by `idle_timeout`, a refusal by a one-second linger, and the number of
//! connections by `max_connections` (excess connections are closed at once
//! and logged `UO`). The buffered hello bytes are replayed exactly, then
//! bytes flow both ways ([`relay`](super::relay)); a FIN from one side
//! becomes a `shutdown(WR)` on the other (half-close), as Envoy's
//! `tcp_proxy` does.
//!
//! This module holds the settings and starts and stops the workers. The
//! allow decision is [`Allowlist::decide_bytes`]; no module here matches
//! names itself.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use super::learn::Learned;
use super::log::AccessLog;
use super::poll::Backend;
use super::resolve::Resolver;
use super::sched::Sched;
use super::sent::Sent;
use super::worker::{Inbox, Msg, Worker};
use crate::domain::Allowlist;

/// Limits and knobs of a running proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Upstream port of listeners given to [`serve`]; [`serve_workers`]
    /// takes one per listener.
    pub upstream_port: u16,
    pub hello_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// Forward every routable name, recording what the allowlist would say.
    pub learn: bool,
    /// Use `splice(2)` for long flows (Linux only; `--splice`); see
    /// [`super::splice`].
    pub splice: bool,
    /// How the event loop waits: epoll on Linux; tests also run `poll(2)`,
    /// the backend used elsewhere.
    pub backend: Backend,
    /// The worker threads' scheduling policy (`--sched`).
    pub sched: Sched,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            upstream_port: 443,
            hello_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            // Envoy tcp_proxy's `idle_timeout` default is 1 hour.
            idle_timeout: Duration::from_secs(3600),
            max_connections: 4096,
            drain_timeout: Duration::from_secs(10),
            learn: false,
            splice: false,
            backend: Backend::default(),
            sched: Sched::Normal,
        }
    }
}

/// Everything a connection needs, shared by all of them.
pub struct Proxy<R> {
    pub allowlist: Allowlist,
    pub resolver: R,
    pub settings: Settings,
    pub log: AccessLog,
    pub learned: Learned,
}

/// How a shutdown went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the drain deadline passed.
    pub cut: usize,
    /// A worker thread panicked (a bug), which stopped the proxy: the
    /// other workers drained as on `shutdown`. The panic's own message went
    /// to stderr.
    pub panicked: bool,
}

/// Serves on `listeners`, on one worker thread, until `shutdown` completes,
/// then stops accepting and waits up to `drain_timeout` for open
/// connections to finish. Must run inside a tokio runtime (see
/// [`serve_workers`]).
pub async fn serve<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    listeners: Vec<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let port = proxy.settings.upstream_port;
    let mut worker = Vec::new();
    for l in listeners {
        match l.into_std() {
            Ok(l) => worker.push((l, port)),
            Err(e) => super::log::say(format_args!(
                "egressgen serve: cannot take over a listener: {e}"
            )),
        }
    }
    match serve_workers(proxy, vec![worker], || {}, shutdown).await {
        Ok(d) => d,
        Err(e) => {
            super::log::say(format_args!("egressgen serve: cannot start: {e}"));
            Drained {
                cut: 0,
                panicked: false,
            }
        }
    }
}

/// Starts one event-loop thread per entry of `workers`, each serving its
/// listeners (each with the upstream port its connections go to, like each
/// port's own internal listener in the gateway), until `shutdown`
/// completes; then drains as [`serve`] does. The workers share one
/// `max_connections` bound. DNS lookups the resolver cannot answer at once
/// run on the calling tokio runtime.
///
/// Everything that can fail (the pollers, registering the listeners, each
/// thread's scheduling policy) is done before the first worker starts;
/// then `on_ready` runs (the caller's "listening on" lines), and the workers
/// start serving.
///
/// A worker that panics stops the proxy, as `shutdown` would, and
/// [`Drained::panicked`] says so. Serving on without it would strand its
/// connections' share of `max_connections` for good.
pub async fn serve_workers<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    workers: Vec<Vec<(std::net::TcpListener, u16)>>,
    on_ready: impl FnOnce(),
    shutdown: impl Future<Output = ()>,
) -> io::Result<Drained> {
    let open = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(Sent::default());
    let rt = tokio::runtime::Handle::current();
    let (died_tx, mut died) = tokio::sync::mpsc::unbounded_channel::<()>();
    let mut ready = Vec::new();
    for listeners in workers {
        ready.push(Worker::new(
            proxy.clone(),
            listeners,
            open.clone(),
            sent.clone(),
            rt.clone(),
        )?);
    }
    // The policy is each thread's own, so each sets it, and no worker
    // serves until all have: a failure exits before anything is served.
    let sched = proxy.settings.sched;
    let mut started = Vec::new();
    let mut failed = None;
    for (i, worker) in ready.into_iter().enumerate() {
        let inbox = worker.inbox.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (policy_tx, policy) = std::sync::mpsc::channel();
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let died_tx = died_tx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("serve-{i}"))
            .spawn(move || {
                let _ = policy_tx.send(sched.apply());
                if go_rx.recv().is_ok() {
                    // The worker's state is dropped as the panic unwinds
                    // (its sockets close); nothing of it is used after.
                    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| worker.run())) {
                        Ok(cut) => drop(tx.send(cut)),
                        Err(_) => drop(died_tx.send(())),
                    }
                }
            })
            .and_then(|_| policy.recv().unwrap_or(Ok(())));
        match spawned {
            Ok(()) => started.push((inbox, rx, go)),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if let Some(e) = failed {
        // Dropping the `go` senders ends the threads that were waiting.
        return Err(e);
    }
    on_ready();
    let mut running: Vec<(Arc<Inbox>, _)> = Vec::new();
    for (inbox, rx, go) in started {
        let _ = go.send(());
        running.push((inbox, rx));
    }
    drop(died_tx);
    let mut panicked = tokio::select! {
        () = shutdown => false,
        Some(()) = died.recv() => true,
    };
    for (inbox, _) in &running {
        inbox.send(Msg::Stop);
    }
    let mut cut = 0;
    for (_, done) in running {
        match done.await {
            Ok(n) => cut += n,
            // Its sender was dropped unsent: that worker panicked.
            Err(_) => panicked = true,
        }
    }
    // The last lines, bounded: an output nobody reads must not hold us.
    proxy.log.flush(Duration::from_secs(1));
    Ok(Drained { cut, panicked })
}
