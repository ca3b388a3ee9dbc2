//! The scheduling policy of the worker threads (`--sched`).
//!
//! With `normal` (Linux's `SCHED_OTHER`, the default), a worker woken by a
//! packet may preempt the process running on its CPU, usually the client or
//! the backend that sent the packet. With `batch` (`SCHED_BATCH`) it does
//! not: "Batch and idle tasks do not preempt non-idle tasks (their
//! preemption is driven by the tick)" (kernel/sched/fair.c, the wake-up
//! preemption check). It runs once that process sleeps, or at the next
//! tick, and finds more events waiting: fewer sleeps and wake-ups per
//! connection. When the processes sharing its CPUs block on I/O soon (an
//! app under test, a local backend), that is much less proxy CPU and more
//! throughput; next to CPU-bound processes, every step of every connection
//! may wait for a tick (BENCHMARKS.md, serve finding 21).

use std::io;

/// A worker thread's scheduling policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Sched {
    /// The system's default policy.
    #[default]
    Normal,
    /// `SCHED_BATCH` (Linux): a woken worker does not preempt the running
    /// process.
    Batch,
}

impl Sched {
    /// Sets the policy of the calling thread; `Normal` leaves it as it is.
    pub fn apply(self) -> io::Result<()> {
        match self {
            Sched::Normal => Ok(()),
            Sched::Batch => batch().map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "--sched batch: cannot put a worker thread under SCHED_BATCH: {e}\n  \
                         help: leave the flag out, or let the proxy call sched_setscheduler \
                         (a seccomp profile or container policy may refuse it)"
                    ),
                )
            }),
        }
    }
}

#[cfg(target_os = "linux")]
fn batch() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain system call on the calling thread (0), with a valid
    // parameter; an unprivileged thread may switch to SCHED_BATCH (sched(7)).
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn batch() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "SCHED_BATCH is Linux's",
    ))
}
