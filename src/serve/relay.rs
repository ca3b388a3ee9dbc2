//! One direction of an established connection: bytes from a source socket
//! to a destination socket, copied, or moved by `splice(2)` once the flow is
//! long (Linux, see [`super::splice`]).
//!
//! The event loop in [`super::proxy`] drives it: [`Half::on_readable`] when
//! the source reports readable, [`Half::on_writable`] when the destination
//! reports writable, and [`Half::wants_read`] / [`Half::wants_write`] say
//! what to ask the poller for. A read that fills the buffer is followed by
//! another, a few rounds at most (`ROUNDS`); a short read means the socket
//! is drained, so the loop never reads only to get EAGAIN.
//!
//! After a reset, what the failed socket sent before it failed is still
//! delivered to the other side (while it moves), and then the connection
//! ends as reset (`CR`), as Envoy's `tcp_proxy` flushes the other side
//! (`FlushWrite`) when one side closes. A read error marks its own
//! direction ([`Half::source_reset`]); a write error is returned, and the
//! caller marks the direction from the socket that failed. The direction
//! toward a failed socket goes on reading and drops what it reads
//! ([`Half::destination_reset`]): a client that uploads before it reads
//! would otherwise block, never read, and hold the connection open.
//!
//! Bytes are read into the worker's scratch buffer and written straight on.
//! Only what the destination does not take at once is kept, in a buffer from
//! the `pool` that is handed back as soon as it is written out. So an idle
//! connection holds no relay memory.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};

/// Smallest buffer kept for bytes the destination did not take.
pub const RELAY_START: usize = 16 * 1024;
/// Size of each worker's scratch buffer: the most one read takes.
pub const RELAY_MAX: usize = 64 * 1024;
/// Most read-and-write rounds per readiness report (copying: 4 × 64 KiB;
/// splicing: 4 pipes full).
const ROUNDS: usize = 4;

/// One direction of the relay.
pub struct Half {
    /// Bytes `pos..buf.len()` wait for the destination; empty when none do.
    buf: Vec<u8>,
    pos: usize,
    /// The source reached EOF.
    eof: bool,
    /// EOF, everything delivered, and the FIN passed on.
    done: bool,
    /// The source failed (reset): once what it sent is delivered, the
    /// connection ends as reset.
    reset: bool,
    /// The destination failed: what the source sends is read and dropped.
    discard: bool,
    /// Bytes delivered to the destination.
    total: u64,
    /// Bytes taken from the source.
    read: u64,
    /// Splice once `total` passes `SPLICE_AFTER` (Linux only).
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    splice: bool,
    #[cfg(target_os = "linux")]
    pipe: Option<super::splice::Pipe>,
}

impl Half {
    /// A direction whose first `sent` bytes of `pending` are delivered.
    pub fn new(pending: Vec<u8>, sent: usize, splice: bool) -> Half {
        let mut h = Half {
            buf: pending,
            pos: sent,
            eof: false,
            done: false,
            reset: false,
            discard: false,
            total: sent as u64,
            read: 0,
            splice: splice && cfg!(target_os = "linux"),
            #[cfg(target_os = "linux")]
            pipe: None,
        };
        if h.pos >= h.buf.len() {
            h.release();
        }
        h
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes taken from the source, delivered or not.
    pub fn read(&self) -> u64 {
        self.read
    }

    /// Bytes read plus bytes written so far: it changes exactly when bytes
    /// move, which is what Envoy's `tcp_proxy` `idle_timeout` watches ("no
    /// bytes sent or received on either the upstream or downstream
    /// connection").
    pub fn moved(&self) -> u64 {
        self.read + self.total
    }

    /// The source failed and what it sent before is now delivered: the
    /// connection ends as reset, with no FIN passed on.
    pub fn reset_delivered(&self) -> bool {
        self.reset && self.eof && !self.wants_write()
    }

    /// Whether the source failed.
    pub fn is_reset(&self) -> bool {
        self.reset
    }

    /// A write to the source failed (it reset). What it sent before is
    /// still read and delivered: Linux keeps a reset socket's received
    /// bytes readable, then reports EOF or the error.
    pub fn source_reset(&mut self) {
        self.reset = true;
    }

    /// The destination failed: what waits for it is dropped, and what the
    /// source sends from now on is read and dropped, until its EOF.
    pub fn destination_reset(&mut self) {
        self.discard = true;
        self.done = true;
        self.release();
        #[cfg(target_os = "linux")]
        {
            self.pipe = None;
        }
    }

    /// The source has sent its FIN (or failed): nothing more comes from it.
    pub fn source_ended(&self) -> bool {
        self.eof
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    pub fn wants_read(&self) -> bool {
        if self.eof {
            return false;
        }
        if self.discard {
            return true;
        }
        #[cfg(target_os = "linux")]
        if let Some(p) = &self.pipe {
            return p.can_fill();
        }
        self.buf.is_empty()
    }

    pub fn wants_write(&self) -> bool {
        #[cfg(target_os = "linux")]
        if let Some(p) = &self.pipe {
            return p.pending() > 0;
        }
        !self.buf.is_empty()
    }

    /// The source is readable (or hung up): one read, and as much of it as
    /// the destination takes at once. An error is the destination's; the
    /// source's own end this direction as reset.
    ///
    /// `peer_shut`: the poller said the source has sent its FIN. Then a
    /// short read is followed by one more, which returns the EOF, and the
    /// bytes go out with `MSG_MORE` so that the FIN `finish` sends next
    /// rides on the same segment: one packet and one loop turn fewer per
    /// closing direction.
    pub fn on_readable(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        scratch: &mut [u8],
        peer_shut: bool,
    ) -> io::Result<()> {
        if !self.wants_read() {
            return Ok(());
        }
        if self.discard {
            self.discard_from(src, scratch);
            return Ok(());
        }
        #[cfg(target_os = "linux")]
        if self.splice && self.total >= super::splice::SPLICE_AFTER {
            return self.splice_from(src, dst);
        }
        // A full read suggests more is waiting: go on, a few rounds at most
        // so that one bulk flow cannot starve the worker's other sockets.
        for _ in 0..ROUNDS {
            let mut n = match (&*src).read(scratch) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(_) => {
                    self.eof = true;
                    self.reset = true;
                    return Ok(());
                }
            };
            let mut ended = None;
            if peer_shut && n < scratch.len() {
                match (&*src).read(&mut scratch[n..]) {
                    Ok(0) => ended = Some(false),
                    Ok(m) => n += m,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => ended = Some(true),
                }
            }
            // Hold the tail for the FIN only when one follows: a direction
            // ending as reset is not shut, and a socket closed with unread
            // bytes drops its write queue (a reset), held tail included.
            let fin_follows = ended == Some(false) && !self.reset;
            if let Some(reset) = ended {
                self.eof = true;
                // Marked already if a write to this socket failed.
                self.reset |= reset;
            }
            self.read += n as u64;
            let w = match send(dst, &scratch[..n], fin_follows) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            self.total += w as u64;
            if w < n {
                self.buf = pool::take(n - w);
                self.buf.extend_from_slice(&scratch[w..n]);
                self.pos = 0;
            }
            if self.eof || w < n || n < scratch.len() {
                break;
            }
        }
        Ok(())
    }

    /// Reads from `src` and drops it, a few rounds at most.
    fn discard_from(&mut self, src: &TcpStream, scratch: &mut [u8]) {
        for _ in 0..ROUNDS {
            match (&*src).read(scratch) {
                Ok(n) if n > 0 => self.read += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                _ => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    /// The destination is writable: writes what waits for it. An error is
    /// the destination's.
    pub fn on_writable(&mut self, dst: &TcpStream) -> io::Result<()> {
        #[cfg(target_os = "linux")]
        if let Some(p) = &mut self.pipe {
            use std::os::fd::AsRawFd;
            if p.pending() > 0 {
                self.total += p.drain(dst.as_raw_fd())? as u64;
            }
            return Ok(());
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        match (&*dst).write(&self.buf[self.pos..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                self.pos += n;
                self.total += n as u64;
                if self.pos == self.buf.len() {
                    self.release();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    /// Once the source has ended and everything is delivered, passes the
    /// FIN on with `shutdown(WR)` (half-close, as Envoy's `tcp_proxy`
    /// does). When the other direction has ended too, the `close()` that
    /// follows sends the same FIN (both receive queues were read to EOF, so
    /// it is not a reset): no `shutdown` call needed. Returns whether this
    /// direction is done.
    pub fn finish(&mut self, dst: &TcpStream, other_done: bool) -> bool {
        if !self.done && self.eof && !self.wants_write() {
            if !other_done {
                // The peer may already be gone, which ends this direction
                // all the same.
                let _ = dst.shutdown(Shutdown::Write);
            }
            self.done = true;
        }
        self.done
    }

    /// Long flow: fill the pipe from `src`, and drain it into `dst` at once.
    #[cfg(target_os = "linux")]
    fn splice_from(&mut self, src: &TcpStream, dst: &TcpStream) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if self.pipe.is_none() {
            // Copying until now, so nothing is buffered (`wants_read`).
            match super::splice::Pipe::new() {
                Ok(p) => self.pipe = Some(p),
                Err(_) => {
                    // Out of descriptors: keep copying.
                    self.splice = false;
                    return Ok(());
                }
            }
        }
        let Some(p) = &mut self.pipe else {
            return Ok(());
        };
        for _ in 0..ROUNDS {
            match p.fill(src.as_raw_fd()) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => self.read += n as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    // Bytes it sent may still be in the pipe: delivered first.
                    self.eof = true;
                    self.reset = true;
                    break;
                }
            }
            self.total += p.drain(dst.as_raw_fd())? as u64;
            if p.pending() > 0 {
                // The destination took only part, or none: wait for it.
                break;
            }
        }
        Ok(())
    }

    fn release(&mut self) {
        pool::give(std::mem::take(&mut self.buf));
        self.pos = 0;
    }
}

/// Writes `bytes` to `dst`. `more`: a FIN follows at once, so Linux holds a
/// short tail (`MSG_MORE`) for `shutdown`/`close` to send with it; elsewhere
/// a plain write.
fn send(dst: &TcpStream, bytes: &[u8], more: bool) -> io::Result<usize> {
    #[cfg(target_os = "linux")]
    if more {
        return socket2::SockRef::from(dst)
            .send_with_flags(bytes, libc::MSG_MORE | libc::MSG_NOSIGNAL);
    }
    let _ = more;
    (&*dst).write(bytes)
}

impl Drop for Half {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.buf));
    }
}

/// Buffers handed back by flushed directions, kept per thread for reuse.
///
/// Handing them straight back to the allocator cost 7 µs more proxy CPU per
/// keep-alive request in bench/proxy.sh (10.7 -> 17.8 µs, see
/// BENCHMARKS.md); reusing them is at par. The pool is bounded, so idle
/// connections still cost no buffer.
mod pool {
    use std::cell::RefCell;

    use super::{RELAY_MAX, RELAY_START};

    /// Buffers kept per thread: at most 32 × 64 KiB = 2 MiB.
    const KEEP: usize = 32;

    thread_local! {
        static FREE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// An empty buffer with room for at least `size` bytes.
    pub fn take(size: usize) -> Vec<u8> {
        let size = size.clamp(RELAY_START, RELAY_MAX);
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;

    use super::*;

    /// A connected loopback pair, `(ours, theirs)`; ours is non-blocking,
    /// both send at once (`TCP_NODELAY`), as the proxy's sockets do.
    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let theirs = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        ours.set_nodelay(true).unwrap();
        theirs.set_nodelay(true).unwrap();
        // Bytes held back by mistake fail the test instead of hanging it.
        let limit = Some(std::time::Duration::from_secs(5));
        theirs.set_read_timeout(limit).unwrap();
        (ours, theirs)
    }

    /// TCP segments `s` has received (`tcpi_segs_in`, tcp(7) `TCP_INFO`).
    fn segments_in(s: &TcpStream) -> u32 {
        // SAFETY: TCP_INFO fills at most `len` bytes of a `tcp_info`.
        unsafe {
            let mut info: libc::tcp_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = libc::getsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                (&mut info as *mut libc::tcp_info).cast(),
                &mut len,
            );
            assert_eq!(rc, 0, "{}", io::Error::last_os_error());
            info.tcpi_segs_in
        }
    }

    /// Waits until `s` is readable; returns whether its peer has shut.
    fn wait_readable(s: &TcpStream) -> bool {
        use super::super::poll::{Backend, Interest, Poller};
        let mut p = Poller::new(Backend::Epoll).unwrap();
        p.add(s.as_raw_fd(), 1, Interest::READ).unwrap();
        let mut ev = Vec::new();
        p.wait(&mut ev, Some(std::time::Duration::from_secs(5)))
            .unwrap();
        assert!(ev.len() == 1 && ev[0].readable, "{ev:?}");
        ev[0].peer_shut
    }

    /// The source sends its last bytes and its FIN in one segment; relays
    /// them with and without the poller's hint, and returns whether one
    /// read ended the direction and the segments the destination's reader
    /// got (data and FIN included).
    fn relay_last_bytes(use_hint: bool) -> (bool, u32) {
        let (src, src_peer) = pair();
        let (dst, mut dst_peer) = pair();
        // MSG_MORE holds the bytes back until the FIN, which goes with them.
        socket2::SockRef::from(&src_peer)
            .send_with_flags(b"last words", libc::MSG_MORE)
            .unwrap();
        src_peer.shutdown(Shutdown::Write).unwrap();
        let peer_shut = wait_readable(&src);
        assert!(peer_shut, "the poller reports the FIN with the bytes");
        let before = segments_in(&dst_peer);
        let mut h = Half::new(Vec::new(), 0, false);
        let mut scratch = vec![0; RELAY_MAX];
        h.on_readable(&src, &dst, &mut scratch, use_hint && peer_shut)
            .unwrap();
        let ended = h.source_ended();
        if !ended {
            // The loop's next turn: the socket is still readable (EOF).
            h.on_readable(&src, &dst, &mut scratch, false).unwrap();
        }
        assert!(h.finish(&dst, false), "direction done");
        let mut got = Vec::new();
        dst_peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"last words");
        (ended, segments_in(&dst_peer) - before)
    }

    #[test]
    fn a_fin_that_came_with_the_last_bytes_leaves_on_the_same_segment() {
        assert_eq!(relay_last_bytes(true), (true, 1));
        // Without the hint: a turn of the loop more, and a bare FIN.
        assert_eq!(relay_last_bytes(false), (false, 2));
    }

    /// A source that resets after its last bytes: they are delivered, and
    /// the direction ends as reset, not as a clean FIN.
    #[test]
    fn a_reset_seen_on_the_extra_read_still_ends_as_reset() {
        let (src, src_peer) = pair();
        let (dst, mut dst_peer) = pair();
        (&src_peer).write_all(b"bye").unwrap();
        socket2::SockRef::from(&src_peer)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        assert!(!wait_readable(&src), "the bytes, and no FIN");
        drop(src_peer);
        // On loopback the reset is taken in by the `close` that sent it.
        assert!(wait_readable(&src), "the reset shuts the socket");
        let mut h = Half::new(Vec::new(), 0, false);
        let mut scratch = vec![0; RELAY_MAX];
        h.on_readable(&src, &dst, &mut scratch, true).unwrap();
        assert!(h.source_ended() && h.is_reset() && h.reset_delivered());
        let mut got = [0; 3];
        dst_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"bye");
    }

    /// A direction already marked reset (a write to its source failed) is
    /// not shut once its source ends: the connection ends as reset, and the
    /// destination may be closed with unread bytes, which resets it and
    /// drops its write queue. So its last bytes must not be held back for a
    /// FIN that never comes.
    #[test]
    fn a_direction_ending_as_reset_does_not_hold_its_last_bytes() {
        let (src, src_peer) = pair();
        let (dst, mut dst_peer) = pair();
        (&dst_peer).write_all(b"never read").unwrap();
        assert!(!wait_readable(&dst));
        socket2::SockRef::from(&src_peer)
            .send_with_flags(b"last", libc::MSG_MORE)
            .unwrap();
        src_peer.shutdown(Shutdown::Write).unwrap();
        assert!(wait_readable(&src));
        let mut h = Half::new(Vec::new(), 0, false);
        h.source_reset();
        let mut scratch = vec![0; RELAY_MAX];
        h.on_readable(&src, &dst, &mut scratch, true).unwrap();
        assert!(h.reset_delivered(), "ends as reset");
        drop(dst);
        let mut got = [0; 4];
        dst_peer.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"last");
    }
}
