//! The access log: one line per connection, as text or JSON.
//!
//! The fields are those of the reference gateway's Envoy access log that make
//! sense for TCP: start time, downstream address, SNI, the decision and why,
//! upstream host, bytes each way, duration, and a response-flag-like reason
//! (see [`flags`]). The SNI comes off the wire, so it is always escaped with
//! [`crate::escape`]: a hostile name cannot forge a field or a line.
//!
//! It does not decide anything; the proxy fills an [`Entry`] and writes it.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    /// Over `--max-connections` (Envoy's `UO`, upstream overflow).
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

/// Where log lines go. Writes are buffered; files are flushed by
/// [`AccessLog::flush`] (the proxy calls it periodically and at exit),
/// terminals and pipes after every line.
pub struct AccessLog {
    out: Option<Mutex<BufWriter<Box<dyn Write + Send>>>>,
    format: Format,
    flush_each: bool,
}

impl AccessLog {
    pub fn new(out: Box<dyn Write + Send>, format: Format, flush_each: bool) -> AccessLog {
        AccessLog {
            out: Some(Mutex::new(BufWriter::with_capacity(64 * 1024, out))),
            format,
            flush_each,
        }
    }

    pub fn off() -> AccessLog {
        AccessLog {
            out: None,
            format: Format::Text,
            flush_each: false,
        }
    }

    pub fn is_on(&self) -> bool {
        self.out.is_some()
    }

    /// Lines wait in a buffer until [`AccessLog::flush`] (a file).
    pub fn needs_periodic_flush(&self) -> bool {
        self.out.is_some() && !self.flush_each
    }

    pub fn write(&self, e: &Entry<'_>) {
        let Some(out) = &self.out else { return };
        let line = match self.format {
            Format::Text => text(e),
            Format::Json => json(e),
        };
        let mut w = out.lock().unwrap_or_else(|p| p.into_inner());
        // A full disk must not take the proxy down; the line is lost.
        let _ = w.write_all(line.as_bytes());
        if self.flush_each {
            let _ = w.flush();
        }
    }

    pub fn flush(&self) -> io::Result<()> {
        match &self.out {
            Some(out) => out.lock().unwrap_or_else(|p| p.into_inner()).flush(),
            None => Ok(()),
        }
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
        "requested_server_name": e.sni.map(escape::escaped_bytes),
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
        assert_eq!(v["response_flags"], "NR");
    }
}
