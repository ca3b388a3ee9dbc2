//! The ClientHello codec as a spec: every file in `tests/hellos/` is the
//! first bytes of a connection (captured from `openssl s_client` and `curl`,
//! or built to one purpose: a record boundary inside the name, ECH, padding,
//! duplicate names, not TLS at all). Each gets one snapshot of what the codec
//! reads and what the allowlist `*.example.com`, `www.wikipedia.org` decides.
//!
//! For every hello that parses, two properties are checked too: each strict
//! prefix asks for more bytes, and re-framing the handshake into 1-byte
//! records gives the same answer (record headers are never content).

use std::fmt::Write as _;

use egressgen::domain::{Allowlist, Decision};
use egressgen::escape::escaped_bytes;
use egressgen::serve::hello::{self, Parsed, build};

fn describe(bytes: &[u8], list: &Allowlist) -> String {
    let mut out = String::new();
    match hello::parse(bytes) {
        Parsed::NeedMore(n) => {
            let _ = writeln!(out, "need more: at least {n} bytes");
        }
        Parsed::Invalid(why) => {
            let _ = writeln!(out, "invalid: {why}");
            let _ = writeln!(out, "log reason: {}", why.code());
            let _ = writeln!(out, "TLS alert: {}", why.spoke_tls());
        }
        Parsed::Hello(h) => {
            let sni = h.sni.as_deref();
            let _ = writeln!(
                out,
                "hello: version {:#06x}, {} wire bytes in {} record(s), ech: {}",
                h.version, h.len, h.records, h.ech
            );
            let _ = writeln!(
                out,
                "sni: {}",
                sni.map_or("(none)".to_string(), |s| format!("`{}`", escaped_bytes(s)))
            );
            let name = String::from_utf8_lossy(sni.unwrap_or_default());
            let verdict = match list.decide(&name) {
                Decision::Allowed { name, by } => format!("allowed `{name}` by `{by}`"),
                Decision::Denied { reason, .. } => {
                    format!("denied ({}): {reason}", reason.code())
                }
            };
            let _ = writeln!(out, "decision: {verdict}");
        }
    }
    out
}

#[test]
fn client_hellos() {
    let (list, _) = Allowlist::parse(["*.example.com", "www.wikipedia.org"]).unwrap();
    insta::glob!("hellos/*.bin", |path| {
        let bytes = std::fs::read(path).unwrap();
        let text = describe(&bytes, &list);
        if let Parsed::Hello(h) = hello::parse(&bytes) {
            let want = h.sni.map(|s| s.into_owned());
            for n in 0..h.len {
                assert!(
                    matches!(hello::parse(&bytes[..n]), Parsed::NeedMore(m) if m > n),
                    "{}: prefix {n}",
                    path.display()
                );
            }
            let tiny = build::refragment(&bytes, 1).unwrap();
            match hello::parse(&tiny) {
                Parsed::Hello(again) => {
                    assert_eq!(
                        again.sni.map(|s| s.into_owned()),
                        want,
                        "{}",
                        path.display()
                    )
                }
                Parsed::Invalid(hello::Invalid::TooLarge) => {} // 1-byte records of a big hello
                other => panic!("{}: re-framed: {other:?}", path.display()),
            }
        }
        insta::with_settings!({snapshot_path => "../snapshots", prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!(text);
        });
    });
}
