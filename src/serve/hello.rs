//! The ClientHello codec: finds the SNI in the first bytes of a TLS
//! connection without terminating TLS.
//!
//! [`parse`] is a pure function over the bytes received so far. It answers
//! "need more" (with the least total length worth trying again at), "here is
//! the hello", or "this is not a ClientHello we accept". It does no I/O and
//! allocates only when the server name itself is split across TLS records.
//!
//! The handshake message is reassembled from its records exactly as a TLS
//! stack does (RFC 8446 §5.1: a handshake message may span several records;
//! record headers are framing, never content). The parsing of the
//! `server_name` extension follows BoringSSL's `ext_sni_parse_clienthello`,
//! which is what Envoy's `tls_inspector` runs: exactly one entry, of type
//! `host_name`, filling the list. An ECH outer hello (RFC 9849) is matched by
//! its outer SNI, like any other hello; [`Hello::ech`] says it carried ECH.
//!
//! It does not decide anything: the proxy hands the name to
//! [`crate::domain::Allowlist::decide`].

use std::borrow::Cow;
use std::fmt;

/// Largest ClientHello handshake message accepted (header included).
pub const MAX_HELLO: usize = 64 * 1024;
/// Largest number of wire bytes (record headers included) read for a hello.
/// 64 KiB of handshake plus room for record headers.
pub const MAX_WIRE: usize = MAX_HELLO + 16 * 1024;
/// TLSPlaintext records carry at most 2^14 bytes (RFC 8446 §5.1).
const MAX_RECORD: usize = 1 << 14;

const CONTENT_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXT_SERVER_NAME: u16 = 0;
/// `encrypted_client_hello`, RFC 9849 §11.1.
const EXT_ECH: u16 = 0xfe0d;
const NAME_TYPE_HOST_NAME: u8 = 0;

/// The result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// The hello is incomplete. Do not call again before the buffer holds at
    /// least this many bytes (it is always more than the buffer holds now).
    NeedMore(usize),
    /// A complete, well-formed ClientHello.
    Hello(Hello<'a>),
    /// Not a ClientHello this proxy accepts.
    Invalid(Invalid),
}

/// What the proxy needs from a ClientHello.
#[derive(Debug, PartialEq, Eq)]
pub struct Hello<'a> {
    /// The `host_name` of the `server_name` extension, as sent (not
    /// lowercased, not validated). Borrowed unless it spans records.
    pub sni: Option<Cow<'a, [u8]>>,
    /// The hello carries `encrypted_client_hello`: `sni` is the outer
    /// (public) name.
    pub ech: bool,
    /// `legacy_version` of the ClientHello.
    pub version: u16,
    /// The 32-byte `random` (RFC 8446 §4.1.2), fresh for every hello a
    /// real client sends: the proxy knows a hello of its own by it.
    pub random: [u8; 32],
    /// Wire bytes up to the end of the record that completes the hello.
    pub len: usize,
    /// Number of TLS records the hello spans.
    pub records: usize,
}

/// Why the bytes are not an acceptable ClientHello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    /// The first bytes are not a TLS handshake record.
    NotTls,
    /// An SSL 2.0-format hello, which cannot carry an SNI.
    SslV2,
    /// A TLS record, but its first handshake message is not a ClientHello.
    NotClientHello,
    /// A record header that a TLS stack rejects (bad type mid-hello, bad
    /// version, empty or over 2^14 bytes).
    BadRecord(&'static str),
    /// The hello is bigger than [`MAX_HELLO`], or its records bigger than
    /// [`MAX_WIRE`].
    TooLarge,
    /// The hello's structure is broken.
    Malformed(&'static str),
}

impl Invalid {
    /// Short machine-friendly reason, used in logs.
    pub fn code(self) -> &'static str {
        match self {
            Invalid::NotTls => "not_tls",
            Invalid::SslV2 => "sslv2_hello",
            Invalid::NotClientHello => "not_client_hello",
            Invalid::BadRecord(_) => "bad_record",
            Invalid::TooLarge => "hello_too_large",
            Invalid::Malformed(_) => "malformed_hello",
        }
    }

    /// The peer sent TLS records, so a TLS alert is a meaningful answer.
    pub fn spoke_tls(self) -> bool {
        !matches!(self, Invalid::NotTls | Invalid::SslV2)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Invalid::NotTls => f.write_str("not TLS"),
            Invalid::SslV2 => f.write_str("an SSL 2.0 hello, which cannot carry an SNI"),
            Invalid::NotClientHello => {
                f.write_str("the first handshake message is not a ClientHello")
            }
            Invalid::BadRecord(why) => write!(f, "bad TLS record: {why}"),
            Invalid::TooLarge => write!(f, "ClientHello larger than {MAX_HELLO} bytes"),
            Invalid::Malformed(why) => write!(f, "malformed ClientHello: {why}"),
        }
    }
}

/// Looks at the bytes received so far on a new connection.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    let (total, len, records) = match frame(buf) {
        Ok(Framed::Complete {
            total,
            len,
            records,
        }) if len <= MAX_WIRE => (total, len, records),
        Ok(Framed::Complete { .. }) => return Parsed::Invalid(Invalid::TooLarge),
        Ok(Framed::NeedMore(n)) if n > MAX_WIRE => return Parsed::Invalid(Invalid::TooLarge),
        Ok(Framed::NeedMore(n)) => return Parsed::NeedMore(n),
        Err(e) => return Parsed::Invalid(e),
    };
    match body(buf, total) {
        Ok(Body {
            version,
            random,
            sni,
            ech,
        }) => Parsed::Hello(Hello {
            sni,
            ech,
            version,
            random,
            len,
            records,
        }),
        Err(why) => Parsed::Invalid(Invalid::Malformed(why)),
    }
}

enum Framed {
    NeedMore(usize),
    /// `total` handshake bytes (header included) are present within the
    /// first `len` wire bytes, in `records` records.
    Complete {
        total: usize,
        len: usize,
        records: usize,
    },
}

/// First pass: walks the record headers only, checking them and finding out
/// whether the whole handshake message is present. Cheap, so calling
/// [`parse`] after each read stays linear in practice.
fn frame(buf: &[u8]) -> Result<Framed, Invalid> {
    // Reject non-TLS as early as the first byte.
    if let Some(&b0) = buf.first() {
        if b0 & 0x80 != 0 {
            return Err(Invalid::SslV2);
        }
        if b0 != CONTENT_HANDSHAKE {
            return Err(Invalid::NotTls);
        }
    }
    if let Some(&b1) = buf.get(1) {
        if b1 != 3 {
            return Err(Invalid::NotTls);
        }
    }
    let mut pos = 0; // start of the current record
    let mut payload = 0; // handshake bytes seen in complete and partial records
    let mut header = [0u8; 4];
    let mut total: Option<usize> = None;
    let mut records = 0;
    loop {
        if let Some(t) = total {
            if payload >= t {
                return Ok(Framed::Complete {
                    total: t,
                    len: pos,
                    records,
                });
            }
        }
        // The least payload still needed: the rest of the message if its
        // length is known, else the rest of the 4-byte header.
        let missing = match total {
            Some(t) => t - payload,
            None => 4 - payload,
        };
        if buf.len() < pos + 5 {
            if records > 0 && buf.len() > pos {
                check_header_prefix(&buf[pos..])?;
            }
            return Ok(Framed::NeedMore(pos + 5 + missing));
        }
        let h = &buf[pos..pos + 5];
        if h[0] != CONTENT_HANDSHAKE {
            return Err(if records == 0 {
                Invalid::NotTls
            } else {
                Invalid::BadRecord("a non-handshake record inside the ClientHello")
            });
        }
        if h[1] != 3 {
            return Err(Invalid::BadRecord("record version is not 3.x"));
        }
        let rec_len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        if rec_len == 0 {
            // RFC 8446 §5.1: zero-length handshake fragments MUST NOT be sent.
            return Err(Invalid::BadRecord("empty handshake record"));
        }
        if rec_len > MAX_RECORD {
            return Err(Invalid::BadRecord("record longer than 2^14 bytes"));
        }
        records += 1;
        let start = pos + 5;
        let avail = rec_len.min(buf.len() - start);
        // Collect the handshake header, which may itself be split.
        let mut i = 0;
        while payload + i < 4 && i < avail {
            header[payload + i] = buf[start + i];
            i += 1;
        }
        let before = payload;
        payload += avail;
        if total.is_none() && payload >= 4 {
            if header[0] != HANDSHAKE_CLIENT_HELLO {
                return Err(Invalid::NotClientHello);
            }
            let body = (usize::from(header[1]) << 16)
                | (usize::from(header[2]) << 8)
                | usize::from(header[3]);
            if body + 4 > MAX_HELLO {
                return Err(Invalid::TooLarge);
            }
            total = Some(body + 4);
        }
        if avail < rec_len {
            // Partial record: at least its end, and then any payload the
            // message still needs after it, in at least one more record.
            let after = before + rec_len;
            let still = match total {
                Some(t) => t.saturating_sub(after),
                None => 4usize.saturating_sub(after),
            };
            let end = start + rec_len;
            return Ok(Framed::NeedMore(if still > 0 {
                end + 5 + still
            } else {
                end
            }));
        }
        pos = start + rec_len;
    }
}

/// Rejects a partial header of a continuation record as soon as it is wrong.
fn check_header_prefix(h: &[u8]) -> Result<(), Invalid> {
    if h[0] != CONTENT_HANDSHAKE {
        return Err(Invalid::BadRecord(
            "a non-handshake record inside the ClientHello",
        ));
    }
    if h.len() > 1 && h[1] != 3 {
        return Err(Invalid::BadRecord("record version is not 3.x"));
    }
    Ok(())
}

/// What `body` reads out of the ClientHello.
struct Body<'a> {
    version: u16,
    random: [u8; 32],
    sni: Option<Cow<'a, [u8]>>,
    ech: bool,
}

/// Second pass: parses the ClientHello body (RFC 8446 §4.1.2) through a
/// cursor that steps over record headers.
fn body(buf: &[u8], total: usize) -> Result<Body<'_>, &'static str> {
    let mut c = Cursor {
        buf,
        pos: 5,
        rec_end: 5 + usize::from(u16::from_be_bytes([buf[3], buf[4]])),
        left: total,
    };
    c.skip(4)?; // msg_type and length, checked by `frame`
    let version = c.u16()?;
    let mut random = [0; 32];
    random.copy_from_slice(&c.take(32)?);
    let session_id = c.u8()?;
    if session_id > 32 {
        return Err("legacy_session_id longer than 32 bytes");
    }
    c.skip(usize::from(session_id))?;
    let suites = usize::from(c.u16()?);
    if suites < 2 || suites % 2 != 0 {
        return Err("bad cipher_suites length");
    }
    c.skip(suites)?;
    let compression = c.u8()?;
    if compression == 0 {
        return Err("empty legacy_compression_methods");
    }
    c.skip(usize::from(compression))?;
    if c.left == 0 {
        // A hello without extensions (allowed before TLS 1.3): no SNI.
        return Ok(Body {
            version,
            random,
            sni: None,
            ech: false,
        });
    }
    let ext_len = usize::from(c.u16()?);
    if ext_len != c.left {
        return Err("extensions length does not match the hello length");
    }
    let mut sni = None;
    let mut ech = false;
    while c.left > 0 {
        let ty = c.u16()?;
        let len = usize::from(c.u16()?);
        let mut e = c.split(len)?;
        match ty {
            EXT_SERVER_NAME => {
                // RFC 8446 §4.2: at most one extension of each type.
                if sni.is_some() {
                    return Err("two server_name extensions");
                }
                let list = usize::from(e.u16()?);
                if list != e.left {
                    return Err("server_name list length does not match");
                }
                if e.u8()? != NAME_TYPE_HOST_NAME {
                    return Err("server_name entry is not a host_name");
                }
                let name = usize::from(e.u16()?);
                if name != e.left {
                    return Err("server_name must hold exactly one host_name");
                }
                sni = Some(e.take(name)?);
            }
            EXT_ECH => {
                if ech {
                    return Err("two encrypted_client_hello extensions");
                }
                ech = true;
            }
            _ => {}
        }
    }
    Ok(Body {
        version,
        random,
        sni,
        ech,
    })
}

/// Reads the handshake payload of consecutive records as one stream.
/// `frame` has already checked every record header it will cross.
#[derive(Clone, Copy)]
struct Cursor<'a> {
    buf: &'a [u8],
    /// Next byte to read.
    pos: usize,
    /// End of the current record's payload.
    rec_end: usize,
    /// Bytes this cursor may still read.
    left: usize,
}

impl<'a> Cursor<'a> {
    /// Steps over a record boundary if the current record is used up.
    fn settle(&mut self) {
        if self.pos == self.rec_end {
            let h = self.rec_end;
            self.pos = h + 5;
            self.rec_end =
                self.pos + usize::from(u16::from_be_bytes([self.buf[h + 3], self.buf[h + 4]]));
        }
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        if self.left == 0 {
            return Err("truncated");
        }
        self.settle();
        let b = self.buf[self.pos];
        self.pos += 1;
        self.left -= 1;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }

    fn skip(&mut self, mut n: usize) -> Result<(), &'static str> {
        if n > self.left {
            return Err("truncated");
        }
        self.left -= n;
        while n > 0 {
            self.settle();
            let step = n.min(self.rec_end - self.pos);
            self.pos += step;
            n -= step;
        }
        Ok(())
    }

    /// A cursor over the next `n` bytes; `self` moves past them.
    fn split(&mut self, n: usize) -> Result<Cursor<'a>, &'static str> {
        let sub = Cursor { left: n, ..*self };
        self.skip(n)?;
        Ok(sub)
    }

    /// The next `n` bytes, borrowed when they sit in one record.
    fn take(&mut self, n: usize) -> Result<Cow<'a, [u8]>, &'static str> {
        if n > self.left {
            return Err("truncated");
        }
        if n == 0 {
            return Ok(Cow::Borrowed(&[]));
        }
        self.settle();
        if self.pos + n <= self.rec_end {
            let s = &self.buf[self.pos..self.pos + n];
            self.pos += n;
            self.left -= n;
            return Ok(Cow::Borrowed(s));
        }
        let mut out = Vec::with_capacity(n);
        let mut n = n;
        while n > 0 {
            self.settle();
            let step = n.min(self.rec_end - self.pos);
            out.extend_from_slice(&self.buf[self.pos..self.pos + step]);
            self.pos += step;
            self.left -= step;
            n -= step;
        }
        Ok(Cow::Owned(out))
    }
}

/// Builders of ClientHello bytes, for tests here, in `tests/` and in `fuzz/`.
#[doc(hidden)]
pub mod build {
    /// A ClientHello handshake message (header included) with the given
    /// extensions, each `(type, data)`.
    pub fn handshake(extensions: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]); // random
        body.push(32);
        body.extend_from_slice(&[9; 32]); // session id
        body.extend_from_slice(&[0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend_from_slice(&[1, 0]);
        let mut ext = Vec::new();
        for (ty, data) in extensions {
            ext.extend_from_slice(&ty.to_be_bytes());
            ext.extend_from_slice(&(data.len() as u16).to_be_bytes());
            ext.extend_from_slice(data);
        }
        body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
        body.extend_from_slice(&ext);
        let mut msg = vec![1];
        msg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        msg.extend_from_slice(&body);
        msg
    }

    /// The `server_name` extension data for one host name.
    pub fn sni(name: &[u8]) -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
        d.push(0);
        d.extend_from_slice(&(name.len() as u16).to_be_bytes());
        d.extend_from_slice(name);
        d
    }

    /// A typical hello: SNI, supported_versions, an ECH extension when
    /// `ech`, and `padding` bytes of padding (extension 21).
    pub fn hello(name: Option<&[u8]>, ech: bool, padding: usize) -> Vec<u8> {
        let mut ext = Vec::new();
        if let Some(n) = name {
            ext.push((0u16, sni(n)));
        }
        ext.push((43, vec![2, 3, 4]));
        if ech {
            // outer ECHClientHello: type 0, cipher suite, config id, enc, payload
            let mut d = vec![0, 0, 1, 0, 1, 42, 0, 32];
            d.extend_from_slice(&[5; 32]);
            d.extend_from_slice(&[0, 200]);
            d.extend_from_slice(&[6; 200]);
            ext.push((0xfe0d, d));
        }
        if padding > 0 {
            ext.push((21, vec![0; padding]));
        }
        handshake(&ext)
    }

    /// Wraps a handshake message in records of at most `chunk` payload bytes.
    pub fn records(handshake: &[u8], chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for part in handshake.chunks(chunk.max(1)) {
            out.extend_from_slice(&[22, 3, 1]);
            out.extend_from_slice(&(part.len() as u16).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    /// Re-frames the handshake records at the start of `wire` so each
    /// carries at most `chunk` payload bytes; anything after the records
    /// that complete the first handshake message is kept as is.
    pub fn refragment(wire: &[u8], chunk: usize) -> Option<Vec<u8>> {
        let mut payload = Vec::new();
        let mut pos = 0;
        let mut total = None;
        while total.is_none_or(|t| payload.len() < t) {
            let h = wire.get(pos..pos + 5)?;
            if h[0] != 22 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
            payload.extend_from_slice(wire.get(pos + 5..pos + 5 + len)?);
            pos += 5 + len;
            if total.is_none() && payload.len() >= 4 {
                total = Some(
                    4 + ((usize::from(payload[1]) << 16)
                        | (usize::from(payload[2]) << 8)
                        | usize::from(payload[3])),
                );
            }
        }
        let mut out = records(&payload, chunk);
        out.extend_from_slice(&wire[pos..]);
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;
    use proptest::prelude::*;

    fn sni_of(buf: &[u8]) -> Option<Vec<u8>> {
        match parse(buf) {
            Parsed::Hello(h) => h.sni.map(|s| s.into_owned()),
            other => panic!("expected a hello, got {other:?}"),
        }
    }

    #[test]
    fn reads_the_sni_of_a_one_record_hello() {
        let wire = records(&hello(Some(b"api.example.com"), false, 0), 1 << 14);
        let Parsed::Hello(h) = parse(&wire) else {
            panic!()
        };
        assert_eq!(h.sni.as_deref(), Some(&b"api.example.com"[..]));
        assert!(matches!(h.sni, Some(Cow::Borrowed(_))));
        assert_eq!(
            (h.len, h.records, h.ech, h.version),
            (wire.len(), 1, false, 0x0303)
        );
    }

    #[test]
    fn reassembles_a_hello_split_across_records_even_inside_the_name() {
        let hs = hello(Some(b"allowed.example.com"), false, 0);
        for chunk in [1, 2, 3, 7, 50, 100] {
            let wire = records(&hs, chunk);
            assert_eq!(
                sni_of(&wire).as_deref(),
                Some(&b"allowed.example.com"[..]),
                "chunk {chunk}"
            );
            // So is the random, which starts 6 bytes into the handshake.
            let Parsed::Hello(h) = parse(&wire) else {
                panic!()
            };
            assert_eq!(h.random, [7; 32], "chunk {chunk}");
        }
    }

    /// HAProxy 2.6 reads the record header bytes as part of the name when a
    /// record boundary falls inside it. The name we check must be the name
    /// the server sees.
    #[test]
    fn record_headers_never_leak_into_the_name() {
        let hs = hello(Some(b"evil.test"), false, 0);
        let at = hs.windows(9).position(|w| w == b"evil.test").unwrap() + 4;
        let mut wire = records(&hs[..at], 1 << 14);
        wire.extend_from_slice(&records(&hs[at..], 1 << 14));
        assert_eq!(sni_of(&wire).as_deref(), Some(&b"evil.test"[..]));
    }

    #[test]
    fn large_and_padded_hellos() {
        for pad in [1800, 20_000, 60_000] {
            let wire = records(&hello(Some(b"pq.example.com"), false, pad), 1 << 14);
            assert_eq!(
                sni_of(&wire).as_deref(),
                Some(&b"pq.example.com"[..]),
                "pad {pad}"
            );
        }
        let too_big = records(&hello(Some(b"a.com"), false, 65_500), 1 << 14);
        assert_eq!(parse(&too_big), Parsed::Invalid(Invalid::TooLarge));
        // Too many tiny records for the wire cap.
        let tiny = records(&hello(Some(b"a.com"), false, 20_000), 1);
        assert_eq!(parse(&tiny), Parsed::Invalid(Invalid::TooLarge));
    }

    #[test]
    fn ech_outer_hello_is_matched_by_its_outer_sni() {
        let wire = records(&hello(Some(b"public.example.com"), true, 0), 1 << 14);
        let Parsed::Hello(h) = parse(&wire) else {
            panic!()
        };
        assert!(h.ech);
        assert_eq!(h.sni.as_deref(), Some(&b"public.example.com"[..]));
    }

    #[test]
    fn no_sni_and_no_extensions() {
        assert_eq!(sni_of(&records(&hello(None, false, 0), 1 << 14)), None);
        let mut hs = handshake(&[]);
        hs.truncate(hs.len() - 2); // drop the empty extensions block
        let n = hs.len() - 4;
        hs[1..4].copy_from_slice(&(n as u32).to_be_bytes()[1..]);
        assert_eq!(sni_of(&records(&hs, 100)), None);
    }

    #[test]
    fn names_are_returned_raw_for_the_allowlist_to_judge() {
        for name in [
            &b"UPPER.Example.COM"[..],
            b"a\0b.com",
            b"dot.com.",
            b"10.0.0.1",
            b"",
        ] {
            let wire = records(&hello(Some(name), false, 0), 1 << 14);
            assert_eq!(sni_of(&wire).as_deref(), Some(name));
        }
    }

    #[test]
    fn rejects_what_is_not_a_client_hello() {
        let inv = |b: &[u8]| match parse(b) {
            Parsed::Invalid(i) => i,
            other => panic!("{other:?}"),
        };
        assert_eq!(inv(b"G"), Invalid::NotTls);
        assert_eq!(inv(b"GET / HTTP/1.1\r\n"), Invalid::NotTls);
        assert_eq!(inv(b"\x16\x01"), Invalid::NotTls);
        assert_eq!(inv(&[0x80, 0x2e, 1, 3, 1]), Invalid::SslV2);
        assert_eq!(inv(&[22, 3, 1, 0, 4, 2, 0, 0, 0]), Invalid::NotClientHello);
        assert_eq!(
            inv(&[22, 3, 1, 0, 0]),
            Invalid::BadRecord("empty handshake record")
        );
        assert_eq!(
            inv(&[22, 3, 1, 0x40, 1]),
            Invalid::BadRecord("record longer than 2^14 bytes")
        );
        // A record of another type in the middle of the hello.
        let hs = hello(Some(b"a.com"), false, 0);
        let mut wire = records(&hs[..10], 100);
        wire.extend_from_slice(&[21, 3, 3, 0, 2, 2, 40]);
        assert!(matches!(inv(&wire), Invalid::BadRecord(_)));
        wire.truncate(wire.len() - 7);
        wire.push(23);
        assert!(matches!(inv(&wire), Invalid::BadRecord(_)));
    }

    #[test]
    fn rejects_ambiguous_server_names() {
        let inv = |ext: Vec<(u16, Vec<u8>)>| match parse(&records(&handshake(&ext), 1 << 14)) {
            Parsed::Invalid(i) => Parsed::Invalid(i),
            other => panic!("{other:?}"),
        };
        // Two server_name extensions: which one would the server use?
        assert_eq!(
            inv(vec![(0, sni(b"a.com")), (0, sni(b"b.com"))]),
            Parsed::Invalid(Invalid::Malformed("two server_name extensions"))
        );
        // Two names in one list: BoringSSL refuses, so do we.
        let mut two = sni(b"a.com");
        two.extend_from_slice(&[0, 0, 5]);
        two.extend_from_slice(b"b.com");
        let l = (two.len() - 2) as u16;
        two[..2].copy_from_slice(&l.to_be_bytes());
        assert!(matches!(
            inv(vec![(0, two)]),
            Parsed::Invalid(Invalid::Malformed(_))
        ));
        // A name type other than host_name.
        let mut other = sni(b"a.com");
        other[2] = 1;
        assert!(matches!(
            inv(vec![(0, other)]),
            Parsed::Invalid(Invalid::Malformed(_))
        ));
        // Extension data running past its length.
        let mut short = sni(b"a.com");
        short.pop();
        assert!(matches!(
            inv(vec![(0, short)]),
            Parsed::Invalid(Invalid::Malformed(_))
        ));
    }

    #[test]
    fn need_more_hints_are_lower_bounds() {
        let wire = records(&hello(Some(b"a.example.com"), false, 3000), 700);
        let mut have = 0;
        let mut calls = 0;
        loop {
            match parse(&wire[..have]) {
                Parsed::NeedMore(n) => {
                    assert!(n > have && n <= wire.len(), "{have} -> {n}");
                    have = n;
                    calls += 1;
                }
                Parsed::Hello(h) => {
                    assert_eq!(h.len, wire.len());
                    break;
                }
                Parsed::Invalid(i) => panic!("{i:?}"),
            }
        }
        // Record ends are the only stops: 5 records, plus the first header.
        assert!(calls <= 7, "{calls} calls");
    }

    /// A hello with an SNI and the given `legacy_session_id` and
    /// `cipher_suites` lengths, parsed: the name, or why it is refused.
    fn with_lengths(session: u8, suites: u16) -> Result<Vec<u8>, Invalid> {
        let mut hs = handshake(&[(0, sni(b"a.com"))]);
        // After the version and random: session id (38..71), suites (71..77).
        let mut s = suites.to_be_bytes().to_vec();
        s.extend(vec![0x13; suites.into()]);
        hs.splice(71..77, s);
        let mut id = vec![session];
        id.extend(vec![9; session.into()]);
        hs.splice(38..71, id);
        let n = hs.len() - 4;
        hs[1..4].copy_from_slice(&(n as u32).to_be_bytes()[1..]);
        match parse(&records(&hs, 1 << 14)) {
            Parsed::Hello(h) => Ok(h.sni.unwrap().into_owned()),
            Parsed::Invalid(i) => Err(i),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn session_id_and_cipher_suites_at_their_limits() {
        // No session to resume (TLS 1.2 clients), one cipher suite: fine.
        assert_eq!(with_lengths(0, 2), Ok(b"a.com".to_vec()));
        assert_eq!(with_lengths(32, 2), Ok(b"a.com".to_vec()));
        assert_eq!(
            with_lengths(33, 2),
            Err(Invalid::Malformed("legacy_session_id longer than 32 bytes"))
        );
        for bad in [0, 1, 3] {
            assert_eq!(
                with_lengths(0, bad),
                Err(Invalid::Malformed("bad cipher_suites length")),
                "{bad}"
            );
        }
    }

    /// [`MAX_WIRE`] bounds what one connection makes the proxy buffer.
    #[test]
    fn wire_limit_is_exact_and_enforced_before_it_is_reached() {
        // 65,535 handshake bytes in 20-byte records: exactly MAX_WIRE bytes.
        let base = hello(Some(b"a.example.com"), false, 0).len();
        let hs = hello(Some(b"a.example.com"), false, 65_535 - base - 4);
        let wire = records(&hs, 20);
        assert_eq!(wire.len(), MAX_WIRE);
        for n in (0..wire.len()).step_by(4099).chain([wire.len() - 1]) {
            match parse(&wire[..n]) {
                Parsed::NeedMore(hint) => assert!(hint > n && hint <= MAX_WIRE, "{n}"),
                other => panic!("prefix {n}: {other:?}"),
            }
        }
        assert!(matches!(parse(&wire), Parsed::Hello(h) if h.len == MAX_WIRE));
        // In 1-byte records the same hello cannot fit: it is refused before
        // MAX_WIRE bytes are read, and never asks for more than that.
        let tiny = records(&hello(Some(b"a.com"), false, 20_000), 1);
        for n in (0..MAX_WIRE).step_by(4099) {
            match parse(&tiny[..n]) {
                Parsed::NeedMore(hint) => assert!(hint <= MAX_WIRE, "{n} -> {hint}"),
                Parsed::Invalid(Invalid::TooLarge) => {}
                other => panic!("prefix {n}: {other:?}"),
            }
        }
        assert_eq!(parse(&tiny[..MAX_WIRE]), Parsed::Invalid(Invalid::TooLarge));
    }

    fn arb_hello() -> impl Strategy<Value = Vec<u8>> {
        (
            proptest::option::of("[a-zA-Z0-9.-]{0,40}"),
            any::<bool>(),
            0usize..3000,
            1usize..2000,
        )
            .prop_map(|(name, ech, pad, chunk)| {
                records(&hello(name.as_deref().map(str::as_bytes), ech, pad), chunk)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
            let mut tls = vec![22, 3, 1];
            tls.extend_from_slice(&bytes);
            let _ = parse(&tls);
        }

        #[test]
        fn never_panics_on_mutated_hellos(wire in arb_hello(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
            let mut w = wire;
            for (i, b) in flips {
                let i = i % w.len();
                w[i] = b;
            }
            let _ = parse(&w);
        }

        #[test]
        fn every_prefix_needs_more(wire in arb_hello()) {
            let full = parse(&wire);
            prop_assert!(matches!(full, Parsed::Hello(_)), "{:?}", full);
            for n in 0..wire.len() {
                match parse(&wire[..n]) {
                    Parsed::NeedMore(hint) => prop_assert!(hint > n && hint <= wire.len()),
                    other => prop_assert!(false, "prefix {} of {}: {:?}", n, wire.len(), other),
                }
            }
        }
    }
}
