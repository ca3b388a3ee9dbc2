//! Zero-copy relay for long flows on Linux: `splice(2)` through a pipe.
//!
//! Copying through user space costs two memory copies per byte. `splice`
//! moves socket pages into a pipe and from the pipe into the other socket
//! without copying them into the process. Each call is a syscall, though, and
//! a pipe costs two file descriptors, so for small messages it is slower than
//! `read`/`write` (HAProxy's keep-alive figure with splice shows it). The
//! proxy therefore switches a direction to splice only after it has carried
//! [`SPLICE_AFTER`] bytes, i.e. for bulk transfers.
//!
//! This module only moves bytes; it knows nothing of TLS or the allowlist.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::task::{Context, Poll};

use tokio::io::Interest;
use tokio::net::TcpStream;

/// A direction switches to splice after moving this many bytes.
pub const SPLICE_AFTER: u64 = 1 << 20;
/// Pipe capacity asked for (the kernel may round or refuse; 64 KiB is the
/// default and the minimum we rely on).
const PIPE_SIZE: i32 = 256 * 1024;

/// A pipe and the number of bytes sitting in it.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
    pending: usize,
    capacity: usize,
    /// The source reached EOF; what is in the pipe still goes out.
    eof: bool,
}

impl Pipe {
    pub fn new() -> io::Result<Pipe> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both fds are open and owned by us.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // SAFETY: F_SETPIPE_SZ on a pipe fd we own; failure is harmless.
        let got = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_SIZE) };
        let capacity = if got > 0 { got as usize } else { 64 * 1024 };
        Ok(Pipe {
            read,
            write,
            pending: 0,
            capacity,
            eof: false,
        })
    }

    /// Moves bytes from `r` to `w` through the pipe until `r` reaches EOF
    /// and the pipe is empty (`Ready(Ok(true))`), or neither side can move
    /// (`Pending`). `moved` is increased by every byte delivered to `w`.
    ///
    /// Both ends work at once: while `w` is full, `r` still fills the pipe,
    /// and while `r` is empty, the pipe still drains into `w`. Strictly
    /// alternating (fill, then drain all, then fill) left the sender
    /// stalled behind a full receive buffer whenever `w` was slow.
    ///
    /// Filling a pipe that is not empty can fail with EAGAIN because the
    /// pipe ran out of slots (each holds one socket fragment, however small)
    /// while the socket still has data. That EAGAIN must not clear the
    /// socket's edge-triggered readiness, or the flow stalls for good; only
    /// an EAGAIN into an empty pipe means the socket is drained.
    pub fn poll_relay(
        &mut self,
        cx: &mut Context<'_>,
        r: &TcpStream,
        w: &TcpStream,
        moved: &mut u64,
    ) -> Poll<io::Result<bool>> {
        // The pipe refused more; retry only after the drain made room.
        let mut pipe_full = false;
        loop {
            // A `WouldBlock` from `try_io` counts as progress: readiness was
            // cleared, so the next turn polls again and registers a waker.
            let mut progress = false;
            if !self.eof && !pipe_full && self.pending < self.capacity {
                if let Poll::Ready(ready) = r.poll_read_ready(cx) {
                    ready?;
                    let room = self.capacity - self.pending;
                    let fill = || splice(r.as_raw_fd(), self.write.as_raw_fd(), room);
                    let res = if self.pending == 0 {
                        r.try_io(Interest::READABLE, fill)
                    } else {
                        fill()
                    };
                    progress = true;
                    match res {
                        Ok(0) => self.eof = true,
                        Ok(n) => self.pending += n,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // Into an empty pipe: the socket is drained and
                            // `try_io` cleared its readiness. Otherwise the
                            // pipe may be full: wait for the drain.
                            pipe_full = self.pending > 0;
                        }
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
            if self.pending > 0 {
                if let Poll::Ready(ready) = w.poll_write_ready(cx) {
                    ready?;
                    let res = w.try_io(Interest::WRITABLE, || {
                        splice(self.read.as_raw_fd(), w.as_raw_fd(), self.pending)
                    });
                    progress = true;
                    match res {
                        Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                        Ok(n) => {
                            self.pending -= n;
                            *moved += n as u64;
                            pipe_full = false;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        Err(e) => return Poll::Ready(Err(e)),
                    }
                }
            }
            if self.eof && self.pending == 0 {
                return Poll::Ready(Ok(true));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }
}

fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    // SAFETY: plain syscall on fds owned by live objects; null offsets are
    // required for sockets and pipes.
    let n = unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK,
        )
    };
    if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}
