//! Zero-copy relay for long flows on Linux: `splice(2)` through a pipe.
//!
//! Copying through user space costs two memory copies per byte. `splice`
//! moves socket pages into a pipe and from the pipe into the other socket
//! without copying them into the process. Each call is a syscall, though, and
//! a pipe costs two file descriptors, so for small messages it is slower than
//! `read`/`write` (HAProxy's keep-alive figure with splice shows it). The
//! relay therefore switches a direction to splice only after it has carried
//! [`SPLICE_AFTER`] bytes, i.e. for bulk transfers. It is opt-in
//! (`--splice`): the pages it moves stay the sender's until the receiver
//! reads them, and on loopback that made the sending process write into
//! cold pages and the stream slower (BENCHMARKS.md, serve finding 19).
//!
//! This module only moves bytes; it knows nothing of TLS, the allowlist or
//! readiness.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

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
    /// The last fill failed with EAGAIN although the pipe held bytes.
    full: bool,
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
            full: false,
        })
    }

    /// Bytes in the pipe, waiting for [`Pipe::drain`].
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Whether [`Pipe::fill`] may take more.
    ///
    /// A pipe with free bytes can still refuse: each of its slots holds one
    /// socket fragment, however small, so many small segments fill it long
    /// before its byte capacity. Then `splice` into it fails with EAGAIN
    /// while the socket still holds data, and the socket stays readable. The
    /// pipe counts as full until a drain makes room, so a level-triggered
    /// loop stops asking the socket instead of spinning on it.
    pub fn can_fill(&self) -> bool {
        !self.full && self.pending < self.capacity
    }

    /// Moves what `from` has into the pipe: `Ok(0)` at EOF, `WouldBlock`
    /// when nothing moved.
    pub fn fill(&mut self, from: RawFd) -> io::Result<usize> {
        match splice(from, self.write.as_raw_fd(), self.capacity - self.pending) {
            Ok(n) => {
                self.pending += n;
                Ok(n)
            }
            Err(e) => {
                if e.kind() == io::ErrorKind::WouldBlock && self.pending > 0 {
                    self.full = true;
                }
                Err(e)
            }
        }
    }

    /// Moves what the pipe holds into `to`: `Ok(0)` when `to` takes nothing
    /// now (EAGAIN).
    pub fn drain(&mut self, to: RawFd) -> io::Result<usize> {
        let n = match splice(self.read.as_raw_fd(), to, self.pending) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            other => other?,
        };
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.pending -= n;
        self.full = false;
        Ok(n)
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
