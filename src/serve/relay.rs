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
    pub fn on_readable(
        &mut self,
        src: &TcpStream,
        dst: &TcpStream,
        scratch: &mut [u8],
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
            let n = match (&*src).read(scratch) {
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
            self.read += n as u64;
            let w = match (&*dst).write(&scratch[..n]) {
                Ok(w) => w,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                Err(e) => return Err(e),
            };
            self.total += w as u64;
            if w < n {
                self.buf = pool::take(n - w);
                self.buf.extend_from_slice(&scratch[w..n]);
                self.pos = 0;
                return Ok(());
            }
            if n < scratch.len() {
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
