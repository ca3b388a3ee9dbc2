//! `egressgen serve` end to end, with real TLS: an in-process rustls backend
//! (certificate from rcgen), real clients (rustls, `openssl s_client`,
//! `curl`) and the real binary for signals and flags.

use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use egressgen::domain::Allowlist;
use egressgen::serve::hello::build;
use egressgen::serve::log::{AccessLog, Format};
use egressgen::serve::poll::Backend;
use egressgen::serve::proxy::{self, Proxy, Settings};
use egressgen::serve::resolve::{Pins, SystemResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName,
};
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const NAMES: &[&str] = &[
    "*.test.local",
    "*.er.test.local",
    "test.local",
    "evil.example",
    "api.example.com",
];

/// A self-signed certificate for every test name.
struct Pki {
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    pem: String,
}

fn pki() -> &'static Pki {
    static PKI: std::sync::OnceLock<Pki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| {
        let ck = rcgen::generate_simple_self_signed(
            NAMES.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        Pki {
            cert: ck.cert.der().clone(),
            key_der: ck.signing_key.serialize_der(),
            pem: ck.cert.pem(),
        }
    })
}

fn client_config(alpn: Vec<Vec<u8>>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(pki().cert.clone()).unwrap();
    let mut c = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn;
    Arc::new(c)
}

/// A TLS backend: answers `GET ` with a small HTTP response, echoes anything
/// else until the client closes, then closes.
async fn tls_backend() -> SocketAddr {
    let config = ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![pki().cert.clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki().key_der.clone())),
        )
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().unwrap_or("").to_string();
                let mut buf = vec![0u8; 64 * 1024];
                let mut first = true;
                loop {
                    let n = match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if first && buf[..n].starts_with(b"GET ") {
                        let body = format!("hello from {sni}\n");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = tls.write_all(resp.as_bytes()).await;
                        break;
                    }
                    first = false;
                    if tls.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}

/// A log sink the test can read.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Sink {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    /// Waits up to 5 s for the log text to satisfy `done`, and returns it.
    async fn until(&self, done: impl Fn(&str) -> bool) -> String {
        for _ in 0..500 {
            let t = self.text();
            if done(&t) {
                return t;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.text()
    }

    /// Waits until `n` lines are logged.
    async fn lines(&self, n: usize) -> Vec<String> {
        for _ in 0..500 {
            let t = self.text();
            if t.lines().count() >= n {
                return t.lines().map(String::from).collect();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("expected {n} log lines, got:\n{}", self.text());
    }
}

/// An in-process proxy in front of `backend`.
struct Running {
    addr: SocketAddr,
    log: Sink,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<proxy::Drained>,
}

impl Running {
    async fn stop(mut self) -> proxy::Drained {
        let _ = self.stop.take().unwrap().send(());
        self.done.await.unwrap()
    }
}

async fn start(allow: &[&str], pins: &[String], settings: Settings) -> Running {
    let (allowlist, _) = Allowlist::parse(allow.iter().copied()).unwrap();
    let log = Sink::default();
    let proxy = Arc::new(Proxy {
        allowlist,
        resolver: SystemResolver::new(Pins::parse(pins.iter().map(String::as_str)).unwrap()),
        settings,
        log: AccessLog::new(Box::new(log.clone()), Format::Text, true),
        learned: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let done = tokio::spawn(proxy::serve(proxy, vec![listener], async {
        let _ = rx.await;
    }));
    Running {
        addr,
        log,
        stop: Some(tx),
        done,
    }
}

/// Set by [`in_process_tests_pass_on_the_poll_backend`] for its inner run.
const POLL_ENV: &str = "EGRESSGEN_TEST_POLL_BACKEND";

/// The settings every in-process proxy starts from: the platform's
/// defaults, or the `poll(2)` backend (the one used off Linux) when
/// [`POLL_ENV`] is set.
fn defaults() -> Settings {
    let mut s = Settings::default();
    if std::env::var_os(POLL_ENV).is_some() {
        s.backend = Backend::Poll;
    }
    s
}

/// The event loop runs on epoll on Linux and on poll(2) elsewhere. This
/// runs every test of this file again with the poll backend, so the loop
/// off Linux is tested here too.
#[test]
fn in_process_tests_pass_on_the_poll_backend() {
    if std::env::var_os(POLL_ENV).is_some() {
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .env(POLL_ENV, "1")
        .args([
            "--test-threads",
            "4",
            "--skip",
            "in_process_tests_pass_on_the_poll_backend",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let passed: usize = stdout
        .lines()
        .find_map(|l| l.strip_prefix("test result: ok. "))
        .and_then(|l| l.split(' ').next()?.parse().ok())
        .unwrap_or(0);
    assert!(passed >= 20, "only {passed} tests ran:\n{stdout}");
}

/// A ClientHello for `name`, no ECH, no padding, in one record.
fn hello_for(name: &[u8]) -> Vec<u8> {
    build::records(&build::hello(Some(name), false, 0), 1 << 14)
}

/// A proxy allowing `allow`, with every name pinned to a fresh plain-TCP
/// upstream, which is returned for the test to accept on.
async fn start_with_upstream(allow: &[&str], settings: Settings) -> (Running, TcpListener) {
    let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = up.local_addr().unwrap();
    (start(allow, &[format!("*={up_addr}")], settings).await, up)
}

async fn start_tls(allow: &[&str], settings: Settings) -> Running {
    let backend = tls_backend().await;
    start(allow, &[format!("*={backend}")], settings).await
}

/// TLS through the proxy to `name`; sends `payload`, half-closes, and
/// returns everything read back.
async fn tls_echo(proxy: SocketAddr, name: &str, payload: &[u8]) -> Result<Vec<u8>, String> {
    let tcp = TcpStream::connect(proxy).await.map_err(|e| e.to_string())?;
    tls_echo_over(tcp, name, payload, vec![]).await
}

async fn tls_echo_over(
    tcp: TcpStream,
    name: &str,
    payload: &[u8],
    alpn: Vec<Vec<u8>>,
) -> Result<Vec<u8>, String> {
    let connector = TlsConnector::from(client_config(alpn));
    let server = ServerName::try_from(name.to_string()).map_err(|e| e.to_string())?;
    let mut tls = connector
        .connect(server, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (mut r, mut w) = tokio::io::split(&mut tls);
    let send = async {
        w.write_all(payload).await?;
        w.shutdown().await
    };
    let mut got = Vec::new();
    let recv = r.read_to_end(&mut got);
    let (s, g) = tokio::join!(send, recv);
    s.map_err(|e| e.to_string())?;
    g.map_err(|e| e.to_string())?;
    Ok(got)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[tokio::test]
async fn allows_listed_names_and_refuses_the_rest_with_an_alert() {
    let p = start_tls(&["*.test.local", "api.example.com"], defaults()).await;
    // Exact and multi-label wildcard matches.
    for name in ["api.example.com", "a.test.local", "deep.er.test.local"] {
        let data = pattern(10_000, 1);
        assert_eq!(tls_echo(p.addr, name, &data).await.unwrap(), data, "{name}");
    }
    // `*.test.local` never admits `test.local`; unlisted names are refused.
    for name in ["test.local", "evil.example"] {
        let err = tls_echo(p.addr, name, b"x").await.unwrap_err();
        assert!(err.contains("AccessDenied"), "{name}: {err}");
    }
    // rustls sends no SNI for an IP address.
    let err = tls_echo(p.addr, "127.0.0.1", b"x").await.unwrap_err();
    assert!(err.contains("UnrecognisedName"), "{err}");
    let lines = p.log.lines(6).await;
    let find = |sni: &str| {
        lines
            .iter()
            .find(|l| l.contains(sni))
            .unwrap_or_else(|| panic!("{sni} not logged: {lines:#?}"))
            .clone()
    };
    let ok = find("sni=`deep.er.test.local`");
    assert!(
        ok.contains("decision=allowed reason=matched rule=`*.test.local`"),
        "{ok}"
    );
    assert!(
        ok.contains("bytes_received=") && ok.ends_with("flags=-"),
        "{ok}"
    );
    let bare = find("sni=`test.local`");
    assert!(
        bare.contains("decision=denied reason=not_allowed") && bare.ends_with("flags=NR"),
        "{bare}"
    );
    let none = lines.iter().find(|l| l.contains("sni=- ")).unwrap();
    assert!(none.contains("reason=no_sni"), "{none}");
    p.stop().await;
}

/// Sends raw bytes, returns what the proxy answers before closing.
async fn raw_exchange(proxy: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    got
}

/// Sends `hello` through the proxy at `proxy` and returns the first
/// `hello.len()` bytes the upstream `up` receives; both ends are closed.
async fn replayed(proxy: SocketAddr, up: &TcpListener, hello: &[u8]) -> Vec<u8> {
    let mut c = TcpStream::connect(proxy).await.unwrap();
    c.write_all(hello).await.unwrap();
    let (mut s, _) = up.accept().await.unwrap();
    let mut got = vec![0; hello.len()];
    s.read_exact(&mut got).await.unwrap();
    got
}

const ALERT_UNRECOGNIZED_NAME: &[u8] = &[21, 3, 3, 0, 2, 2, 112];

#[tokio::test]
async fn refuses_names_as_envoy_does() {
    let p = start_tls(&["*.test.local"], defaults()).await;
    let hello = |n: &[u8]| hello_for(n);
    // Trailing dot, NUL, IP literal, no SNI: refused with unrecognized_name.
    for name in [
        &b"a.test.local."[..],
        b"a\0.test.local",
        b"10.1.2.3",
        b"",
        b"a b.test.local",
        b"A\xff\xfe.test.local",
    ] {
        assert_eq!(
            raw_exchange(p.addr, &hello(name)).await,
            ALERT_UNRECOGNIZED_NAME,
            "{name:?}"
        );
    }
    // Not TLS at all: closed without an answer.
    assert_eq!(
        raw_exchange(p.addr, b"GET / HTTP/1.1\r\nHost: a.test.local\r\n\r\n").await,
        b""
    );
    // A malformed hello: decode_error.
    let mut broken = hello(b"a.test.local");
    broken[9 + 2 + 32] = 40; // session id longer than 32
    assert_eq!(raw_exchange(p.addr, &broken).await, [21, 3, 3, 0, 2, 2, 50]);
    let log = p.log.lines(8).await.join("\n");
    for want in [
        "sni=`a.test.local.` ech=0 decision=denied reason=trailing_dot",
        // Not UTF-8: logged byte for byte (lowercased), not as U+FFFD.
        "sni=`a\\xff\\xfe.test.local` ech=0 decision=denied reason=invalid_name",
        "sni=`a\\u{0}.test.local` ech=0 decision=denied reason=invalid_name",
        "sni=`10.1.2.3` ech=0 decision=denied reason=ip_literal",
        "sni=`a b.test.local` ech=0 decision=denied reason=invalid_name",
        "reason=not_tls",
        "reason=malformed_hello",
    ] {
        assert!(log.contains(want), "{want}\n{log}");
    }
    p.stop().await;
}

#[tokio::test]
async fn uppercase_names_are_lowercased_then_matched() {
    let (p, up) = start_with_upstream(&["*.test.local"], defaults()).await;
    let hello = hello_for(b"API.Test.LOCAL");
    assert_eq!(
        replayed(p.addr, &up, &hello).await,
        hello,
        "the hello is replayed byte for byte"
    );
    let log = p.log.lines(1).await;
    assert!(
        log[0].contains("sni=`api.test.local` ech=0 decision=allowed"),
        "{}",
        log[0]
    );
    p.stop().await;
}

/// A relay between a client and the proxy that re-frames the client's
/// ClientHello into records of `record` payload bytes and sends it in
/// `segment`-byte TCP segments; everything after passes through.
async fn shaper(proxy: SocketAddr, record: usize, segment: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut client, _) = l.accept().await.unwrap();
        let mut up = TcpStream::connect(proxy).await.unwrap();
        up.set_nodelay(true).unwrap();
        let mut buf = Vec::new();
        let wire = loop {
            let mut chunk = [0u8; 4096];
            let n = client.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(w) = build::refragment(&buf, record) {
                break w;
            }
        };
        for seg in wire.chunks(segment) {
            up.write_all(seg).await.unwrap();
            if segment < 16 {
                tokio::task::yield_now().await;
            }
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    });
    addr
}

#[tokio::test]
async fn every_client_hello_shape_passes() {
    let p = start_tls(&["*.test.local"], defaults()).await;
    let data = pattern(50_000, 7);
    // (record payload size, TCP segment size, ALPN bytes to enlarge the hello)
    let shapes = [
        (1 << 14, 1, 0),            // one byte per segment
        (1, 1 << 16, 0),            // one byte per record: boundaries inside the name
        (7, 3, 0),                  // both
        (100, 1 << 16, 0),          // several records
        (1 << 14, 1, 1_900),        // post-quantum-sized hello, byte by byte
        (1 << 14, 1 << 16, 30_000), // padded to tens of KB: spans records
        (500, 1000, 30_000),        // ... in many records and segments
    ];
    for (record, segment, alpn) in shapes {
        let via = shaper(p.addr, record, segment).await;
        let tcp = TcpStream::connect(via).await.unwrap();
        // Many long ALPN names make the hello as big as asked.
        let protos: Vec<Vec<u8>> = (0..alpn / 200)
            .map(|i| vec![b'a' + (i % 26) as u8; 199])
            .collect();
        let got = tls_echo_over(tcp, "shape.test.local", &data, protos).await;
        assert_eq!(
            got.as_deref(),
            Ok(&data[..]),
            "shape {record}/{segment}/{alpn}"
        );
    }
    let log = p.log.lines(shapes.len()).await;
    assert!(
        log.iter().all(|l| l.contains("decision=allowed")),
        "{log:#?}"
    );
    p.stop().await;
}

#[tokio::test]
async fn ech_outer_hellos_and_huge_hellos() {
    let (p, up) = start_with_upstream(&["public.test.local"], defaults()).await;
    // An ECH outer hello is matched by its outer (public) name.
    let ech = build::records(&build::hello(Some(b"public.test.local"), true, 0), 1 << 14);
    assert_eq!(replayed(p.addr, &up, &ech).await, ech);
    let other = build::records(&build::hello(Some(b"other.test.local"), true, 0), 1 << 14);
    assert_eq!(raw_exchange(p.addr, &other).await, [21, 3, 3, 0, 2, 2, 49]);
    // 60 KB of padding passes; more than 64 KiB is refused.
    let big = build::records(
        &build::hello(Some(b"public.test.local"), false, 60_000),
        1 << 14,
    );
    assert_eq!(replayed(p.addr, &up, &big).await, big);
    let huge = build::records(
        &build::hello(Some(b"public.test.local"), false, 70_000),
        1 << 14,
    );
    assert_eq!(raw_exchange(p.addr, &huge).await, [21, 3, 3, 0, 2, 2, 50]);
    let log = p.log.lines(4).await.join("\n");
    assert!(
        log.contains("sni=`public.test.local` ech=1 decision=allowed"),
        "{log}"
    );
    assert!(
        log.contains("sni=`other.test.local` ech=1 decision=denied"),
        "{log}"
    );
    assert!(log.contains("reason=hello_too_large"), "{log}");
    p.stop().await;
}

#[tokio::test]
async fn half_close_is_propagated_both_ways() {
    let (p, up) = start_with_upstream(&["*.test.local"], defaults()).await;
    let hello = hello_for(b"h.test.local");
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap(); // FIN, but still reading
    let (mut s, _) = up.accept().await.unwrap();
    let mut got = Vec::new();
    s.read_to_end(&mut got).await.unwrap(); // ends only if the FIN came through
    assert_eq!(&got[hello.len()..], b"request");
    s.write_all(b"response after the client's FIN")
        .await
        .unwrap();
    drop(s);
    let mut back = Vec::new();
    c.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"response after the client's FIN");
    let log = p.log.lines(1).await;
    let want = format!("bytes_received={} bytes_sent=31", hello.len() + 7);
    assert!(
        log[0].contains(&want) && log[0].ends_with("flags=-"),
        "{}",
        log[0]
    );
    p.stop().await;
}

/// Writes to `s` until every buffer on the way is full: until it blocks
/// three times 50 ms apart, 300 ms at most (idle timeouts are longer).
async fn fill(s: &TcpStream) {
    let chunk = vec![7u8; 64 * 1024];
    let give_up = tokio::time::Instant::now() + Duration::from_millis(300);
    let mut blocked = 0;
    while blocked < 3 && tokio::time::Instant::now() < give_up {
        match s.try_write(&chunk) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                blocked += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// One side resets while what it sent waits for the other, which is not
/// reading. The level-triggered poller reports the reset socket again and
/// again, though there is nothing to do with it until the other side reads.
/// That must not spin the loop, which also put off every timeout for ever.
/// What the reset side sent is delivered while it moves; once nothing has
/// moved for a second, the connection ends as the reset it is (`CR`), not
/// at the idle timeout (an earlier loop held it for that long, logged `UT`).
#[tokio::test]
async fn a_reset_while_the_other_side_is_not_reading_does_not_spin() {
    let settings = Settings {
        idle_timeout: Duration::from_secs(60),
        ..defaults()
    };
    let (p, up) = start_with_upstream(&["*.test.local"], settings).await;
    for (i, client_resets) in [true, false].into_iter().enumerate() {
        let hello = hello_for(b"r.test.local");
        let mut c = TcpStream::connect(p.addr).await.unwrap();
        c.write_all(&hello).await.unwrap();
        let (mut s, _) = up.accept().await.unwrap();
        let mut got = vec![0; hello.len()];
        s.read_exact(&mut got).await.unwrap();
        let (resets, stalls) = if client_resets { (c, s) } else { (s, c) };
        fill(&resets).await;
        socket2::SockRef::from(&resets)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(resets);
        let log = p.log.lines(i + 1).await;
        assert!(log[i].ends_with("flags=CR"), "{}", log[i]);
        drop(stalls);
    }
    p.stop().await;
}

#[tokio::test]
async fn slowloris_and_idle_clients_are_cut_and_others_still_served() {
    let settings = Settings {
        hello_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(500),
        ..defaults()
    };
    let p = start_tls(&["*.test.local"], settings).await;
    // A slowloris: a valid hello, one byte every 100 ms.
    let hello = hello_for(b"s.test.local");
    let slow = tokio::spawn(async move {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        let started = std::time::Instant::now();
        for b in hello {
            if s.write_all(&[b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), s.read(&mut probe)).await
            {
                break;
            }
        }
        started.elapsed()
    });
    // Meanwhile, others are served.
    let data = pattern(100_000, 3);
    assert_eq!(
        tls_echo(p.addr, "ok.test.local", &data).await.unwrap(),
        data
    );
    let took = slow.await.unwrap();
    assert!(took < Duration::from_secs(3), "slowloris held for {took:?}");
    // A TLS client that goes quiet after the handshake hits the idle timeout.
    let tcp = TcpStream::connect(p.addr).await.unwrap();
    let mut tls = TlsConnector::from(client_config(vec![]))
        .connect(ServerName::try_from("idle.test.local").unwrap(), tcp)
        .await
        .unwrap();
    let mut sink = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut sink)).await;
    assert!(r.is_ok(), "idle connection was not closed");
    let log = p.log.lines(3).await.join("\n");
    assert!(
        log.contains("reason=hello_timeout") && log.contains("flags=UT"),
        "{log}"
    );
    assert!(
        log.contains("sni=`idle.test.local`") && log.contains("reason=idle_timeout"),
        "{log}"
    );
    p.stop().await;
}

/// A client that connects and sends nothing is cut by the hello timeout,
/// and logged.
#[tokio::test]
async fn a_silent_client_is_cut_by_the_hello_timeout() {
    let settings = Settings {
        hello_timeout: Duration::from_millis(1500),
        ..defaults()
    };
    let p = start_tls(&["*.test.local"], settings).await;
    let started = std::time::Instant::now();
    let mut s = TcpStream::connect(p.addr).await.unwrap();
    let mut b = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b)).await;
    let took = started.elapsed();
    assert!(matches!(n, Ok(Ok(0)) | Ok(Err(_))), "not closed: {n:?}");
    assert!(
        took >= Duration::from_millis(1400) && took < Duration::from_millis(3000),
        "cut after {took:?}, want about 1.5 s"
    );
    let log = p.log.lines(1).await;
    assert!(
        log[0].contains("reason=hello_timeout") && log[0].ends_with("flags=UT"),
        "{}",
        log[0]
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_concurrent_clients_move_megabytes() {
    let p = start_tls(&["*.test.local"], defaults()).await;
    let clients = 200;
    let size = 256 * 1024;
    let mut tasks = Vec::new();
    for i in 0..clients {
        let addr = p.addr;
        tasks.push(tokio::spawn(async move {
            let data = pattern(size, i as u8);
            let got = tls_echo(addr, &format!("c{i}.test.local"), &data)
                .await
                .unwrap();
            assert!(
                got == data,
                "client {i}: {} of {} bytes, or different",
                got.len(),
                size
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = p.log.lines(clients).await;
    // Every connection moved at least the payload each way (plus TLS).
    for l in &log {
        assert!(
            count(l, "bytes_received") > size && count(l, "bytes_sent") > size,
            "{l}"
        );
        assert!(l.ends_with("flags=-"), "{l}");
    }
    p.stop().await;
}

#[tokio::test]
async fn over_max_connections_are_refused_and_the_proxy_stays_up() {
    let settings = Settings {
        max_connections: 3,
        ..defaults()
    };
    let p = start_tls(&["*.test.local"], settings).await;
    // Each client sends the first byte of a hello, and waits.
    let connect = || async {
        let mut s = TcpStream::connect(p.addr).await.unwrap();
        s.write_all(&[0x16]).await.unwrap();
        s
    };
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect().await);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..5 {
        let mut extra = connect().await;
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut b)).await;
        assert!(
            matches!(n, Ok(Ok(0)) | Ok(Err(_))),
            "extra connection not closed: {n:?}"
        );
    }
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        tls_echo(p.addr, "after.test.local", b"still up")
            .await
            .unwrap(),
        b"still up"
    );
    // Log lines are written by the log's own thread: wait for them.
    let log = p
        .log
        .until(|t| t.matches("reason=max_connections").count() >= 5)
        .await;
    assert_eq!(log.matches("reason=max_connections").count(), 5, "{log}");
    assert!(log.contains("flags=UO"));
    p.stop().await;
}

#[tokio::test]
async fn upstream_failures_are_logged() {
    // Nothing listens on the pinned port: it is bound, not listening, so a
    // connect is refused. Held until the end, so the proxy cannot be given
    // it (a dropped listener's port can be: the proxy then dialled itself,
    // over and over, up to max_connections).
    let holder = tokio::net::TcpSocket::new_v4().unwrap();
    holder.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = holder.local_addr().unwrap();
    let p = start(&["*.test.local"], &[format!("*={closed}")], defaults()).await;
    let err = tls_echo(p.addr, "down.test.local", b"x").await;
    assert!(err.is_err());
    let log = p.log.lines(1).await;
    assert!(
        log[0].contains("reason=connect_failed") && log[0].ends_with("flags=UF"),
        "{}",
        log[0]
    );
    p.stop().await;
    drop(holder);
}

#[tokio::test]
async fn openssl_s_client_and_curl_through_the_proxy() {
    let p = start_tls(&["*.test.local"], defaults()).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki().pem).unwrap();
    let port = p.addr.port();
    let ca2 = ca.clone();
    let (curl_ok, curl_denied, s_ok, s_denied) = tokio::task::spawn_blocking(move || {
        let curl = |name: &str| {
            Command::new("curl")
                .args(["-sS", "--max-time", "10", "--resolve"])
                .arg(format!("{name}:{port}:127.0.0.1"))
                .arg("--cacert")
                .arg(&ca2)
                .arg(format!("https://{name}:{port}/"))
                .output()
                .unwrap()
        };
        let s_client = |name: &str| {
            let mut child = Command::new("openssl")
                .args(["s_client", "-connect"])
                .arg(format!("127.0.0.1:{port}"))
                .args(["-ign_eof", "-servername", name, "-CAfile"])
                .arg(&ca2)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            child
                .stdin
                .take()
                .unwrap()
                .write_all(b"GET / HTTP/1.0\r\n\r\n")
                .unwrap();
            child.wait_with_output().unwrap()
        };
        (
            curl("www.test.local"),
            curl("evil.example"),
            s_client("s.test.local"),
            s_client("evil.example"),
        )
    })
    .await
    .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&curl_ok.stdout),
        "hello from www.test.local\n",
        "{curl_ok:?}"
    );
    let e = String::from_utf8_lossy(&curl_denied.stderr);
    assert!(e.contains("alert access denied"), "{e}");
    let out = String::from_utf8_lossy(&s_ok.stdout);
    assert!(
        out.contains("Verify return code: 0 (ok)") && out.contains("hello from s.test.local"),
        "{out}"
    );
    let err = String::from_utf8_lossy(&s_denied.stderr);
    assert!(err.contains("alert access denied"), "{err}");
    p.stop().await;
}

// ---- the real binary: flags, signals, learn mode -------------------------

fn bin() -> Command {
    Command::new(assert_cmd::cargo::cargo_bin!("egressgen"))
}

/// `egressgen serve ARGS`, started with stdout and stderr piped.
fn serve_child(args: &[&str]) -> Child {
    let mut cmd = bin();
    cmd.arg("serve").args(args);
    piped(cmd)
}

fn piped(mut cmd: Command) -> Child {
    cmd.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Starts `egressgen serve ARGS` and waits for its listening address.
fn spawn(args: &[&str]) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    started(serve_child(args))
}

/// Waits for a started proxy's listening address; the receiver gets the
/// rest of its stderr, line by line.
fn started(mut child: Child) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("proxy did not start");
        if let Some(a) = line.strip_prefix("egressgen serve: listening on ") {
            break a.parse().unwrap();
        }
    };
    (child, addr, rx)
}

/// [`spawn`] allowing `*.test.local`, every name pinned to a fresh TLS
/// backend, plus `extra` flags.
async fn spawn_with_backend(
    extra: &[&str],
) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let pin = format!("*={}", tls_backend().await);
    let mut args = vec!["--allow", "*.test.local", "--listen", "127.0.0.1:0"];
    args.extend(["--resolve", &pin]);
    args.extend(extra);
    spawn(&args)
}

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Runs `egressgen serve ARGS`, which must exit 2 before serving anything;
/// returns its stderr. Bounded: a proxy that starts serving instead is
/// killed and the test fails rather than hangs.
fn serve_refused(args: &[&str]) -> String {
    refused(serve_child(args), &format!("{args:?}"))
}

/// Waits for a started proxy that must exit 2 before serving anything;
/// returns its stderr.
fn refused(mut child: Child, args: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("{args}: still running; it should have exited 2");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args}: {err}");
    assert!(!err.contains("listening on"), "{args}: {err}");
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_transfers_in_flight_then_exits_0() {
    let (mut child, addr, _log) = spawn_with_backend(&["--drain-timeout", "20s"]).await;
    // Slow transfers: 8 clients send 1 MB each in 64 KB steps over ~1.6 s.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = TlsConnector::from(client_config(vec![]))
                .connect(
                    ServerName::try_from(format!("t{i}.test.local")).unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            let data = pattern(1 << 20, i);
            let (mut r, mut w) = tokio::io::split(&mut tls);
            let send = async {
                for chunk in data.chunks(64 * 1024) {
                    w.write_all(chunk).await?;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                w.shutdown().await
            };
            let mut got = Vec::new();
            let (s, g) = tokio::join!(send, r.read_to_end(&mut got));
            s.unwrap();
            g.unwrap();
            assert!(got == data, "client {i} got {} bytes", got.len());
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    signal(&child, "-TERM");
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once draining.
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after SIGTERM"
    );
    for t in tasks {
        t.await.unwrap();
    }
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A DNS lookup that never returns does not hold up the exit: once the drain
/// deadline passes, the proxy exits without waiting for `getaddrinfo`. The
/// proxy runs in a private mount namespace whose /etc/resolv.conf names a
/// UDP socket of this test that never answers, with a 30 s resolver
/// timeout. Needs root (`unshare --mount`, port 53), as CI runs.
#[test]
fn exit_does_not_wait_for_a_lookup_that_never_returns() {
    // An address of this process's own: the file's tests also run a second
    // time, at once, on the poll backend.
    let ip = format!("127.0.{}.9", 10 + std::process::id() % 200);
    let conf = format!("nameserver {ip}\noptions timeout:30 attempts:1\n");
    let Some((_dir, mut cmd)) = egressgen_with_file_over(&conf, "/etc/resolv.conf") else {
        return;
    };
    let dead = std::net::UdpSocket::bind((ip.as_str(), 53)).unwrap();
    dead.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    cmd.args([
        "serve",
        "--allow",
        "*.example.org",
        "--listen",
        "127.0.0.1:0",
    ])
    .args(["--drain-timeout", "200ms", "--connect-timeout", "60s"]);
    let (mut child, addr, log) = started(piped(cmd));
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(&hello_for(b"slow.example.org")).unwrap();
    // The lookup is out: the name server got its query.
    let mut query = [0u8; 512];
    dead.recv_from(&mut query).expect("no DNS query arrived");
    let sent = std::time::Instant::now();
    signal(&child, "-TERM");
    let deadline = sent + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running 10 s after SIGTERM: waiting for the lookup");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = sent.elapsed();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    let lines: Vec<String> = log.iter().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("sni=`slow.example.org`") && l.contains("reason=drain_timeout")),
        "{lines:#?}"
    );
}

/// Whether `unshare FLAG` works (it needs root). Without, the test is
/// skipped, with a note; with `CI` set that is a failure, since CI runs as
/// root (.ci/run) and a skip there would hide the test.
fn can_unshare(flag: &str) -> bool {
    let root = Command::new("unshare")
        .args([flag, "true"])
        .status()
        .is_ok_and(|s| s.success());
    if !root {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `unshare {flag}` fails: run the tests as root"
        );
        eprintln!("skipped: needs root for `unshare {flag}`");
    }
    root
}

/// A command that runs egressgen with a file holding `contents` mounted
/// over `target` (say /etc/hosts) in a private mount namespace, so the
/// machine's own file is never touched; the file lives as long as the
/// returned folder. `None`, after saying the test is skipped, without root
/// (`unshare --mount`); with `CI` set that is a failure, since CI runs as
/// root.
fn egressgen_with_file_over(contents: &str, target: &str) -> Option<(tempfile::TempDir, Command)> {
    egressgen_with_files_over(&[(contents, target)])
}

/// [`egressgen_with_file_over`] for several files; the folder holds them
/// as `mounted0`, `mounted1`, ... in order, to be rewritten in place.
fn egressgen_with_files_over(files: &[(&str, &str)]) -> Option<(tempfile::TempDir, Command)> {
    if !can_unshare("--mount") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let script = r#"while [ "$1" != -- ]; do mount --bind "$1" "$2" || exit 1; shift 2; done; shift; exec "$@""#;
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        "sh",
    ]);
    for (i, (contents, target)) in files.iter().enumerate() {
        let file = dir.path().join(format!("mounted{i}"));
        std::fs::write(&file, contents).unwrap();
        cmd.arg(&file).arg(target);
    }
    cmd.arg("--")
        .arg(assert_cmd::cargo::cargo_bin!("egressgen"));
    Some((dir, cmd))
}

/// The usual way to send an application through the proxy is to point its
/// names at the proxy in /etc/hosts; the proxy's own lookup then finds
/// itself. Each connection would dial the proxy again, until
/// --max-connections. It is refused instead, logged `upstream_is_this_proxy`,
/// and one warning says what to do.
#[test]
fn a_name_that_resolves_to_the_proxy_itself_is_refused() {
    let ip = format!("127.0.{}.7", 10 + std::process::id() % 200);
    let hosts = format!("127.0.0.1 localhost\n{ip} app.example.org\n");
    let Some((_dir, mut cmd)) = egressgen_with_file_over(&hosts, "/etc/hosts") else {
        return;
    };
    let listen = format!("{ip}:8443");
    cmd.args(["serve", "--allow", "*.example.org", "--listen", &listen])
        .args(["--upstream-port", "8443", "--max-connections", "50"]);
    let (mut child, addr, log) = started(piped(cmd));
    for _ in 0..2 {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(&hello_for(b"app.example.org")).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let _ = c.read_to_end(&mut rest);
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let lines: Vec<String> = log.iter().collect();
    let logged: Vec<&String> = lines.iter().filter(|l| l.contains("sni=")).collect();
    assert_eq!(logged.len(), 2, "one line per client, no loop: {lines:#?}");
    for l in &logged {
        assert!(
            l.contains("reason=upstream_is_this_proxy")
                && l.contains(&format!("upstream={listen}"))
                && l.ends_with("flags=UF"),
            "{l}"
        );
    }
    let warnings = lines.iter().filter(|l| l.contains("own listener")).count();
    assert_eq!(warnings, 1, "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("help: pin the names")),
        "{lines:#?}"
    );
}

/// `serve -c` resolves as the gateway rendered from the same file would:
/// with the config's `spec.dns.lookupFamily`. A name with an IPv4 and an
/// IPv6 address (a private /etc/hosts) and a backend on IPv4 only: the
/// default `V4_ONLY` reaches it, `V6_ONLY` dials `[::1]` and fails, as
/// Envoy would. serve used to take both families whatever the config said.
#[test]
fn serve_with_a_config_resolves_with_its_lookup_family() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let hosts = "127.0.0.1 localhost\n127.0.0.1 dual.example.org\n::1 dual.example.org\n";
    for (family, upstream, flags) in [
        ("V4_ONLY", format!("upstream=127.0.0.1:{port} "), "flags=-"),
        ("V6_ONLY", format!("upstream=[::1]:{port} "), "flags=UF"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config_with_dns(
            dir.path(),
            "[dual.example.org]",
            port,
            &format!("lookupFamily: {family}"),
        );
        let Some((_hosts, mut cmd)) = egressgen_with_file_over(hosts, "/etc/hosts") else {
            return;
        };
        cmd.args(["serve", "--listen", "127.0.0.1:0", "-c"])
            .arg(&cfg);
        let (mut child, addr, log) = started(piped(cmd));
        let v4 = family == "V4_ONLY";
        let (forwarded, line) = one_client(
            addr,
            &backend,
            "dual.example.org",
            v4,
            &log,
            &mut Vec::new(),
        );
        assert_eq!(forwarded, v4, "{family}: {line}");
        assert!(
            line.contains(&upstream) && line.ends_with(flags),
            "{family}: {line}"
        );
        signal(&child, "-TERM");
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}

/// `serve -c` bounds its DNS cache as the gateway's Envoy does, with the
/// config's `spec.dns.maxHosts`: once that many names are cached, a new
/// name is refused (`dns_cache_overflow`, `UO`, one warning), while the
/// cached one still goes through. serve used to evict a name instead.
#[test]
fn serve_with_a_config_refuses_new_names_when_the_dns_cache_is_full() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let hosts = "127.0.0.1 localhost\n127.0.0.1 a.example.org\n127.0.0.1 b.example.org\n";
    let dir = tempfile::tempdir().unwrap();
    let cfg = config_with_dns(dir.path(), "['*.example.org']", port, "maxHosts: 1");
    let Some((_hosts, mut cmd)) = egressgen_with_file_over(hosts, "/etc/hosts") else {
        return;
    };
    cmd.args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&cfg);
    let (mut child, addr, log) = started(piped(cmd));
    let mut lines = Vec::new();
    for name in ["a.example.org", "b.example.org", "a.example.org"] {
        let refused = name == "b.example.org";
        let (forwarded, line) = one_client(addr, &backend, name, !refused, &log, &mut lines);
        assert_eq!(forwarded, !refused, "{line}");
        assert!(line.contains(&format!("sni=`{name}` ")), "{line}");
        let (reason, flags) = if refused {
            ("reason=dns_cache_overflow", "flags=UO")
        } else {
            ("reason=matched", "flags=-")
        };
        assert!(line.contains(reason) && line.ends_with(flags), "{line}");
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
    lines.extend(log.iter());
    let warnings = lines
        .iter()
        .filter(|l| l.contains("warning: the DNS cache is full (maxHosts: 1)"))
        .count();
    assert_eq!(warnings, 1, "{lines:#?}");
}

/// Writes an EgressGateway config for `domains` (a YAML flow list) with
/// upstream port `port` and `spec.dns` entries `dns` into `dir`.
fn config_with_dns(
    dir: &std::path::Path,
    domains: &str,
    port: u16,
    dns: &str,
) -> std::path::PathBuf {
    let cfg = dir.join("egress.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: dns\nspec:\n  domains: {domains}\n  upstreamPort: {port}\n  dns:\n    {dns}\n"
        ),
    )
    .unwrap();
    cfg
}

/// One client through the proxy at `addr` for `name`: sends the hello,
/// takes the upstream connection at `backend` within 10 s when
/// `forwarded` is expected, and returns whether it came and the
/// connection's log line (every line read on the way is kept in `seen`).
fn one_client(
    addr: SocketAddr,
    backend: &std::net::TcpListener,
    name: &str,
    expect_forwarded: bool,
    log: &std::sync::mpsc::Receiver<String>,
    seen: &mut Vec<String>,
) -> (bool, String) {
    let hello = hello_for(name.as_bytes());
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.write_all(&hello).unwrap();
    let wait = Duration::from_secs(if expect_forwarded { 10 } else { 0 });
    let forwarded = accept_within(backend, wait).map(|mut up| {
        let mut got = vec![0u8; hello.len()];
        up.read_exact(&mut got).unwrap();
    });
    drop(c);
    let line = std::iter::from_fn(|| log.recv_timeout(Duration::from_secs(10)).ok())
        .inspect(|l| seen.push(l.clone()))
        .find(|l| l.contains("sni="))
        .expect("no log line");
    (forwarded.is_some(), line)
}

/// The next connection to `listener` within `wait`, blocking.
fn accept_within(listener: &std::net::TcpListener, wait: Duration) -> Option<std::net::TcpStream> {
    listener.set_nonblocking(true).unwrap();
    let deadline = std::time::Instant::now() + wait;
    let got = loop {
        match listener.accept() {
            Ok((s, _)) => break Some(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if std::time::Instant::now() > deadline {
                    break None;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("accept: {e}"),
        }
    };
    listener.set_nonblocking(false).unwrap();
    if let Some(s) = &got {
        s.set_nonblocking(false).unwrap();
    }
    got
}

/// A cached name keeps its addresses when the lookup that refreshes them
/// fails, as Envoy's DNS cache does ("once a host gets an address it will
/// stick even in the case of a subsequent resolution failure"), and the
/// refresh runs in the background, so no connection waits for it. The name
/// leaves a private /etc/hosts after the first connection, and the name
/// server is a closed port; serve used to look the name up again in the
/// connection's path once `refreshRate` passed, and failed it (`DF`).
#[test]
fn a_cached_name_keeps_its_address_when_a_refresh_fails() {
    let backend = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = backend.local_addr().unwrap().port();
    let dead = format!("127.0.{}.11", 10 + std::process::id() % 200);
    let resolv = format!("nameserver {dead}\noptions timeout:1 attempts:1\n");
    let hosts = "127.0.0.1 localhost\n127.0.0.1 kept.example.org\n";
    let Some((files, mut cmd)) =
        egressgen_with_files_over(&[(hosts, "/etc/hosts"), (&resolv, "/etc/resolv.conf")])
    else {
        return;
    };
    let cfg = config_with_dns(
        files.path(),
        "[kept.example.org]",
        port,
        "refreshRate: 50ms",
    );
    cmd.args(["serve", "--listen", "127.0.0.1:0", "-c"])
        .arg(&cfg);
    let (mut child, addr, log) = started(piped(cmd));
    for round in 0..3 {
        if round == 1 {
            // Rewritten in place: the bind mount shows the new text.
            std::fs::write(files.path().join("mounted0"), "127.0.0.1 localhost\n").unwrap();
        }
        if round > 0 {
            std::thread::sleep(Duration::from_millis(150));
        }
        let (forwarded, line) = one_client(
            addr,
            &backend,
            "kept.example.org",
            true,
            &log,
            &mut Vec::new(),
        );
        assert!(forwarded, "round {round}: not forwarded: {line}");
        assert!(line.ends_with("flags=-"), "round {round}: {line}");
        assert!(
            line.contains(&format!("upstream=127.0.0.1:{port} ")),
            "{line}"
        );
    }
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A loop that addresses do not show: in a private network namespace, an
/// AnyIP route (`ip route add local`) makes the upstream's address this
/// host's, so the dial lands on the proxy's own wildcard listener. The
/// proxy knows its own hello when it comes back and refuses it with an
/// alert: one more log line and one warning, where before the connections
/// chained until --max-connections (41 log lines here). curl, a real
/// client, gets the alert.
#[test]
fn a_hello_that_comes_back_through_a_route_is_refused() {
    if !can_unshare("--net") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (log, err) = (dir.path().join("access.log"), dir.path().join("stderr"));
    let script = r#"
ip link set lo up && ip route add local 10.99.0.0/16 dev lo table local || exit 97
"$1" serve --listen 0.0.0.0:18999 --allow loop.test --resolve loop.test=10.99.0.1:18999 \
  --max-connections 40 --access-log "$2" 2>"$3" &
pid=$!
i=0
until grep -q "listening on" "$3" 2>/dev/null; do
  i=$((i + 1)); [ $i -gt 200 ] && exit 98; sleep 0.05
done
curl -sk --max-time 10 --resolve loop.test:18999:127.0.0.1 https://loop.test:18999/ -o /dev/null
echo "curl=$?"
kill -TERM $pid; wait $pid; echo "exit=$?"
"#;
    let out = Command::new("unshare")
        .args(["--net", "sh", "-c", script, "sh"])
        .arg(assert_cmd::cargo::cargo_bin!("egressgen"))
        .args([&log, &err])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    // curl exit 35: the TLS handshake failed (the alert, relayed).
    assert!(
        stdout.contains("curl=35") && stdout.contains("exit=0"),
        "{stdout}{}\n{stderr}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(lines.len(), 2, "no loop: {lines:#?}");
    let (inner, outer): (Vec<&str>, Vec<&str>) = lines
        .iter()
        .partition(|l| l.contains("downstream=10.99.0.1:"));
    let (inner, outer) = (inner.concat(), outer.concat());
    assert!(
        outer.contains("downstream=127.0.0.1:") && outer.contains("upstream=10.99.0.1:18999"),
        "{outer}"
    );
    assert!(
        inner.contains("downstream=10.99.0.1:")
            && inner.contains("decision=denied reason=upstream_is_this_proxy")
            && inner.ends_with("flags=UF"),
        "{inner}"
    );
    assert_eq!(stderr.matches("came back to it").count(), 1, "{stderr}");
    assert!(stderr.contains("help: pin the names"), "{stderr}");
}

/// The README's recipe for sending a whole application through the proxy:
/// an nftables `redirect` of outgoing port 443 to the proxy, which runs as
/// its own user so that its own upstream connections are exempt. Run for
/// real in a private network namespace, with curl as the application and
/// `openssl s_server` as the destination:
/// - with the exemption, curl gets the server's page through the proxy;
/// - without it, the proxy's upstream connection is redirected back to
///   itself: its own hello is known and refused, once, with a warning that
///   says how to exempt it, where it would otherwise chain until
///   --max-connections.
#[test]
fn a_nat_redirect_sends_an_app_through_and_a_loop_back_is_refused() {
    if !can_unshare("--net") {
        return;
    }
    if Command::new("nft").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but `nft` is missing: install nftables (.ci/run does)"
        );
        eprintln!("skipped: needs nft (Debian package nftables)");
        return;
    }
    // $1 egressgen, $2 its stderr (the access log too), $3 a folder for the
    // certificate, $4 the nft rule's match, empty for no exemption.
    let script = r#"
set -u
ip link set lo up && ip addr add 10.99.0.1/32 dev lo || exit 97
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=app.test \
  -keyout "$3/key.pem" -out "$3/cert.pem" -days 1 2>/dev/null || exit 96
openssl s_server -accept 10.99.0.1:443 -cert "$3/cert.pem" -key "$3/key.pem" -www -quiet \
  >/dev/null 2>&1 </dev/null &
server=$!
nft add table ip eg && nft add chain ip eg out '{ type nat hook output priority -100; }' &&
  nft add rule ip eg out $4 tcp dport 443 redirect to :18999 || exit 95
setpriv --reuid=65534 --regid=65534 --clear-groups "$1" serve --listen 127.0.0.1:18999 \
  --allow app.test --resolve app.test=10.99.0.1 --max-connections 40 2>"$2" &
pid=$!
i=0
until grep -q "listening on" "$2" 2>/dev/null && ss -ltn | grep -q '10.99.0.1:443 '; do
  i=$((i + 1)); [ $i -gt 200 ] && exit 98; sleep 0.05
done
curl -sk --max-time 10 https://app.test/ --resolve app.test:443:10.99.0.1 -o "$3/page" -w 'http=%{http_code} '
echo "curl=$?"
kill -TERM $pid; wait $pid; echo "exit=$?"
kill $server
"#;
    let run = |exempt: &str| {
        let dir = tempfile::tempdir().unwrap();
        let err = dir.path().join("stderr");
        let out = Command::new("unshare")
            .args(["--net", "sh", "-c", script, "sh"])
            .arg(assert_cmd::cargo::cargo_bin!("egressgen"))
            .arg(&err)
            .arg(dir.path())
            .arg(exempt)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        let page = std::fs::read_to_string(dir.path().join("page")).unwrap_or_default();
        let context = format!(
            "{stdout}\n{}\n{stderr}",
            String::from_utf8_lossy(&out.stderr)
        );
        (stdout, stderr, page, context)
    };

    // The proxy runs as uid 65534 (nobody); its own traffic is exempt.
    let (stdout, stderr, page, context) = run("meta skuid != 65534");
    assert!(
        stdout.contains("http=200 curl=0") && stdout.contains("exit=0"),
        "{context}"
    );
    // s_server -www answers with its TLS session's details.
    assert!(page.contains("s_server"), "{page}");
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("sni=")).collect();
    assert_eq!(lines.len(), 1, "{context}");
    assert!(
        lines[0].contains("decision=allowed")
            && lines[0].contains("upstream=10.99.0.1:443")
            && lines[0].ends_with("flags=-"),
        "{context}"
    );
    assert!(!stderr.contains("warning"), "{context}");

    // No exemption: the proxy's dial to 10.99.0.1:443 comes back to it.
    let (stdout, stderr, _, context) = run("");
    // curl exit 35: the TLS handshake failed (the alert, relayed).
    assert!(
        stdout.contains("curl=35") && stdout.contains("exit=0"),
        "{context}"
    );
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("sni=")).collect();
    assert_eq!(
        lines.len(),
        2,
        "one line per connection, no loop: {context}"
    );
    // Logged as each ends: the refused inner one often first.
    let refused = |l: &&&str| {
        l.contains("decision=denied reason=upstream_is_this_proxy") && l.ends_with("flags=UF")
    };
    assert_eq!(lines.iter().filter(refused).count(), 1, "{context}");
    assert_eq!(stderr.matches("came back to it").count(), 1, "{context}");
    assert!(stderr.contains("! --uid-owner USER"), "{context}");
}

#[tokio::test]
async fn drain_deadline_closes_stragglers_and_exits_0() {
    let (mut child, addr, log) = spawn_with_backend(&["--drain-timeout", "300ms"]).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = TlsConnector::from(client_config(vec![]))
        .connect(ServerName::try_from("idle.test.local").unwrap(), tcp)
        .await
        .unwrap();
    signal(&child, "-INT");
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut sink)).await;
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(0));
    // The stderr reader thread may still be forwarding the last lines.
    let mut lines = Vec::new();
    while let Ok(l) = log.recv_timeout(Duration::from_secs(5)) {
        let found = l.contains("closed 1 open connection");
        lines.push(l);
        if found {
            break;
        }
    }
    assert!(
        lines.iter().any(|l| l.contains("closed 1 open connection")),
        "{lines:#?}"
    );
}

/// A resolver with a bug: it panics, on the worker thread that asks it.
struct PanickingResolver;

impl egressgen::serve::resolve::Resolver for PanickingResolver {
    async fn resolve(
        &self,
        host: &str,
        _: u16,
    ) -> std::io::Result<egressgen::serve::resolve::Addrs> {
        panic!("test resolver panics on {host}")
    }
    fn try_resolve(
        &self,
        host: &str,
        _: u16,
    ) -> Option<std::io::Result<egressgen::serve::resolve::Addrs>> {
        panic!("test resolver panics on {host}")
    }
}

/// A worker that panics (a bug) stops the proxy, without waiting for a
/// signal, and says so: serving on without it would leave its connections
/// counted against --max-connections for good. The listener is closed, so
/// a client is refused rather than left waiting in a backlog nobody
/// accepts from.
#[tokio::test]
async fn a_worker_that_panics_stops_the_proxy() {
    let (allowlist, _) = Allowlist::parse(["*.test.local"]).unwrap();
    let proxy = Arc::new(Proxy {
        allowlist,
        resolver: PanickingResolver,
        settings: defaults(),
        log: AccessLog::new(Box::new(Sink::default()), Format::Text, true),
        learned: Default::default(),
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = tokio::spawn(proxy::serve(proxy, vec![listener], std::future::pending()));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&hello_for(b"boom.test.local")).await.unwrap();
    let drained = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("the proxy kept running after its worker panicked")
        .unwrap();
    assert_eq!(
        drained,
        proxy::Drained {
            cut: 0,
            panicked: true
        }
    );
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut rest))
        .await
        .expect("the client's connection was left open");
    let again = TcpStream::connect(addr).await;
    assert!(again.is_err(), "the listener still accepts");
}

/// A connection cut by the drain deadline while its hello is incomplete is
/// logged with the bytes it did send, as one cut by the hello timeout is.
#[tokio::test]
async fn a_partial_hello_cut_by_the_drain_logs_its_bytes() {
    let settings = Settings {
        drain_timeout: Duration::from_millis(200),
        ..defaults()
    };
    let p = start_tls(&["*.test.local"], settings).await;
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello_for(b"d.test.local")[..10])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = p.log.clone();
    assert_eq!(
        p.stop().await,
        proxy::Drained {
            cut: 1,
            panicked: false
        }
    );
    let line = log.lines(1).await.remove(0);
    assert!(
        line.contains("reason=drain_timeout") && line.contains("bytes_received=10 "),
        "{line}"
    );
}

/// SIGHUP (a closed terminal, a dropped SSH session) drains as SIGTERM
/// does, so the list is still printed; it used to kill the proxy at once.
#[tokio::test]
async fn learn_mode_forwards_everything_and_prints_a_domain_list() {
    for sig in ["-TERM", "-HUP"] {
        learn_mode_until(sig).await;
    }
}

async fn learn_mode_until(sig: &str) {
    let (mut child, addr, _log) = spawn_with_backend(&["--learn", "--access-log", "off"]).await;
    for name in [
        "a.test.local",
        "b.test.local",
        "evil.example",
        "api.example.com",
        "api.example.com",
        "test.local",
    ] {
        assert_eq!(
            tls_echo(addr, name, b"learn").await.unwrap(),
            b"learn",
            "{name}"
        );
    }
    signal(&child, sig);
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert_eq!(
        out,
        "\
# egressgen serve --learn: 5 names in 6 connections; 3 refused by the current allowlist (marked REFUSED).
# Paste under `spec:` in your EgressGateway file:
  domains:
    - api.example.com  # 2 connections, REFUSED (not_allowed)
    - evil.example  # 1 connection, REFUSED (not_allowed)
    # *.test.local covers:
    #   a.test.local: 1 connection, allowed by *.test.local
    #   b.test.local: 1 connection, allowed by *.test.local
    - \"*.test.local\"
    - test.local  # 1 connection, REFUSED (not_allowed)
"
    );
}

/// Starts `egressgen serve ARGS` with stderr on a pipe, reads up to the
/// "listening on" line and hands back the pipe, unread from then on.
fn spawn_holding_stderr(
    args: &[&str],
) -> (Child, SocketAddr, BufReader<std::process::ChildStderr>) {
    let mut child = serve_child(args);
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "proxy did not start"
        );
        if let Some(a) = line
            .trim_end()
            .strip_prefix("egressgen serve: listening on ")
        {
            break a.parse().unwrap();
        }
    };
    (child, addr, stderr)
}

/// A refused hello, answered with an alert; panics if no answer comes.
fn refused_promptly(addr: SocketAddr) {
    let mut c = std::net::TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(&hello_for(b"denied.example")).unwrap();
    let mut alert = [0u8; 7];
    c.read_exact(&mut alert)
        .expect("no alert: the proxy stalled");
    assert_eq!(alert[0], 21, "an alert record");
}

/// Waits up to `within` for `child` to exit, and returns its code.
fn exits_within(child: &mut Child, within: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + within;
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    panic!("still running {within:?} later");
}

/// Under `nohup`, SIGHUP stays ignored: the proxy serves on.
#[test]
fn sighup_under_nohup_is_ignored() {
    let mut cmd = Command::new("nohup");
    cmd.arg(assert_cmd::cargo::cargo_bin!("egressgen")).args([
        "serve",
        "--allow",
        "*.test.local",
        "--listen",
        "127.0.0.1:0",
    ]);
    let (mut child, addr, _log) = started(piped(cmd));
    signal(&child, "-HUP");
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "SIGHUP stopped it");
    refused_promptly(addr);
    signal(&child, "-TERM");
    assert_eq!(exits_within(&mut child, Duration::from_secs(10)), Some(0));
}

/// The access log is on stderr by default. When nothing reads it (a pager
/// left unscrolled, a terminal stopped with Ctrl-S, a stuck collector) the
/// pipe fills; the proxy must keep serving, dropping log lines, and still
/// exit within its drain deadline. It used to block every worker on the
/// pipe, and SIGTERM with it.
#[test]
fn a_stderr_nobody_reads_does_not_stall_the_proxy() {
    let (mut child, addr, stderr) = spawn_holding_stderr(&[
        "--allow",
        "*.test.local",
        "--listen",
        "127.0.0.1:0",
        "--drain-timeout",
        "1s",
    ]);
    // About 250 bytes a line: far past a 64 KiB pipe.
    for _ in 0..1000 {
        refused_promptly(addr);
    }
    signal(&child, "-TERM");
    assert_eq!(exits_within(&mut child, Duration::from_secs(10)), Some(0));
    drop(stderr);
}

/// A stderr whose reader has gone (EPIPE) made the first message after
/// the banner panic, which took the proxy down on SIGTERM with exit 101.
/// The proxy serves on, and drains and exits 0.
#[tokio::test]
async fn a_closed_stderr_does_not_take_the_proxy_down() {
    let pin = format!("*={}", tls_backend().await);
    let (mut child, addr, stderr) = spawn_holding_stderr(&[
        "--allow",
        "*.test.local",
        "--listen",
        "127.0.0.1:0",
        "--resolve",
        &pin,
    ]);
    drop(stderr);
    for _ in 0..3 {
        refused_promptly(addr);
        assert_eq!(
            tls_echo(addr, "a.test.local", b"still here").await.unwrap(),
            b"still here"
        );
    }
    signal(&child, "-TERM");
    assert_eq!(exits_within(&mut child, Duration::from_secs(10)), Some(0));
}

#[test]
fn bad_flags_exit_2_before_serving() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().to_string();
    let cases: &[(&[&str], &str)] = &[
        (
            &["--allow", "a.com", "--listen", "localhost:99999"],
            "invalid value 'localhost:99999' for '--listen",
        ),
        (&["--allow", "a.com", "--listen", &port], "cannot listen on"),
        (
            &["--allow", "a*.com"],
            "--allow `a*.com`: `*` must be the whole leftmost label",
        ),
        (
            &["--allow", "*"],
            "a bare `*` would allow every destination",
        ),
        (&[], "no allowlist: pass -c egress.yaml or --allow PATTERN"),
        (
            &["--allow", "a.com", "--hello-timeout", "10"],
            "needs a unit",
        ),
        (
            &["--allow", "a.com", "--idle-timeout", "0s"],
            "`0s` would end every connection at once",
        ),
        (
            &["--allow", "a.com", "--connect-timeout", "0ms"],
            "give a duration above zero",
        ),
        (
            &["--allow", "a.com", "--resolve", "a.com=nowhere"],
            "is not IP or IP:PORT",
        ),
        (&["-c", "/nonexistent/egress.yaml"], "cannot read config"),
        (
            &["--learn", "--access-log", "-"],
            "--learn prints its domain list on stdout, so an access log there",
        ),
        // The same file by another name (stdout is a pipe here).
        (
            &["--learn", "--access-log", "/dev/stdout"],
            "--learn prints its domain list on stdout, so an access log there",
        ),
        (
            &["--allow", "a.com", "--resolve", "a.com=127.0.0.1:0"],
            "is not IP or IP:PORT with a port from 1 to 65535",
        ),
        (
            &["--allow", "a.com", "--idle-timeout", "1.5s"],
            "is not a whole number: give a smaller unit instead (e.g. `1500ms`",
        ),
        (
            &["--allow", "a.com", "--sched", "fifo"],
            "invalid value 'fifo' for '--sched",
        ),
        (
            &[
                "--allow",
                "a.com",
                "--access-log",
                "/nonexistent/dir/access.log",
            ],
            "\n  help: pass --access-log a file you may write to",
        ),
    ];
    for (args, want) in cases {
        let err = serve_refused(args);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    drop(taken);
}

/// The scheduling policy of each thread of process `pid` whose name starts
/// with `prefix` (`/proc/PID/task/TID/stat`, field 41, proc(5)).
#[cfg(target_os = "linux")]
fn thread_policies(pid: u32, prefix: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap();
        if !comm.starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
        // Fields from the third on follow the `(comm)`.
        let rest = &stat[stat.rfind(')').unwrap() + 1..];
        let policy = rest.split_whitespace().nth(41 - 3).unwrap();
        out.push(policy.parse().unwrap());
    }
    out
}

/// `--sched batch` runs every worker thread, and only those, under
/// SCHED_BATCH, and connections go through as before; without it the
/// workers keep the default policy.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sched_batch_applies_to_the_worker_threads() {
    for (flag, want) in [
        (None, libc::SCHED_OTHER),
        (Some("batch"), libc::SCHED_BATCH),
    ] {
        let mut extra = vec!["--workers", "2"];
        extra.extend(flag.iter().flat_map(|f| ["--sched", f]));
        let (mut child, addr, _stderr) = spawn_with_backend(&extra).await;
        assert_eq!(
            tls_echo(addr, "batch.test.local", b"through")
                .await
                .unwrap(),
            b"through"
        );
        let pid = child.id();
        assert_eq!(thread_policies(pid, "serve-"), [want as u32; 2], "{flag:?}");
        let main = thread_policies(pid, "egressgen");
        assert!(
            !main.is_empty() && main.iter().all(|&p| p == libc::SCHED_OTHER as u32),
            "{flag:?}: {main:?}"
        );
        signal(&child, "-TERM");
        assert_eq!(child.wait().unwrap().code(), Some(0));
    }
}

/// A sandbox that refuses `sched_setscheduler` (here a seccomp filter, as a
/// container's profile may) makes `--sched batch` exit 2 with the reason,
/// before the proxy says it is listening. The same sandbox leaves the
/// default policy serving, so it is the flag that is refused.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sched_batch_refused_by_a_sandbox_exits_2_before_listening() {
    let pin = format!("*={}", tls_backend().await);
    let args = |extra: &[&'static str]| {
        let mut cmd = bin();
        cmd.args([
            "serve",
            "--allow",
            "*.test.local",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--resolve", &pin, "--workers", "2"])
        .args(extra);
        refuse_syscall(&mut cmd, libc::SYS_sched_setscheduler);
        piped(cmd)
    };
    let err = refused(args(&["--sched", "batch"]), "--sched batch, sandboxed");
    assert!(
        err.contains("cannot put a worker thread under SCHED_BATCH")
            && err.contains("Operation not permitted")
            && err.contains("help:"),
        "{err}"
    );

    let (mut child, addr, _stderr) = started(args(&[]));
    assert_eq!(
        tls_echo(addr, "sandboxed.test.local", b"through")
            .await
            .unwrap(),
        b"through"
    );
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Makes `cmd`'s process, once started, fail system call `nr` with EPERM
/// (a seccomp filter, inherited by every thread it starts).
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
fn refuse_syscall(cmd: &mut Command, nr: libc::c_long) {
    use std::os::unix::process::CommandExt;
    // AUDIT_ARCH_X86_64, AUDIT_ARCH_AARCH64 (linux/audit.h).
    const ARCH: u32 = if cfg!(target_arch = "x86_64") {
        0xc000_003e
    } else {
        0xc000_00b7
    };
    let op = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        // struct seccomp_data: nr at offset 0, arch at 4.
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 4, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, ARCH, 1, 0),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_KILL_PROCESS,
            0,
            0,
        ),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, nr as u32, 0, 1),
        op(
            libc::BPF_RET | libc::BPF_K,
            libc::SECCOMP_RET_ERRNO | libc::EPERM as u32,
            0,
            0,
        ),
        op(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW, 0, 0),
    ];
    // SAFETY: between fork and exec only async-signal-safe calls (two
    // prctl) run; `filter` is copied into the child with the rest of the
    // address space and outlives the calls.
    unsafe {
        cmd.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr() as *mut libc::sock_filter,
            };
            // prctl reads its arguments as unsigned longs.
            let (one, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, one, zero, zero, zero) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A `--resolve` pin to the proxy's own listener would make every
/// connection dial the proxy again, until `--max-connections`: refused at
/// startup (exit 2).
#[test]
fn a_pin_to_the_proxys_own_listener_exits_2() {
    // A port that was free a moment ago; taken meanwhile, try another.
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let err = serve_refused(&[
            "--allow",
            "*.test.local",
            "--listen",
            &listen,
            "--resolve",
            &format!("*.test.local={listen}"),
        ]);
        if err.contains("in use") {
            continue;
        }
        assert!(
            err.contains(&format!("this proxy's own listener {listen}")) && err.contains("help:"),
            "{err}"
        );
        return;
    }
    panic!("no free port");
}

/// Workers share an address through a `SO_REUSEPORT` group, which a second
/// proxy of the same user could join silently and take half the
/// connections. It must fail like any taken port instead.
#[test]
fn a_second_proxy_on_the_same_address_exits_2() {
    let (first, addr, _log) = spawn(&[
        "--allow",
        "*.test.local",
        "--workers",
        "2",
        "--listen",
        "127.0.0.1:0",
    ]);
    // Stopped even when an assertion below fails.
    struct Kill(Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _first = Kill(first);
    let addr = addr.to_string();
    for workers in ["1", "2"] {
        let err = serve_refused(&[
            "--allow",
            "*.test.local",
            "--workers",
            workers,
            "--listen",
            &addr,
        ]);
        assert!(
            err.contains(&format!("cannot listen on {addr}: Address already in use")),
            "--workers {workers}: {err}"
        );
    }
}

#[tokio::test]
async fn serve_spelling_config_file_and_ipv6() {
    let backend = tls_backend().await;
    let pin = format!("*={backend}");
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egress.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: t\nspec:\n  domains:\n    - \"*.test.local\"\n",
    )
    .unwrap();
    let mut child = bin()
        .args(["--serve", "-c"])
        .arg(&cfg)
        .args([
            "--listen",
            "[::1]:0",
            "--resolve",
            &pin,
            "--log-format",
            "json",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(a) = l.strip_prefix("egressgen serve: listening on ") {
            break a.parse().unwrap();
        }
    };
    assert!(addr.is_ipv6());
    assert_eq!(
        tls_echo(addr, "v6.test.local", b"six").await.unwrap(),
        b"six"
    );
    let json = loop {
        let l = lines.next().unwrap().unwrap();
        if l.starts_with('{') {
            break l;
        }
    };
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["requested_server_name"], "v6.test.local");
    assert_eq!(v["decision"], "allowed");
    assert_eq!(v["upstream_host"], backend.to_string());
    signal(&child, "-TERM");
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// A client that half-closes and then resets (its process died) ends the
/// connection at once, though the upstream is silent: its side is closed
/// now, not held until the idle timeout (an hour by default).
#[tokio::test]
async fn a_client_reset_after_its_fin_closes_the_upstream_at_once() {
    let (p, up) = start_with_upstream(&["*.test.local"], defaults()).await;
    let hello = hello_for(b"gone.test.local");
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    c.shutdown().await.unwrap();
    let (mut s, _) = up.accept().await.unwrap();
    let mut got = Vec::new();
    // The hello, then the client's FIN passed on.
    s.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, hello);
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c); // a reset
    // The upstream, still open, sends nothing: only the reset can end the
    // connection, and the proxy logs a connection when it closes it.
    let line = p.log.lines(1).await.remove(0);
    assert!(line.ends_with("flags=CR"), "{line}");
    // Its upstream side is gone too: what the upstream writes now is refused.
    let mut refused = false;
    for _ in 0..50 {
        if s.write_all(b"late").await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "the upstream side is still open");
    p.stop().await;
}

/// The client half-closes at once; the upstream answers with megabytes
/// (spliced past 1 MiB) and closes. Once both FINs have passed, the
/// upstream socket hangs up while the last of its bytes may still wait in
/// the relay for the client: they must all arrive. An earlier loop closed on
/// that hang-up and lost up to a pipe's worth; the race showed in
/// `long_flows_are_byte_exact_with_and_without_splice` under load (3 runs of
/// the suite in 6). This runs the plain case on 8 connections at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_owed_to_the_client_survive_the_upstream_hanging_up() {
    let (p, up) = start_with_upstream(&["*.test.local"], defaults()).await;
    let up = Arc::new(up);
    let body = Arc::new(pattern(4 << 20, 6));
    let mut clients = Vec::new();
    for _ in 0..8 {
        let (up, body, addr) = (up.clone(), body.clone(), p.addr);
        clients.push(tokio::spawn(async move {
            let hello = hello_for(b"owed.test.local");
            let mut c = TcpStream::connect(addr).await.unwrap();
            c.write_all(&hello).await.unwrap();
            c.shutdown().await.unwrap();
            let (mut s, _) = up.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            s.write_all(&body).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).await.unwrap();
            back.len() == body.len() && back == *body
        }));
    }
    let mut complete = 0;
    for c in clients {
        let ok = tokio::time::timeout(Duration::from_secs(20), c)
            .await
            .expect("a transfer hung")
            .unwrap();
        complete += ok as usize;
    }
    assert_eq!(complete, 8, "connections that got every byte");
    p.stop().await;
}

/// With `--splice`, flows past 1 MiB switch to splice(2) on Linux: bytes must
/// stay exact, with half-close, both with and without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_flows_are_byte_exact_with_and_without_splice() {
    for splice in [true, false] {
        let settings = Settings {
            splice,
            ..defaults()
        };
        let (p, up) = start_with_upstream(&["*.test.local"], settings).await;
        // The backend echoes everything, then closes after the client's FIN.
        tokio::spawn(async move {
            let (s, _) = up.accept().await.unwrap();
            let (mut r, mut w) = s.into_split();
            tokio::io::copy(&mut r, &mut w).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut sent = hello_for(b"bulk.test.local");
        sent.extend_from_slice(&pattern(24 << 20, 9));
        let c = TcpStream::connect(p.addr).await.unwrap();
        let (mut r, mut w) = c.into_split();
        let data = sent.clone();
        let writer = tokio::spawn(async move {
            for chunk in data.chunks(100_000) {
                w.write_all(chunk).await.unwrap();
            }
            w.shutdown().await.unwrap();
        });
        let mut got = Vec::new();
        r.read_to_end(&mut got).await.unwrap();
        writer.await.unwrap();
        assert!(
            got == sent,
            "splice={splice}: {} of {} bytes back",
            got.len(),
            sent.len()
        );
        let log = p.log.lines(1).await;
        let want = format!("bytes_received={} bytes_sent={}", sent.len(), sent.len());
        assert!(
            log[0].contains(&want) && log[0].ends_with("flags=-"),
            "{}",
            log[0]
        );
        p.stop().await;
    }
}

/// A config with several `ports` is served one listener per port, as the
/// gateway gives each upstream port its own path; a port outside the config
/// is refused at startup, like a route the gateway does not have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_listener_forwards_to_its_own_upstream_port() {
    let up_a = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_b = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port_a, port_b) = (
        up_a.local_addr().unwrap().port(),
        up_b.local_addr().unwrap().port(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("egress.yaml");
    std::fs::write(
        &cfg,
        format!(
            "apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: t\nspec:\n  ports: [{port_a}, {port_b}]\n  domains:\n    - \"*.test.local\"\n"
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();

    // Several ports and a listener without `=PORT`: which port is meant?
    let err = serve_refused(&["-c", cfg, "--listen", "127.0.0.1:0"]);
    assert!(
        err.contains(&format!(
            "the config has several upstream ports ({port_a}, {port_b}), and --listen 127.0.0.1:0 names none"
        )),
        "{err}"
    );
    assert!(err.contains("help: give each listener its port"), "{err}");
    // A port the config does not list.
    let err = serve_refused(&["-c", cfg, "--listen", "127.0.0.1:0=443"]);
    assert!(
        err.contains("upstream port 443 is not one of the config's ports"),
        "{err}"
    );
    // The same address twice would bind twice (SO_REUSEPORT) and split
    // connections between the two ports at random.
    let (a, b) = (
        format!("127.0.0.1:38443={port_a}"),
        format!("127.0.0.1:38443={port_b}"),
    );
    let err = serve_refused(&["-c", cfg, "--workers", "2", "--listen", &a, "--listen", &b]);
    assert!(
        err.contains("--listen 127.0.0.1:38443 is given twice"),
        "{err}"
    );
    let err = serve_refused(&["-c", cfg, "--listen", "127.0.0.1:0=0"]);
    assert!(err.contains("`0` is not an upstream port"), "{err}");

    let mut child = bin()
        .args(["serve", "-c", cfg, "--resolve", "*.test.local=127.0.0.1"])
        .args(["--listen", &format!("127.0.0.1:0={port_a}")])
        .args(["--listen", &format!("127.0.0.1:0={port_b}")])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let summary = loop {
        let l = lines.next().unwrap().unwrap();
        if let Some(a) = l.strip_prefix("egressgen serve: listening on ") {
            addrs.push(a.parse().unwrap());
        } else if l.contains("allowlist entr") {
            break l;
        }
    };
    assert_eq!(addrs.len(), 2, "{summary}");
    assert!(
        summary.ends_with(&format!(
            "upstream ports {port_a} ({}), {port_b} ({})",
            addrs[0], addrs[1]
        )),
        "{summary}"
    );
    let hello = hello_for(b"a.test.local");
    let within = |f| tokio::time::timeout(Duration::from_secs(10), f);
    // The pin has no port, so the listener's upstream port decides.
    assert_eq!(
        within(replayed(addrs[0], &up_a, &hello)).await.unwrap(),
        hello
    );
    assert_eq!(
        within(replayed(addrs[1], &up_b, &hello)).await.unwrap(),
        hello
    );
    signal(&child, "-TERM");
    assert!(child.wait().unwrap().success());
}

/// A spliced flow whose upstream writes many small segments to a slow
/// client. Each segment takes a pipe slot, so the pipe fills long before its
/// byte capacity and `splice` into it fails with EAGAIN while the socket
/// still holds data. Taking that EAGAIN for "socket drained" cleared the
/// socket's edge-triggered readiness and stalled the flow for good (found by
/// bench/proxy.sh: a 1 GiB download stopped at 636 MB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spliced_flow_of_small_segments_to_a_slow_client_completes() {
    let settings = Settings {
        splice: true,
        ..defaults()
    };
    let (p, up) = start_with_upstream(&["*.test.local"], settings).await;
    let hello = hello_for(b"small.test.local");
    let bulk = pattern(2 << 20, 3); // past SPLICE_AFTER: the flow splices
    let small = pattern(4 << 20, 4);
    let expected: Vec<u8> = bulk.iter().chain(&small).copied().collect();
    let hello_len = hello.len();
    let server = tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut h = vec![0; hello_len];
        s.read_exact(&mut h).await.unwrap();
        s.write_all(&bulk).await.unwrap();
        for chunk in small.chunks(200) {
            s.write_all(chunk).await.unwrap();
        }
        // Keep the connection open: no FIN can rescue a lost edge.
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest).await;
    });
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    let mut got = vec![0; expected.len()];
    let read = async {
        let mut at = 0;
        while at < got.len() {
            let end = (at + 8192).min(got.len());
            let n = c.read(&mut got[at..end]).await.unwrap();
            assert!(n > 0, "closed after {at} bytes");
            at += n;
            if at % (256 << 10) < n {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read)
        .await
        .expect("the spliced flow stalled");
    assert!(got == expected, "bytes differ");
    drop(c);
    server.await.unwrap();
    p.stop().await;
}

/// The slow connect path: the upstream's accept queue is full, so its
/// kernel drops our SYN and `connect()` is still in progress when the hello
/// would go out. The hello must wait for the handshake (the SYN is resent
/// after about a second) and arrive exactly once, intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_waits_for_a_slow_upstream_handshake() {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    socket
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    socket.listen(0).unwrap();
    socket.set_nonblocking(true).unwrap();
    let up = TcpListener::from_std(socket.into()).unwrap();
    let up_addr = up.local_addr().unwrap();
    // Fill the accept queue (a backlog of 0 holds one connection).
    let mut fillers = Vec::new();
    for _ in 0..2 {
        if let Ok(Ok(c)) =
            tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(up_addr)).await
        {
            fillers.push(c);
        }
    }
    let p = start(&["*.test.local"], &[format!("*={up_addr}")], defaults()).await;
    let hello = hello_for(b"slow.test.local");
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    c.write_all(b"after").await.unwrap();
    // Let the proxy's SYN be dropped, then make room.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut accepted = 0;
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while got.is_empty() {
        let (mut s, _) = tokio::time::timeout_at(deadline, up.accept())
            .await
            .expect("the proxy never connected")
            .unwrap();
        accepted += 1;
        let mut buf = vec![0; hello.len() + 5];
        // A filler sends nothing: skip it.
        if let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(500), s.read_exact(&mut buf)).await
        {
            got = buf;
        }
    }
    assert!(accepted >= 1);
    let mut want = hello.clone();
    want.extend_from_slice(b"after");
    assert!(got == want, "the hello arrived changed or twice");
    drop(c);
    drop(fillers);
    let log = p.log.lines(1).await;
    assert!(log[0].contains("decision=allowed"), "{}", log[0]);
    p.stop().await;
}

/// Resolves every name to the same addresses, in order.
struct Fixed(egressgen::serve::resolve::Addrs);

impl egressgen::serve::resolve::Resolver for Fixed {
    fn resolve(
        &self,
        _host: &str,
        _port: u16,
    ) -> impl std::future::Future<Output = std::io::Result<egressgen::serve::resolve::Addrs>> + Send
    {
        let addrs = self.0.clone();
        async move { Ok(addrs) }
    }
}

/// A name with several addresses: one that refuses is skipped and the next
/// is used, over IPv6 and IPv4 alike, and the log names the one used.
#[tokio::test]
async fn refused_address_falls_back_to_the_next_over_ipv6_and_ipv4() {
    use egressgen::serve::resolve::Addrs;
    let v4 = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = v4.local_addr().unwrap().port();
    // Nothing listens on [::1] at that port; the IPv6 upstream is elsewhere.
    let v6 = TcpListener::bind("[::1]:0").await.unwrap();
    let v6_addr = v6.local_addr().unwrap();
    let hello = hello_for(b"multi.test.local");
    for (addrs, up, want) in [
        (
            Addrs::Many(
                vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()].into(),
                port,
            ),
            &v4,
            format!("upstream=127.0.0.1:{port}"),
        ),
        (Addrs::One(v6_addr), &v6, format!("upstream={v6_addr}")),
    ] {
        let (allowlist, _) = Allowlist::parse(["*.test.local"]).unwrap();
        let log = Sink::default();
        let proxy = Arc::new(Proxy {
            allowlist,
            resolver: Fixed(addrs),
            settings: defaults(),
            log: AccessLog::new(Box::new(log.clone()), Format::Text, true),
            learned: Default::default(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(proxy::serve(proxy, vec![listener], async {
            let _ = rx.await;
        }));
        let got = tokio::time::timeout(Duration::from_secs(10), replayed(addr, up, &hello))
            .await
            .expect("no upstream got the hello");
        assert!(got == hello);
        let _ = tx.send(());
        done.await.unwrap();
        let line = log.lines(1).await.remove(0);
        assert!(line.contains(&want), "{line}");
        assert!(line.contains("decision=allowed"), "{line}");
    }
}

/// An upstream address that is the proxy's own listener is not dialed: the
/// connection would come back to the proxy, which would dial itself again,
/// until `max_connections`. One line is logged, not one per hop. Also as an
/// IPv4-mapped IPv6 address, which an IPv6 socket dials over IPv4. With other
/// addresses in the answer they are dialed, and the log names the last one
/// dialed.
#[tokio::test]
async fn an_upstream_that_is_the_proxy_itself_is_not_dialed() {
    use egressgen::serve::resolve::Addrs;
    type Case = fn(SocketAddr) -> (Addrs, &'static str, String);
    // Nothing listens on [::1] at the proxy's port: dialing it is refused.
    let cases: [Case; 4] = [
        |own| (Addrs::One(own), "upstream_is_this_proxy", own.to_string()),
        |own| {
            let mapped = format!("[::ffff:127.0.0.1]:{}", own.port());
            (
                Addrs::One(mapped.parse().unwrap()),
                "upstream_is_this_proxy",
                mapped,
            )
        },
        |own| {
            let ips = vec!["::1".parse().unwrap(), "127.0.0.1".parse().unwrap()];
            (
                Addrs::Many(ips.into(), own.port()),
                "connect_failed",
                format!("[::1]:{}", own.port()),
            )
        },
        |own| {
            let ips = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
            (
                Addrs::Many(ips.into(), own.port()),
                "connect_failed",
                format!("[::1]:{}", own.port()),
            )
        },
    ];
    for case in cases {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (addrs, reason, upstream) = case(addr);
        let (allowlist, _) = Allowlist::parse(["*.test.local"]).unwrap();
        let log = Sink::default();
        let mut settings = defaults();
        settings.max_connections = 20;
        let proxy = Arc::new(Proxy {
            allowlist,
            resolver: Fixed(addrs),
            settings,
            log: AccessLog::new(Box::new(log.clone()), Format::Text, true),
            learned: Default::default(),
        });
        let (tx, rx) = oneshot::channel::<()>();
        let done = tokio::spawn(proxy::serve(proxy, vec![listener], async {
            let _ = rx.await;
        }));
        let answer = raw_exchange(addr, &hello_for(b"loop.test.local")).await;
        assert!(answer.is_empty(), "{answer:?}");
        let line = log.lines(1).await.remove(0);
        assert!(
            line.contains(&format!("reason={reason}"))
                && line.contains(&format!("upstream={upstream}"))
                && line.ends_with("flags=UF"),
            "{reason} {upstream}: {line}"
        );
        let _ = tx.send(());
        done.await.unwrap();
        assert_eq!(log.text().lines().count(), 1, "{}", log.text());
    }
}

/// What reached the client's socket before the upstream reset still reaches
/// the client when the client sends after the proxy has ended the
/// connection: closing a socket that bytes reach later sends a reset, which
/// drops what is still in its send queue, so the proxy lingers (reads and
/// drops) until the client closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_sends_after_an_upstream_reset_still_gets_the_answer() {
    let (p, up) = start_with_upstream(&["*.test.local"], defaults()).await;
    let hello = hello_for(b"late.test.local");
    let hello_len = hello.len();
    let body = pattern(1 << 20, 5);
    let sent = body.clone();
    let server = tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        let mut h = vec![0; hello_len];
        s.read_exact(&mut h).await.unwrap();
        s.write_all(&sent).await.unwrap();
        // All of it is with the proxy by now; then reset.
        tokio::time::sleep(Duration::from_millis(200)).await;
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    // A small window: most of the answer waits in the proxy's send queue.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(8 << 10).unwrap();
    let mut c = socket.connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    server.await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.write_all(b"late").await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0; 16 << 10];
    let read = async {
        loop {
            match c.read(&mut buf).await {
                Ok(0) => break Ok(()),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Err(e),
            }
        }
    };
    let end = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the client was never closed");
    assert!(
        end.is_ok() && got == body,
        "{end:?} after {} of {} bytes",
        got.len(),
        body.len()
    );
    let line = p.log.lines(1).await.remove(0);
    let want = format!("bytes_sent={} ", body.len());
    assert!(line.contains(&want) && line.ends_with("flags=CR"), "{line}");
    p.stop().await;
}

/// An upstream that answers and resets while the client is still uploading
/// (an HTTP client sending a body before it reads the response) ends the
/// connection as reset once its answer is delivered. The client's upload is
/// read and dropped meanwhile: an earlier loop stopped reading it, so the
/// client blocked in its upload, never read the answer, and the connection
/// stayed open until the idle timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_reset_during_an_upload_ends_the_connection() {
    let settings = Settings {
        idle_timeout: Duration::from_secs(5),
        ..defaults()
    };
    let (p, up) = start_with_upstream(&["*.test.local"], settings).await;
    let hello = hello_for(b"upload.test.local");
    let hello_len = hello.len();
    let server = tokio::spawn(async move {
        let (mut s, _) = up.accept().await.unwrap();
        let mut h = vec![0; hello_len];
        s.read_exact(&mut h).await.unwrap();
        // Answer while reading a little of the upload, until every buffer
        // on the way is full, then reset.
        let answer = vec![b'A'; 64 << 10];
        let mut sink = vec![0; 16 << 10];
        let mut stalled = 0;
        while stalled < 30 {
            match s.try_write(&answer) {
                Ok(_) => stalled = 0,
                Err(_) => {
                    stalled += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let _ = s.try_read(&mut sink);
        }
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    });
    let mut c = TcpStream::connect(p.addr).await.unwrap();
    c.write_all(&hello).await.unwrap();
    let upload = vec![b'U'; 64 << 20];
    let sent = tokio::time::timeout(Duration::from_secs(4), c.write_all(&upload)).await;
    assert!(matches!(sent, Ok(Ok(()))), "the upload stalled: {sent:?}");
    server.await.unwrap();
    let mut got = 0;
    let mut buf = vec![0; 64 << 10];
    loop {
        match tokio::time::timeout(Duration::from_secs(4), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got += n,
            Err(_) => panic!("not closed; {got} bytes of the answer read"),
        }
    }
    assert!(got > 0);
    let line = p.log.lines(1).await.remove(0);
    assert!(
        line.contains(&format!(" bytes_sent={got} ")) && line.ends_with("flags=CR"),
        "{line}"
    );
    // What the proxy read of the upload (Envoy's %BYTES_RECEIVED%): all of it
    // when it lingered, less when the client had taken the whole answer and
    // the proxy closed at once (the kernel then drops the rest).
    let received = count(&line, "bytes_received");
    assert!(
        received > hello_len && received <= hello_len + upload.len(),
        "{line}"
    );
    p.stop().await;
}

/// The number logged as `key=N` in a text access-log line.
fn count(line: &str, key: &str) -> usize {
    let prefix = format!("{key}=");
    line.split(' ')
        .find_map(|f| f.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {line}"))
}

/// Bytes the upstream sent before it reset reach a slow client, as
/// Envoy's `tcp_proxy` flushes what it read to the downstream on an
/// upstream close. Splicing, the pipe may still hold bytes when the fill
/// fails, and an earlier loop dropped them. When the client sends after the
/// reset, the proxy finds it by a failed write to the upstream, while bytes
/// for the client still wait in the proxy; an earlier loop dropped those,
/// and what the kernel still held of the upstream's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_read_before_an_upstream_reset_reach_a_slow_client() {
    for (splice, client_writes) in [(true, false), (false, false), (true, true), (false, true)] {
        let settings = Settings {
            splice,
            ..defaults()
        };
        let (p, up) = start_with_upstream(&["*.test.local"], settings).await;
        let hello = hello_for(b"reset.test.local");
        let body = pattern(32 << 20, 7);
        let hello_len = hello.len();
        let sent = body.clone();
        let server = tokio::spawn(async move {
            let (mut s, _) = up.accept().await.unwrap();
            let mut h = vec![0; hello_len];
            s.read_exact(&mut h).await.unwrap();
            // Write until every buffer on the way is full (the client does
            // not read), then reset.
            let mut written = 0;
            let mut stalled = 0;
            while stalled < 50 && written < sent.len() {
                match s.try_write(&sent[written..]) {
                    Ok(n) => {
                        written += n;
                        stalled = 0;
                    }
                    Err(_) => {
                        stalled += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            // Let the last acknowledgements arrive.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&s);
            let mut queued: libc::c_int = 0;
            // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int for our TCP socket.
            unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
            // What the proxy's kernel acknowledged: it must all arrive.
            written - queued as usize
        });
        // A small window keeps the proxy's send buffer to the client small,
        // so the pipe cannot empty into it at once.
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(8 << 10).unwrap();
        let mut c = socket.connect(p.addr).await.unwrap();
        c.write_all(&hello).await.unwrap();
        let acked = server.await.unwrap();
        assert!(acked > 2 << 20, "only {acked} bytes left the upstream");
        if client_writes {
            // The reset reaches the proxy, then the client's bytes do: the
            // first write finds the failed upstream; the second must be
            // read too, or closing with it unread resets the client and
            // drops what is still on its way to it.
            for _ in 0..2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                c.write_all(b"after the reset").await.unwrap();
            }
        }
        let mut got = Vec::new();
        let mut buf = vec![0; 16 << 10];
        let read = async {
            loop {
                match c.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
                // Slow: the proxy's pipe stays part full as the fill fails.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .expect("the client was never closed");
        // At least what was acknowledged, in order (an acknowledgement
        // still on its way can only make `acked` smaller).
        assert!(
            got.len() >= acked && got[..] == body[..got.len()],
            "splice={splice} client_writes={client_writes}: {} of {acked} bytes reached the client",
            got.len(),
        );
        let line = p.log.lines(1).await.remove(0);
        let want = format!("bytes_sent={} ", got.len());
        assert!(
            line.contains(&want) && line.ends_with("flags=CR"),
            "splice={splice} client_writes={client_writes}: {line}"
        );
        p.stop().await;
    }
}
