//! One worker thread's event loop: accept, read the ClientHello, ask the
//! allowlist, resolve, connect, relay, and close, for every connection of
//! its listeners. Started and stopped by [`super::proxy::serve_workers`].

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::hello::{self, Parsed};
use super::listen::Own;
use super::log::{Entry, flags};
use super::poll::{Event, Interest, Poller};
use super::proxy::Proxy;
use super::relay::{Half, RELAY_MAX};
use super::resolve::{self, Addrs, Resolver};
use super::sent::Sent;
use crate::domain::{Decision, Denial};

/// Once our side toward the client is shut (an alert sent, or the upstream
/// reset), how long to wait for the client to close. Closing a socket with
/// unread bytes, or one that bytes reach later, sends a reset, which drops
/// what is still on its way to the client (the lingering close of HTTP
/// servers).
const LINGER: Duration = Duration::from_secs(1);
/// How long a listener rests after `accept` failed for want of descriptors
/// or memory (level-triggered, it would otherwise be reported at once).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Sets `TCP_NODELAY` on the listener. Linux copies it to every accepted
/// socket (`sk_clone_lock` copies the listener's `tcp_sock`), which saves a
/// `setsockopt` per connection; elsewhere each socket gets its own.
fn nodelay_inherited(listener: &std::net::TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .set_tcp_nodelay(true)
            .is_ok()
}

/// Messages to a worker from other threads.
pub(super) enum Msg {
    /// Stop accepting and drain.
    Stop,
    /// The answer to a lookup the resolver could not give at once.
    Resolved {
        slot: u32,
        generation: u32,
        addrs: io::Result<Addrs>,
    },
}

/// A worker's mailbox: a queue, and a socket pair whose reading end sits
/// in the worker's poller, so a message wakes the loop.
pub(super) struct Inbox {
    queue: Mutex<Vec<Msg>>,
    wake: UnixStream,
    woken: UnixStream,
}

impl Inbox {
    fn new() -> io::Result<Inbox> {
        let (wake, woken) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            wake,
            woken,
        })
    }

    pub(super) fn send(&self, m: Msg) {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        // A full socket already holds a wake-up.
        let _ = (&self.wake).write(&[1]);
    }

    fn take(&self) -> Vec<Msg> {
        let mut sink = [0u8; 64];
        while matches!((&self.woken).read(&mut sink), Ok(n) if n > 0) {}
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Poller tokens. A connection's sockets carry its slot, the slot's
/// generation (so an event or DNS answer for a closed connection never
/// reaches the next one in the same slot) and the side.
const LISTENER: u64 = 1 << 63;
const WAKE: u64 = 1 << 62;
const GENERATIONS: u32 = 1 << 30;
const CLIENT: usize = 0;
const UPSTREAM: usize = 1;

fn token(slot: u32, generation: u32, side: usize) -> u64 {
    (generation as u64) << 32 | (slot as u64) << 1 | side as u64
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

impl Outcome {
    /// Counts what the relay moved, as Envoy's BYTES_RECEIVED and
    /// BYTES_SENT: read from and written to the client (`received` already
    /// holds the hello).
    fn count_relay(&mut self, c2u: &Half, u2c: &Half) {
        self.received += c2u.read();
        self.sent = u2c.total();
    }

    /// Records why the connection ends; returns `false` ("do not keep it").
    fn end(&mut self, reason: &'static str, flags: &'static str) -> bool {
        self.reason = reason;
        self.flags = flags;
        false
    }
}

/// Where a connection is.
enum State {
    /// Reading the ClientHello; `need` is the codec's hint.
    Hello {
        buf: Vec<u8>,
        need: usize,
    },
    /// Allowed; waiting for a DNS answer from the runtime.
    Resolving {
        hello: Vec<u8>,
    },
    /// Waiting for `up` to connect; `next` is the address to try after it.
    Connecting {
        hello: Vec<u8>,
        addrs: Addrs,
        next: usize,
        up: TcpStream,
    },
    Relay {
        up: TcpStream,
        c2u: Half,
        u2c: Half,
    },
    /// Our side shut (an alert sent, or the upstream reset), the upstream
    /// closed; reading and dropping until the client closes, `cap` bytes
    /// or [`LINGER`] at most.
    Lingering {
        read: usize,
        cap: usize,
    },
    /// Only while a state is being replaced.
    Gone,
}

struct Conn {
    client: TcpStream,
    peer: SocketAddr,
    /// The upstream port of the listener it came from.
    port: u16,
    start: SystemTime,
    began: Instant,
    /// When the current wait ends. Activity only moves it; the heap entry
    /// at `armed` checks it then (lazy re-arming).
    deadline: Instant,
    armed: Instant,
    /// What the poller was told, per side; `None`: not registered.
    interest: [Option<Interest>; 2],
    /// The hello's `random`, under which its upstream socket is in
    /// [`Sent`] while open.
    random: [u8; 32],
    out: Outcome,
    state: State,
}

impl Conn {
    fn upstream(&self) -> Option<&TcpStream> {
        match &self.state {
            State::Connecting { up, .. } | State::Relay { up, .. } => Some(up),
            _ => None,
        }
    }

    fn wanted(&self) -> [Interest; 2] {
        match &self.state {
            State::Hello { .. } | State::Lingering { .. } => [Interest::READ, Interest::NONE],
            State::Resolving { .. } | State::Gone => [Interest::NONE, Interest::NONE],
            State::Connecting { .. } => [Interest::NONE, Interest::WRITE],
            State::Relay { c2u, u2c, .. } => [
                Interest {
                    read: c2u.wants_read(),
                    write: u2c.wants_write(),
                },
                Interest {
                    read: u2c.wants_read(),
                    write: c2u.wants_write(),
                },
            ],
        }
    }
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

struct Listener {
    /// `None` once draining.
    socket: Option<std::net::TcpListener>,
    port: u16,
    nodelay_inherited: bool,
    /// Not asked for connections until then (after `accept` failed).
    resting: Option<Instant>,
}

/// One worker thread's event loop and everything it owns.
pub(super) struct Worker<R> {
    proxy: Arc<Proxy<R>>,
    poller: Poller,
    listeners: Vec<Listener>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
    deadlines: BinaryHeap<Reverse<(Instant, u32, u32)>>,
    /// Open connections of all workers, against `max_connections`.
    open: Arc<AtomicUsize>,
    pub(super) inbox: Arc<Inbox>,
    rt: tokio::runtime::Handle,
    scratch: Box<[u8]>,
    now: Instant,
    drain: Option<Instant>,
    /// The listening addresses, to refuse an upstream that is this proxy.
    own: Own,
    /// Hellos sent upstream by all workers, to know one that comes back.
    sent: Arc<Sent>,
}

/// TLS alert descriptions (RFC 8446 §6).
mod alert {
    pub const ACCESS_DENIED: u8 = 49;
    pub const DECODE_ERROR: u8 = 50;
    pub const INTERNAL_ERROR: u8 = 80;
    pub const UNRECOGNIZED_NAME: u8 = 112;
}

impl<R: Resolver> Worker<R> {
    pub(super) fn new(
        proxy: Arc<Proxy<R>>,
        sockets: Vec<(std::net::TcpListener, u16)>,
        open: Arc<AtomicUsize>,
        sent: Arc<Sent>,
        rt: tokio::runtime::Handle,
    ) -> io::Result<Worker<R>> {
        let mut poller = Poller::new(proxy.settings.backend)?;
        let inbox = Arc::new(Inbox::new()?);
        poller.add(inbox.woken.as_raw_fd(), WAKE, Interest::READ)?;
        let mut listeners = Vec::new();
        let mut own = Vec::new();
        for (i, (socket, port)) in sockets.into_iter().enumerate() {
            socket.set_nonblocking(true)?;
            own.push(socket.local_addr()?);
            poller.add(socket.as_raw_fd(), LISTENER | i as u64, Interest::READ)?;
            listeners.push(Listener {
                nodelay_inherited: nodelay_inherited(&socket),
                socket: Some(socket),
                port,
                resting: None,
            });
        }
        Ok(Worker {
            proxy,
            poller,
            listeners,
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            deadlines: BinaryHeap::new(),
            open,
            inbox,
            rt,
            scratch: vec![0; RELAY_MAX].into_boxed_slice(),
            now: Instant::now(),
            drain: None,
            own: Own::new(own),
            sent,
        })
    }

    /// Serves until stopped and drained; returns the connections cut at the
    /// drain deadline.
    pub(super) fn run(mut self) -> usize {
        let mut events = Vec::with_capacity(256);
        loop {
            let timeout = self
                .next_wake()
                .map(|t| t.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poller.wait(&mut events, timeout) {
                super::log::say(format_args!(
                    "egressgen serve: waiting for sockets failed: {e}"
                ));
                std::thread::sleep(ACCEPT_BACKOFF);
            }
            self.now = Instant::now();
            for &ev in &events {
                self.dispatch(ev);
            }
            self.expire();
            self.wake_listeners();
            if let Some(deadline) = self.drain {
                if self.live == 0 {
                    return 0;
                }
                if self.now >= deadline {
                    return self.cut_all();
                }
            }
        }
    }

    fn next_wake(&self) -> Option<Instant> {
        let timer = self.deadlines.peek().map(|Reverse((t, ..))| *t);
        let resting = self.listeners.iter().filter_map(|l| l.resting);
        timer.into_iter().chain(resting).chain(self.drain).min()
    }

    fn dispatch(&mut self, ev: Event) {
        if ev.token == WAKE {
            for m in self.inbox.take() {
                match m {
                    Msg::Stop => self.stop(),
                    Msg::Resolved {
                        slot,
                        generation,
                        addrs,
                    } => self.resolved(slot, generation, addrs),
                }
            }
            return;
        }
        if ev.token & LISTENER != 0 {
            self.accept((ev.token & !LISTENER) as usize);
            return;
        }
        let slot = ((ev.token >> 1) & 0x7fff_ffff) as u32;
        let generation = (ev.token >> 32) as u32;
        let side = (ev.token & 1) as usize;
        let Some(mut c) = self.take(slot, generation) else {
            return;
        };
        let keep = match c.state {
            State::Hello { .. } => self.on_hello(&mut c, slot, generation),
            State::Lingering { .. } => self.on_lingering(&mut c),
            State::Connecting { .. } if side == UPSTREAM => self.on_connecting(&mut c, ev),
            State::Relay { .. } => self.on_relay(&mut c, side, ev),
            // Only a hang-up or an error is reported for a client we are
            // not reading from: it is gone.
            State::Resolving { .. } | State::Connecting { .. } | State::Gone => {
                c.out.end("connection_reset", flags::CONNECTION_RESET)
            }
        };
        self.settle(slot, generation, c, keep);
    }

    fn take(&mut self, slot: u32, generation: u32) -> Option<Conn> {
        let s = self.slots.get_mut(slot as usize)?;
        if s.generation != generation {
            return None;
        }
        s.conn.take()
    }

    /// Puts a connection back, telling the poller what it now waits for, or
    /// closes it.
    fn settle(&mut self, slot: u32, generation: u32, mut c: Conn, keep: bool) {
        if !keep {
            return self.close(slot, c);
        }
        if self.sync(&mut c, slot, generation).is_err() {
            c.out.end("out_of_resources", flags::OVERFLOW);
            return self.close(slot, c);
        }
        if c.deadline < c.armed {
            self.deadlines.push(Reverse((c.deadline, slot, generation)));
            c.armed = c.deadline;
        }
        self.slots[slot as usize].conn = Some(c);
    }

    fn sync(&mut self, c: &mut Conn, slot: u32, generation: u32) -> io::Result<()> {
        let want = c.wanted();
        let fds = [
            Some(c.client.as_raw_fd()),
            c.upstream().map(AsRawFd::as_raw_fd),
        ];
        for side in [CLIENT, UPSTREAM] {
            let Some(fd) = fds[side] else {
                c.interest[side] = None;
                continue;
            };
            let t = token(slot, generation, side);
            match c.interest[side] {
                // Removed after a hang-up while nothing was wanted of it
                // (`on_relay`): back only once something is.
                None if want[side] == Interest::NONE => continue,
                None => self.poller.add(fd, t, want[side])?,
                Some(i) if i != want[side] => self.poller.modify(fd, t, want[side])?,
                Some(_) => {}
            }
            c.interest[side] = Some(want[side]);
        }
        Ok(())
    }

    /// Closes both sockets, logs the connection and frees its slot.
    fn close(&mut self, slot: u32, c: Conn) {
        let Conn {
            client,
            peer,
            start,
            began,
            mut out,
            state,
            random,
            ..
        } = c;
        self.forget(&client);
        match &state {
            State::Connecting { up, .. } => self.forget_upstream(&random, up),
            State::Relay { up, c2u, u2c } => {
                self.forget_upstream(&random, up);
                out.count_relay(c2u, u2c);
            }
            _ => {}
        }
        drop(state);
        drop(client);
        self.proxy.log.write(&Entry {
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
        self.open.fetch_sub(1, Ordering::Relaxed);
        self.live -= 1;
        let s = &mut self.slots[slot as usize];
        s.generation = (s.generation + 1) % GENERATIONS;
        self.free.push(slot);
    }

    fn forget(&mut self, socket: &TcpStream) {
        self.poller.forget(socket.as_raw_fd());
    }

    /// [`Worker::forget`] for an upstream socket about to be closed, which
    /// also leaves [`Sent`].
    fn forget_upstream(&mut self, random: &[u8; 32], up: &TcpStream) {
        self.sent.remove(random, up.as_raw_fd());
        self.forget(up);
    }

    fn accept(&mut self, i: usize) {
        let Some(l) = self.listeners.get(i) else {
            return;
        };
        let Some(socket) = &l.socket else {
            return;
        };
        let (client, peer) = match accept(socket) {
            Ok(c) => c,
            Err(e) => {
                use io::ErrorKind::{ConnectionAborted, Interrupted, WouldBlock};
                if matches!(e.kind(), WouldBlock | ConnectionAborted | Interrupted) {
                    return;
                }
                // EMFILE and friends: rest instead of spinning.
                super::log::say(format_args!("egressgen serve: accept failed: {e}"));
                self.rest(i);
                return;
            }
        };
        let (port, inherited) = (l.port, l.nodelay_inherited);
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.proxy.settings.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            drop(client);
            self.proxy.log.write(&Entry {
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
            return;
        }
        if !inherited {
            let _ = client.set_nodelay(true);
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        let generation = self.slots[slot as usize].generation;
        self.live += 1;
        let deadline = self.now + self.proxy.settings.hello_timeout;
        self.deadlines.push(Reverse((deadline, slot, generation)));
        let c = Conn {
            client,
            peer,
            port,
            start: SystemTime::now(),
            began: self.now,
            deadline,
            armed: deadline,
            interest: [None, None],
            random: [0; 32],
            out: Outcome {
                sni: None,
                ech: false,
                decision: "denied",
                reason: "",
                rule: None,
                upstream: None,
                received: 0,
                sent: 0,
                flags: flags::NONE,
            },
            state: State::Hello {
                buf: Vec::new(),
                need: 1,
            },
        };
        // A fresh socket is seldom readable yet: wait for the hello.
        self.settle(slot, generation, c, true);
    }

    fn rest(&mut self, i: usize) {
        let l = &mut self.listeners[i];
        if let Some(s) = &l.socket {
            let _ = self
                .poller
                .modify(s.as_raw_fd(), LISTENER | i as u64, Interest::NONE);
            l.resting = Some(self.now + ACCEPT_BACKOFF);
        }
    }

    fn wake_listeners(&mut self) {
        for (i, l) in self.listeners.iter_mut().enumerate() {
            if l.resting.is_some_and(|t| t <= self.now) {
                l.resting = None;
                if let Some(s) = &l.socket {
                    let _ = self
                        .poller
                        .modify(s.as_raw_fd(), LISTENER | i as u64, Interest::READ);
                }
            }
        }
    }

    /// Stops accepting: closing the listeners refuses new connections.
    fn stop(&mut self) {
        for l in &mut self.listeners {
            if let Some(s) = l.socket.take() {
                self.poller.forget(s.as_raw_fd());
            }
            l.resting = None;
        }
        if self.drain.is_none() {
            self.drain = Some(self.now + self.proxy.settings.drain_timeout);
        }
    }

    /// The drain deadline passed: closes what is still open.
    fn cut_all(&mut self) -> usize {
        let mut cut = 0;
        for slot in 0..self.slots.len() as u32 {
            if let Some(mut c) = self.slots[slot as usize].conn.take() {
                match &c.state {
                    State::Hello { buf, .. } => c.out.received = buf.len() as u64,
                    // Already decided (a refusal or a reset): keep that.
                    State::Lingering { .. } => {
                        self.close(slot, c);
                        cut += 1;
                        continue;
                    }
                    _ => {}
                }
                c.out.end("drain_timeout", flags::TIMEOUT);
                self.close(slot, c);
                cut += 1;
            }
        }
        cut
    }

    /// Closes connections whose deadline passed.
    fn expire(&mut self) {
        while let Some(&Reverse((at, slot, generation))) = self.deadlines.peek() {
            if at > self.now {
                break;
            }
            self.deadlines.pop();
            let Some(mut c) = self.take(slot, generation) else {
                continue;
            };
            if c.armed != at || c.deadline > self.now {
                if c.armed == at {
                    // Pushed back by activity since: check again then.
                    self.deadlines.push(Reverse((c.deadline, slot, generation)));
                    c.armed = c.deadline;
                }
                self.slots[slot as usize].conn = Some(c);
                continue;
            }
            match &c.state {
                State::Hello { buf, .. } => {
                    c.out.received = buf.len() as u64;
                    c.out.end("hello_timeout", flags::TIMEOUT);
                }
                State::Resolving { .. } | State::Connecting { .. } => {
                    c.out.end("connect_timeout", flags::UPSTREAM_FAILURE);
                }
                State::Relay { c2u, u2c, .. } if c2u.is_reset() || u2c.is_reset() => {
                    c.out.end("connection_reset", flags::CONNECTION_RESET);
                }
                State::Relay { .. } => {
                    c.out.end("idle_timeout", flags::TIMEOUT);
                }
                State::Lingering { .. } | State::Gone => {}
            }
            self.close(slot, c);
        }
    }

    /// Reads what the client sent; once the hello is whole, decides.
    fn on_hello(&mut self, c: &mut Conn, slot: u32, generation: u32) -> bool {
        let State::Hello { buf, need } = &mut c.state else {
            return true;
        };
        match (&c.client).read(&mut self.scratch) {
            Ok(n) if n > 0 => buf.extend_from_slice(&self.scratch[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            _ => {
                c.out.received = buf.len() as u64;
                return c.out.end("hello_incomplete", flags::DOWNSTREAM_CLOSED);
            }
        }
        if buf.len() < *need {
            return true;
        }
        // Parse only when the codec's hint says it can make progress, so a
        // hello sent a byte at a time costs a read per byte but not a parse
        // per byte.
        let (sni, ech) = match hello::parse(buf) {
            Parsed::NeedMore(n) => {
                *need = n;
                return true;
            }
            Parsed::Invalid(why) => {
                c.out.received = buf.len() as u64;
                c.out.end(why.code(), flags::NO_ROUTE);
                if why.spoke_tls() {
                    self.refuse(c, alert::DECODE_ERROR);
                    return true;
                }
                return false;
            }
            Parsed::Hello(h) => {
                c.random = h.random;
                (h.sni.map(|s| s.to_vec()), h.ech)
            }
        };
        let hello = std::mem::take(buf);
        c.out.received = hello.len() as u64;
        c.out.ech = ech;
        if self.sent.came_back(&c.random, c.peer) {
            // This proxy's own hello, back through a route or a NAT rule:
            // forwarding it again would loop until --max-connections.
            warn_came_back(c.peer);
            c.out.sni = sni.map(|s| s.to_ascii_lowercase());
            c.out.end("upstream_is_this_proxy", flags::UPSTREAM_FAILURE);
            self.refuse(c, alert::INTERNAL_ERROR);
            return true;
        }
        self.decide(c, slot, generation, hello, sni.unwrap_or_default())
    }

    /// Asks the allowlist, then refuses, or resolves and connects.
    fn decide(
        &mut self,
        c: &mut Conn,
        slot: u32,
        generation: u32,
        hello: Vec<u8>,
        raw: Vec<u8>,
    ) -> bool {
        let s = &self.proxy.settings;
        let name = match self.proxy.allowlist.decide_bytes(&raw) {
            Decision::Allowed { name, by } => {
                c.out.decision = "allowed";
                c.out.reason = "matched";
                let rule = by.to_string();
                if s.learn {
                    self.proxy.learned.record_allowed(&name, &rule);
                }
                c.out.rule = Some(rule);
                name
            }
            Decision::Denied { name, reason } => {
                c.out.reason = reason.code();
                let routable = matches!(
                    reason,
                    Denial::NoMatch { .. } | Denial::TrailingDot | Denial::IpLiteral
                );
                if s.learn {
                    self.proxy.learned.record(&name, &reason);
                }
                if !(s.learn && routable) {
                    c.out.sni = (!raw.is_empty()).then(|| raw.to_ascii_lowercase());
                    c.out.flags = flags::NO_ROUTE;
                    let code = match reason {
                        Denial::NoMatch { .. } => alert::ACCESS_DENIED,
                        _ => alert::UNRECOGNIZED_NAME,
                    };
                    self.refuse(c, code);
                    return true;
                }
                c.out.decision = "learned";
                name
            }
        };
        c.deadline = self.now + s.connect_timeout;
        let answer = self.proxy.resolver.try_resolve(&name, c.port);
        if answer.is_none() {
            // A cache miss: the runtime looks it up, the answer comes back
            // through the inbox.
            let (proxy, inbox, port) = (self.proxy.clone(), self.inbox.clone(), c.port);
            let host = name.clone();
            self.rt.spawn(async move {
                let addrs = proxy.resolver.resolve(&host, port).await;
                inbox.send(Msg::Resolved {
                    slot,
                    generation,
                    addrs,
                });
            });
        }
        c.out.sni = Some(name.into_bytes());
        match answer {
            None => {
                c.state = State::Resolving { hello };
                true
            }
            Some(Ok(addrs)) => self.connect(c, hello, addrs, 0),
            Some(Err(e)) => lookup_failed(c, &e),
        }
    }

    fn resolved(&mut self, slot: u32, generation: u32, addrs: io::Result<Addrs>) {
        let Some(mut c) = self.take(slot, generation) else {
            return;
        };
        let keep = match std::mem::replace(&mut c.state, State::Gone) {
            State::Resolving { hello } => match addrs {
                Ok(addrs) => self.connect(&mut c, hello, addrs, 0),
                Err(e) => lookup_failed(&mut c, &e),
            },
            other => {
                c.state = other;
                true
            }
        };
        self.settle(slot, generation, c, keep);
    }

    /// Dials the addresses from the `from`th on, until one connects or is
    /// in progress.
    fn connect(&mut self, c: &mut Conn, hello: Vec<u8>, addrs: Addrs, from: usize) -> bool {
        let mut i = from;
        // Past the first address, the one before `from` was dialed and failed.
        let mut dialed = from > 0;
        loop {
            let Some(a) = addrs.iter().nth(i) else {
                break;
            };
            i += 1;
            if let Some(listener) = self.own.reached_by(a, self.now) {
                warn_own_upstream(a, listener);
                if !dialed {
                    c.out.upstream = Some(a);
                }
                continue;
            }
            dialed = true;
            c.out.upstream = Some(a);
            match dial(a, &hello, &self.sent, &c.random) {
                Ok((up, Some(sent))) => return self.start_relay(c, up, hello, sent),
                Ok((up, None)) => {
                    c.state = State::Connecting {
                        hello,
                        addrs,
                        next: i,
                        up,
                    };
                    return true;
                }
                Err(_) => continue,
            }
        }
        // The log names the last address dialed, or an own one if none was.
        if !dialed {
            return c.out.end("upstream_is_this_proxy", flags::UPSTREAM_FAILURE);
        }
        c.out.end("connect_failed", flags::UPSTREAM_FAILURE)
    }

    /// The upstream socket in progress reported: connected, or failed (then
    /// the next address).
    fn on_connecting(&mut self, c: &mut Conn, ev: Event) -> bool {
        let State::Connecting {
            hello,
            addrs,
            next,
            up,
        } = std::mem::replace(&mut c.state, State::Gone)
        else {
            return true;
        };
        let failed = ev.error || !matches!(up.take_error(), Ok(None));
        if !failed && !ev.writable {
            c.state = State::Connecting {
                hello,
                addrs,
                next,
                up,
            };
            return true;
        }
        let sent = if failed {
            None
        } else {
            match (&up).write(&hello) {
                Ok(n) => Some(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Some(0),
                Err(_) => None,
            }
        };
        match sent {
            Some(sent) => self.start_relay(c, up, hello, sent),
            None => {
                self.forget_upstream(&c.random, &up);
                drop(up);
                c.interest[UPSTREAM] = None;
                self.connect(c, hello, addrs, next)
            }
        }
    }

    fn start_relay(&mut self, c: &mut Conn, up: TcpStream, hello: Vec<u8>, sent: usize) -> bool {
        let splice = self.proxy.settings.splice;
        let c2u = Half::new(hello, sent, splice);
        c.state = State::Relay {
            up,
            c2u,
            u2c: Half::new(Vec::new(), 0, splice),
        };
        c.deadline = self.now + self.proxy.settings.idle_timeout;
        true
    }

    /// An established connection's socket reported.
    fn on_relay(&mut self, c: &mut Conn, side: usize, ev: Event) -> bool {
        let State::Relay { up, c2u, u2c } = &mut c.state else {
            return true;
        };
        let client = &c.client;
        let scratch = &mut self.scratch;
        let before = c2u.moved() + u2c.moved();
        let res = if side == CLIENT {
            relay_step(client, up, c2u, u2c, ev, scratch)
        } else {
            relay_step(up, client, u2c, c2u, ev, scratch)
        };
        if let Err(failed) = res {
            let failed = match failed {
                Failed::This => side,
                Failed::Other => 1 - side,
            };
            // What the failed socket sent before is readable now, then its
            // EOF: take it at once rather than on another report.
            let _ = if failed == CLIENT {
                c2u.source_reset();
                c2u.on_readable(client, up, scratch, false)
            } else {
                u2c.source_reset();
                u2c.on_readable(up, client, scratch, false)
            };
        }
        drop_toward_failed(c2u, u2c);
        if c2u.moved() + u2c.moved() != before {
            c.deadline = self.now + self.proxy.settings.idle_timeout;
        }
        // After a reset, what is owed is flushed while it moves; a side
        // that stops taking it for LINGER ends the connection (`expire`
        // logs it as the reset it is, not as idle).
        if c2u.is_reset() || u2c.is_reset() {
            c.deadline = c.deadline.min(self.now + LINGER);
        }
        if c2u.reset_delivered() || u2c.reset_delivered() {
            let client_failed = c2u.is_reset();
            return self.end_reset(c, client_failed);
        }
        let c2u_done = c2u.finish(up, u2c.is_done());
        let u2c_done = u2c.finish(client, c2u_done);
        if c2u_done && u2c_done {
            return false;
        }
        // Bytes this socket sent that still wait for the other side.
        let owed = if side == CLIENT {
            c2u.wants_write()
        } else {
            u2c.wants_write()
        };
        // Level-triggered: a hung-up or failed socket is reported again and
        // again, even with no interest. When nothing is wanted of it (its
        // reader has ended or is paused while what it sent waits for the
        // other side, and nothing is to be written to it), stop watching it,
        // or the loop spins; `sync` adds it back once something is wanted.
        // Closing would drop what it still owes the other side: after our
        // FIN and the upstream's, the upstream socket hangs up while the
        // last of its bytes may still be on their way to the client. A
        // failed (reset) socket that owes nothing ends the connection now,
        // as Envoy's `tcp_proxy` closes one side when the other resets.
        let idle_socket = c.wanted()[side] == Interest::NONE;
        if ev.error && idle_socket && !owed {
            return self.end_reset(c, side == CLIENT);
        }
        if ev.error && idle_socket {
            // It failed while what it sent waits for the other side: that
            // is delivered first, while it moves (see the LINGER deadline
            // above), then the connection ends as reset.
            if let State::Relay { c2u, u2c, .. } = &mut c.state {
                if side == CLIENT {
                    c2u.source_reset();
                } else {
                    u2c.source_reset();
                }
                drop_toward_failed(c2u, u2c);
            }
            c.deadline = c.deadline.min(self.now + LINGER);
        }
        if (ev.hup || ev.error) && idle_socket {
            let fd = match side {
                CLIENT => Some(c.client.as_raw_fd()),
                _ => c.upstream().map(AsRawFd::as_raw_fd),
            };
            if fd.is_some_and(|fd| self.poller.remove(fd).is_ok()) {
                c.interest[side] = None;
            }
        }
        true
    }

    fn on_lingering(&mut self, c: &mut Conn) -> bool {
        let State::Lingering { read, cap } = &mut c.state else {
            return true;
        };
        match (&c.client).read(&mut self.scratch) {
            Ok(n) if n > 0 => {
                *read += n;
                c.out.received += n as u64;
                *read <= *cap
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            _ => false,
        }
    }

    /// Sends a fatal alert, shuts our side and waits (up to [`LINGER`]) for
    /// the client to close, so the alert is read rather than lost to a
    /// reset.
    fn refuse(&mut self, c: &mut Conn, description: u8) {
        let record = [21, 3, 3, 0, 2, 2, description];
        if let Ok(n) = (&c.client).write(&record) {
            c.out.sent = n as u64;
        }
        let _ = c.client.shutdown(std::net::Shutdown::Write);
        c.state = State::Lingering {
            read: 0,
            cap: hello::MAX_WIRE,
        };
        c.deadline = self.now + LINGER;
    }

    /// Ends an established connection as reset. When the client is not the
    /// side that failed and may still send, what was delivered to it may
    /// still be in the kernel's send queue, and bytes it sends to a closed
    /// socket would reset it: the upstream is closed, our side toward the
    /// client shut (a FIN after those bytes), and the client gets
    /// [`LINGER`] to close before its socket is. No wait when there is
    /// nothing to lose: the client has sent its FIN (it sends nothing
    /// more), everything sent to it is acknowledged (a reset then costs it
    /// nothing: Linux hands over received bytes before the error), or it is
    /// gone (the shutdown fails: it reset too, unread yet).
    fn end_reset(&mut self, c: &mut Conn, client_failed: bool) -> bool {
        c.out.end("connection_reset", flags::CONNECTION_RESET);
        let client_sending = matches!(&c.state, State::Relay { c2u, .. } if !c2u.source_ended());
        if client_failed
            || !client_sending
            || !unacknowledged(&c.client)
            || c.client.shutdown(std::net::Shutdown::Write).is_err()
        {
            return false;
        }
        let State::Relay { up, c2u, u2c } = std::mem::replace(&mut c.state, State::Gone) else {
            return false;
        };
        c.out.count_relay(&c2u, &u2c);
        self.forget_upstream(&c.random, &up);
        drop(up);
        c.state = State::Lingering {
            read: 0,
            cap: usize::MAX,
        };
        c.deadline = self.now + LINGER;
        true
    }
}

/// A socket that failed takes nothing more: the direction toward it drops
/// what waits and goes on reading only to drop it. What the failed socket
/// sent before is still delivered, then the connection ends as reset
/// (see [`Half`]).
fn drop_toward_failed(c2u: &mut Half, u2c: &mut Half) {
    if c2u.is_reset() {
        u2c.destination_reset();
    }
    if u2c.is_reset() {
        c2u.destination_reset();
    }
}

/// Whether bytes sent on `socket` are still unacknowledged (`SIOCOUTQ`,
/// tcp(7)). Off Linux, assumed so.
#[cfg(target_os = "linux")]
fn unacknowledged(socket: &TcpStream) -> bool {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one c_int for an open TCP socket.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
    rc != 0 || queued > 0
}

#[cfg(not(target_os = "linux"))]
fn unacknowledged(_socket: &TcpStream) -> bool {
    true
}

/// Which socket a write failed on, in [`relay_step`].
enum Failed {
    This,
    Other,
}

/// One report for `this`, a socket of an established connection: write
/// what waits for it, and read what it sent on to `other`.
fn relay_step(
    this: &TcpStream,
    other: &TcpStream,
    from_this: &mut Half,
    to_this: &mut Half,
    ev: Event,
    scratch: &mut [u8],
) -> Result<(), Failed> {
    if ev.writable && to_this.on_writable(this).is_err() {
        return Err(Failed::This);
    }
    if (ev.readable || ev.hup || ev.error)
        && from_this
            .on_readable(this, other, scratch, ev.peer_shut)
            .is_err()
    {
        return Err(Failed::Other);
    }
    Ok(())
}

/// Ends a connection whose name could not be resolved: the lookup failed
/// (`DF`), or the DNS cache was full (`UO`; Envoy's SNI forward proxy
/// closes the connection on `LoadDnsCacheEntryStatus::Overflow`).
fn lookup_failed(c: &mut Conn, e: &io::Error) -> bool {
    let Some(max_hosts) = resolve::cache_full(e) else {
        return c.out.end("dns_failed", flags::DNS_FAILURE);
    };
    static WARNED: AtomicBool = AtomicBool::new(false);
    warn_once(&WARNED, || {
        format!(
            "the DNS cache is full (maxHosts: {max_hosts}): connections to names not in it are refused (dns_cache_overflow), as the gateway's Envoy refuses them; a name leaves the cache once unused for hostTtl
  help: raise spec.dns.maxHosts in the config if the application needs more names"
        )
    });
    c.out.end("dns_cache_overflow", flags::OVERFLOW)
}

/// Says once per process, on stderr, that a name resolved to one of the
/// proxy's own listeners, and what to do. The access log has each such
/// connection (`upstream_is_this_proxy`, `UF`).
fn warn_own_upstream(target: SocketAddr, listener: SocketAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    warn_once(&WARNED, || {
        format!(
            "a name resolved to {target}, this proxy's own listener {listener}; such connections are refused (upstream_is_this_proxy)
  help: pin the names to their real servers with --resolve NAME=IP, or listen on another port"
        )
    });
}

/// Says once per process, on stderr, that one of the proxy's own upstream
/// connections came back to its listener. The access log has each such
/// connection (`upstream_is_this_proxy`, `UF`).
fn warn_came_back(from: SocketAddr) {
    static WARNED: AtomicBool = AtomicBool::new(false);
    warn_once(&WARNED, || {
        format!(
            "a connection this proxy made upstream came back to it (from {from}): a route or a NAT rule sends its upstream traffic to its own listener; such connections are refused (upstream_is_this_proxy)
  help: pin the names to their real servers with --resolve NAME=IP, or exempt this proxy's own traffic from the rule (iptables: -m owner ! --uid-owner USER)"
        )
    });
}

/// Prints `message` as a warning on stderr the first time `warned` is set.
fn warn_once(warned: &AtomicBool, message: impl FnOnce() -> String) {
    if !warned.swap(true, Ordering::Relaxed) {
        super::log::say(format_args!("egressgen serve: warning: {}", message()));
    }
}

/// Connects to `addr` and sends as much of `first` as the socket takes:
/// `Some(bytes sent)` once connected, `None` while connecting.
///
/// When the handshake completes within `connect()` (loopback, a near
/// upstream), the bytes go out at once: no wait for writability and no
/// `SO_ERROR` check, two system calls and a loop turn fewer. Otherwise the
/// send fails with EAGAIN (ENOTCONN on some systems) and the loop waits for
/// the socket to turn writable; a refused connection surfaces as the send
/// error or in `SO_ERROR`.
///
/// The hello is entered in `sent` under `random` before it goes out (the
/// far end of a loop may read it at once), and taken out if the dial fails.
fn dial(
    addr: SocketAddr,
    first: &[u8],
    sent: &Sent,
    random: &[u8; 32],
) -> io::Result<(TcpStream, Option<usize>)> {
    let socket = super::listen::tcp_socket(addr)?;
    socket.set_tcp_nodelay(true)?;
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from(socket);
    sent.insert(random, stream.as_raw_fd());
    // std's TcpStream sends with MSG_NOSIGNAL.
    match (&stream).write(first) {
        Ok(n) => Ok((stream, Some(n))),
        Err(e)
            if e.kind() == io::ErrorKind::WouldBlock
                || e.raw_os_error() == Some(libc::ENOTCONN) =>
        {
            Ok((stream, None))
        }
        Err(e) => {
            sent.remove(random, stream.as_raw_fd());
            Err(e)
        }
    }
}

/// Accepts a connection as a non-blocking socket: `accept4` on Linux, one
/// system call.
#[cfg(target_os = "linux")]
fn accept(listener: &std::net::TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    use std::os::fd::{FromRawFd, RawFd};
    // SAFETY: accept4 writes at most `len` bytes into the storage socket2
    // provides, and sets `len`.
    let (fd, addr) = unsafe {
        socket2::SockAddr::try_init(|storage, len| {
            let fd = libc::accept4(
                listener.as_raw_fd(),
                storage.cast(),
                len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            if fd < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(fd)
            }
        })?
    };
    // SAFETY: accept4 returned a new descriptor that nothing else owns.
    let stream = unsafe { TcpStream::from_raw_fd(fd as RawFd) };
    let peer = addr
        .as_socket()
        .ok_or_else(|| io::Error::other("the peer is not an IP address"))?;
    Ok((stream, peer))
}

#[cfg(not(target_os = "linux"))]
fn accept(listener: &std::net::TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let (stream, peer) = listener.accept()?;
    stream.set_nonblocking(true)?;
    Ok((stream, peer))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What [`nodelay_inherited`] relies on: an accepted socket carries the
    /// listener's `TCP_NODELAY`, so Nagle never delays relayed records.
    #[test]
    fn accepted_sockets_get_nodelay() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let inherited = nodelay_inherited(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        listener.set_nonblocking(false).unwrap();
        let (accepted, _) = listener.accept().unwrap();
        if inherited {
            assert!(accepted.nodelay().unwrap());
        }
    }

    #[test]
    fn tokens_keep_slot_generation_and_side_apart() {
        let t = token(0x7fff_ffff, GENERATIONS - 1, UPSTREAM);
        assert_eq!(t & (LISTENER | WAKE), 0);
        assert_eq!(((t >> 1) & 0x7fff_ffff) as u32, 0x7fff_ffff);
        assert_eq!((t >> 32) as u32, GENERATIONS - 1);
        assert_eq!((t & 1) as usize, UPSTREAM);
    }
}
