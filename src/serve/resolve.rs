//! Where an allowed name is forwarded to: `--resolve` pins first, then the
//! system resolver behind a small cache.
//!
//! The cache behaves like Envoy's dynamic forward proxy `dns_cache_config`
//! (envoy/extensions/common/dynamic_forward_proxy/v3/dns_cache.proto and
//! source/extensions/common/dynamic_forward_proxy/dns_cache_impl.cc):
//! - each cached name has a timer that looks it up again every
//!   `dns_refresh_rate` (default 60 s; `getaddrinfo` reports no TTL), in
//!   the background: connections use the cached addresses, which a failed
//!   lookup keeps ("once a host gets an address it will stick even in the
//!   case of a subsequent resolution failure", `finishResolve`);
//! - a name unused for `host_ttl` (default 5 min) leaves the cache, when
//!   its timer fires (`onReResolve`) or when room is needed;
//! - each upstream port has a cache of its own, as `render` gives each
//!   port's forward proxy its own `dns_cache_config`;
//! - with `max_hosts` names cached (default 1024), a new name is refused:
//!   Envoy's `LoadDnsCacheEntryStatus::Overflow`, on which the SNI forward
//!   proxy closes the connection. Names already cached still work.
//!
//! Failures are not cached.
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

/// The cache's bounds, Envoy's `dns_cache_config` fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DnsLimits {
    /// `dns_refresh_rate`: how long looked-up addresses are used.
    pub refresh: Duration,
    /// `host_ttl`: how long an unused name stays cached.
    pub host_ttl: Duration,
    /// `max_hosts`: most names cached at once.
    pub max_hosts: usize,
}

impl Default for DnsLimits {
    /// Envoy's defaults.
    fn default() -> DnsLimits {
        DnsLimits {
            refresh: Duration::from_secs(60),
            host_ttl: Duration::from_secs(300),
            max_hosts: 1024,
        }
    }
}

/// The error of a lookup refused because the cache holds `max_hosts` names.
#[derive(Debug)]
pub struct CacheFull {
    pub max_hosts: usize,
}

impl std::fmt::Display for CacheFull {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the DNS cache is full (max_hosts: {})", self.max_hosts)
    }
}

impl std::error::Error for CacheFull {}

/// The `max_hosts` of a lookup refused because the cache was full.
pub fn cache_full(e: &io::Error) -> Option<usize> {
    e.get_ref()?
        .downcast_ref::<CacheFull>()
        .map(|c| c.max_hosts)
}

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

/// A cached name.
#[derive(Debug)]
struct Entry {
    ips: Arc<[IpAddr]>,
    last_used: Instant,
    /// Tells this entry's refresh timer from the one of an earlier entry
    /// for the same name, dropped while that timer slept.
    id: u64,
}

/// The next [`Entry::id`].
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The cached names of each upstream port: the gateway renders one DNS
/// cache per port, each with its own `max_hosts` and `host_ttl`.
type Cache = Arc<Mutex<HashMap<u16, HashMap<String, Entry>>>>;

fn lock(cache: &Cache) -> std::sync::MutexGuard<'_, HashMap<u16, HashMap<String, Entry>>> {
    cache.lock().unwrap_or_else(|e| e.into_inner())
}

/// Pins, then `getaddrinfo` through a cache bounded as Envoy's, keeping the
/// addresses of the lookup family (`--allow`: all of them).
#[derive(Debug)]
pub struct SystemResolver {
    pins: Pins,
    limits: DnsLimits,
    family: LookupFamily,
    cache: Cache,
    /// Refresh timers running, one per cached name.
    timers: Arc<std::sync::atomic::AtomicUsize>,
}

impl SystemResolver {
    pub fn new(pins: Pins) -> SystemResolver {
        SystemResolver {
            pins,
            limits: DnsLimits::default(),
            family: LookupFamily::All,
            cache: Cache::default(),
            timers: Arc::default(),
        }
    }

    pub fn with_limits(mut self, limits: DnsLimits) -> SystemResolver {
        self.limits = DnsLimits {
            max_hosts: limits.max_hosts.max(1),
            ..limits
        };
        self
    }

    /// Keeps the addresses Envoy's forward proxy would, for a config's
    /// `spec.dns.lookupFamily`. Pins are kept whatever their family.
    pub fn with_family(mut self, family: LookupFamily) -> SystemResolver {
        self.family = family;
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u16, HashMap<String, Entry>>> {
        lock(&self.cache)
    }

    /// The cached addresses of `host`; the name counts as used.
    fn cached(&self, host: &str, port: u16, now: Instant) -> Option<Arc<[IpAddr]>> {
        let mut cache = self.lock();
        let e = cache.get_mut(&port)?.get_mut(host)?;
        if now.duration_since(e.last_used) >= self.limits.host_ttl {
            return None;
        }
        e.last_used = now;
        Some(e.ips.clone())
    }

    /// Whether `host` may be looked up: it is cached, or the cache has
    /// room once the names unused for `host_ttl` are gone.
    fn admit(&self, host: &str, port: u16, now: Instant) -> Result<(), CacheFull> {
        let mut cache = self.lock();
        let cache = cache.entry(port).or_default();
        let host_ttl = self.limits.host_ttl;
        cache.retain(|_, e| now.duration_since(e.last_used) < host_ttl);
        if cache.contains_key(host) || cache.len() < self.limits.max_hosts {
            Ok(())
        } else {
            Err(CacheFull {
                max_hosts: self.limits.max_hosts,
            })
        }
    }

    fn store(&self, host: &str, port: u16, ips: Arc<[IpAddr]>, now: Instant) {
        let mut cache = self.lock();
        let cache = cache.entry(port).or_default();
        if let Some(e) = cache.get_mut(host) {
            e.ips = ips;
            e.last_used = now;
            return;
        }
        // Lookups of several new names at once may all have been admitted;
        // as in Envoy, where two threads can race past max_hosts, the few
        // extra are let through, but not kept.
        if cache.len() >= self.limits.max_hosts {
            return;
        }
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        cache.insert(
            host.to_string(),
            Entry {
                ips,
                last_used: now,
                id,
            },
        );
        // The name's refresh timer, on the runtime (unit tests of the cache
        // alone run without one).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (cache, host, timers) = (self.cache.clone(), host.to_string(), self.timers.clone());
            let (limits, family) = (self.limits, self.family);
            timers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.spawn(async move {
                refresh_timer(cache, host, port, id, limits, family).await;
                timers.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            });
        }
    }

    /// Number of cached hosts (for tests).
    pub fn cached_hosts(&self) -> usize {
        self.lock().values().map(HashMap::len).sum()
    }
}

impl Resolver for SystemResolver {
    fn try_resolve(&self, host: &str, port: u16) -> Option<io::Result<Addrs>> {
        if let Some(a) = self.pins.get(host, port) {
            return Some(Ok(Addrs::One(a)));
        }
        let ips = self.cached(host, port, Instant::now())?;
        Some(Ok(Addrs::Many(ips, port)))
    }

    async fn resolve(&self, host: &str, port: u16) -> io::Result<Addrs> {
        if let Some(known) = self.try_resolve(host, port) {
            return known;
        }
        let now = Instant::now();
        self.admit(host, port, now).map_err(io::Error::other)?;
        let ips = lookup(host, self.family).await?;
        self.store(host, port, ips.clone(), now);
        Ok(Addrs::Many(ips, port))
    }
}

/// Envoy's per-host refresh timer (`DnsCacheImpl::onReResolve`): every
/// refresh interval, drops the name if it went unused for `host_ttl`, else
/// looks it up again, keeping the old addresses when that fails. Ends with
/// the name.
async fn refresh_timer(
    cache: Cache,
    host: String,
    port: u16,
    id: u64,
    limits: DnsLimits,
    family: LookupFamily,
) {
    loop {
        tokio::time::sleep(limits.refresh).await;
        {
            let mut c = lock(&cache);
            let Some(names) = c.get_mut(&port) else {
                return;
            };
            match names.get(&host) {
                None => return,
                Some(e) if e.id != id => return,
                Some(e) if e.last_used.elapsed() >= limits.host_ttl => {
                    names.remove(&host);
                    return;
                }
                Some(_) => {}
            }
        }
        if let Ok(ips) = lookup(&host, family).await {
            match lock(&cache).get_mut(&port).and_then(|n| n.get_mut(&host)) {
                Some(e) if e.id == id => e.ips = ips,
                _ => return,
            }
        }
    }
}

/// Looks `host` up, keeping the addresses of the lookup family.
async fn lookup(host: &str, family: LookupFamily) -> io::Result<Arc<[IpAddr]>> {
    let found: Vec<IpAddr> = tokio::net::lookup_host((host, 0))
        .await?
        .map(|a| a.ip())
        .collect();
    let ips: Arc<[IpAddr]> = of_family(family, found).into();
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            "no addresses of the lookup family",
        ));
    }
    Ok(ips)
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

    /// A resolver with these limits, in seconds.
    fn resolver(refresh: u64, host_ttl: u64, max_hosts: usize) -> SystemResolver {
        resolver_ms(refresh * 1000, host_ttl * 1000, max_hosts)
    }

    /// A resolver with these limits, in milliseconds.
    fn resolver_ms(refresh: u64, host_ttl: u64, max_hosts: usize) -> SystemResolver {
        SystemResolver::new(Pins::default()).with_limits(DnsLimits {
            refresh: Duration::from_millis(refresh),
            host_ttl: Duration::from_millis(host_ttl),
            max_hosts,
        })
    }

    fn ips() -> Arc<[IpAddr]> {
        vec![IpAddr::from([127, 0, 0, 1])].into()
    }

    /// Envoy's `max_hosts`: a full cache refuses new names, keeps serving
    /// the cached ones, and takes new names again once one has gone unused
    /// for `host_ttl`. Used names stay, even past their refresh.
    #[test]
    fn a_full_cache_refuses_new_names_until_one_goes_unused() {
        let r = resolver(250, 300, 2);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        for host in ["a.test", "b.test"] {
            assert!(r.admit(host, 443, t0).is_ok());
            r.store(host, 443, ips(), t0);
        }
        let full = r.admit("c.test", 443, at(1)).unwrap_err();
        assert_eq!(full.max_hosts, 2);
        assert!(
            r.admit("a.test", 443, at(1)).is_ok(),
            "a cached name is looked up again"
        );
        assert!(r.cached("a.test", 443, at(1)).is_some());
        // a.test used at 200 s; b.test last used at 0 s.
        assert!(r.cached("a.test", 443, at(200)).is_some());
        assert!(r.admit("c.test", 443, at(299)).is_err());
        assert!(
            r.admit("c.test", 443, at(300)).is_ok(),
            "b.test unused for host_ttl"
        );
        assert_eq!(r.cached_hosts(), 1);
        r.store("c.test", 443, ips(), at(300));
        assert!(r.admit("d.test", 443, at(301)).is_err());
    }

    #[test]
    fn a_lookup_admitted_in_a_race_is_not_kept_past_max_hosts() {
        let r = resolver(60, 300, 1);
        let t0 = Instant::now();
        assert!(r.admit("a.test", 443, t0).is_ok() && r.admit("b.test", 443, t0).is_ok());
        r.store("a.test", 443, ips(), t0);
        r.store("b.test", 443, ips(), t0);
        assert_eq!(r.cached_hosts(), 1);
    }

    /// The gateway renders one DNS cache per upstream port: a name counts
    /// against each port's `max_hosts` on its own, and a port whose cache is
    /// full leaves the others' room.
    #[test]
    fn each_port_has_a_cache_of_its_own() {
        let r = resolver(60, 300, 1);
        let t0 = Instant::now();
        assert!(r.admit("a.test", 443, t0).is_ok());
        r.store("a.test", 443, ips(), t0);
        assert!(r.admit("b.test", 443, t0).is_err());
        assert!(r.cached("a.test", 8443, t0).is_none());
        assert!(r.admit("b.test", 8443, t0).is_ok());
        r.store("b.test", 8443, ips(), t0);
        assert_eq!(r.cached_hosts(), 2);
        assert!(r.cached("b.test", 443, t0).is_none());
    }

    #[tokio::test]
    async fn lookups_go_through_the_cache() {
        let r = resolver(60, 300, 2);
        for host in ["localhost", "127.0.0.1"] {
            let a = r.resolve(host, 443).await.unwrap();
            assert!(a.iter().all(|a| a.ip().is_loopback()), "{a:?}");
        }
        assert_eq!(r.cached_hosts(), 2);
        let e = r.resolve("::1", 443).await.unwrap_err();
        assert_eq!(cache_full(&e), Some(2), "{e}");
        assert!(r.resolve("localhost", 443).await.is_ok());
    }

    /// Each cached name's timer looks it up again every refresh interval,
    /// whether or not it is used, and drops it once unused for `host_ttl`.
    #[tokio::test]
    async fn a_timer_refreshes_each_name_and_drops_it_when_unused() {
        let r = resolver_ms(50, 400, 8);
        r.resolve("localhost", 443).await.unwrap();
        let stale: Arc<[IpAddr]> = vec![IpAddr::from([10, 0, 0, 1])].into();
        r.lock()
            .get_mut(&443)
            .unwrap()
            .get_mut("localhost")
            .unwrap()
            .ips = stale.clone();
        assert_eq!(
            r.cached("localhost", 443, Instant::now()),
            Some(stale.clone())
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.cached("localhost", 443, Instant::now()) == Some(stale.clone()) {
            assert!(Instant::now() < deadline, "not refreshed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let a = r.try_resolve("localhost", 443).unwrap().unwrap();
        assert!(a.iter().all(|a| a.ip().is_loopback()), "{a:?}");
        // Unused from now on: gone after host_ttl, with no other call.
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(r.cached_hosts(), 0);
    }

    /// A name dropped and cached again while its old timer sleeps gets one
    /// timer, not two: the old one sees a newer entry and ends.
    #[tokio::test]
    async fn a_name_cached_again_has_one_timer() {
        let r = resolver_ms(100, 300_000, 8);
        r.resolve("localhost", 443).await.unwrap();
        let first = r.lock()[&443]["localhost"].id;
        r.lock().get_mut(&443).unwrap().remove("localhost");
        r.resolve("localhost", 443).await.unwrap();
        let second = r.lock()[&443]["localhost"].id;
        assert_ne!(first, second);
        // Both timers have fired at least once: the first has ended.
        tokio::time::sleep(Duration::from_millis(250)).await;
        assert_eq!(r.lock()[&443]["localhost"].id, second);
        assert_eq!(r.timers.load(std::sync::atomic::Ordering::Relaxed), 1);
    }
}
