//! Listening sockets: one per address, or, with several workers, one per
//! worker and address joined in a `SO_REUSEPORT` group, and how that group
//! picks the worker for each new connection.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;

use anyhow::{Context, Result};
use socket2::{Domain, Socket, Type};

/// How a new connection is given to one of several workers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Balance {
    /// The worker for the CPU that took the connection in, so a
    /// connection's kernel and proxy work share a CPU (Linux; elsewhere, or
    /// with more workers than CPUs, the same as `hash`).
    Cpu,
    /// The kernel's hash of the connection's addresses and ports.
    Hash,
}

/// Binds `workers` listeners on `addr`, returned in worker order.
///
/// One worker gets a plain listener. Several get a `SO_REUSEPORT` group, so
/// each worker accepts from its own queue. A group would also let a second
/// process of the same user join it and take a share of the connections;
/// so the address is first claimed by a socket without `SO_REUSEPORT`,
/// which fails like any bind if anyone already listens there, and is held
/// until the group is listening.
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
    let actual = claim.local_addr()?.as_socket().with_context(what)?;
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
            eprintln!(
                "egressgen serve: warning: {actual}: cannot give connections to their CPU's worker ({e}); the kernel's hash spreads them instead"
            );
        }
    }
    drop(claim);
    Ok(group)
}

/// A non-blocking TCP socket with `SO_REUSEADDR` (a restart binds despite
/// connections in TIME_WAIT), and `IPV6_V6ONLY` on IPv6 so `0.0.0.0:P` and
/// `[::]:P` can be listened on together.
fn socket(addr: SocketAddr) -> io::Result<Socket> {
    let s = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        None,
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    Ok(s)
}

/// Gives each connection to the listener of the worker for the CPU it
/// arrived on: a classic BPF program on the group
/// (`SO_ATTACH_REUSEPORT_CBPF`, socket(7)) returns the socket's index in the
/// group, which is the order the sockets started listening, i.e. the
/// worker number. The CPUs this process may run on are dealt round-robin to
/// the workers; any other CPU (one brought online later) returns an index
/// past the group, and the kernel falls back to its hash
/// (`reuseport_select_sock`). With more workers than CPUs, some workers
/// would get nothing, so the hash is kept.
///
/// Measured in bench/proxy.sh (BENCHMARKS.md, serve finding 13): 116 µs of
/// proxy CPU per new connection against 135 µs with the hash.
#[cfg(target_os = "linux")]
fn steer_by_cpu(first: &TcpListener, workers: usize) -> io::Result<()> {
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

/// The classic BPF program: load the CPU number, then one
/// "if equal, return the worker" pair per CPU; no match returns an index
/// past the group. Pairs keep every jump short (a cBPF jump offset is 8
/// bits), and the program stays under the 4096-instruction limit for up to
/// 2047 CPUs; past that, CPUs without a pair use the hash.
#[cfg(target_os = "linux")]
fn cpu_program(cpus: &[u32], workers: usize) -> Vec<libc::sock_filter> {
    const SKF_AD_CPU: u32 = 36;
    let insn = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let mut p = vec![insn(
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        0,
        0,
        (libc::SKF_AD_OFF + SKF_AD_CPU as i32) as u32,
    )];
    for (i, &cpu) in cpus.iter().take(2047).enumerate() {
        p.push(insn(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, 0, 1, cpu));
        p.push(insn(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            (i % workers) as u32,
        ));
    }
    p.push(insn(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX));
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
    /// connection in, which on loopback is the connecting thread's.
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

    /// With more CPUs than workers, the CPUs are dealt round-robin, and an
    /// unknown CPU falls through to an index past any group.
    #[test]
    fn cpu_program_deals_cpus_round_robin() {
        let p = cpu_program(&[2, 5, 7], 2);
        let rets: Vec<(u32, u32)> = p[1..p.len() - 1]
            .chunks(2)
            .map(|pair| (pair[0].k, pair[1].k))
            .collect();
        assert_eq!(rets, [(2, 0), (5, 1), (7, 0)]);
        assert_eq!(p.last().unwrap().k, u32::MAX);
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
