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
use crate::escape::quoted;

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
    pub domains: Vec<Spanned<String>>,
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
    #[serde(default = "default_upstream_port")]
    pub upstream_port: Port,
    #[serde(default)]
    pub dns: DnsSpec,
    /// Access logging on the egress gateway (Telemetry + internal listener).
    #[serde(default = "yes")]
    pub access_log: bool,
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
    pub replicas: u32,
    pub resources: Resources,
    /// Lets the pods use the `anyuid` SCC on OpenShift.
    pub openshift: bool,
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
            replicas: 1,
            resources: Resources::default(),
            openshift: true,
        }
    }
}

/// Container resources, as in a Kubernetes pod spec.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default)]
    pub requests: BTreeMap<String, Quantity>,
    #[serde(default)]
    pub limits: BTreeMap<String, Quantity>,
}

impl Default for Resources {
    /// Istio's own gateway defaults.
    fn default() -> Self {
        let q = |k: &str, v: &str| (k.to_string(), Quantity(v.to_string()));
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
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DnsSpec {
    /// Envoy `dns_lookup_family` of the forward proxy's DNS cache.
    #[serde(default)]
    pub lookup_family: LookupFamily,
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
    pub upstream_port: u16,
    pub lookup_family: LookupFamily,
    pub access_log: bool,
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
    let name = path.display().to_string();
    let text = std::fs::read(path).map_err(|e| Error {
        at: None,
        message: format!("cannot read config {}: {e}", quoted(&name)),
        help: Some("pass the path of an EgressGateway file with -c".into()),
    })?;
    let text = String::from_utf8(text).map_err(|e| Error {
        at: None,
        message: format!(
            "config {} is not UTF-8 (byte {} is invalid)",
            quoted(&name),
            e.utf8_error().valid_up_to()
        ),
        help: None,
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
            domains: domains.iter().map(|d| unspanned(d.as_str())).collect(),
            istio: IstioSpec::default(),
            gateway: GatewaySpec::default(),
            config_namespace: default_config_namespace(),
            upstream_port: default_upstream_port(),
            dns: DnsSpec::default(),
            access_log: true,
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
    let help = if message.contains("unknown field") {
        Some(
            "check the spelling; `egressgen schema` prints every field, and README.md documents them"
                .to_string(),
        )
    } else {
        None
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
            "",
        ));
    }
    if file.kind.value != KIND {
        return Err(err(
            &file.kind.referenced,
            format!("kind is {}, expected `{KIND}`", quoted(&file.kind.value)),
            "",
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
            return Err(err(&spec.gateway.labels.referenced, why, ""));
        }
    }
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

    if spec.domains.is_empty() {
        return Err(Error {
            at: None,
            message: "spec.domains is empty; an egress allowlist needs at least one domain".into(),
            help: Some("add entries such as `*.example.com` or `api.example.com`".into()),
        });
    }
    let mut notes = Vec::new();
    let mut patterns = Vec::with_capacity(spec.domains.len());
    // Where each pattern occurs, in order, to point drops at their lines.
    let mut occurrences: HashMap<Pattern, Vec<Location>> = HashMap::new();
    for d in &spec.domains {
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
                replicas: g.replicas,
                resources: g.resources,
                openshift: g.openshift,
            },
            config_namespace: spec.config_namespace.value,
            upstream_port: spec.upstream_port.0,
            lookup_family: spec.dns.lookup_family,
            access_log: spec.access_log,
        },
        notes,
    ))
}

/// RFC 1123 label, as Kubernetes requires for names and namespaces.
fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("has characters other than a-z, 0-9 and `-`");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("starts or ends with `-`");
    }
    Ok(())
}

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
