//! The proxy: accept, read the ClientHello, ask the allowlist, connect, relay.
//!
//! Each connection is one tokio task, no thread of its own. Every wait is
//! bounded: the hello by `hello_timeout` and [`hello::MAX_WIRE`], resolution
//! and connection by `connect_timeout`, the relay by `idle_timeout`, and the
//! number of connections by `max_connections` (excess connections are closed
//! at once and logged `UO`). The buffered hello bytes are replayed exactly,
//! then bytes flow both ways; a FIN from one side becomes a `shutdown(WR)` on
//! the other (half-close), as Envoy's `tcp_proxy` does.
//!
//! Flows that pass 1 MiB in one direction switch to `splice(2)` on Linux
//! (see [`super::splice`]); short ones stay on plain reads and writes.
//!
//! Relay buffers exist only while bytes are in flight (see [`Half`]): they
//! start at 16 KiB and grow to 64 KiB for bulk flows, and an idle connection
//! gives them back, so idle connections stay small.
//!
//! The allow decision is [`Allowlist::decide`]; this module never matches
//! names itself.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::hello::{self, Invalid, Parsed};
use super::learn::Learned;
use super::log::{AccessLog, Entry, flags};
use super::resolve::Resolver;
use crate::domain::{Allowlist, Decision, Denial};

/// First relay buffer size for each direction.
const RELAY_START: usize = 16 * 1024;
/// Largest relay buffer, reached after reads that fill the buffer.
const RELAY_MAX: usize = 64 * 1024;
/// After refusing a TLS client, how long to wait for it to close so the
/// alert is not lost to a reset.
const LINGER: Duration = Duration::from_secs(1);

/// Limits and knobs of a running proxy.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Upstream port of listeners given to [`serve`]; [`serve_with`] takes
    /// one per listener.
    pub upstream_port: u16,
    pub hello_timeout: Duration,
    pub connect_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub drain_timeout: Duration,
    /// Forward every routable name, recording what the allowlist would say.
    pub learn: bool,
    /// Use `splice(2)` for long flows (Linux); see [`super::splice`].
    pub splice: bool,
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
            splice: cfg!(target_os = "linux"),
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
}

/// Serves on `listeners` until `shutdown` completes, then stops accepting
/// and waits up to `drain_timeout` for open connections to finish.
pub async fn serve<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let slots = Arc::new(Semaphore::new(proxy.settings.max_connections));
    let port = proxy.settings.upstream_port;
    let listeners = listeners.into_iter().map(|l| (l, port)).collect();
    serve_with(proxy, listeners, slots, shutdown).await
}

/// [`serve`] with the connection slots given, so several runtimes (one per
/// worker thread) share one `max_connections` bound. The drain waits for
/// every slot, i.e. for the connections of all workers. Each listener comes
/// with the upstream port its connections go to, like each port's own
/// internal listener and forward proxy in the gateway.
pub async fn serve_with<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    listeners: Vec<(TcpListener, u16)>,
    slots: Arc<Semaphore>,
    shutdown: impl Future<Output = ()>,
) -> Drained {
    let max = proxy.settings.max_connections;
    let mut accepting = Vec::new();
    for (l, port) in listeners {
        accepting.push(tokio::spawn(accept_loop(
            proxy.clone(),
            l,
            port,
            slots.clone(),
        )));
    }
    // Only a buffered log needs flushing; with none, an idle proxy never
    // wakes up.
    let flusher = proxy.log.needs_periodic_flush().then(|| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = proxy.log.flush();
            }
        })
    });
    shutdown.await;
    for a in &accepting {
        a.abort();
    }
    for a in accepting {
        // Dropping the task drops its listener: new connections are refused.
        let _ = a.await;
    }
    let deadline = Instant::now() + proxy.settings.drain_timeout;
    while slots.available_permits() < max && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(f) = flusher {
        f.abort();
    }
    let _ = proxy.log.flush();
    Drained {
        cut: max - slots.available_permits(),
    }
}

async fn accept_loop<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    listener: TcpListener,
    upstream_port: u16,
    slots: Arc<Semaphore>,
) {
    let inherited = nodelay_inherited(&listener);
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                eprintln!("egressgen serve: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if !inherited {
                    let _ = stream.set_nodelay(true);
                }
                tokio::spawn(connection(
                    proxy.clone(),
                    stream,
                    peer,
                    upstream_port,
                    permit,
                ));
            }
            Err(_) => {
                drop(stream);
                proxy.log.write(&Entry {
                    start: SystemTime::now(),
                    downstream: peer,
                    sni: None,
                    ech: false,
                    decision: "denied",
                    reason: "max_connections",
                    rule: None,
                    upstream: None,
                    bytes_received: 0,
                    bytes_sent: 0,
                    duration: Duration::ZERO,
                    flags: flags::OVERFLOW,
                });
            }
        }
    }
}

/// Sets `TCP_NODELAY` on the listener. Linux copies it to every accepted
/// socket (`sk_clone_lock` copies the listener's `tcp_sock`), which saves a
/// `setsockopt` per connection; elsewhere each socket gets its own.
fn nodelay_inherited(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// What happened to one connection, for the log.
struct Outcome {
    /// The server name as sent (lowercased); bytes, since a refused one
    /// need not be UTF-8 and is logged exactly.
    sni: Option<Vec<u8>>,
    ech: bool,
    decision: &'static str,
    reason: &'static str,
    rule: Option<String>,
    upstream: Option<SocketAddr>,
    received: u64,
    sent: u64,
    flags: &'static str,
}

async fn connection<R: Resolver>(
    proxy: Arc<Proxy<R>>,
    client: TcpStream,
    peer: SocketAddr,
    upstream_port: u16,
    _slot: OwnedSemaphorePermit,
) {
    let start = SystemTime::now();
    let began = Instant::now();
    let mut out = Outcome {
        sni: None,
        ech: false,
        decision: "denied",
        reason: "",
        rule: None,
        upstream: None,
        received: 0,
        sent: 0,
        flags: flags::NONE,
    };
    handle(&proxy, client, upstream_port, &mut out).await;
    proxy.log.write(&Entry {
        start,
        downstream: peer,
        sni: out.sni.as_deref(),
        ech: out.ech,
        decision: out.decision,
        reason: out.reason,
        rule: out.rule.as_deref(),
        upstream: out.upstream,
        bytes_received: out.received,
        bytes_sent: out.sent,
        duration: began.elapsed(),
        flags: out.flags,
    });
}

/// TLS alert descriptions (RFC 8446 §6).
mod alert {
    pub const ACCESS_DENIED: u8 = 49;
    pub const DECODE_ERROR: u8 = 50;
    pub const UNRECOGNIZED_NAME: u8 = 112;
}

async fn handle<R: Resolver>(
    proxy: &Proxy<R>,
    mut client: TcpStream,
    upstream_port: u16,
    out: &mut Outcome,
) {
    let s = &proxy.settings;
    let mut buf = Vec::with_capacity(4096);
    let sni = match tokio::time::timeout(s.hello_timeout, read_hello(&mut client, &mut buf)).await {
        Err(_) => {
            out.reason = "hello_timeout";
            out.flags = flags::TIMEOUT;
            out.received = buf.len() as u64;
            return;
        }
        Ok(Err(HelloError::Closed)) => {
            out.reason = "hello_incomplete";
            out.flags = flags::DOWNSTREAM_CLOSED;
            out.received = buf.len() as u64;
            return;
        }
        Ok(Err(HelloError::Invalid(why))) => {
            out.reason = why.code();
            out.flags = flags::NO_ROUTE;
            out.received = buf.len() as u64;
            if why.spoke_tls() {
                refuse(&mut client, alert::DECODE_ERROR, out).await;
            }
            return;
        }
        Ok(Ok(h)) => h,
    };
    out.received = buf.len() as u64;
    out.ech = sni.ech;
    let raw = sni.name.unwrap_or_default();
    let (name, allowed) = match proxy.allowlist.decide_bytes(&raw) {
        Decision::Allowed { name, by } => {
            out.decision = "allowed";
            out.reason = "matched";
            out.rule = Some(by.to_string());
            (name, true)
        }
        Decision::Denied { name, reason } => {
            out.reason = reason.code();
            let routable = matches!(
                reason,
                Denial::NoMatch { .. } | Denial::TrailingDot | Denial::IpLiteral
            );
            if s.learn {
                proxy.learned.record(&name, &reason);
            }
            if !(s.learn && routable) {
                out.sni = (!raw.is_empty()).then(|| raw.to_ascii_lowercase());
                out.flags = flags::NO_ROUTE;
                let code = match reason {
                    Denial::NoMatch { .. } => alert::ACCESS_DENIED,
                    _ => alert::UNRECOGNIZED_NAME,
                };
                refuse(&mut client, code, out).await;
                return;
            }
            out.decision = "learned";
            (name, false)
        }
    };
    if allowed && s.learn {
        proxy
            .learned
            .record_allowed(&name, out.rule.as_deref().unwrap_or(""));
    }
    let (mut upstream, sent) = match connect(proxy, &name, upstream_port, &buf, out).await {
        Some(u) => u,
        None => {
            out.sni = Some(name.into_bytes());
            return;
        }
    };
    out.sni = Some(name.into_bytes());
    let (up, down, end) = relay(
        &mut client,
        &mut upstream,
        (buf, sent),
        s.idle_timeout,
        s.splice,
    )
    .await;
    out.received = up;
    out.sent = down;
    match end {
        Ok(()) => {}
        Err(RelayError::Idle) => {
            out.reason = "idle_timeout";
            out.flags = flags::TIMEOUT;
        }
        Err(RelayError::Io(_)) => {
            out.reason = "connection_reset";
            out.flags = flags::CONNECTION_RESET;
        }
    }
}

/// Resolves `name`, connects to the first address that answers and sends
/// what it can of `hello` at once. Returns the stream and the number of
/// `hello` bytes sent.
async fn connect<R: Resolver>(
    proxy: &Proxy<R>,
    name: &str,
    port: u16,
    hello: &[u8],
    out: &mut Outcome,
) -> Option<(TcpStream, usize)> {
    let s = &proxy.settings;
    let work = async {
        let addrs = match proxy.resolver.resolve(name, port).await {
            Ok(a) => a,
            Err(_) => return Err(("dns_failed", flags::DNS_FAILURE)),
        };
        for a in addrs.iter() {
            out.upstream = Some(a);
            if let Ok(u) = dial(a, hello).await {
                return Ok(u);
            }
        }
        Err(("connect_failed", flags::UPSTREAM_FAILURE))
    };
    let (reason, flag) = match tokio::time::timeout(s.connect_timeout, work).await {
        Ok(Ok(u)) => return Some(u),
        Ok(Err(e)) => e,
        Err(_) => ("connect_timeout", flags::UPSTREAM_FAILURE),
    };
    out.reason = reason;
    out.flags = flag;
    None
}

/// Connects to `addr` and sends as much of `first` as the socket takes.
/// (Linux; elsewhere [`dial`] only connects and the relay sends it all.)
///
/// When the handshake completes within `connect()` (loopback, a near
/// upstream), the bytes go out at once: no wait for writability and no
/// `SO_ERROR` check, two system calls and an event-loop turn fewer than
/// tokio's `TcpStream::connect`. Otherwise `send` fails with EAGAIN, and
/// the connection is awaited as usual; a refused connection surfaces as the
/// `send` error or in `SO_ERROR`.
#[cfg(target_os = "linux")]
async fn dial(addr: SocketAddr, first: &[u8]) -> io::Result<(TcpStream, usize)> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let sent = match socket.send_with_flags(first, libc::MSG_NOSIGNAL) {
        Ok(n) => n,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std(socket.into())?;
    if sent == 0 {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
    }
    Ok((stream, sent))
}

#[cfg(not(target_os = "linux"))]
async fn dial(addr: SocketAddr, _first: &[u8]) -> io::Result<(TcpStream, usize)> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok((stream, 0))
}

/// Sends a fatal alert, closes our side and waits briefly for the client to
/// close, so the alert is read rather than lost to a reset.
async fn refuse(client: &mut TcpStream, description: u8, out: &mut Outcome) {
    let record = [21, 3, 3, 0, 2, 2, description];
    if let Ok(n) = client.try_write(&record) {
        out.sent = n as u64;
    }
    let _ = client.shutdown().await;
    let mut sink = [0u8; 1024];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0;
        while let Ok(n) = client.read(&mut sink).await {
            total += n;
            if n == 0 || total > hello::MAX_WIRE {
                break;
            }
        }
    })
    .await;
}

/// The part of the hello the proxy keeps.
struct SniInfo {
    name: Option<Vec<u8>>,
    ech: bool,
}

enum HelloError {
    Closed,
    Invalid(Invalid),
}

/// Reads until the buffer holds a whole ClientHello. Parses only when the
/// codec's hint says it can make progress, so a hello sent a byte at a time
/// costs a read per byte but not a parse per byte.
async fn read_hello(client: &mut TcpStream, buf: &mut Vec<u8>) -> Result<SniInfo, HelloError> {
    let mut need = 1;
    loop {
        while buf.len() < need {
            if buf.capacity() == buf.len() {
                buf.reserve(need - buf.len());
            }
            match client.read_buf(buf).await {
                Ok(0) | Err(_) => return Err(HelloError::Closed),
                Ok(_) => {}
            }
        }
        match hello::parse(buf) {
            Parsed::NeedMore(n) => need = n,
            Parsed::Invalid(why) => return Err(HelloError::Invalid(why)),
            Parsed::Hello(h) => {
                return Ok(SniInfo {
                    name: h.sni.map(|s| s.to_vec()),
                    ech: h.ech,
                });
            }
        }
    }
}

enum RelayError {
    Idle,
    Io(#[allow(dead_code)] io::Error),
}

/// One direction of the relay.
///
/// The buffer exists only while bytes are in flight: it is taken from the
/// [`pool`] when the socket turns readable, read into without zero-filling,
/// and handed back once it has been written out and the socket has nothing
/// more. So an idle connection holds no relay memory.
struct Half {
    /// Bytes `pos..buf.len()` are waiting to be written.
    buf: Vec<u8>,
    pos: usize,
    /// Size of the next buffer: starts at [`RELAY_START`], grows to
    /// [`RELAY_MAX`] after reads that fill it.
    size: usize,
    eof: bool,
    done: bool,
    total: u64,
    /// Switch to `splice(2)` once `total` passes `SPLICE_AFTER`.
    splice: bool,
    #[cfg(target_os = "linux")]
    pipe: Option<super::splice::Pipe>,
}

impl Half {
    fn new(pending: Vec<u8>, splice: bool) -> Half {
        Half {
            buf: pending,
            pos: 0,
            size: RELAY_START,
            eof: false,
            done: false,
            total: 0,
            splice: splice && cfg!(target_os = "linux"),
            #[cfg(target_os = "linux")]
            pipe: None,
        }
    }

    /// Long flow, buffer drained: relay through a pipe from now on.
    #[cfg(target_os = "linux")]
    fn poll_splice(
        &mut self,
        cx: &mut Context<'_>,
        r: &TcpStream,
        w: &TcpStream,
        progress: &mut bool,
    ) -> Poll<io::Result<()>> {
        if self.pipe.is_none() {
            match super::splice::Pipe::new() {
                Ok(p) => {
                    self.pipe = Some(p);
                    pool::give(std::mem::take(&mut self.buf));
                }
                Err(_) => {
                    // Out of fds: keep copying.
                    self.splice = false;
                    return Poll::Ready(Ok(()));
                }
            }
        }
        let Some(pipe) = self.pipe.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        let before = self.total;
        let res = pipe.poll_relay(cx, r, w, &mut self.total);
        if self.total != before {
            *progress = true;
        }
        if ready!(res)? {
            self.eof = true;
        }
        Poll::Ready(Ok(()))
    }

    /// `other_done`: the opposite direction has ended, so the connection
    /// closes as soon as this one does.
    fn poll(
        &mut self,
        cx: &mut Context<'_>,
        r: &mut TcpStream,
        w: &mut TcpStream,
        other_done: bool,
        progress: &mut bool,
    ) -> Poll<io::Result<()>> {
        loop {
            if self.pos < self.buf.len() {
                let n = ready!(Pin::new(&mut *w).poll_write(cx, &self.buf[self.pos..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                self.pos += n;
                self.total += n as u64;
                *progress = true;
                if self.pos == self.buf.len() {
                    self.pos = 0;
                    self.buf.clear();
                }
                continue;
            }
            #[cfg(target_os = "linux")]
            if self.splice && !self.eof && self.total >= super::splice::SPLICE_AFTER {
                ready!(self.poll_splice(cx, r, w, progress))?;
                if self.splice {
                    continue;
                }
            }
            if self.eof {
                // Half-close: pass the FIN on. The peer may already be gone,
                // which ends this direction all the same. When the other
                // direction has ended, `close()` right after sends the same
                // FIN (both receive queues were read to EOF, so it is not a
                // reset): no `shutdown` call needed.
                if !other_done {
                    let _ = ready!(Pin::new(&mut *w).poll_shutdown(cx));
                }
                self.done = true;
                return Poll::Ready(Ok(()));
            }
            if r.poll_read_ready(cx)?.is_pending() {
                // Nothing buffered and nothing to read: give the buffer back.
                pool::give(std::mem::take(&mut self.buf));
                return Poll::Pending;
            }
            if self.buf.capacity() < self.size {
                pool::give(std::mem::replace(&mut self.buf, pool::take(self.size)));
            }
            // A short read drained the socket: clear its read readiness now
            // instead of paying a read that fails with EAGAIN next time
            // (nginx does the same). The read runs inside `try_io`, which
            // clears only the readiness it saw before the read, so data that
            // arrives after the read keeps its epoll edge. (Clearing in a
            // second `try_io` after the read lost such edges: the relay hung
            // in `long_flows_are_byte_exact_with_and_without_splice`.)
            let room = self.buf.capacity() - self.buf.len();
            let mut drained = None;
            let read = r.try_io(Interest::READABLE, || match r.try_read_buf(&mut self.buf) {
                Ok(n) if n > 0 && n < room => {
                    drained = Some(n);
                    Err(io::ErrorKind::WouldBlock.into())
                }
                other => other,
            });
            match drained.map_or(read, Ok) {
                Ok(0) => self.eof = true,
                Ok(n) => {
                    if n == room {
                        self.size = (self.size * 4).min(RELAY_MAX);
                    }
                    *progress = true;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.buf));
    }
}

/// Relay buffers handed back by idle directions, kept per thread for reuse.
///
/// Handing them straight back to the allocator cost 7 µs more proxy CPU per
/// keep-alive request in bench/proxy.sh (10.7 -> 17.8 µs, see
/// BENCHMARKS.md); reusing them is at par. The pool is bounded, so idle
/// connections still cost no buffer.
mod pool {
    use std::cell::RefCell;

    use super::RELAY_START;

    /// Buffers kept per thread: at most 32 × 64 KiB = 2 MiB.
    const KEEP: usize = 32;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer with room for at least `size` bytes.
    pub fn take(size: usize) -> Vec<u8> {
        // `try_with`: during thread teardown the pool is gone; allocate.
        FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            let i = free.iter().rposition(|b| b.capacity() >= size)?;
            Some(free.swap_remove(i))
        })
        .ok()
        .flatten()
        .unwrap_or_else(|| Vec::with_capacity(size))
    }

    /// Keeps `buf` for reuse if there is room; small ones (a replayed
    /// ClientHello) are just freed.
    pub fn give(mut buf: Vec<u8>) {
        if buf.capacity() < RELAY_START {
            return;
        }
        buf.clear();
        let _ = FREE.try_with(|free| {
            let mut free = free.borrow_mut();
            if free.len() < KEEP {
                free.push(buf);
            }
        });
    }
}

/// Relays until both directions have closed, an error, or `idle` passes
/// with no byte moving either way. `pending` is the hello and how much of
/// it [`dial`] already sent. Returns bytes client→upstream (the whole hello
/// included), bytes upstream→client, and how it ended.
async fn relay(
    client: &mut TcpStream,
    upstream: &mut TcpStream,
    pending: (Vec<u8>, usize),
    idle: Duration,
    splice: bool,
) -> (u64, u64, Result<(), RelayError>) {
    let mut up = Half::new(pending.0, splice);
    up.pos = pending.1;
    up.total = pending.1 as u64;
    if up.pos == up.buf.len() {
        up.pos = 0;
        up.buf.clear();
    }
    let mut down = Half::new(Vec::new(), splice);
    let mut last = Instant::now();
    // One timer per connection, re-armed lazily: progress only records the
    // time, and the timer is pushed back when it fires early.
    let mut timer = pin!(tokio::time::sleep(idle));
    let end = poll_fn(|cx| {
        let mut progress = false;
        if !up.done {
            if let Poll::Ready(Err(e)) = up.poll(cx, client, upstream, down.done, &mut progress) {
                return Poll::Ready(Err(RelayError::Io(e)));
            }
        }
        if !down.done {
            if let Poll::Ready(Err(e)) = down.poll(cx, upstream, client, up.done, &mut progress) {
                return Poll::Ready(Err(RelayError::Io(e)));
            }
        }
        if up.done && down.done {
            return Poll::Ready(Ok(()));
        }
        if progress {
            last = Instant::now();
        }
        while timer.as_mut().poll(cx).is_ready() {
            let deadline = last + idle;
            if deadline <= Instant::now() {
                return Poll::Ready(Err(RelayError::Idle));
            }
            timer.as_mut().reset(deadline.into());
        }
        Poll::Pending
    })
    .await;
    (up.total, down.total, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`nodelay_inherited`] relies on: an accepted socket carries the
    /// listener's `TCP_NODELAY`, so Nagle never delays relayed records.
    #[tokio::test]
    async fn accepted_sockets_get_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = nodelay_inherited(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        if inherited {
            assert!(accepted.nodelay().unwrap());
        }
    }
}
