//! Reads Istio and Kubernetes resources out of YAML trees: the four copies of
//! the allowlist and the facts the wiring rules compare, each with its
//! position.
//!
//! It does not judge anything: rules do. It unwraps `kind: List`, keeps
//! Istio kinds plus the Service and Deployment of the gateway and ConfigMaps
//! (the mesh config), and ignores every other document.

use super::ResourceRef;
use std::collections::HashMap;

use super::load::{Document, Node, Pos, Value};
use crate::domain::{DomainError, Normalised, Pattern};

/// The annotation that silences codes on one resource.
pub const IGNORE_ANNOTATION: &str = "egressgen.io/ignore";

/// Whether an `apiVersion` is one of Istio's API groups (`*.istio.io/...`).
pub fn is_istio_api(api_version: &str) -> bool {
    api_version
        .split('/')
        .next()
        .is_some_and(|g| g.ends_with(".istio.io"))
}

/// The API group of an `apiVersion` (`networking.istio.io/v1` ->
/// `networking.istio.io`; empty for the core group's `v1`).
pub fn api_group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// One Kubernetes object.
#[derive(Debug, Clone)]
pub struct Resource {
    pub source: usize,
    pub api_version: String,
    pub kind: String,
    pub name: String,
    pub namespace: Option<String>,
    pub at: Pos,
    pub node: Node,
    /// Codes listed in the `egressgen.io/ignore` annotation.
    pub ignore: Vec<String>,
}

impl Resource {
    pub fn spec(&self) -> Option<&Node> {
        self.node.get("spec")
    }

    /// A Gateway's `spec.servers`; empty for anything else.
    pub fn servers(&self) -> &[Node] {
        self.spec().map_or(&[], |s| s.list("servers"))
    }

    /// The `port.number` of each of a Gateway's servers.
    pub fn server_ports(&self) -> Vec<i64> {
        self.servers()
            .iter()
            .filter_map(|srv| srv.path(&["port", "number"]).and_then(Node::as_i64))
            .collect()
    }

    /// The API group (`networking.istio.io`; empty for the core group):
    /// with kind, namespace and name, what makes two objects the same one.
    pub fn group(&self) -> &str {
        api_group(&self.api_version)
    }

    pub fn reference(&self) -> ResourceRef {
        ResourceRef {
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// `kind ns/name`, for messages, escaped for terminals.
    pub fn display(&self) -> String {
        use crate::escape::escaped;
        match &self.namespace {
            Some(ns) => format!(
                "{} {}/{}",
                escaped(&self.kind),
                escaped(ns),
                escaped(&self.name)
            ),
            None => format!("{} {}", escaped(&self.kind), escaped(&self.name)),
        }
    }

    pub fn is_istio(&self) -> bool {
        is_istio_api(&self.api_version)
    }
}

/// The four places the allowlist is written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Place {
    /// VirtualService `spec.hosts` of the mesh TLS route.
    VirtualServiceHosts,
    /// `sniHosts` of that route's TLS match.
    SniHosts,
    /// ServiceEntry `spec.hosts`, unioned over split ServiceEntries.
    ServiceEntryHosts,
    /// EnvoyFilter internal-listener `server_names`, unioned over chains.
    ServerNames,
}

impl Place {
    pub const ALL: [Place; 4] = [
        Place::VirtualServiceHosts,
        Place::SniHosts,
        Place::ServiceEntryHosts,
        Place::ServerNames,
    ];

    /// This place's bit in [`Model::host_places`].
    pub fn bit(self) -> u8 {
        1 << (self as u8)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Place::VirtualServiceHosts => "VirtualService hosts",
            Place::SniHosts => "VirtualService sniHosts",
            Place::ServiceEntryHosts => "ServiceEntry hosts",
            Place::ServerNames => "EnvoyFilter server_names",
        }
    }
}

/// One host entry in one list.
#[derive(Debug, Clone)]
pub struct Host {
    pub raw: String,
    pub at: Pos,
    pub field_path: String,
    /// `domain::Pattern::parse` of `raw`, done once for every rule.
    pub parsed: Result<(Pattern, Vec<Normalised>), DomainError>,
    /// The key hosts are compared by: the normalised pattern. Invalid
    /// entries have none; EG005 reports them and drift rules skip them.
    pub key: Option<String>,
}

/// One list of hosts (one `hosts:`, `sniHosts:` or `server_names:`).
#[derive(Debug, Clone)]
pub struct HostList {
    pub place: Place,
    pub resource: usize,
    /// Position of the list's key, where "missing" is reported.
    pub at: Pos,
    pub field_path: String,
    pub hosts: Vec<Host>,
    /// Lists with different scopes may repeat hosts: with several upstream
    /// ports, each port has its own `sniHosts` match (scope `port N`) and its
    /// own internal listener (scope: the listener name). Empty for lists
    /// that must be disjoint across the whole input.
    pub scope: String,
}

/// A `dns_cache_config`, kept whole: Envoy requires every use of one name
/// to be identical.
#[derive(Debug, Clone)]
pub struct DnsCache {
    pub resource: usize,
    pub name: String,
    pub at: Pos,
    pub field_path: String,
    pub config: Node,
}

/// A named reference (a cluster or listener name) and where it is written.
#[derive(Debug, Clone)]
pub struct NameRef {
    pub resource: usize,
    pub name: String,
    pub at: Pos,
    pub field_path: String,
}

/// A port number and where it is written.
#[derive(Debug, Clone)]
pub struct PortAt {
    pub resource: usize,
    pub port: i64,
    pub at: Pos,
    pub field_path: String,
}

/// One EnvoyFilter `configPatches` item.
#[derive(Debug, Clone)]
pub struct Patch {
    pub resource: usize,
    pub index: usize,
    pub at: Pos,
    pub apply_to: String,
    pub operation: String,
    /// `match.listener.portNumber`: `None` when absent, `Some(None)` when
    /// present but not a number.
    pub port_match: Option<Option<i64>>,
    /// `match.context`; Istio's default when absent is `ANY`.
    pub context: String,
}

impl Patch {
    /// The patch can apply to a gateway proxy (`GATEWAY` or `ANY`).
    pub fn reaches_gateways(&self) -> bool {
        matches!(self.context.as_str(), "GATEWAY" | "ANY")
    }
}

/// Everything the rules look at.
#[derive(Debug, Clone, Default)]
pub struct Model {
    pub files: Vec<String>,
    pub resources: Vec<Resource>,
    pub lists: Vec<HostList>,
    /// CLUSTER patches: cluster names added.
    pub clusters: Vec<NameRef>,
    /// LISTENER patches: listener names added, and whether internal.
    pub internal_listeners: Vec<NameRef>,
    /// `envoy_internal_address.server_listener_name` in clusters.
    pub internal_address_refs: Vec<NameRef>,
    /// `cluster` of every tcp_proxy in EnvoyFilter patches.
    pub tcp_proxy_clusters: Vec<NameRef>,
    pub dns_caches_cluster: Vec<DnsCache>,
    pub dns_caches_filter: Vec<DnsCache>,
    /// `port_value` of the SNI forward proxy filters.
    pub port_values: Vec<PortAt>,
    pub patches: Vec<Patch>,
    /// For each valid host key, a bit per place that holds it
    /// ([`Place::bit`]).
    pub host_places: HashMap<String, u8>,
    /// egressgen's own configs (`kind: EgressGateway`) met in the input:
    /// source and position. Not manifests, so not linted.
    pub configs: Vec<(usize, Pos)>,
    /// Objects defined again later in the input (same group, kind,
    /// namespace and name), with the index in `resources` of the later
    /// definition, which replaced them there: `kubectl apply` keeps the
    /// last one it applies.
    pub overridden: Vec<(Resource, usize)>,
}

impl Model {
    pub fn new(files: &[&str], docs: Vec<Document>) -> Model {
        let mut m = Model {
            files: files.iter().map(|s| s.to_string()).collect(),
            ..Model::default()
        };
        for doc in docs {
            let source = doc.source;
            if doc.root.get("kind").and_then(Node::as_str) == Some("List") {
                if let Some(items) = doc.root.get("items") {
                    for item in items.items() {
                        m.add(source, item.clone());
                    }
                }
            } else {
                m.add(source, doc.root);
            }
        }
        for i in 0..m.resources.len() {
            m.extract(i);
        }
        for l in &m.lists {
            for h in &l.hosts {
                if let Some(k) = &h.key {
                    match m.host_places.get_mut(k) {
                        Some(bits) => *bits |= l.place.bit(),
                        None => {
                            m.host_places.insert(k.clone(), l.place.bit());
                        }
                    }
                }
            }
        }
        m
    }

    pub fn file(&self, r: &Resource) -> &str {
        self.files.get(r.source).map_or("", String::as_str)
    }

    /// Resources of one kind.
    pub fn of_kind<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (usize, &'a Resource)> {
        self.resources
            .iter()
            .enumerate()
            .filter(move |(_, r)| r.kind == kind)
    }

    pub fn lists_of(&self, place: Place) -> impl Iterator<Item = &HostList> {
        self.lists.iter().filter(move |l| l.place == place)
    }

    /// The places that hold host `key`, as [`Place::bit`]s.
    pub fn places_of(&self, key: &str) -> u8 {
        self.host_places.get(key).copied().unwrap_or(0)
    }

    /// Place `place` holds host `key`.
    pub fn has(&self, place: Place, key: &str) -> bool {
        self.places_of(key) & place.bit() != 0
    }

    /// The places that appear in the input at all.
    pub fn present_places(&self) -> Vec<Place> {
        Place::ALL
            .into_iter()
            .filter(|p| self.lists.iter().any(|l| l.place == *p))
            .collect()
    }

    fn add(&mut self, source: usize, node: Node) {
        let text = |k: &str| node.get(k).and_then(Node::as_str).map(str::to_string);
        let (Some(api_version), Some(kind)) = (text("apiVersion"), text("kind")) else {
            return;
        };
        if api_version.starts_with("egressgen.io/") && kind == "EgressGateway" {
            self.configs.push((source, node.at));
            return;
        }
        let meta = node.get("metadata");
        let meta_text = |k: &str| {
            meta.and_then(|m| m.get(k))
                .and_then(Node::as_str)
                .map(str::to_string)
        };
        let ignore = meta
            .and_then(|m| m.path(&["annotations", IGNORE_ANNOTATION]))
            .and_then(Node::as_str)
            .map(|s| {
                s.split(',')
                    .map(|c| c.trim().to_ascii_uppercase())
                    .filter(|c| !c.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let r = Resource {
            source,
            api_version,
            kind,
            name: meta_text("name").unwrap_or_default(),
            namespace: meta_text("namespace"),
            at: node.at,
            node,
            ignore,
        };
        let core = matches!(
            (r.api_version.as_str(), r.kind.as_str()),
            ("v1", "Service") | ("apps/v1", "Deployment") | ("v1", "ConfigMap")
        );
        if r.is_istio() || core || crate::schema::known(&r.api_version, &r.kind) {
            let same = |o: &Resource| {
                o.group() == r.group()
                    && o.kind == r.kind
                    && o.namespace == r.namespace
                    && o.name == r.name
            };
            match self.resources.iter().position(same) {
                Some(j) => {
                    let earlier = std::mem::replace(&mut self.resources[j], r);
                    self.overridden.push((earlier, j));
                }
                None => self.resources.push(r),
            }
        }
    }

    fn extract(&mut self, i: usize) {
        let r = &self.resources[i];
        let Some(spec) = r.spec() else { return };
        let spec = spec.clone();
        match r.kind.as_str() {
            "VirtualService" => self.virtual_service(i, &spec),
            "ServiceEntry" => {
                if let Some((k, v)) = spec.entry("hosts") {
                    self.lists
                        .push(host_list(Place::ServiceEntryHosts, i, k, v, "spec.hosts"));
                }
            }
            "EnvoyFilter" => self.envoy_filter(i, &spec),
            _ => {}
        }
    }

    fn virtual_service(&mut self, i: usize, spec: &Node) {
        let vs_gateways = gateway_names(spec.get("gateways"));
        let mut is_mesh_tls = false;
        for (ti, route) in spec.list("tls").iter().enumerate() {
            for (mi, m) in route.list("match").iter().enumerate() {
                let gws = match m.get("gateways") {
                    Some(g) => gateway_names(Some(g)),
                    None => vs_gateways.clone(),
                };
                if !gws.iter().any(|g| g == "mesh") {
                    continue;
                }
                if let Some((k, v)) = m.entry("sniHosts") {
                    is_mesh_tls = true;
                    let path = format!("spec.tls[{ti}].match[{mi}].sniHosts");
                    let mut list = host_list(Place::SniHosts, i, k, v, &path);
                    if let Some(port) = m.get("port").and_then(Node::scalar_text) {
                        list.scope = format!("port {port}");
                    }
                    self.lists.push(list);
                }
            }
        }
        if is_mesh_tls {
            if let Some((k, v)) = spec.entry("hosts") {
                self.lists
                    .push(host_list(Place::VirtualServiceHosts, i, k, v, "spec.hosts"));
            }
        }
    }

    fn envoy_filter(&mut self, i: usize, spec: &Node) {
        let Some(patches) = spec.get("configPatches") else {
            return;
        };
        for (pi, p) in patches.items().iter().enumerate() {
            let base = format!("spec.configPatches[{pi}]");
            let apply_to = p
                .get("applyTo")
                .and_then(Node::as_str)
                .unwrap_or("")
                .to_string();
            let operation = p
                .path(&["patch", "operation"])
                .and_then(Node::as_str)
                .unwrap_or("")
                .to_string();
            let port_match = p
                .path(&["match", "listener", "portNumber"])
                .map(Node::as_i64);
            let context = p
                .path(&["match", "context"])
                .and_then(Node::as_str)
                .unwrap_or("ANY")
                .to_string();
            self.patches.push(Patch {
                resource: i,
                index: pi,
                at: p.at,
                apply_to: apply_to.clone(),
                operation,
                port_match,
                context,
            });
            let Some(value) = p.path(&["patch", "value"]) else {
                continue;
            };
            let vpath = format!("{base}.patch.value");
            match apply_to.as_str() {
                "CLUSTER" => self.cluster(i, value, &vpath),
                "LISTENER" => self.listener(i, value, &vpath),
                _ => {}
            }
            // tcp_proxy filters anywhere in the value (NETWORK_FILTER MERGE
            // patches and listener filter chains alike).
            walk(value, &vpath, &mut |node, path| {
                let is_tcp_proxy = node
                    .path(&["typed_config", "@type"])
                    .and_then(Node::as_str)
                    .is_some_and(|t| t.ends_with(".tcp_proxy.v3.TcpProxy"));
                if is_tcp_proxy {
                    if let Some(c) = node.path(&["typed_config", "cluster"]) {
                        if let Some(name) = c.as_str() {
                            self.tcp_proxy_clusters.push(NameRef {
                                resource: i,
                                name: name.to_string(),
                                at: c.at,
                                field_path: format!("{path}.typed_config.cluster"),
                            });
                        }
                    }
                }
            });
        }
    }

    fn cluster(&mut self, i: usize, value: &Node, vpath: &str) {
        if let Some(n) = value.get("name") {
            if let Some(name) = n.as_str() {
                self.clusters.push(NameRef {
                    resource: i,
                    name: name.to_string(),
                    at: n.at,
                    field_path: format!("{vpath}.name"),
                });
            }
        }
        walk(value, vpath, &mut |node, path| {
            if let Some(l) = node.path(&["envoy_internal_address", "server_listener_name"]) {
                if let Some(name) = l.as_str() {
                    self.internal_address_refs.push(NameRef {
                        resource: i,
                        name: name.to_string(),
                        at: l.at,
                        field_path: format!("{path}.envoy_internal_address.server_listener_name"),
                    });
                }
            }
            if let Some(dns) = node.get("dns_cache_config") {
                if let Some(d) = dns_cache(i, dns, &format!("{path}.dns_cache_config")) {
                    self.dns_caches_cluster.push(d);
                }
            }
        });
    }

    fn listener(&mut self, i: usize, value: &Node, vpath: &str) {
        if value.get("internal_listener").is_some() {
            if let Some(n) = value.get("name") {
                if let Some(name) = n.as_str() {
                    self.internal_listeners.push(NameRef {
                        resource: i,
                        name: name.to_string(),
                        at: n.at,
                        field_path: format!("{vpath}.name"),
                    });
                }
            }
        }
        let internal = value.get("internal_listener").is_some();
        let chains = value.list("filter_chains");
        for (ci, chain) in chains.iter().enumerate() {
            let cpath = format!("{vpath}.filter_chains[{ci}]");
            // Names are an allowlist copy only where they lead to the
            // forwarder: on the internal listener, or in a chain with the
            // SNI forward proxy. Another listener's `server_names` (a TLS
            // ingress on the same gateway) are not.
            let forwards = chain.list("filters").iter().any(|f| {
                f.path(&["typed_config", "@type"])
                    .and_then(Node::as_str)
                    .is_some_and(|t| t.ends_with("sni_dynamic_forward_proxy.v3.FilterConfig"))
            });
            if let (Some(m), true) = (chain.get("filter_chain_match"), internal || forwards) {
                if let Some((k, v)) = m.entry("server_names") {
                    let path = format!("{cpath}.filter_chain_match.server_names");
                    let mut list = host_list(Place::ServerNames, i, k, v, &path);
                    if let Some(name) = value.get("name").and_then(Node::as_str) {
                        list.scope = format!("listener {name}");
                    }
                    self.lists.push(list);
                }
            }
            for (fi, f) in chain.list("filters").iter().enumerate() {
                let fpath = format!("{cpath}.filters[{fi}].typed_config");
                let Some(tc) = f.get("typed_config") else {
                    continue;
                };
                let is_sni_fwd = tc
                    .get("@type")
                    .and_then(Node::as_str)
                    .is_some_and(|t| t.ends_with("sni_dynamic_forward_proxy.v3.FilterConfig"));
                if !is_sni_fwd {
                    continue;
                }
                if let Some(p) = tc.get("port_value") {
                    if let Some(port) = p.as_i64() {
                        self.port_values.push(PortAt {
                            resource: i,
                            port,
                            at: p.at,
                            field_path: format!("{fpath}.port_value"),
                        });
                    }
                }
                if let Some(dns) = tc.get("dns_cache_config") {
                    if let Some(d) = dns_cache(i, dns, &format!("{fpath}.dns_cache_config")) {
                        self.dns_caches_filter.push(d);
                    }
                }
            }
        }
    }
}

fn dns_cache(resource: usize, node: &Node, path: &str) -> Option<DnsCache> {
    let name = node.get("name")?.as_str()?.to_string();
    Some(DnsCache {
        resource,
        name,
        at: node.at,
        field_path: path.to_string(),
        config: node.clone(),
    })
}

/// Calls `f` on every mapping under `node` (including itself), with its path.
pub fn walk(node: &Node, path: &str, f: &mut dyn FnMut(&Node, &str)) {
    match &node.value {
        Value::Map(entries) => {
            f(node, path);
            for (k, v) in entries {
                let key = k.scalar_text().unwrap_or_default();
                walk(v, &format!("{path}.{key}"), f);
            }
        }
        Value::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, &format!("{path}[{i}]"), f);
            }
        }
        _ => {}
    }
}

fn host_list(place: Place, resource: usize, key: &Node, value: &Node, path: &str) -> HostList {
    let hosts = value
        .items()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let raw = h.scalar_text().unwrap_or_default();
            let parsed = Pattern::parse(&raw);
            Host {
                key: parsed.as_ref().ok().map(|(p, _)| p.to_string()),
                parsed,
                raw,
                at: h.at,
                field_path: format!("{path}[{i}]"),
            }
        })
        .collect();
    HostList {
        place,
        resource,
        at: key.at,
        field_path: path.to_string(),
        hosts,
        scope: String::new(),
    }
}

/// Gateway names of a `gateways:` list.
pub fn gateway_names(node: Option<&Node>) -> Vec<String> {
    match node {
        None => vec!["mesh".to_string()],
        Some(n) => n
            .items()
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
    }
}

/// The string-to-string map at `node` (labels, selectors).
pub fn labels(node: Option<&Node>) -> Vec<(String, String)> {
    node.map(Node::entries)
        .unwrap_or(&[])
        .iter()
        .filter_map(|(k, v)| Some((k.scalar_text()?, v.scalar_text()?)))
        .collect()
}

/// Every `selector` label is present with the same value in `labels`.
pub fn selects(selector: &[(String, String)], labels: &[(String, String)]) -> bool {
    selector.iter().all(|s| labels.contains(s))
}
