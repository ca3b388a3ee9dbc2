//! Listening sockets: one per address, or, with several workers, one per
//! worker and address joined in a `SO_REUSEPORT` group, and how that group
//! picks the worker for each new connection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

/// How a new connection is given to one of several workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// A local client's connection goes to the worker for the CPU the
    /// client connected from, so the two tend to share a CPU; connections
    /// from other hosts are spread by the hash (Linux; elsewhere, or with
    /// more workers than CPUs, the same as `hash`).
    Cpu,
    /// The kernel's hash of the connection's addresses and ports.
    Hash,
}

/// Binds `workers` listeners on `addr`, returned in worker order.
///
/// One worker gets a plain listener. Several get a `SO_REUSEPORT` group, so
/// each worker accepts from its own queue. The kernel lets any later
/// `SO_REUSEPORT` socket of the same user join a listening group, so a
/// second egressgen started on the same address would silently take a share
/// of the connections. To fail instead, like any taken port, the address is
/// first bound by a socket without `SO_REUSEPORT`: that bind fails if
/// anything listens there. The claim is held until the group listens, so a
/// port picked for port 0 cannot be taken in between. It does not stop two
/// proxies started at the same instant (neither listens yet when the other
/// claims), nor another server that binds with `SO_REUSEPORT` directly.
pub fn bind_group(addr: SocketAddr, workers: usize, balance: Balance) -> Result<Vec<TcpListener>> {
    let what = || format!("cannot listen on {addr}");
    if workers <= 1 {
        let one = socket(addr).with_context(what)?;
        one.bind(&addr.into()).with_context(what)?;
        one.listen(4096).with_context(what)?;
        return Ok(vec![one.into()]);
    }
    let claim = socket(addr).with_context(what)?;
    claim.bind(&addr.into()).with_context(what)?;
    let actual = claim
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .with_context(what)?;
    let mut group = Vec::with_capacity(workers);
    for _ in 0..workers {
        let s = socket(actual).with_context(what)?;
        s.set_reuse_port(true).with_context(what)?;
        s.bind(&actual.into()).with_context(what)?;
        s.listen(4096).with_context(what)?;
        group.push(TcpListener::from(s));
    }
    if balance == Balance::Cpu {
        if let Err(e) = steer_by_cpu(&group[0], workers) {
            // Only a saving (an old kernel, a seccomp filter): without the
            // program the kernel's hash still spreads the connections.
            super::log::say(format_args!(
                "egressgen serve: warning: {actual}: cannot give connections to their CPU's worker ({e}); the kernel's hash spreads them instead"
            ));
        }
    }
    drop(claim);
    Ok(group)
}

/// A non-blocking TCP socket with `SO_REUSEADDR` (a restart binds despite
/// connections in TIME_WAIT), and `IPV6_V6ONLY` on IPv6 so `0.0.0.0:P` and
/// `[::]:P` can be listened on together.
fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = tcp_socket(addr)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    Ok(s)
}

/// A non-blocking, close-on-exec TCP socket for `addr`'s family, for
/// listening or dialing. Where the platform has `SOCK_NONBLOCK` the flag is
/// set in `socket()` itself, one system call less per upstream connection;
/// elsewhere (macOS) `socket2` sets close-on-exec and a `fcntl` sets
/// non-blocking.
pub fn tcp_socket(addr: SocketAddr) -> io::Result<Socket> {
    #[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_os = "freebsd")))]
    let s = {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        s.set_nonblocking(true)?;
        s
    };
    Ok(s)
}

/// This proxy's listening addresses, to tell whether an upstream address
/// connects back to the proxy. Such a connection would dial the proxy again,
/// and again, until `--max-connections`: a `--resolve` pin to one is refused
/// at startup, and a DNS answer for one (say `/etc/hosts` points the name at
/// the proxy, the usual way to send an application through it) is refused
/// per connection.
#[derive(Debug)]
pub struct Own {
    listeners: Vec<SocketAddr>,
    /// This host's interface addresses and when they were read; read only
    /// when a wildcard listener has the target's port, then at most once
    /// per [`IFACES_TTL`] (interfaces come and go on a laptop).
    ifaces: Option<(Instant, Vec<IpAddr>)>,
}

const IFACES_TTL: Duration = Duration::from_secs(1);

impl Own {
    pub fn new(listeners: Vec<SocketAddr>) -> Own {
        Own {
            listeners,
            ifaces: None,
        }
    }

    /// The listener that a connection to `target` reaches, if any: one on
    /// the same port and family whose address is the target's, or a
    /// wildcard listener (`0.0.0.0`, `[::]`) when the target is loopback or
    /// an address of this host. `connect()` to `0.0.0.0` or `[::]` goes to
    /// the loopback address. Not seen: local routes that make other
    /// addresses this host's (Linux "AnyIP", `ip route add local ...`). An upstream on a port no listener has costs
    /// one comparison per listener.
    pub fn reached_by(&mut self, target: SocketAddr, now: Instant) -> Option<SocketAddr> {
        // An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) is dialed from an
        // IPv6 socket but reaches the IPv4 address.
        let ip = match target.ip().to_canonical() {
            IpAddr::V4(v) if v.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(v) if v.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let mut wildcard = None;
        for &l in &self.listeners {
            if l.port() != target.port() || l.is_ipv4() != ip.is_ipv4() {
                continue;
            }
            if l.ip() == ip || (l.ip().is_unspecified() && ip.is_loopback()) {
                return Some(l);
            }
            if l.ip().is_unspecified() {
                wildcard = Some(l);
            }
        }
        let l = wildcard?;
        let fresh =
            |(at, _): &(Instant, Vec<IpAddr>)| now.saturating_duration_since(*at) < IFACES_TTL;
        if !self.ifaces.as_ref().is_some_and(fresh) {
            self.ifaces = Some((now, interface_ips()));
        }
        let (_, ips) = self.ifaces.as_ref()?;
        ips.contains(&ip).then_some(l)
    }
}

/// The addresses of this host's interfaces (`getifaddrs(3)`); none if they
/// cannot be read.
pub fn interface_ips() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list that is only read here,
    // each `ifa_addr` pointing at a sockaddr of the family it names, and
    // freed once with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut p = head;
        while !p.is_null() {
            let a = (*p).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*a.cast::<libc::sockaddr_in>();
                        out.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr))));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*a.cast::<libc::sockaddr_in6>();
                        out.push(IpAddr::V6(Ipv6Addr::from(v6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            p = (*p).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

/// Gives each local connection to the listener of the worker for the CPU it
/// arrived on: a classic BPF program on the group
/// (`SO_ATTACH_REUSEPORT_CBPF`, socket(7)) returns the socket's index in the
/// group, which is the order the sockets started listening, i.e. the
/// worker number. The CPUs this process may run on are dealt round-robin to
/// the workers; any other CPU (one brought online later) returns an index
/// past the group, and the kernel falls back to its hash
/// (`reuseport_select_sock`). With more workers than CPUs, some workers
/// would get nothing, so the hash is kept.
///
/// Only connections that come in over loopback are steered: there the SYN
/// is handled on the connecting client's CPU. A SYN from the network is
/// handled on the CPU its NIC queue interrupts, and a NIC with one queue
/// would send every connection to one worker, so those get the hash.
///
/// Measured in bench/proxy.sh (BENCHMARKS.md, serve finding 13): 117 µs of
/// proxy CPU per new connection against 128 µs with the hash, same run.
#[cfg(target_os = "linux")]
fn steer_by_cpu(first: &TcpListener, workers: usize) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let cpus = allowed_cpus()?;
    if workers > cpus.len() {
        return Ok(());
    }
    let program = cpu_program(&cpus, workers);
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: setsockopt on an open socket; `fprog` points at `program`,
    // which outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::setsockopt(
            first.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            (&raw const fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn steer_by_cpu(_first: &TcpListener, _workers: usize) -> io::Result<()> {
    Ok(())
}

/// The CPUs this thread may run on (`sched_getaffinity`), ascending.
#[cfg(target_os = "linux")]
fn allowed_cpus() -> io::Result<Vec<u32>> {
    // SAFETY: an all-zero cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 is this thread; the size is that of `set`.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: `c` is below CPU_SETSIZE.
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .map(|c| c as u32)
        .collect())
}

/// The classic BPF program: a packet that did not come in over loopback
/// returns an index past the group (the hash decides); otherwise load the
/// CPU number, then one "if equal, return the worker" pair per CPU, and no
/// match returns past the group too. Pairs keep every jump short (a cBPF
/// jump offset is 8 bits). `cpus` comes from a `cpu_set_t`, at most 1024
/// CPUs, so the program stays under the kernel's 4096 instructions.
#[cfg(target_os = "linux")]
fn cpu_program(cpus: &[u32], workers: usize) -> Vec<libc::sock_filter> {
    // linux/filter.h ancillary data offsets.
    const SKF_AD_IFINDEX: i32 = 8;
    const SKF_AD_CPU: i32 = 36;
    // The loopback device is interface 1 in every network namespace
    // (LOOPBACK_IFINDEX, include/net/net_namespace.h).
    const LOOPBACK_IFINDEX: u32 = 1;
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: i32| {
        let k = (libc::SKF_AD_OFF + offset) as u32;
        insn(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, k)
    };
    let jeq = |k: u32, jt: u8, jf: u8| insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, jt, jf, k);
    let ret = |k: u32| insn(libc::BPF_RET | libc::BPF_K, 0, 0, k);
    let mut p = vec![
        load(SKF_AD_IFINDEX),
        // Loopback: jump over the next `ret`.
        jeq(LOOPBACK_IFINDEX, 1, 0),
        ret(u32::MAX),
        load(SKF_AD_CPU),
    ];
    for (i, &cpu) in cpus.iter().enumerate() {
        // This CPU: fall into its `ret`; another: skip it.
        p.push(jeq(cpu, 0, 1));
        p.push(ret((i % workers) as u32));
    }
    p.push(ret(u32::MAX));
    p
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::net::TcpStream;

    fn pin_to(cpu: u32) {
        // SAFETY: as in `allowed_cpus`; `cpu` is one of the allowed ones.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut set);
            assert_eq!(
                libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set),
                0
            );
        }
    }

    /// Which listeners accept the next `n` connections (the group's
    /// sockets are non-blocking; waits up to 5 s for all of them, in case
    /// the kernel finishes a handshake after `connect()` returned).
    fn accepted_by(group: &[TcpListener], n: usize) -> Vec<usize> {
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while got.len() < n && std::time::Instant::now() < deadline {
            for (i, l) in group.iter().enumerate() {
                while l.accept().is_ok() {
                    got.push(i);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        got
    }

    /// A client on CPU `c` is accepted by worker `c`'s listener, every
    /// time: the kernel runs the program on the CPU that takes the
    /// connection in, which on loopback is the connecting thread's. (With
    /// one CPU there is nothing to steer, and only the count is checked.)
    #[test]
    fn cpu_balance_gives_each_connection_to_its_cpus_worker() {
        let cpus = allowed_cpus().unwrap();
        let workers = cpus.len().clamp(2, 4);
        let group = bind_group("127.0.0.1:0".parse().unwrap(), workers, Balance::Cpu).unwrap();
        let addr = group[0].local_addr().unwrap();
        for (i, &cpu) in cpus.iter().enumerate().take(8) {
            let want = if workers > cpus.len() {
                None
            } else {
                Some(i % workers)
            };
            let clients = std::thread::spawn(move || {
                pin_to(cpu);
                (0..10)
                    .map(|_| TcpStream::connect(addr).unwrap())
                    .collect::<Vec<_>>()
            })
            .join()
            .unwrap();
            let got = accepted_by(&group, clients.len());
            assert_eq!(got.len(), clients.len(), "cpu {cpu}: {got:?}");
            if let Some(w) = want {
                assert!(got.iter().all(|&g| g == w), "cpu {cpu}: {got:?}, want {w}");
            }
        }
    }

    /// The whole program, instruction by instruction (classic BPF opcodes
    /// from linux/filter.h): with more CPUs than workers the CPUs are dealt
    /// round-robin; a packet from outside loopback and an unknown CPU both
    /// return an index past any group.
    #[test]
    fn cpu_program_steers_loopback_by_cpu_and_leaves_the_rest_to_the_hash() {
        const LD_ABS: u16 = 0x20;
        const JEQ: u16 = 0x15;
        const RET: u16 = 0x06;
        const IFINDEX: u32 = 0xffff_f000 + 8;
        const CPU: u32 = 0xffff_f000 + 36;
        let p: Vec<(u16, u8, u8, u32)> = cpu_program(&[2, 5, 7], 2)
            .iter()
            .map(|i| (i.code, i.jt, i.jf, i.k))
            .collect();
        let want = [
            (LD_ABS, 0, 0, IFINDEX),
            (JEQ, 1, 0, 1),
            (RET, 0, 0, u32::MAX),
            (LD_ABS, 0, 0, CPU),
            (JEQ, 0, 1, 2),
            (RET, 0, 0, 0),
            (JEQ, 0, 1, 5),
            (RET, 0, 0, 1),
            (JEQ, 0, 1, 7),
            (RET, 0, 0, 0),
            (RET, 0, 0, u32::MAX),
        ];
        assert_eq!(p, want);
    }

    /// A second group on the same address would join the first and take a
    /// share of its connections; it is refused instead.
    #[test]
    fn a_second_group_on_a_taken_address_is_refused() {
        let first = bind_group("127.0.0.1:0".parse().unwrap(), 2, Balance::Hash).unwrap();
        let addr = first[0].local_addr().unwrap();
        for workers in [1, 2] {
            let err = bind_group(addr, workers, Balance::Cpu).unwrap_err();
            assert!(format!("{err:#}").contains("cannot listen on"), "{err:#}");
        }
    }
}
