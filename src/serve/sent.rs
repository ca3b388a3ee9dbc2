//! The ClientHellos this proxy has sent upstream, while their upstream
//! sockets are open, so that one arriving back at its own listener is
//! known for what it is: a loop. [`super::listen::Own`] catches the loops
//! it can see from addresses (a name that resolves to a listener); this
//! catches the rest, through a route or a NAT rule: an AnyIP `local` route
//! over the upstream's address, or an iptables `REDIRECT` of outgoing port
//! 443 that does not exclude the proxy's own traffic.
//!
//! A hello is found by its `random` (RFC 8446 §4.1.2: 32 bytes a client
//! draws afresh for every hello). A match is a loop only when the arriving
//! connection comes from the very upstream socket that sent the hello (its
//! peer is that socket's local address), so a tool that replays one hello
//! on many connections is not taken for one. That check costs a
//! `getsockname`, paid only on a match.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Mutex;

/// Shards, so the workers seldom wait for each other.
const SHARDS: usize = 16;

/// Hello randoms of open upstream sockets, and those sockets.
pub struct Sent {
    shards: Vec<Mutex<HashMap<[u8; 32], RawFd>>>,
}

impl Default for Sent {
    fn default() -> Sent {
        Sent {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

impl Sent {
    fn shard(&self, random: &[u8; 32]) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], RawFd>> {
        self.shards[usize::from(random[0]) % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The hello with `random` went out on `upstream`. Call
    /// [`Sent::remove`] before closing it.
    pub fn insert(&self, random: &[u8; 32], upstream: RawFd) {
        self.shard(random).insert(*random, upstream);
    }

    /// `upstream` is about to be closed. A replayed hello may have been
    /// sent again on another socket since: that entry stays.
    pub fn remove(&self, random: &[u8; 32], upstream: RawFd) {
        let mut shard = self.shard(random);
        if shard.get(random) == Some(&upstream) {
            shard.remove(random);
        }
    }

    /// Whether a hello with `random`, arriving from `peer`, was sent by this
    /// proxy's own upstream socket.
    pub fn came_back(&self, random: &[u8; 32], peer: SocketAddr) -> bool {
        // Held across the check: the socket's owner removes it, under this
        // lock, before closing it, so the descriptor is still that socket.
        let shard = self.shard(random);
        let Some(&fd) = shard.get(random) else {
            return false;
        };
        // SAFETY: open until removed (above).
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let local = socket2::SockRef::from(&fd)
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket());
        local.map(|a| SocketAddr::new(a.ip().to_canonical(), a.port()))
            == Some(SocketAddr::new(peer.ip().to_canonical(), peer.port()))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    #[test]
    fn only_the_socket_that_sent_the_hello_is_a_loop() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let up = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (arrived, peer) = l.accept().unwrap();
        let sent = Sent::default();
        let random = [9; 32];
        assert!(!sent.came_back(&random, peer), "nothing sent yet");
        sent.insert(&random, up.as_raw_fd());
        assert!(sent.came_back(&random, peer));
        // The same hello from another client (a replay): not a loop.
        let other = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (_, other_peer) = l.accept().unwrap();
        assert!(!sent.came_back(&random, other_peer));
        assert!(!sent.came_back(&[8; 32], peer), "another hello");
        // A replay sent again on `other` replaces the entry; removing the
        // first socket's leaves it.
        sent.insert(&random, other.as_raw_fd());
        sent.remove(&random, up.as_raw_fd());
        assert!(sent.came_back(&random, other_peer));
        sent.remove(&random, other.as_raw_fd());
        assert!(!sent.came_back(&random, other_peer));
        drop(arrived);
    }
}
