//! The `EgressGateway` config file: types, defaults, loading and validation.
//!
//! The file is a KRM-style resource, so the same file serves `render`, `lint
//! --config`, `serve -c`, the Kustomize plugin and the kpt function. Loading
//! gives a [`Config`]: every default filled in, every name checked, and the
//! domains turned into an [`Allowlist`]. Errors carry `file:line:col`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

use crate::domain::{Allowlist, Pattern};
use crate::escape::{self, quoted};
use crate::schema::check_dns_label;

pub const API_VERSION: &str = "egressgen.io/v1alpha1";
pub const KIND: &str = "EgressGateway";

/// The whole config file.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[schemars(
    title = "EgressGateway",
    description = "egressgen config: one SNI allowlist for an Istio egress gateway"
)]
pub struct File {
    /// Must be `egressgen.io/v1alpha1`.
    #[schemars(with = "String", extend("const" = "egressgen.io/v1alpha1"))]
    pub api_version: Spanned<String>,
    /// Must be `EgressGateway`.
    #[schemars(with = "String", extend("const" = "EgressGateway"))]
    pub kind: Spanned<String>,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Base name for the generated ServiceEntry, VirtualService and subset.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Ignored; present so Kustomize and kpt can round-trip the object.
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Spec {
    /// DNS names and `*.` wildcards the gateway may reach. Required.
    #[schemars(with = "Vec<String>", length(min = 1))]
    pub domains: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    pub istio: IstioSpec,
    #[serde(default)]
    pub gateway: GatewaySpec,
    /// Namespace of the Gateway, VirtualServices, DestinationRule and
    /// ServiceEntries. `istio-system` (the root namespace) exports them to
    /// the whole mesh.
    #[serde(default = "default_config_namespace")]
    #[schemars(with = "String")]
    pub config_namespace: Spanned<String>,
    /// TLS port of the remote destinations (the forward proxy's `port_value`).
    /// Default 443. Same as `ports: [N]`; give one or the other.
    #[serde(default)]
    pub upstream_port: Option<Port>,
    /// TLS ports of the remote destinations, e.g. `[443, 8443]`. Each port
    /// gets its own gateway port, Service port, internal listener and routes.
    #[serde(default)]
    #[schemars(with = "Option<Vec<Port>>")]
    pub ports: Option<Spanned<Vec<Port>>>,
    #[serde(default)]
    pub dns: DnsSpec,
    /// Access logging on the egress gateway (Telemetry + internal listener).
    #[serde(default = "yes")]
    pub access_log: bool,
    /// Lock-down: only these mesh clients may use the gateway (an ALLOW
    /// AuthorizationPolicy on mTLS principals). Off when absent.
    #[serde(default)]
    #[schemars(with = "Option<AllowedClientsSpec>")]
    pub allowed_clients: Option<Spanned<AllowedClientsSpec>>,
    /// Lock-down: NetworkPolicies that stop these namespaces from reaching
    /// the internet except through the gateway. Off when absent.
    #[serde(default)]
    pub network_policy: Option<NetworkPolicySpec>,
}

/// Who may send traffic through the gateway. Rendered as an ALLOW
/// AuthorizationPolicy on the gateway, so every other client is refused.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AllowedClientsSpec {
    /// Namespaces whose workloads may use the gateway.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub namespaces: Vec<Spanned<String>>,
    /// Service accounts, as `namespace/name`, that may use the gateway.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub service_accounts: Vec<Spanned<String>>,
    /// Trust domain of the mesh, for the principals. Default `cluster.local`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub trust_domain: Option<Spanned<String>>,
}

/// NetworkPolicies for application namespaces: egress only to the gateway,
/// DNS and (by default) other pods in the cluster.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// Application namespaces to lock down, one NetworkPolicy each.
    #[schemars(with = "Vec<String>")]
    pub namespaces: Spanned<Vec<Spanned<String>>>,
    /// Keep pods in every namespace of the cluster reachable. Default true;
    /// when false only the gateway, DNS, istiod and the namespace's own pods are.
    #[serde(default = "yes")]
    pub allow_in_cluster: bool,
    /// Extra destinations outside the pod network, e.g. the API server or a
    /// node-local DNS cache, as CIDRs.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub allow_cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IstioSpec {
    /// Istio minor version, `X.Y`. Picks the API versions. Default 1.22.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub version: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
pub struct GatewaySpec {
    /// Name of the Service, Gateway and DestinationRule.
    #[schemars(with = "String")]
    pub name: Spanned<String>,
    /// Namespace the gateway pods run in.
    #[schemars(with = "String")]
    pub namespace: Spanned<String>,
    /// Name of the Deployment.
    #[schemars(with = "String")]
    pub deployment: Spanned<String>,
    /// Dedicated ServiceAccount of the gateway pods.
    #[schemars(with = "String")]
    pub service_account: Spanned<String>,
    /// Pod labels; the Service, Gateway, EnvoyFilter and Telemetry select on them.
    #[schemars(with = "BTreeMap<String, String>")]
    pub labels: Spanned<BTreeMap<String, String>>,
    /// Port of the Service that sidecars send mTLS traffic to.
    pub service_port: Port,
    /// Container port the gateway listens on (the Gateway server port).
    pub target_port: Port,
    /// Number of gateway pods. Default 2: every outbound connection of the
    /// mesh passes through them. Ignored when `autoscaling` is set.
    #[schemars(with = "u32")]
    pub replicas: Spanned<u32>,
    pub resources: Resources,
    /// Lets the pods use the `anyuid` SCC on OpenShift.
    pub openshift: bool,
    /// A PodDisruptionBudget keeping at least one pod up during node drains.
    /// Default true; only rendered with 2 or more replicas.
    pub pod_disruption_budget: bool,
    /// Spread pods across zones and nodes (soft `topologySpreadConstraints`).
    /// Default true.
    pub topology_spread: bool,
    /// A HorizontalPodAutoscaler on CPU. Off when absent.
    #[schemars(with = "Option<AutoscalingSpec>")]
    pub autoscaling: Option<Spanned<AutoscalingSpec>>,
}

/// HorizontalPodAutoscaler settings.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Default 2.
    #[serde(default = "default_min_replicas")]
    #[schemars(with = "u32")]
    pub min_replicas: Spanned<u32>,
    #[schemars(with = "u32")]
    pub max_replicas: Spanned<u32>,
    /// Average CPU use, in percent of the CPU request. Default 80.
    #[serde(default = "default_cpu_target")]
    #[schemars(with = "u32")]
    pub target_cpu_utilization: Spanned<u32>,
}

impl Default for GatewaySpec {
    fn default() -> Self {
        GatewaySpec {
            name: unspanned("egressgateway"),
            namespace: unspanned("istio-egress"),
            deployment: unspanned("istio-egressgateway"),
            service_account: unspanned("istio-egressgateway"),
            labels: unspanned(BTreeMap::from([(
                "istio".to_string(),
                "egressgateway".to_string(),
            )])),
            service_port: Port(443),
            target_port: Port(8443),
            replicas: unspanned(2u32),
            resources: Resources::default(),
            openshift: true,
            pod_disruption_budget: true,
            topology_spread: true,
            autoscaling: None,
        }
    }
}

/// Container resources, as in a Kubernetes pod spec.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Quantity>")]
    pub requests: BTreeMap<String, Spanned<Quantity>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, Quantity>")]
    pub limits: BTreeMap<String, Spanned<Quantity>>,
}

impl Default for Resources {
    /// Istio's own gateway defaults.
    fn default() -> Self {
        let q = |k: &str, v: &str| (k.to_string(), unspanned(Quantity(v.to_string())));
        Resources {
            requests: BTreeMap::from([q("cpu", "100m"), q("memory", "128Mi")]),
            limits: BTreeMap::from([q("cpu", "2000m"), q("memory", "1024Mi")]),
        }
    }
}

/// A TCP port, 1-65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[schemars(transparent)]
pub struct Port(#[schemars(range(min = 1, max = 65535))] pub u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number from 1 to 65535")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Port, E> {
                match u16::try_from(v) {
                    Ok(p) if p > 0 => Ok(Port(p)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Port, E> {
                Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

/// A Kubernetes quantity such as `100m`, `1Gi` or `2`.
#[derive(Debug, Clone, Serialize, JsonSchema, PartialEq)]
#[schemars(with = "String")]
pub struct Quantity(pub String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a Kubernetes quantity such as `100m` or `1Gi`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Quantity, E> {
                if is_quantity(v) {
                    Ok(Quantity(v.to_string()))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                if v.is_finite() && v >= 0.0 {
                    Ok(Quantity(v.to_string()))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Quantity {
    /// The value in nano-units (`1` is 10^9, `1Ki` is 1024 x 10^9), rounded
    /// up as Kubernetes rounds to its smallest unit; `None` if it does not
    /// fit in a u128 or is not a quantity. Exact, so `0.1` equals `100m`.
    pub fn nanos(&self) -> Option<u128> {
        let s = self.0.strip_prefix('+').unwrap_or(&self.0);
        let end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(end);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        let mut mantissa: u128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(u128::from(b - b'0'))?;
        }
        let (exp10, exp2): (i64, u32) = match suffix {
            "" => (0, 0),
            "n" => (-9, 0),
            "u" => (-6, 0),
            "m" => (-3, 0),
            "k" => (3, 0),
            "M" => (6, 0),
            "G" => (9, 0),
            "T" => (12, 0),
            "P" => (15, 0),
            "E" => (18, 0),
            "Ki" => (0, 10),
            "Mi" => (0, 20),
            "Gi" => (0, 30),
            "Ti" => (0, 40),
            "Pi" => (0, 50),
            "Ei" => (0, 60),
            e => (e.get(1..)?.parse().ok()?, 0),
        };
        let value = mantissa.checked_mul(1u128.checked_shl(exp2)?)?;
        // The exponent may have any number of digits: saturate, and let the
        // range checks below decide.
        let scale = exp10
            .saturating_add(9)
            .saturating_sub(i64::try_from(frac.len()).unwrap_or(i64::MAX));
        if scale >= 0 {
            value.checked_mul(10u128.checked_pow(u32::try_from(scale).ok()?)?)
        } else {
            // A divisor beyond u128's range makes any value round up to 1.
            let div = u32::try_from(scale.unsigned_abs())
                .ok()
                .and_then(|e| 10u128.checked_pow(e));
            Some(div.map_or(u128::from(value > 0), |d| value.div_ceil(d)))
        }
    }
}

/// A non-negative Kubernetes quantity (`k8s.io/apimachinery` resource.Quantity):
/// a number (`1`, `0.5`, `.5`, `1.`) followed by nothing, a binary suffix
/// (`Ki` .. `Ei`), a decimal suffix (`n u m k M G T P E`) or an exponent
/// (`e3`, `E-2`).
pub fn is_quantity(s: &str) -> bool {
    let s = s.strip_prefix('+').unwrap_or(s);
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(digits_end);
    let dots = number.matches('.').count();
    if number.is_empty() || number == "." || dots > 1 {
        return false;
    }
    match suffix {
        "" | "n" | "u" | "m" | "k" | "M" | "G" | "T" | "P" | "E" => true,
        "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => true,
        _ => {
            let Some(exp) = suffix.strip_prefix(['e', 'E']) else {
                return false;
            };
            let exp = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            !exp.is_empty() && exp.bytes().all(|b| b.is_ascii_digit())
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSpec {
    /// Envoy `dns_lookup_family` of the forward proxy's DNS cache.
    #[serde(default)]
    pub lookup_family: LookupFamily,
    /// How often cached names are resolved again (`dns_refresh_rate`), e.g.
    /// `30s`. Envoy's default: 60s.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub refresh_rate: Option<Spanned<String>>,
    /// How long an unused name stays cached (`host_ttl`), e.g. `10m`.
    /// Envoy's default: 5m.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host_ttl: Option<Spanned<String>>,
    /// Most names cached at once (`max_hosts`); connections to further
    /// names are refused. Envoy's default: 1024.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_hosts: Option<Spanned<u32>>,
}

/// Envoy's `envoy.config.cluster.v3.Cluster.DnsLookupFamily`.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LookupFamily {
    Auto,
    #[default]
    #[serde(rename = "V4_ONLY")]
    V4Only,
    #[serde(rename = "V6_ONLY")]
    V6Only,
    #[serde(rename = "V4_PREFERRED")]
    V4Preferred,
    All,
}

fn unspanned<T>(v: impl Into<T>) -> Spanned<T> {
    Spanned::new(v.into(), Location::UNKNOWN, Location::UNKNOWN)
}
fn default_config_namespace() -> Spanned<String> {
    unspanned("istio-system")
}
fn default_upstream_port() -> Port {
    Port(443)
}
fn default_min_replicas() -> Spanned<u32> {
    unspanned(2u32)
}
fn default_cpu_target() -> Spanned<u32> {
    unspanned(80u32)
}
fn yes() -> bool {
    true
}

/// An Istio minor version, which picks the API versions we emit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct IstioVersion {
    pub major: u32,
    pub minor: u32,
}

impl IstioVersion {
    /// The default: the first release that serves `networking.istio.io/v1`.
    pub const DEFAULT: IstioVersion = IstioVersion {
        major: 1,
        minor: 22,
    };
    /// Oldest supported: Istio 1.16 added the internal-listener bootstrap
    /// extension that `envoy_internal_address` needs.
    pub const OLDEST: IstioVersion = IstioVersion {
        major: 1,
        minor: 16,
    };

    /// Parses `X.Y` (a patch `X.Y.Z` is accepted and ignored).
    pub fn parse(s: &str) -> Result<IstioVersion, String> {
        let bad = || {
            format!(
                "Istio version {} is not `X.Y` (for example `1.22`)",
                quoted(s)
            )
        };
        let mut parts = s.trim().trim_start_matches('v').split('.');
        let major = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let minor = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        if let Some(patch) = parts.next() {
            patch.parse::<u32>().map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        let v = IstioVersion { major, minor };
        if v < IstioVersion::OLDEST {
            return Err(format!(
                "Istio {v} is not supported: the SNI forwarder needs the internal-listener bootstrap extension, added in Istio 1.16"
            ));
        }
        Ok(v)
    }

    /// `networking.istio.io/v1` from 1.22, else `v1alpha3`.
    pub fn networking_api(self) -> &'static str {
        if self >= IstioVersion::DEFAULT {
            "networking.istio.io/v1"
        } else {
            "networking.istio.io/v1alpha3"
        }
    }

    /// `telemetry.istio.io/v1` from 1.22, else `v1alpha1`.
    pub fn telemetry_api(self) -> &'static str {
        if self >= IstioVersion::DEFAULT {
            "telemetry.istio.io/v1"
        } else {
            "telemetry.istio.io/v1alpha1"
        }
    }

    /// `security.istio.io/v1` from 1.22, else `v1beta1`.
    pub fn security_api(self) -> &'static str {
        if self >= IstioVersion::DEFAULT {
            "security.istio.io/v1"
        } else {
            "security.istio.io/v1beta1"
        }
    }

    /// EnvoyFilter has only ever been served as `v1alpha3`.
    pub fn envoy_filter_api(self) -> &'static str {
        "networking.istio.io/v1alpha3"
    }
}

impl fmt::Display for IstioVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// A validated config: what `render`, `lint` and `serve` consume.
#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub allowlist: Allowlist,
    pub istio: IstioVersion,
    pub gateway: Gateway,
    pub config_namespace: String,
    /// The first of `ports`.
    pub upstream_port: u16,
    /// Every upstream port with the gateway ports that carry it; never empty.
    pub ports: Vec<PortMap>,
    pub lookup_family: LookupFamily,
    pub dns_cache: DnsCache,
    pub access_log: bool,
    pub allowed_clients: Option<AllowedClients>,
    pub network_policy: Option<NetworkPolicy>,
}

/// One upstream port and the gateway ports dedicated to it.
///
/// The forward proxy's `port_value` is fixed per listener, so each upstream
/// port needs its own path: sidecars send port-P traffic to Service port
/// `service`, which targets container port `target`, where a Gateway server
/// hands it to an internal listener that forwards to port P.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortMap {
    pub upstream: u16,
    pub service: u16,
    pub target: u16,
}

impl PortMap {
    /// Suffix that keeps names of the second and later ports apart
    /// (`""`, then `"-8443"`); the first port keeps the historical names.
    pub fn suffix(&self, index: usize) -> String {
        if index == 0 {
            String::new()
        } else {
            format!("-{}", self.upstream)
        }
    }
}

/// DNS cache settings of the forward proxy; `None` leaves Envoy's default.
/// Durations are in protobuf JSON form (`"60s"`, `"0.5s"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DnsCache {
    pub refresh_rate: Option<String>,
    pub host_ttl: Option<String>,
    pub max_hosts: Option<u32>,
    /// `refresh_rate` as a duration, for `serve`'s cache.
    #[serde(skip)]
    pub refresh: Option<std::time::Duration>,
    /// `host_ttl` as a duration, for `serve`'s cache.
    #[serde(skip)]
    pub host_expiry: Option<std::time::Duration>,
}

/// Validated `allowedClients`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AllowedClients {
    pub namespaces: Vec<String>,
    /// SPIFFE-style principals, `TRUST_DOMAIN/ns/NS/sa/NAME`.
    pub principals: Vec<String>,
}

/// Validated `networkPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetworkPolicy {
    pub namespaces: Vec<String>,
    pub allow_in_cluster: bool,
    pub allow_cidrs: Vec<String>,
}

/// The gateway's validated settings.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub name: String,
    pub namespace: String,
    pub deployment: String,
    pub service_account: String,
    pub labels: BTreeMap<String, String>,
    pub service_port: u16,
    pub target_port: u16,
    pub replicas: u32,
    pub resources: Resources,
    pub openshift: bool,
    pub pod_disruption_budget: bool,
    pub topology_spread: bool,
    pub autoscaling: Option<Autoscaling>,
}

/// Validated `autoscaling`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Autoscaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub target_cpu_utilization: u32,
}

/// Something the user should know, though it is not an error: a normalised
/// or dropped domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub at: Option<Pos>,
    pub message: String,
}

/// A 1-based position in a named source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pos {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: note: {}", self.message),
            None => write!(f, "note: {}", self.message),
        }
    }
}

/// A config problem: where, what, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    pub at: Option<Pos>,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Error {
    /// `file:line:col: error: message` and a `help:` line, like rustc.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(at) = &self.at {
            write!(f, "{at}: ")?;
        }
        write!(f, "error: {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

/// Options given on the command line, which override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub istio_version: Option<String>,
}

/// Reads and validates a config file. `name` is how the file is shown in
/// messages.
pub fn load(path: &Path, overrides: &Overrides) -> Result<(Config, Vec<Note>), Error> {
    // Escaped once here: the name starts every message's `file:line:col`.
    let name = crate::escape::path(path);
    let text = std::fs::read(path).map_err(|e| Error {
        at: None,
        message: format!("cannot read config `{name}`: {e}"),
        help: Some("pass the path of an EgressGateway file with -c".into()),
    })?;
    let text = String::from_utf8(text).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line_start = valid.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        Error {
            at: Some(Pos {
                file: name.clone(),
                line: 1 + valid.iter().filter(|&&b| b == b'\n').count() as u64,
                column: 1 + String::from_utf8_lossy(&valid[line_start..])
                    .chars()
                    .count() as u64,
            }),
            message: format!("the config is not UTF-8 (byte {} is invalid)", valid.len()),
            help: Some("save the file as UTF-8".into()),
        }
    })?;
    parse(&name, &text, overrides)
}

/// Parses and validates config text.
pub fn parse(name: &str, text: &str, overrides: &Overrides) -> Result<(Config, Vec<Note>), Error> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| yaml_error(name, &e))?;
    validate(name, file, overrides)
}

/// A config from `--domain` flags alone, with every default.
pub fn from_domains(
    domains: &[String],
    overrides: &Overrides,
) -> Result<(Config, Vec<Note>), Error> {
    let file = File {
        api_version: unspanned(API_VERSION),
        kind: unspanned(KIND),
        metadata: Metadata {
            name: unspanned("wildcard"),
            namespace: None,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
        },
        spec: Spec {
            domains: unspanned(
                domains
                    .iter()
                    .map(|d| unspanned(d.as_str()))
                    .collect::<Vec<_>>(),
            ),
            istio: IstioSpec::default(),
            gateway: GatewaySpec::default(),
            config_namespace: default_config_namespace(),
            upstream_port: None,
            ports: None,
            dns: DnsSpec::default(),
            access_log: true,
            allowed_clients: None,
            network_policy: None,
        },
    };
    validate("--domain", file, overrides)
}

fn pos(file: &str, loc: &Location) -> Option<Pos> {
    (*loc != Location::UNKNOWN && loc.line() > 0).then(|| Pos {
        file: file.to_string(),
        line: loc.line(),
        column: loc.column(),
    })
}

fn yaml_error(name: &str, e: &serde_saphyr::Error) -> Error {
    let plain = e.without_snippet();
    let mut opts = serde_saphyr::RenderOptions::default();
    opts.snippets = serde_saphyr::SnippetMode::Off;
    let mut message = plain.render_with_options(opts);
    // The plain rendering ends with " at line L column C"; we print the
    // position up front instead.
    if let Some(i) = message.rfind(" at line ") {
        message.truncate(i);
    }
    // Advice meant for the library's callers, not for users.
    message = message
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace(
            "; use from_str_multiple or from_str_multiple_with_options",
            "; a config file holds exactly one EgressGateway document",
        );
    // serde's words for a value of the wrong shape, in the user's.
    if let serde_saphyr::Error::Unexpected { expected, .. } = plain {
        let what = match *expected {
            "mapping start" => Some("a mapping (`key: value` lines)"),
            "sequence start" => Some("a list"),
            "string scalar" => Some("a string"),
            _ => None,
        };
        if let Some(what) = what {
            message = format!("expected {what} here");
        }
    }
    const FIELDS: &str =
        "`egressgen schema` prints every field and its type, and README.md documents them";
    let help = if message.contains("unknown field") {
        Some(format!("check the spelling; {FIELDS}"))
    } else if matches!(plain, serde_saphyr::Error::Eof { .. }) {
        Some(format!(
            "a config holds `apiVersion: {API_VERSION}`, `kind: EgressGateway`, metadata.name and \
             spec.domains (see examples/egress.yaml)"
        ))
    } else if matches!(plain, serde_saphyr::Error::MultipleDocuments { .. }) {
        Some("keep only the EgressGateway document in this file".into())
    } else if message.starts_with("duplicate mapping key") {
        Some("remove one of the two: a key appears once in a mapping".into())
    } else if matches!(plain, serde_saphyr::Error::ExternalMessage { .. }) {
        // The YAML parser's own errors: the text is not YAML.
        Some(
            "fix the YAML here; quote a value that holds `: ` or ` #`, or starts with `*`, `&`, \
             `!`, `[` or `{`"
                .into(),
        )
    } else {
        Some(FIELDS.to_string())
    };
    Error {
        at: e.location().and_then(|l| pos(name, &l)),
        message: format!("invalid config: {message}"),
        help,
    }
}

fn validate(name: &str, file: File, overrides: &Overrides) -> Result<(Config, Vec<Note>), Error> {
    let err = |loc: &Location, message: String, help: &str| Error {
        at: pos(name, loc),
        message,
        help: (!help.is_empty()).then(|| help.to_string()),
    };
    if file.api_version.value != API_VERSION {
        return Err(err(
            &file.api_version.referenced,
            format!(
                "apiVersion is {}, expected `{API_VERSION}`",
                quoted(&file.api_version.value)
            ),
            &format!("set `apiVersion: {API_VERSION}`"),
        ));
    }
    if file.kind.value != KIND {
        return Err(err(
            &file.kind.referenced,
            format!("kind is {}, expected `{KIND}`", quoted(&file.kind.value)),
            &format!("set `kind: {KIND}`"),
        ));
    }
    let spec = file.spec;

    // Names that become Kubernetes object names or namespaces.
    let label_checks = [
        ("metadata.name", &file.metadata.name),
        ("spec.gateway.name", &spec.gateway.name),
        ("spec.gateway.namespace", &spec.gateway.namespace),
        ("spec.gateway.deployment", &spec.gateway.deployment),
        ("spec.gateway.serviceAccount", &spec.gateway.service_account),
        ("spec.configNamespace", &spec.config_namespace),
    ];
    for (field, v) in label_checks {
        if let Err(why) = check_dns_label(&v.value) {
            return Err(err(
                &v.referenced,
                format!("{field} {} {why}", quoted(&v.value)),
                "Kubernetes names are lowercase a-z, 0-9 and `-`, at most 63 characters",
            ));
        }
    }
    // The gateway's Service takes this name, and a Service name is a
    // DNS-1035 label (Kubernetes `ValidateService`).
    let gw = &spec.gateway.name;
    if !gw.value.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(err(
            &gw.referenced,
            format!(
                "spec.gateway.name {} does not start with a letter; it names the gateway's \
                 Service, and the API server refuses a Service name that does not",
                quoted(&gw.value)
            ),
            "start the name with a letter a-z",
        ));
    }
    if spec.gateway.labels.value.is_empty() {
        return Err(err(
            &spec.gateway.labels.referenced,
            "spec.gateway.labels is empty; the gateway must be selected by at least one label"
                .into(),
            "keep the default `istio: egressgateway` unless you run several gateways",
        ));
    }
    for (k, v) in &spec.gateway.labels.value {
        if let Err(why) = check_label(k, v) {
            return Err(err(
                &spec.gateway.labels.referenced,
                why,
                "label keys and values are at most 63 letters, digits, `-`, `_` and `.`, starting \
                 and ending with a letter or digit; a key may have a DNS prefix and `/`, a value \
                 may be empty",
            ));
        }
        if k == INJECT_LABEL {
            return Err(err(
                &spec.gateway.labels.referenced,
                format!(
                    "spec.gateway.labels sets {}, which egressgen sets to \"true\" on the \
                     gateway pods: Istio injects the gateway's proxy through it",
                    quoted(k)
                ),
                "remove it from spec.gateway.labels",
            ));
        }
    }
    let ports = port_maps(name, &spec)?;
    let dns_cache = dns_cache(name, &spec.dns)?;
    requests_within_limits(name, &spec.gateway.resources)?;
    let autoscaling = autoscaling(name, &spec.gateway)?;
    let allowed_clients = spec
        .allowed_clients
        .as_ref()
        .map(|c| allowed_clients(name, c))
        .transpose()?;
    let network_policy = spec
        .network_policy
        .as_ref()
        .map(|n| network_policy(name, n, &spec.gateway.namespace.value))
        .transpose()?;

    let version_src = match (&overrides.istio_version, &spec.istio.version) {
        (Some(v), _) => (v.clone(), None),
        (None, Some(v)) => (v.value.clone(), Some(v.referenced)),
        (None, None) => (IstioVersion::DEFAULT.to_string(), None),
    };
    let istio = IstioVersion::parse(&version_src.0).map_err(|message| Error {
        at: version_src.1.and_then(|l| pos(name, &l)),
        message,
        help: Some("use Istio 1.16 or newer; see README.md for the API versions".into()),
    })?;

    let (allowlist, notes) = validate_domains(name, &spec.domains)?;

    let g = spec.gateway;
    Ok((
        Config {
            name: file.metadata.name.value,
            allowlist,
            istio,
            gateway: Gateway {
                name: g.name.value,
                namespace: g.namespace.value,
                deployment: g.deployment.value,
                service_account: g.service_account.value,
                labels: g.labels.value,
                service_port: g.service_port.0,
                target_port: g.target_port.0,
                replicas: g.replicas.value,
                resources: g.resources,
                openshift: g.openshift,
                pod_disruption_budget: g.pod_disruption_budget,
                topology_spread: g.topology_spread,
                autoscaling,
            },
            config_namespace: spec.config_namespace.value,
            upstream_port: ports[0].upstream,
            ports,
            lookup_family: spec.dns.lookup_family,
            dns_cache,
            access_log: spec.access_log,
            allowed_clients,
            network_policy,
        },
        notes,
    ))
}

/// The config's domains as the allowlist, each parsed once by
/// [`Pattern::parse`]; a normalised, duplicate or covered entry becomes a
/// note at its line.
fn validate_domains(
    name: &str,
    domains: &Spanned<Vec<Spanned<String>>>,
) -> Result<(Allowlist, Vec<Note>), Error> {
    if domains.value.is_empty() {
        return Err(Error {
            at: pos(name, &domains.referenced),
            message: "spec.domains is empty; an egress allowlist needs at least one domain".into(),
            help: Some("add entries such as `*.example.com` or `api.example.com`".into()),
        });
    }
    let mut notes = Vec::new();
    let mut patterns = Vec::with_capacity(domains.value.len());
    // Where each pattern occurs, in order, to point drops at their lines.
    let mut occurrences: HashMap<Pattern, Vec<Location>> = HashMap::new();
    for d in &domains.value {
        let (p, normalised) = Pattern::parse(&d.value).map_err(|e| Error {
            at: pos(name, &d.referenced),
            message: format!("invalid domain {}: {e}", quoted(&d.value)),
            help: Some(e.help().to_string()),
        })?;
        if !normalised.is_empty() {
            let why: Vec<String> = normalised.iter().map(|n| n.to_string()).collect();
            notes.push(Note {
                at: pos(name, &d.referenced),
                message: format!(
                    "domain {} normalised to `{p}`: {}",
                    quoted(&d.value),
                    why.join("; ")
                ),
            });
        }
        occurrences.entry(p.clone()).or_default().push(d.referenced);
        patterns.push(p);
    }
    let (allowlist, dropped) = Allowlist::new(patterns);
    // A duplicate is reported at its second (third, ...) occurrence; a
    // covered entry at its first.
    let mut dups_reported: HashMap<Pattern, usize> = HashMap::new();
    for d in dropped {
        let index = if d.covered_by.is_none() {
            let n = dups_reported.entry(d.entry.clone()).or_default();
            *n += 1;
            *n
        } else {
            0
        };
        let at = occurrences
            .get(&d.entry)
            .and_then(|locs| locs.get(index))
            .and_then(|l| pos(name, l));
        notes.push(Note {
            at,
            message: d.to_string(),
        });
    }
    Ok((allowlist, notes))
}

/// Ports Istio's proxy itself listens on in a gateway pod (Istio's "Ports
/// used by Istio" page: 15000 admin, 15001/15006 capture, 15004 debug,
/// 15008 HBONE, 15009 HBONE, 15020 merged metrics, 15021 health, 15053 DNS,
/// 15090 Envoy Prometheus). A Gateway server on one of them cannot bind.
const ISTIO_RESERVED_PORTS: &[u16] = &[
    15000, 15001, 15004, 15006, 15008, 15009, 15020, 15021, 15053, 15090,
];

/// Most upstream ports; each adds a listener, a cluster and routes.
const MAX_PORTS: usize = 16;

/// Upstream ports and the gateway ports for each: the first uses
/// `gateway.servicePort`/`targetPort`; the i-th further port uses container
/// port `targetPort + i` and a Service port of the same number.
///
/// The Gateway servers listen on the container ports, and Istio translates a
/// Gateway port that equals a Service port into that port's `targetPort`
/// (`resolvePorts` in istio/istio `pilot/pkg/model/gateway.go`, for
/// label-selected gateways). So no Service port may equal another port's
/// container port unless it targets that very port: with Service `8443 ->
/// 8444` beside a Gateway server on 8443, istiod would bind the server to
/// 8444 and the 8443 listener would never exist.
fn port_maps(name: &str, spec: &Spec) -> Result<Vec<PortMap>, Error> {
    let help = "list each TLS port once, e.g. `ports: [443, 8443]`";
    let (upstream, at): (Vec<u16>, Option<Pos>) = match (&spec.ports, spec.upstream_port) {
        (Some(_), Some(_)) => {
            return Err(Error {
                at: spec.ports.as_ref().and_then(|p| pos(name, &p.referenced)),
                message: "spec.ports and spec.upstreamPort are both set".into(),
                help: Some("keep `ports` and list every upstream port there".into()),
            });
        }
        (Some(p), None) => (
            p.value.iter().map(|p| p.0).collect(),
            pos(name, &p.referenced),
        ),
        (None, Some(p)) => (vec![p.0], None),
        (None, None) => (vec![default_upstream_port().0], None),
    };
    let fail = |message: String, help: &str| Error {
        at: at.clone(),
        message,
        help: Some(help.to_string()),
    };
    if upstream.is_empty() {
        return Err(fail("spec.ports is empty".into(), help));
    }
    if upstream.len() > MAX_PORTS {
        return Err(fail(
            format!(
                "spec.ports lists {} ports; the limit is {MAX_PORTS}",
                upstream.len()
            ),
            "each port adds a gateway listener; use fewer ports",
        ));
    }
    let g = &spec.gateway;
    let mut maps: Vec<PortMap> = Vec::with_capacity(upstream.len());
    for (i, &p) in upstream.iter().enumerate() {
        if p == 0 {
            return Err(fail("spec.ports holds 0; ports are 1-65535".into(), help));
        }
        if maps.iter().any(|m| m.upstream == p) {
            return Err(fail(format!("spec.ports lists {p} twice"), help));
        }
        let target = u32::from(g.target_port.0) + i as u32;
        let target = u16::try_from(target).map_err(|_| {
            fail(
                format!("upstream port {p} would need gateway container port {target}, over 65535"),
                "lower spec.gateway.targetPort",
            )
        })?;
        let service = if i == 0 { g.service_port.0 } else { target };
        if let Some(m) = maps.iter().find(|m| m.service == service) {
            return Err(fail(
                format!(
                    "upstream port {p} needs Service port {service}, which already carries upstream port {}",
                    m.upstream
                ),
                "change spec.gateway.servicePort, which carries the first upstream port",
            ));
        }
        if ISTIO_RESERVED_PORTS.contains(&target) {
            return Err(fail(
                format!(
                    "gateway container port {target} (for upstream port {p}) is used by Istio's proxy itself"
                ),
                "change spec.gateway.targetPort; ports 15000-15090 are Istio's",
            ));
        }
        maps.push(PortMap {
            upstream: p,
            service,
            target,
        });
    }
    Ok(maps)
}

/// Parses a duration such as `500ms`, `30s`, `5m` or `1h` into protobuf
/// JSON form (`"0.5s"`, `"30s"`, `"300s"`, `"3600s"`), as milliseconds.
fn parse_duration_ms(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let factor = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    n.checked_mul(factor)
        .filter(|ms| *ms <= 315_576_000_000_000)
}

fn proto_duration(ms: u64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        let frac = format!("{:03}", ms % 1000);
        format!("{}.{}s", ms / 1000, frac.trim_end_matches('0'))
    }
}

/// The DNS cache options. Limits are Envoy's (`dns_cache.proto`,
/// envoy/extensions/common/dynamic_forward_proxy/v3): `dns_refresh_rate`
/// at least 1ms (default 60s), `host_ttl` above 0 (default 5m),
/// `max_hosts` above 0 (default 1024).
fn dns_cache(name: &str, dns: &DnsSpec) -> Result<DnsCache, Error> {
    let duration = |field: &str, v: &Option<Spanned<String>>| -> Result<Option<String>, Error> {
        let Some(v) = v else { return Ok(None) };
        match parse_duration_ms(&v.value) {
            Some(ms) if ms >= 1 => Ok(Some(proto_duration(ms))),
            _ => Err(Error {
                at: pos(name, &v.referenced),
                message: format!(
                    "spec.dns.{field} {} is not a positive duration",
                    quoted(&v.value)
                ),
                help: Some("write a number and a unit: `500ms`, `30s`, `5m` or `1h`".into()),
            }),
        }
    };
    if let Some(zero) = dns.max_hosts.as_ref().filter(|m| m.value == 0) {
        return Err(Error {
            at: pos(name, &zero.referenced),
            message: "spec.dns.maxHosts is 0; Envoy requires at least 1".into(),
            help: Some("leave it out for Envoy's default of 1024".into()),
        });
    }
    let as_duration = |v: &Option<Spanned<String>>| {
        v.as_ref()
            .and_then(|r| parse_duration_ms(&r.value))
            .map(std::time::Duration::from_millis)
    };
    Ok(DnsCache {
        refresh_rate: duration("refreshRate", &dns.refresh_rate)?,
        host_ttl: duration("hostTtl", &dns.host_ttl)?,
        max_hosts: dns.max_hosts.as_ref().map(|m| m.value),
        refresh: as_duration(&dns.refresh_rate),
        host_expiry: as_duration(&dns.host_ttl),
    })
}

/// Kubernetes refuses a container whose request exceeds its limit for the
/// same resource (`ValidateResourceRequirements` in
/// kubernetes/kubernetes `pkg/apis/core/validation`: "must be less than or
/// equal to ... limit"), so the Deployment would never create a pod.
fn requests_within_limits(name: &str, r: &Resources) -> Result<(), Error> {
    for (key, request) in &r.requests {
        let Some(limit) = r.limits.get(key) else {
            continue;
        };
        if let (Some(req), Some(lim)) = (request.value.nanos(), limit.value.nanos())
            && req > lim
        {
            return Err(Error {
                at: pos(name, &request.referenced),
                message: format!(
                    "spec.gateway.resources.requests.{} ({}) is above limits.{} ({}): Kubernetes rejects the Deployment's pods",
                    escape::escaped(key),
                    escape::quoted(&request.value.0),
                    escape::escaped(key),
                    escape::quoted(&limit.value.0),
                ),
                help: Some(format!(
                    "lower the request or raise the limit to at least {}",
                    escape::quoted(&request.value.0)
                )),
            });
        }
    }
    Ok(())
}

fn autoscaling(name: &str, g: &GatewaySpec) -> Result<Option<Autoscaling>, Error> {
    let at = |loc: &Location, message: String, help: &str| Error {
        at: pos(name, loc),
        message,
        help: Some(help.into()),
    };
    if g.replicas.value == 0 && g.autoscaling.is_none() {
        return Err(at(
            &g.replicas.referenced,
            "spec.gateway.replicas is 0: no pod would forward egress traffic".into(),
            "use 2 or more replicas so a node drain never stops egress",
        ));
    }
    let Some(spanned) = &g.autoscaling else {
        return Ok(None);
    };
    let a = &spanned.value;
    let (min, max) = (a.min_replicas.value, a.max_replicas.value);
    if min == 0 || max < min {
        // Point at the one that is out of place: a zero minimum, or else
        // the maximum below it.
        let loc = if min == 0 {
            &a.min_replicas.referenced
        } else {
            &a.max_replicas.referenced
        };
        return Err(at(
            loc,
            format!(
                "spec.gateway.autoscaling: minReplicas {min} and maxReplicas {max} must satisfy 1 <= min <= max"
            ),
            "for example `minReplicas: 2, maxReplicas: 5`",
        ));
    }
    if a.target_cpu_utilization.value == 0 {
        return Err(at(
            &a.target_cpu_utilization.referenced,
            "spec.gateway.autoscaling.targetCpuUtilization is 0".into(),
            "use a percentage of the CPU request, e.g. 80",
        ));
    }
    if !g.resources.requests.contains_key("cpu") {
        return Err(at(
            &spanned.referenced,
            "spec.gateway.autoscaling needs spec.gateway.resources.requests.cpu: CPU utilisation is measured against it".into(),
            "set a CPU request, e.g. `100m`",
        ));
    }
    Ok(Some(Autoscaling {
        min_replicas: min,
        max_replicas: max,
        target_cpu_utilization: a.target_cpu_utilization.value,
    }))
}

fn allowed_clients(
    name: &str,
    spanned: &Spanned<AllowedClientsSpec>,
) -> Result<AllowedClients, Error> {
    let c = &spanned.value;
    let bad = |v: &Spanned<String>, message: String, help: &str| Error {
        at: pos(name, &v.referenced),
        message,
        help: Some(help.into()),
    };
    if c.namespaces.is_empty() && c.service_accounts.is_empty() {
        return Err(Error {
            at: pos(name, &spanned.referenced),
            message: "spec.allowedClients lists no namespaces and no serviceAccounts; the gateway would refuse everyone".into(),
            help: Some("list the namespaces (or `namespace/name` service accounts) of the apps that need egress".into()),
        });
    }
    let trust_domain = match &c.trust_domain {
        None => "cluster.local".to_string(),
        Some(t) => {
            if t.value.is_empty() || t.value.split('.').any(|l| check_dns_label(l).is_err()) {
                return Err(bad(
                    t,
                    format!(
                        "spec.allowedClients.trustDomain {} is not a DNS name",
                        quoted(&t.value)
                    ),
                    "use the mesh's trust domain (meshConfig.trustDomain), usually `cluster.local`",
                ));
            }
            t.value.clone()
        }
    };
    let mut namespaces = Vec::new();
    for ns in &c.namespaces {
        check_dns_label(&ns.value).map_err(|why| {
            bad(
                ns,
                format!(
                    "spec.allowedClients.namespaces: {} {why}",
                    quoted(&ns.value)
                ),
                "use a Kubernetes namespace name",
            )
        })?;
        if !namespaces.contains(&ns.value) {
            namespaces.push(ns.value.clone());
        }
    }
    let mut principals = Vec::new();
    for sa in &c.service_accounts {
        let ok = sa
            .value
            .split_once('/')
            .filter(|(ns, n)| check_dns_label(ns).is_ok() && check_dns_label(n).is_ok());
        let Some((ns, n)) = ok else {
            return Err(bad(
                sa,
                format!(
                    "spec.allowedClients.serviceAccounts: {} is not `namespace/name`",
                    quoted(&sa.value)
                ),
                "write the namespace and the service account name, e.g. `shop/checkout`",
            ));
        };
        // Istio's principal form: <trust domain>/ns/<namespace>/sa/<name>.
        let p = format!("{trust_domain}/ns/{ns}/sa/{n}");
        if !principals.contains(&p) {
            principals.push(p);
        }
    }
    Ok(AllowedClients {
        namespaces,
        principals,
    })
}

fn network_policy(
    name: &str,
    n: &NetworkPolicySpec,
    gateway_namespace: &str,
) -> Result<NetworkPolicy, Error> {
    if n.namespaces.value.is_empty() {
        return Err(Error {
            at: pos(name, &n.namespaces.referenced),
            message: "spec.networkPolicy.namespaces is empty".into(),
            help: Some("list the application namespaces to lock down".into()),
        });
    }
    let mut namespaces = Vec::new();
    for ns in &n.namespaces.value {
        let at = pos(name, &ns.referenced);
        check_dns_label(&ns.value).map_err(|why| Error {
            at: at.clone(),
            message: format!("spec.networkPolicy.namespaces: {} {why}", quoted(&ns.value)),
            help: Some("use a Kubernetes namespace name".into()),
        })?;
        if ns.value == gateway_namespace {
            return Err(Error {
                at,
                message: format!(
                    "spec.networkPolicy.namespaces holds the gateway's own namespace {}; the gateway would lose its way out",
                    quoted(&ns.value)
                ),
                help: Some("list only application namespaces".into()),
            });
        }
        if !namespaces.contains(&ns.value) {
            namespaces.push(ns.value.clone());
        }
    }
    let mut allow_cidrs = Vec::new();
    for c in &n.allow_cidrs {
        if !is_cidr(&c.value) {
            return Err(Error {
                at: pos(name, &c.referenced),
                message: format!(
                    "spec.networkPolicy.allowCidrs: {} is not a CIDR",
                    quoted(&c.value)
                ),
                help: Some("write an address and a prefix length, e.g. `10.0.0.1/32`".into()),
            });
        }
        allow_cidrs.push(c.value.clone());
    }
    Ok(NetworkPolicy {
        namespaces,
        allow_in_cluster: n.allow_in_cluster,
        allow_cidrs,
    })
}

/// `address/prefix` with a prefix that fits the address family.
fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

/// The pod label through which Istio injects the gateway's proxy; the
/// Deployment template sets it.
const INJECT_LABEL: &str = "sidecar.istio.io/inject";

/// Kubernetes label key (optional DNS prefix + name) and value syntax.
fn check_label(key: &str, value: &str) -> Result<(), String> {
    fn name_part(s: &str, allow_empty: bool) -> bool {
        if s.is_empty() {
            return allow_empty;
        }
        let b = s.as_bytes();
        s.len() <= 63
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.split('.').all(|l| check_dns_label(l).is_ok())
    });
    if !prefix_ok || !name_part(name, false) {
        return Err(format!(
            "label key {} is not a valid Kubernetes label key",
            quoted(key)
        ));
    }
    if !name_part(value, true) {
        return Err(format!(
            "label value {} (of {}) is not a valid Kubernetes label value",
            quoted(value),
            quoted(key)
        ));
    }
    Ok(())
}

/// The JSON Schema of the config file, generated from these types.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(File);
    schema.insert(
        "$id".into(),
        "https://egressgen.io/schemas/egressgateway-v1alpha1.json".into(),
    );
    let mut s = serde_json::to_string_pretty(&schema).expect("a schema serialises");
    s.push('\n');
    s
}

#[cfg(test)]
mod quantity_tests {
    use super::{Quantity, is_quantity};

    fn nanos(s: &str) -> Option<u128> {
        Quantity(s.to_string()).nanos()
    }

    #[test]
    fn quantities_compare_exactly() {
        let giga = 1_000_000_000u128;
        assert_eq!(nanos("1"), Some(giga));
        assert_eq!(nanos("0.1"), nanos("100m"));
        assert_eq!(nanos(".5"), nanos("500m"));
        assert_eq!(nanos("1."), Some(giga));
        assert_eq!(nanos("+2"), Some(2 * giga));
        assert_eq!(nanos("1Ki"), Some(1024 * giga));
        assert_eq!(nanos("1Gi"), nanos("1073741824"));
        assert_eq!(nanos("1G"), nanos("1e9"));
        assert_eq!(nanos("1E-2"), nanos("10m"));
        assert_eq!(nanos("1n"), Some(1));
        // Below a nano-unit rounds up, as Kubernetes does.
        assert_eq!(nanos("1e-12"), Some(1));
        assert_eq!(nanos("0e-12"), Some(0));
        assert_eq!(nanos("1e-100"), Some(1));
        assert!(nanos("2000m") > nanos("1.999"));
        assert!(nanos("1025Mi") > nanos("1Gi"));
        // Exponents of any length never overflow.
        assert_eq!(nanos("1e-9223372036854775808"), Some(1));
        assert_eq!(nanos("1.0000000000e-9223372036854775808"), Some(1));
        assert_eq!(nanos("1e9223372036854775807"), None);
        assert_eq!(nanos("1e99999999999999999999"), None);
        // Too large to compare: no answer rather than a wrong one.
        assert_eq!(nanos("1e40"), None);
        assert_eq!(nanos("99999999999999999999999999999999999999999"), None);
    }

    #[test]
    fn kubernetes_quantity_grammar() {
        for ok in [
            "1", "100m", "0.5", ".5", "1.", "128Mi", "2Gi", "1k", "1e3", "1E-2", "+1",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "",
            "m",
            ".",
            "1..2",
            "-1",
            "1 Gi",
            "1GB",
            "1\n  evil: 2",
            "1e",
            "Mi",
            "1ki",
        ] {
            assert!(!is_quantity(bad), "{bad:?}");
        }
    }
}
