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
use std::task::{Context, Poll, ready};

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
        })
    }

    /// Moves bytes from `r` to `w` through the pipe until `r` reaches EOF
    /// (`Ready(Ok(true))`), or it would block (`Pending`). `moved` is
    /// increased by every byte delivered to `w`.
    pub fn poll_relay(
        &mut self,
        cx: &mut Context<'_>,
        r: &TcpStream,
        w: &TcpStream,
        moved: &mut u64,
    ) -> Poll<io::Result<bool>> {
        loop {
            if self.pending > 0 {
                ready!(w.poll_write_ready(cx))?;
                let res = w.try_io(Interest::WRITABLE, || {
                    splice(self.read.as_raw_fd(), w.as_raw_fd(), self.pending)
                });
                match res {
                    Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Ok(n) => {
                        self.pending -= n;
                        *moved += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Poll::Ready(Err(e)),
                }
                continue;
            }
            ready!(r.poll_read_ready(cx))?;
            let res = r.try_io(Interest::READABLE, || {
                splice(r.as_raw_fd(), self.write.as_raw_fd(), self.capacity)
            });
            match res {
                Ok(0) => return Poll::Ready(Ok(true)),
                Ok(n) => self.pending = n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
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
