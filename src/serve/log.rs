//! The access log: one line per connection, as text or JSON.
//!
//! The fields are those of the reference gateway's Envoy access log that make
//! sense for TCP: start time, downstream address, SNI, the decision and why,
//! upstream host, bytes each way, duration, and a response-flag-like reason
//! (see [`flags`]). The SNI comes off the wire, so it is always escaped with
//! [`crate::escape`]: a hostile name cannot forge a field or a line.
//!
//! It does not decide anything; the proxy fills an [`Entry`] and writes it.
//!
//! No log write ever blocks a worker: lines go through a [`Sink`], a
//! bounded buffer that a thread of its own writes out. The proxy's other
//! stderr messages go through one too ([`say`]), so a pipe that nobody
//! reads, or a terminal stopped with Ctrl-S, costs dropped lines rather
//! than a stalled proxy, and a closed one costs nothing.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::escape;

/// Response-flag-like codes, named after Envoy's (`%RESPONSE_FLAGS%`,
/// envoy/stream_info/stream_info.h) where one fits.
pub mod flags {
    /// Nothing went wrong.
    pub const NONE: &str = "-";
    /// No route: the allowlist refused the name, or there was no usable
    /// ClientHello (Envoy: no matching filter chain).
    pub const NO_ROUTE: &str = "NR";
    /// Upstream connection failure, including a connect timeout.
    pub const UPSTREAM_FAILURE: &str = "UF";
    /// DNS resolution failure (Envoy's `DF`).
    pub const DNS_FAILURE: &str = "DF";
    /// A timeout: the ClientHello did not arrive in time, or the connection
    /// was idle too long.
    pub const TIMEOUT: &str = "UT";
    /// Over `--max-connections`, or a new name with the DNS cache full
    /// (Envoy's `UO`, upstream overflow).
    pub const OVERFLOW: &str = "UO";
    /// The client went away before sending a whole ClientHello (Envoy's `DC`).
    pub const DOWNSTREAM_CLOSED: &str = "DC";
    /// The relay ended on an I/O error (a reset) rather than a clean close.
    pub const CONNECTION_RESET: &str = "CR";
}

/// Output format of the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// One connection's record.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    pub start: SystemTime,
    pub downstream: SocketAddr,
    /// The server name after Envoy's lowercasing; `None` without a hello.
    /// The server name as sent; may be any bytes.
    pub sni: Option<&'a [u8]>,
    /// The hello carried ECH; `sni` is the outer name.
    pub ech: bool,
    /// `allowed`, `denied` or `learned` (forwarded by `--learn`).
    pub decision: &'static str,
    /// Why: `matched`, a `Denial::code()`, a hello or I/O reason.
    pub reason: &'static str,
    /// The allowlist entry that matched, if any.
    pub rule: Option<&'a str>,
    pub upstream: Option<SocketAddr>,
    /// Bytes from the client, forwarded upstream (the hello included).
    pub bytes_received: u64,
    /// Bytes from upstream, sent to the client.
    pub bytes_sent: u64,
    pub duration: Duration,
    pub flags: &'static str,
}

/// Most bytes a [`Sink`] holds for its writer; further lines are dropped.
pub const SINK_BYTES: usize = 1 << 20;

/// How long a lazy [`Sink`] (a file) gathers lines before writing them.
const GATHER: Duration = Duration::from_millis(200);

/// How long an eager [`Sink`] (a terminal or a pipe) gathers lines: short
/// enough to read as at once, long enough that a busy proxy wakes its
/// writer about 100 times a second rather than once per connection (each
/// wake-up cost about 15 µs of CPU per connection on the bench machine,
/// BENCHMARKS.md serve finding 25).
const EAGER_GATHER: Duration = Duration::from_millis(10);

/// Lines for one output, written by a thread of their own so that a
/// caller never waits for the output: [`Sink::line`] appends to a buffer
/// of at most [`SINK_BYTES`] and returns. When the output does not keep up
/// the buffer fills and new lines are dropped and counted; write errors
/// (a full disk, a closed pipe) lose the lines and nothing else.
pub struct Sink {
    state: Mutex<SinkState>,
    /// Wakes the writer.
    more: Condvar,
    /// Wakes [`Sink::flush`] when everything is written.
    written: Condvar,
    /// Gather lines for [`EAGER_GATHER`] (a terminal or a pipe: they read
    /// as at once), or for [`GATHER`] (a file).
    eager: bool,
}

#[derive(Default)]
struct SinkState {
    buf: Vec<u8>,
    /// The writer holds bytes taken from `buf`.
    writing: bool,
    dropped: u64,
    /// A flush wants the gathered lines now.
    hurry: bool,
    /// A flush timed out and the writer has not finished a write since:
    /// further flushes do not wait again.
    stuck: bool,
    /// No more lines will come: the writer ends once `buf` is written.
    closed: bool,
}

impl Sink {
    pub fn new(mut out: Box<dyn Write + Send>, eager: bool) -> Arc<Sink> {
        let sink = Arc::new(Sink {
            state: Mutex::default(),
            more: Condvar::new(),
            written: Condvar::new(),
            eager,
        });
        let writer = sink.clone();
        // If the thread cannot start, lines pile up to the bound and are
        // dropped: the proxy serves on without a log.
        let _ = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while let Some(bytes) = writer.take() {
                    let _ = out.write_all(&bytes).and_then(|()| out.flush());
                    let mut st = writer.lock();
                    st.writing = false;
                    st.stuck = false;
                    drop(st);
                    writer.written.notify_all();
                }
            });
        sink
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SinkState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for lines and gathers more for a moment, then takes them.
    /// `None` once the sink is closed and everything is written.
    fn take(&self) -> Option<Vec<u8>> {
        let mut st = self.lock();
        while st.buf.is_empty() {
            if st.closed {
                return None;
            }
            st = self.more.wait(st).unwrap_or_else(|p| p.into_inner());
        }
        let until = Instant::now() + if self.eager { EAGER_GATHER } else { GATHER };
        while !st.hurry && !st.closed {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .more
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.hurry = false;
        st.writing = true;
        Some(std::mem::take(&mut st.buf))
    }

    /// No more lines: the writer thread ends once the queued ones are
    /// written (or at once, if it is stuck, with the process).
    pub fn close(&self) {
        self.lock().closed = true;
        self.more.notify_one();
    }

    /// Queues `line` (which ends in a newline), or drops it if the buffer
    /// is full. Never blocks on the output.
    pub fn line(&self, line: &str) {
        let mut st = self.lock();
        if st.buf.len() + line.len() > SINK_BYTES {
            st.dropped += 1;
            return;
        }
        let was_empty = st.buf.is_empty();
        st.buf.extend_from_slice(line.as_bytes());
        if was_empty {
            self.more.notify_one();
        }
    }

    /// Waits up to `within` for every queued line to be written. False if
    /// the output did not take them in time; once that happened, later
    /// flushes do not wait again until the output takes a write, so a
    /// stuck output costs one wait, not one per flush.
    pub fn flush(&self, within: Duration) -> bool {
        let until = Instant::now() + within;
        let mut st = self.lock();
        st.hurry = true;
        self.more.notify_one();
        while !st.buf.is_empty() || st.writing {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || st.stuck {
                st.stuck = true;
                return false;
            }
            st = self
                .written
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        true
    }

    /// Lines dropped because the output did not keep up.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Lines dropped, and those still waiting for the output: the lines
    /// lost if the process ends now.
    pub fn lost(&self) -> u64 {
        let st = self.lock();
        st.dropped + st.buf.iter().filter(|&&b| b == b'\n').count() as u64
    }
}

/// The proxy's stderr, as a [`Sink`]: the default access log and every
/// message the proxy prints while it serves.
pub fn stderr() -> &'static Arc<Sink> {
    static STDERR: OnceLock<Arc<Sink>> = OnceLock::new();
    STDERR.get_or_init(|| Sink::new(Box::new(std::io::stderr()), true))
}

/// A message on stderr while serving: never blocks, never panics (a
/// closed stderr made `eprintln!` panic and took the proxy down).
pub fn say(message: impl std::fmt::Display) {
    stderr().line(&format!("{message}\n"));
}

/// Where log lines go: a [`Sink`], or nowhere.
pub struct AccessLog {
    sink: Option<Arc<Sink>>,
    format: Format,
    /// The sink is this log's own (not the shared stderr), closed with it.
    owned: bool,
}

impl Drop for AccessLog {
    fn drop(&mut self) {
        if let (Some(sink), true) = (&self.sink, self.owned) {
            sink.close();
        }
    }
}

impl AccessLog {
    /// A log to `out`; `eager` writes lines within 10 ms (a terminal or a
    /// pipe), else lines are gathered for 200 ms (a file).
    pub fn new(out: Box<dyn Write + Send>, format: Format, eager: bool) -> AccessLog {
        AccessLog {
            sink: Some(Sink::new(out, eager)),
            format,
            owned: true,
        }
    }

    /// A log on the proxy's stderr, in order with its other messages.
    pub fn stderr(format: Format) -> AccessLog {
        AccessLog {
            sink: Some(stderr().clone()),
            format,
            owned: false,
        }
    }

    pub fn off() -> AccessLog {
        AccessLog {
            sink: None,
            format: Format::Text,
            owned: false,
        }
    }

    pub fn write(&self, e: &Entry<'_>) {
        let Some(sink) = &self.sink else { return };
        let line = match self.format {
            Format::Text => text(e),
            Format::Json => json(e),
        };
        sink.line(&line);
    }

    /// See [`Sink::flush`]; true without a log.
    pub fn flush(&self, within: Duration) -> bool {
        self.sink.as_ref().is_none_or(|s| s.flush(within))
    }

    /// See [`Sink::lost`].
    pub fn lost(&self) -> u64 {
        self.sink.as_ref().map_or(0, |s| s.lost())
    }
}

/// `key=value` pairs; untrusted values are escaped and in backticks.
pub fn text(e: &Entry<'_>) -> String {
    let mut s = String::with_capacity(256);
    let _ = write!(
        s,
        "start={} downstream={} sni={} ech={} decision={} reason={} rule={} upstream={} bytes_received={} bytes_sent={} duration_ms={} flags={}",
        rfc3339(e.start),
        e.downstream,
        e.sni.map_or_else(
            || "-".to_string(),
            |b| format!("`{}`", escape::escaped_bytes(b))
        ),
        u8::from(e.ech),
        e.decision,
        e.reason,
        e.rule.map_or_else(|| "-".to_string(), escape::quoted),
        e.upstream
            .map_or_else(|| "-".to_string(), |a| a.to_string()),
        e.bytes_received,
        e.bytes_sent,
        e.duration.as_millis(),
        e.flags,
    );
    s.push('\n');
    s
}

/// One JSON object per line, with Envoy-like field names.
pub fn json(e: &Entry<'_>) -> String {
    let v = serde_json::json!({
        "start_time": rfc3339(e.start),
        "downstream_remote_address": e.downstream.to_string(),
        "requested_server_name": e.sni.map(escape::json_bytes),
        "ech": e.ech,
        "decision": e.decision,
        "reason": e.reason,
        "rule": e.rule,
        "upstream_host": e.upstream.map(|a| a.to_string()),
        "bytes_received": e.bytes_received,
        "bytes_sent": e.bytes_sent,
        "duration_ms": e.duration.as_millis() as u64,
        "response_flags": e.flags,
    });
    let mut s = v.to_string();
    s.push('\n');
    s
}

/// `2026-11-27T23:05:22.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, day) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(sni: Option<&[u8]>) -> Entry<'_> {
        Entry {
            start: UNIX_EPOCH + Duration::from_millis(1_795_906_522_123),
            downstream: "127.0.0.1:5555".parse().unwrap(),
            sni,
            ech: false,
            decision: "denied",
            reason: "not_allowed",
            rule: None,
            upstream: None,
            bytes_received: 517,
            bytes_sent: 7,
            duration: Duration::from_millis(3),
            flags: flags::NO_ROUTE,
        }
    }

    /// An output that takes nothing until `open` is sent.
    struct Stuck(std::sync::mpsc::Receiver<()>, Arc<Mutex<Vec<u8>>>);

    impl Write for Stuck {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.recv();
            self.1.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stuck_output_costs_lines_not_waits() {
        let (open, rx) = std::sync::mpsc::channel();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink::new(Box::new(Stuck(rx, got.clone())), true);
        let line = format!("{}\n", "x".repeat(99));
        // The writer takes a first line and is stuck writing it.
        sink.line(&line);
        let began = Instant::now();
        while !sink.lock().writing {
            assert!(began.elapsed() < Duration::from_secs(5));
            std::thread::sleep(Duration::from_millis(1));
        }
        let fit = SINK_BYTES / line.len();
        for _ in 0..2 * fit {
            sink.line(&line);
        }
        assert!(began.elapsed() < Duration::from_secs(5));
        assert_eq!(sink.dropped(), fit as u64);
        assert!(
            !sink.flush(Duration::from_millis(50)),
            "nothing could be written"
        );
        assert_eq!(sink.lost(), 2 * fit as u64, "the dropped and the waiting");
        // Stuck: a second flush does not wait again.
        let again = Instant::now();
        assert!(!sink.flush(Duration::from_secs(10)));
        assert!(again.elapsed() < Duration::from_secs(1));
        // Once the output takes bytes, what was kept is written whole.
        for _ in 0..1000 {
            let _ = open.send(());
        }
        let opened = Instant::now();
        while !sink.flush(Duration::from_millis(100)) {
            assert!(opened.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(got.lock().unwrap().len(), (fit + 1) * line.len());
        assert_eq!(sink.lost(), fit as u64, "only the dropped");
    }

    #[test]
    fn dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(rfc3339(entry(None).start), "2026-11-28T22:55:22.123Z");
    }

    #[test]
    fn hostile_names_cannot_forge_fields_or_lines() {
        let evil = "a.com` decision=allowed\nstart=x";
        let line = text(&entry(Some(evil.as_bytes())));
        assert_eq!(
            line,
            "start=2026-11-28T22:55:22.123Z downstream=127.0.0.1:5555 sni=`a.com\\` decision=allowed\\nstart=x` ech=0 decision=denied reason=not_allowed rule=- upstream=- bytes_received=517 bytes_sent=7 duration_ms=3 flags=NR\n"
        );
        let j = json(&entry(Some(b"x\x1b[2J\0\xff")));
        assert_eq!(j.lines().count(), 1);
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["requested_server_name"], "x\\u{1b}[2J\\u{0}\\xff");
        // A backtick means nothing in JSON: it stays as sent.
        let j = json(&entry(Some(b"a`b.com")));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["requested_server_name"], "a`b.com");
        assert_eq!(v["response_flags"], "NR");
    }
}
