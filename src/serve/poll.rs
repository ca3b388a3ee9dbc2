//! Socket readiness for the proxy's event loop: epoll on Linux, `poll(2)`
//! elsewhere (and on Linux when a test asks for it).
//!
//! Both are level-triggered: a socket is reported for as long as it is
//! readable, or writable if asked. The loop therefore does one read or
//! accept per report and never reads again only to hit EAGAIN, as nginx
//! does. The price is the trap level-triggering sets: `EPOLLHUP` and
//! `EPOLLERR` (`POLLHUP`, `POLLERR`) are reported even for a socket with no
//! interest at all (epoll_ctl(2), poll(2)), so a socket the loop wants
//! nothing more from must be closed on them, or the loop spins; one it
//! wants nothing from *yet* must be [`Poller::remove`]d until it does.
//!
//! With epoll, closing a descriptor removes it from the set, so
//! [`Poller::forget`] costs nothing there (no `EPOLL_CTL_DEL` per socket).
//! The descriptors here are never duplicated, which that relies on.

use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

/// What to be told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    pub const NONE: Interest = Interest {
        read: false,
        write: false,
    };
    pub const READ: Interest = Interest {
        read: true,
        write: false,
    };
    pub const WRITE: Interest = Interest {
        read: false,
        write: true,
    };
}

/// One readiness report.
#[derive(Debug, Clone, Copy)]
pub struct Event {
    pub token: u64,
    pub readable: bool,
    pub writable: bool,
    /// Both directions are shut (`EPOLLHUP`); reported without interest.
    pub hup: bool,
    /// A pending socket error (`EPOLLERR`); reported without interest.
    pub error: bool,
    /// The peer has shut its sending side (`EPOLLRDHUP`, `POLLRDHUP`;
    /// asked for with read interest, Linux only, else always `false`):
    /// once what is queued is read, reads return EOF.
    pub peer_shut: bool,
}

/// Which system interface a [`Poller`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// epoll(7): the default on Linux.
    #[cfg(target_os = "linux")]
    Epoll,
    /// poll(2): the default elsewhere; O(sockets) per wait, fine for a laptop.
    Poll,
}

impl Default for Backend {
    fn default() -> Backend {
        #[cfg(target_os = "linux")]
        return Backend::Epoll;
        #[cfg(not(target_os = "linux"))]
        return Backend::Poll;
    }
}

/// A set of watched descriptors, each with a token reported back.
pub struct Poller {
    inner: Inner,
}

enum Inner {
    #[cfg(target_os = "linux")]
    Epoll(Epoll),
    Poll(PollSet),
}

impl Poller {
    pub fn new(backend: Backend) -> io::Result<Poller> {
        let inner = match backend {
            #[cfg(target_os = "linux")]
            Backend::Epoll => Inner::Epoll(Epoll::new()?),
            Backend::Poll => Inner::Poll(PollSet::default()),
        };
        Ok(Poller { inner })
    }

    pub fn add(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Epoll(e) => e.ctl(libc::EPOLL_CTL_ADD, fd, token, interest),
            Inner::Poll(p) => {
                p.add(fd, token, interest);
                Ok(())
            }
        }
    }

    pub fn modify(&mut self, fd: RawFd, token: u64, interest: Interest) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Epoll(e) => e.ctl(libc::EPOLL_CTL_MOD, fd, token, interest),
            Inner::Poll(p) => p.modify(fd, token, interest),
        }
    }

    /// Stops watching `fd`. Call it right before closing `fd`.
    pub fn forget(&mut self, fd: RawFd) {
        match &mut self.inner {
            // close(2) removes it.
            #[cfg(target_os = "linux")]
            Inner::Epoll(_) => {}
            Inner::Poll(p) => p.forget(fd),
        }
    }

    /// Stops watching `fd`, which stays open: [`Poller::add`] it again to
    /// hear from it. For a socket that reports a hang-up or an error the
    /// loop cannot act on yet (see the module docs).
    pub fn remove(&mut self, fd: RawFd) -> io::Result<()> {
        match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Epoll(e) => e.ctl(libc::EPOLL_CTL_DEL, fd, 0, Interest::NONE),
            Inner::Poll(p) => {
                p.forget(fd);
                Ok(())
            }
        }
    }

    /// Waits up to `timeout` (`None`: forever) and replaces `out` with what
    /// is ready. A signal interrupting the wait is not an error.
    pub fn wait(&mut self, out: &mut Vec<Event>, timeout: Option<Duration>) -> io::Result<()> {
        out.clear();
        let ms = timeout.map_or(-1, |d| {
            // Round up: waking before the deadline would only wait again.
            let ms = d.as_nanos().div_ceil(1_000_000);
            ms.min(i32::MAX as u128) as i32
        });
        let res = match &mut self.inner {
            #[cfg(target_os = "linux")]
            Inner::Epoll(e) => e.wait(out, ms),
            Inner::Poll(p) => p.wait(out, ms),
        };
        match res {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other,
        }
    }
}

#[cfg(target_os = "linux")]
struct Epoll {
    fd: std::os::fd::OwnedFd,
    buf: Vec<libc::epoll_event>,
}

#[cfg(target_os = "linux")]
impl Epoll {
    fn new() -> io::Result<Epoll> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain syscall; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Epoll {
            // SAFETY: epoll_create1 returned a new descriptor we own.
            fd: unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) },
            buf: vec![libc::epoll_event { events: 0, u64: 0 }; 256],
        })
    }

    fn ctl(&self, op: i32, fd: RawFd, token: u64, i: Interest) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let mut events = 0;
        if i.read {
            events |= (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
        }
        if i.write {
            events |= libc::EPOLLOUT as u32;
        }
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: a valid epoll fd and a valid event struct.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn wait(&mut self, out: &mut Vec<Event>, ms: i32) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: `buf` has room for `buf.len()` events.
        let n = unsafe {
            libc::epoll_wait(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr(),
                self.buf.len() as i32,
                ms,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for e in &self.buf[..n as usize] {
            // Copies: `epoll_event` is packed on x86-64.
            let (bits, token) = (e.events, e.u64);
            let has = |flag: i32| bits & flag as u32 != 0;
            out.push(Event {
                token,
                readable: has(libc::EPOLLIN),
                writable: has(libc::EPOLLOUT),
                hup: has(libc::EPOLLHUP),
                error: has(libc::EPOLLERR),
                peer_shut: has(libc::EPOLLRDHUP),
            });
        }
        Ok(())
    }
}

/// The `poll(2)` set: descriptors in an array, found by a map.
#[derive(Default)]
struct PollSet {
    fds: Vec<libc::pollfd>,
    tokens: Vec<u64>,
    at: HashMap<RawFd, usize>,
}

/// `POLLRDHUP` is Linux's; elsewhere nothing is asked for.
#[cfg(target_os = "linux")]
const POLL_PEER_SHUT: i16 = libc::POLLRDHUP;
#[cfg(not(target_os = "linux"))]
const POLL_PEER_SHUT: i16 = 0;

fn poll_events(i: Interest) -> i16 {
    let mut events = 0;
    if i.read {
        events |= libc::POLLIN | POLL_PEER_SHUT;
    }
    if i.write {
        events |= libc::POLLOUT;
    }
    events
}

impl PollSet {
    fn add(&mut self, fd: RawFd, token: u64, i: Interest) {
        self.at.insert(fd, self.fds.len());
        self.fds.push(libc::pollfd {
            fd,
            events: poll_events(i),
            revents: 0,
        });
        self.tokens.push(token);
    }

    fn modify(&mut self, fd: RawFd, token: u64, i: Interest) -> io::Result<()> {
        let &at = self
            .at
            .get(&fd)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        self.fds[at].events = poll_events(i);
        self.tokens[at] = token;
        Ok(())
    }

    fn forget(&mut self, fd: RawFd) {
        if let Some(at) = self.at.remove(&fd) {
            self.fds.swap_remove(at);
            self.tokens.swap_remove(at);
            if let Some(moved) = self.fds.get(at) {
                self.at.insert(moved.fd, at);
            }
        }
    }

    fn wait(&mut self, out: &mut Vec<Event>, ms: i32) -> io::Result<()> {
        // SAFETY: `fds` holds `fds.len()` initialised entries.
        let n = unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as _, ms) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        for (p, &token) in self.fds.iter().zip(&self.tokens) {
            if p.revents == 0 {
                continue;
            }
            let has = |flag: i16| p.revents & flag != 0;
            out.push(Event {
                token,
                readable: has(libc::POLLIN),
                writable: has(libc::POLLOUT),
                hup: has(libc::POLLHUP),
                error: has(libc::POLLERR | libc::POLLNVAL),
                peer_shut: has(POLL_PEER_SHUT),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;

    use super::*;

    fn backends() -> Vec<Backend> {
        vec![
            #[cfg(target_os = "linux")]
            Backend::Epoll,
            Backend::Poll,
        ]
    }

    /// Level-triggered: a readable socket is reported on every wait until it
    /// is read; interest changes and `forget` take effect at once.
    #[test]
    fn reports_levels_and_follows_interest() {
        for b in backends() {
            let mut p = Poller::new(b).unwrap();
            let (a, mut peer) = UnixStream::pair().unwrap();
            p.add(a.as_raw_fd(), 7, Interest::READ).unwrap();
            let mut ev = Vec::new();
            p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(ev.is_empty(), "{b:?}: nothing to read yet");
            peer.write_all(b"x").unwrap();
            for _ in 0..2 {
                p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
                assert_eq!(ev.len(), 1, "{b:?}");
                assert!(ev[0].token == 7 && ev[0].readable && !ev[0].writable);
            }
            p.modify(a.as_raw_fd(), 8, Interest::WRITE).unwrap();
            p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
            assert!(
                ev[0].token == 8 && ev[0].writable && !ev[0].readable,
                "{b:?}"
            );
            p.forget(a.as_raw_fd());
            drop(a);
            p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(ev.is_empty(), "{b:?}: forgotten");
        }
    }

    /// The trap in the module docs: a hang-up is reported with no interest.
    #[test]
    fn a_hang_up_is_reported_without_interest() {
        for b in backends() {
            let mut p = Poller::new(b).unwrap();
            let (a, peer) = UnixStream::pair().unwrap();
            p.add(a.as_raw_fd(), 1, Interest::NONE).unwrap();
            drop(peer);
            let mut ev = Vec::new();
            p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
            assert!(ev.len() == 1 && ev[0].hup, "{b:?}: {ev:?}");
            // Only removing it stops the reports; adding it back resumes them.
            p.remove(a.as_raw_fd()).unwrap();
            p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(ev.is_empty(), "{b:?}: removed: {ev:?}");
            p.add(a.as_raw_fd(), 2, Interest::READ).unwrap();
            p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(ev.len() == 1 && ev[0].token == 2, "{b:?}: {ev:?}");
        }
    }

    /// A peer's FIN is reported with the read, on Linux; with no interest
    /// it is not reported at all (it is not a hang-up), so it cannot spin.
    #[test]
    fn a_peer_shutdown_comes_with_the_read() {
        for b in backends() {
            let mut p = Poller::new(b).unwrap();
            let (a, mut peer) = UnixStream::pair().unwrap();
            p.add(a.as_raw_fd(), 1, Interest::READ).unwrap();
            peer.write_all(b"x").unwrap();
            let mut ev = Vec::new();
            p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
            assert!(ev.len() == 1 && !ev[0].peer_shut, "{b:?}: {ev:?}");
            peer.shutdown(std::net::Shutdown::Write).unwrap();
            p.wait(&mut ev, Some(Duration::from_secs(1))).unwrap();
            let linux = cfg!(target_os = "linux");
            assert!(ev.len() == 1 && ev[0].readable, "{b:?}: {ev:?}");
            assert_eq!(ev[0].peer_shut, linux, "{b:?}: {ev:?}");
            assert!(!ev[0].hup, "{b:?}: only one direction is shut");
            p.modify(a.as_raw_fd(), 1, Interest::NONE).unwrap();
            p.wait(&mut ev, Some(Duration::ZERO)).unwrap();
            assert!(ev.is_empty(), "{b:?}: {ev:?}");
        }
    }

    #[test]
    fn a_timeout_returns_nothing() {
        for b in backends() {
            let mut p = Poller::new(b).unwrap();
            let mut ev = Vec::new();
            let start = std::time::Instant::now();
            p.wait(&mut ev, Some(Duration::from_millis(20))).unwrap();
            assert!(ev.is_empty());
            assert!(start.elapsed() >= Duration::from_millis(20), "{b:?}");
        }
    }
}
