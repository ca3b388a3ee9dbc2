//! Where an allowed name is forwarded to: `--resolve` pins first, then the
//! system resolver behind a small cache.
//!
//! The cache is bounded in time and size like Envoy's dynamic forward proxy
//! `dns_cache_config`: `dns_refresh_rate` defaults to 60 s and `max_hosts` to
//! 1024 (envoy/extensions/common/dynamic_forward_proxy/v3/dns_cache.proto).
//! The system resolver (`getaddrinfo`) reports no TTL, so the refresh rate is
//! the TTL here. Failures are not cached.
//!
//! Pins (`--resolve PATTERN=IP[:PORT]`) are matched with the domain model's
//! own matcher ([`Allowlist::lookup`]): exact names first, then wildcards,
//! then `*` for everything. This module never decides whether a name is
//! allowed; the proxy asks it only after [`Allowlist::decide`] said yes.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::LookupFamily;
use crate::domain::{Allowlist, Pattern};
use crate::escape::quoted;

/// Envoy's `dns_refresh_rate` default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
/// Envoy's `max_hosts` default.
pub const DEFAULT_MAX_HOSTS: usize = 1024;

/// The addresses to try for a name, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addrs {
    One(SocketAddr),
    Many(Arc<[IpAddr]>, u16),
}

impl Addrs {
    pub fn iter(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        let (one, many, port) = match self {
            Addrs::One(a) => (Some(*a), &[][..], 0),
            Addrs::Many(ips, port) => (None, &ips[..], *port),
        };
        one.into_iter()
            .chain(many.iter().map(move |ip| SocketAddr::new(*ip, port)))
    }
}

/// Turns a host name into addresses. Tests plug in their own.
pub trait Resolver: Send + Sync + 'static {
    fn resolve(&self, host: &str, port: u16) -> impl Future<Output = io::Result<Addrs>> + Send;

    /// The answer, if it is at hand without waiting (a pin, a cache hit).
    /// The proxy's event loop asks this first and sends only the rest to
    /// [`Resolver::resolve`] on the runtime.
    fn try_resolve(&self, host: &str, port: u16) -> Option<io::Result<Addrs>> {
        let _ = (host, port);
        None
    }
}

/// A `--resolve` target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pin {
    pub ip: IpAddr,
    /// `None`: the port the proxy was asked to use.
    pub port: Option<u16>,
}

impl Pin {
    fn addr(self, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(port))
    }
}

/// `--resolve` pins: exact names, wildcards and `*`.
#[derive(Debug, Clone, Default)]
pub struct Pins {
    exact: HashMap<String, Pin>,
    wildcards: Allowlist,
    by_wildcard: HashMap<String, Pin>,
    any: Option<Pin>,
}

impl Pins {
    /// Parses `PATTERN=IP[:PORT]` flags. PATTERN is a name, `*.suffix` or `*`;
    /// IPv6 addresses with a port are bracketed: `[::1]:8443`.
    pub fn parse<'s>(flags: impl IntoIterator<Item = &'s str>) -> Result<Pins, String> {
        let mut pins = Pins::default();
        let mut wildcards = Vec::new();
        for flag in flags {
            let (pattern, target) = flag.split_once('=').ok_or_else(|| {
                format!(
                    "--resolve {}: expected PATTERN=IP[:PORT], e.g. `*.test.local=127.0.0.1:8443`",
                    quoted(flag)
                )
            })?;
            let pin = parse_target(target).ok_or_else(|| {
                format!(
                    "--resolve {}: {} is not IP or IP:PORT with a port from 1 to 65535 (bracket IPv6 with a port: `[::1]:8443`)",
                    quoted(flag),
                    quoted(target)
                )
            })?;
            if pattern == "*" {
                pins.any = Some(pin);
                continue;
            }
            let (p, _) = Pattern::parse(pattern)
                .map_err(|e| format!("--resolve {}: {e}\n  help: {}", quoted(flag), e.help()))?;
            match p {
                Pattern::Exact(name) => {
                    pins.exact.insert(name, pin);
                }
                Pattern::Wildcard(ref suffix) => {
                    pins.by_wildcard.insert(suffix.clone(), pin);
                    wildcards.push(p);
                }
            }
        }
        let (list, dropped) = Allowlist::new(wildcards);
        if let Some(d) = dropped.iter().find(|d| d.covered_by.is_some()) {
            return Err(format!(
                "--resolve: {d}; pin the narrower names exactly instead"
            ));
        }
        pins.wildcards = list;
        Ok(pins)
    }

    /// The pinned address for a lowercased name, if any.
    pub fn get(&self, name: &str, port: u16) -> Option<SocketAddr> {
        if let Some(p) = self.exact.get(name) {
            return Some(p.addr(port));
        }
        if let Some(w) = self.wildcards.lookup(name) {
            return self.by_wildcard.get(w.name()).map(|p| p.addr(port));
        }
        self.any.map(|p| p.addr(port))
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.by_wildcard.is_empty() && self.any.is_none()
    }

    /// Every target pinned (one without a port takes the upstream port).
    pub fn targets(&self) -> impl Iterator<Item = Pin> + '_ {
        self.exact
            .values()
            .chain(self.by_wildcard.values())
            .chain(&self.any)
            .copied()
    }
}

fn parse_target(s: &str) -> Option<Pin> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(Pin { ip, port: None });
    }
    let a: SocketAddr = s.parse().ok()?;
    if a.port() == 0 {
        return None;
    }
    Some(Pin {
        ip: a.ip(),
        port: Some(a.port()),
    })
}

/// Cached addresses and when they expire.
type Cached = (Arc<[IpAddr]>, Instant);

/// Pins, then `getaddrinfo` through a TTL- and size-bounded cache, keeping
/// the addresses of the lookup family (`--allow`: all of them).
#[derive(Debug)]
pub struct SystemResolver {
    pins: Pins,
    ttl: Duration,
    max_hosts: usize,
    family: LookupFamily,
    cache: Mutex<HashMap<String, Cached>>,
}

impl SystemResolver {
    pub fn new(pins: Pins) -> SystemResolver {
        SystemResolver {
            pins,
            ttl: DEFAULT_TTL,
            max_hosts: DEFAULT_MAX_HOSTS,
            family: LookupFamily::All,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_limits(mut self, ttl: Duration, max_hosts: usize) -> SystemResolver {
        self.ttl = ttl;
        self.max_hosts = max_hosts.max(1);
        self
    }

    /// Keeps the addresses Envoy's forward proxy would, for a config's
    /// `spec.dns.lookupFamily`. Pins are kept whatever their family.
    pub fn with_family(mut self, family: LookupFamily) -> SystemResolver {
        self.family = family;
        self
    }

    fn cached(&self, host: &str, now: Instant) -> Option<Arc<[IpAddr]>> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(host)
            .filter(|(_, expires)| *expires > now)
            .map(|(ips, _)| ips.clone())
    }

    fn store(&self, host: &str, ips: Arc<[IpAddr]>, now: Instant) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.max_hosts && !cache.contains_key(host) {
            cache.retain(|_, (_, expires)| *expires > now);
            if cache.len() >= self.max_hosts {
                // Evict the entry closest to expiry.
                if let Some(oldest) = cache
                    .iter()
                    .min_by_key(|(_, (_, e))| *e)
                    .map(|(k, _)| k.clone())
                {
                    cache.remove(&oldest);
                }
            }
        }
        cache.insert(host.to_string(), (ips, now + self.ttl));
    }

    /// Number of cached hosts (for tests).
    pub fn cached_hosts(&self) -> usize {
        self.cache.lock().map(|c| c.len()).unwrap_or(0)
    }
}

impl Resolver for SystemResolver {
    fn try_resolve(&self, host: &str, port: u16) -> Option<io::Result<Addrs>> {
        if let Some(a) = self.pins.get(host, port) {
            return Some(Ok(Addrs::One(a)));
        }
        let ips = self.cached(host, Instant::now())?;
        Some(Ok(Addrs::Many(ips, port)))
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Addrs> {
        if let Some(known) = self.try_resolve(host, port) {
            return known;
        }
        let now = Instant::now();
        let found: Vec<IpAddr> = tokio::net::lookup_host((host, port))
            .await?
            .map(|a| a.ip())
            .collect();
        let ips: Arc<[IpAddr]> = of_family(self.family, found).into();
        if ips.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                "no addresses of the lookup family",
            ));
        }
        self.store(host, ips.clone(), now);
        Ok(Addrs::Many(ips, port))
    }
}

/// The addresses Envoy's DNS cache hands on for `family`
/// (`envoy.config.cluster.v3.Cluster.DnsLookupFamily`): `V4_ONLY` and
/// `V6_ONLY` keep one family; `V4_PREFERRED` the IPv4 ones, or the IPv6
/// ones if there are none; `AUTO` the reverse; `ALL` both.
fn of_family(family: LookupFamily, ips: Vec<IpAddr>) -> Vec<IpAddr> {
    // In the resolver's order (RFC 6724 for getaddrinfo).
    if family == LookupFamily::All {
        return ips;
    }
    let (v4, v6): (Vec<IpAddr>, Vec<IpAddr>) = ips.into_iter().partition(IpAddr::is_ipv4);
    match family {
        LookupFamily::V4Only => v4,
        LookupFamily::V6Only => v6,
        LookupFamily::V4Preferred if !v4.is_empty() => v4,
        LookupFamily::V4Preferred => v6,
        LookupFamily::Auto if !v6.is_empty() => v6,
        LookupFamily::Auto => v4,
        LookupFamily::All => unreachable!("returned above"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_families_keep_what_envoy_keeps() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let both = || vec![v6, v4];
        use LookupFamily::*;
        assert_eq!(of_family(V4Only, both()), [v4]);
        assert_eq!(of_family(V6Only, both()), [v6]);
        assert_eq!(of_family(V4Preferred, both()), [v4]);
        assert_eq!(of_family(V4Preferred, vec![v6]), [v6]);
        assert_eq!(of_family(Auto, both()), [v6]);
        assert_eq!(of_family(Auto, vec![v4]), [v4]);
        assert_eq!(of_family(All, both()), [v6, v4], "the resolver's order");
        assert!(of_family(V4Only, vec![v6]).is_empty());
    }

    #[test]
    fn pins_match_exact_then_wildcard_then_any() {
        let pins = Pins::parse([
            "api.test.local=10.0.0.1",
            "*.test.local=10.0.0.2:8443",
            "*=[::1]:9",
        ])
        .unwrap();
        let get = |n: &str| pins.get(n, 443).map(|a| a.to_string());
        assert_eq!(get("api.test.local").as_deref(), Some("10.0.0.1:443"));
        assert_eq!(get("a.b.test.local").as_deref(), Some("10.0.0.2:8443"));
        assert_eq!(get("test.local").as_deref(), Some("[::1]:9"));
        let none = Pins::parse(["*.test.local=127.0.0.1"]).unwrap();
        assert_eq!(none.get("test.local", 443), None);
        assert_eq!(
            none.get("x.test.local", 1),
            Some("127.0.0.1:1".parse().unwrap())
        );
    }

    #[test]
    fn bad_pins_say_what_to_write() {
        for (flag, want) in [
            ("a.com", "expected PATTERN=IP[:PORT]"),
            ("a.com=host", "is not IP or IP:PORT"),
            ("a.com=127.0.0.1:0", "is not IP or IP:PORT"),
            ("a*.com=1.2.3.4", "partial wildcards"),
            ("*.a.com=1.1.1.1", ""),
        ] {
            let r = Pins::parse(["*.b.a.com=1.1.1.1", flag]);
            match want {
                "" => assert!(r.unwrap_err().contains("already covered by `*.a.com`")),
                w => assert!(r.unwrap_err().contains(w), "{flag}"),
            }
        }
    }

    #[tokio::test]
    async fn the_cache_is_bounded() {
        let r = SystemResolver::new(Pins::default()).with_limits(Duration::from_secs(60), 2);
        for host in ["localhost", "127.0.0.1", "::1"] {
            let a = r.resolve(host, 443).await.unwrap();
            assert!(a.iter().all(|a| a.ip().is_loopback()), "{a:?}");
        }
        assert_eq!(r.cached_hosts(), 2);
        let zero = SystemResolver::new(Pins::default()).with_limits(Duration::ZERO, 8);
        zero.resolve("localhost", 1).await.unwrap();
        assert!(zero.cached("localhost", Instant::now()).is_none());
    }
}
