//! `egressgen migrate`: reads the manifests of the Istio <=1.19 "wildcard
//! configuration for arbitrary domains" recipe and writes the equivalent
//! EgressGateway config, plus a migration plan.
//!
//! The recipe (istio.io `wildcard-egress-hosts`, e.g.
//! istio/istio.io `content/docs/examples/advanced-gateways/wildcard-egress-hosts/index.md`
//! for Istio 1.1 and
//! `content/en/docs/tasks/traffic-management/egress/wildcard-egress-hosts/snips.sh`
//! up to 1.19) routes TLS from sidecars over mTLS to a dedicated egress
//! gateway, which hands it to an nginx `ssl_preread` SNI proxy at
//! `sni-proxy.local` (127.0.0.1:8443), with EnvoyFilters that insert the
//! `forward_downstream_sni` (sidecars) and `sni_verifier` (gateway) filters.
//! Istio 1.20 removed those filters (and `tcp_cluster_rewrite`, used with
//! `sni_cluster` by a variant) from its proxy.
//!
//! This module recognises those resources in any mix of files (both
//! EnvoyFilter APIs: `workloadLabels`/`filters` and `configPatches`,
//! anchored on `mixer` or `istio.stats`), collects their domain lists and
//! ports, reports where they disagree, and says what to delete. It reads
//! YAML with the lint loader (positions for every finding) and writes the
//! config through a template; it never decides whether a host is allowed.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use serde::Serialize;

use crate::config::{self, Overrides};
use crate::domain::{Allowlist, Pattern};
use crate::escape::{escaped, quoted};
use crate::lint::Source;
use crate::lint::extract::{api_group, is_istio_api, labels, selects};
use crate::lint::load::{self, Node, Pos, Value};

/// Filters Istio 1.20 removed from its proxy: with the nginx SNI proxy,
/// the recipe's signature. (`sni_cluster`, which the recipe's variant used
/// with `tcp_cluster_rewrite`, is still in Envoy: the post-1.20 pattern
/// that egressgen renders uses it too, so it proves nothing alone.)
const REMOVED_FILTERS: &[&str] = &[
    "forward_downstream_sni",
    "sni_verifier",
    "envoy.filters.network.tcp_cluster_rewrite",
    "tcp_cluster_rewrite",
];

/// The nginx sidecar's registry name in the recipe.
const SNI_PROXY_HOST: &str = "sni-proxy.local";

/// Most upstream ports carried over (the config's own limit).
const MAX_PORTS: usize = 16;

/// What `migrate` needs besides the inputs.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Written as `spec.istio.version` when given.
    pub istio_version: Option<String>,
    /// How the written config is named in the plan (`-o` path).
    pub output_name: Option<String>,
}

/// The result: the config text and the plan for a human.
#[derive(Debug, Clone)]
pub struct Migration {
    pub config: String,
    pub plan: String,
    /// Disagreements and skipped entries the user should review.
    pub review: usize,
}

/// Input that cannot be migrated: exit 2.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// A file that cannot be read or parsed, told as lint tells it
    /// (`file:line:col: error: ...`, the file name escaped).
    #[error("{0}")]
    Input(#[from] load::InputError),
    /// Input that is not the old recipe, or that the new config cannot hold.
    #[error("error: {message}{}", help.as_ref().map(|h| format!("\n  help: {h}")).unwrap_or_default())]
    Recipe {
        message: String,
        help: Option<String>,
    },
}

/// One Kubernetes object of the input.
#[derive(Debug, Clone)]
struct Obj {
    file: String,
    at: Pos,
    api_version: String,
    kind: String,
    name: String,
    namespace: Option<String>,
    node: Node,
}

impl Obj {
    fn loc(&self) -> String {
        format!(
            "{}:{}:{}",
            escaped(&self.file),
            self.at.line,
            self.at.column
        )
    }
    fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {}/{}", self.kind, escaped(ns), escaped(&self.name)),
            None => format!("{} {}", self.kind, escaped(&self.name)),
        }
    }
    fn spec(&self) -> Option<&Node> {
        self.node.get("spec")
    }
}

/// A list of hosts in one old resource.
struct HostList {
    /// Which copy of the allowlist this is; lists of one role are compared
    /// as their union (several VirtualServices may split the hosts).
    role: &'static str,
    at: String,
    patterns: Vec<Pattern>,
}

const VS_HOSTS: &str = "VirtualService hosts";
const VS_SNI: &str = "VirtualService sniHosts (mesh)";
const VS_GATEWAY_SNI: &str = "VirtualService sniHosts (gateway side)";
const GW_HOSTS: &str = "Gateway hosts";
const SE_HOSTS: &str = "ServiceEntry hosts";

const PORT_ROUTE: &str = "VirtualService match port";
const PORT_ENTRY: &str = "ServiceEntry port";
const PORT_NGINX: &str = "nginx proxy_pass port";

/// The old gateway's Service, as routes name it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ServiceRef {
    name: String,
    namespace: Option<String>,
}

impl ServiceRef {
    /// `name` or `name.ns.svc.cluster.local`; a name without a dot is in the
    /// namespace of the resource that names it. Anything else (`name.ns`,
    /// `name.ns.svc` too: Istio expands no name with a dot, as lint's
    /// `rules::fqdn` says) is an external host, not the gateway.
    fn parse(host: &str, default_ns: Option<&str>) -> Option<ServiceRef> {
        let trimmed = host.strip_suffix(".svc.cluster.local").unwrap_or(host);
        let parts: Vec<&str> = trimmed.split('.').collect();
        let cluster_local = trimmed.len() != host.len();
        match parts.as_slice() {
            [name] if !cluster_local => Some(ServiceRef {
                name: name.to_string(),
                namespace: default_ns.map(str::to_string),
            }),
            [name, ns] if cluster_local => Some(ServiceRef {
                name: name.to_string(),
                namespace: Some(ns.to_string()),
            }),
            _ => None,
        }
    }
    fn matches(&self, name: &str, ns: Option<&str>) -> bool {
        self.name == name
            && match (&self.namespace, ns) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// What the recipe's resources told us.
#[derive(Default)]
struct Found {
    /// Indices of recognised objects, with the role they play.
    old: Vec<(usize, &'static str)>,
    lists: Vec<HostList>,
    /// Upstream ports: port, role, where it was read.
    ports: Vec<(u16, &'static str, String)>,
    gateway_services: Vec<ServiceRef>,
    subsets: Vec<String>,
    config_namespaces: BTreeSet<Option<String>>,
    review: Vec<String>,
    nginx: bool,
    nginx_resolver: Option<String>,
    sni_cluster: bool,
    filters_api: bool,
    mixer_anchor: bool,
    passthrough: bool,
    file_certs: bool,
    operator_gateways: Vec<String>,
    /// Selectors of the old Gateways.
    old_selectors: Vec<Vec<(String, String)>>,
}

/// Pod labels for the new gateway when the old one's selector would also
/// pick the new pods (the default `istio: egressgateway`).
const SIDE_BY_SIDE_LABEL: (&str, &str) = ("istio", "egressgateway-sni-forwarder");

/// Reads sources and migrates them.
pub fn migrate(sources: &[Source], opts: &Options) -> Result<Migration, Error> {
    let mut objs = Vec::new();
    for (i, s) in sources.iter().enumerate() {
        for doc in load::parse(i, &s.name, &s.text)? {
            collect(&s.name, doc.root, &mut objs);
        }
    }
    let mut f = Found::default();
    recognise(&objs, &mut f)?;

    // The domains: the union of every list, each entry normalised.
    let mut all = Vec::new();
    for l in &f.lists {
        all.extend(l.patterns.iter().cloned());
    }
    let (allowlist, dropped) = Allowlist::new(all);
    if allowlist.is_empty() {
        return Err(Error::Recipe {
            message: "the old resources list no domain that egressgen can allow".into(),
            help: Some("check the hosts of the ServiceEntry and VirtualService".into()),
        });
    }
    let mut disagreements = Vec::new();
    for role in [VS_HOSTS, VS_SNI, VS_GATEWAY_SNI, GW_HOSTS, SE_HOSTS] {
        let lists: Vec<&HostList> = f.lists.iter().filter(|l| l.role == role).collect();
        if lists.is_empty() {
            continue;
        }
        for p in allowlist.entries() {
            let held = lists
                .iter()
                .any(|l| l.patterns.iter().any(|q| q == p || q.covers(p)));
            if !held {
                let at: Vec<&str> = lists.iter().map(|l| l.at.as_str()).collect();
                disagreements.push(format!(
                    "`{p}` is not in the old {role} ({}): the old recipe refused it there; the new allowlist allows it",
                    at.join(", ")
                ));
            }
        }
    }
    let mut ports: Vec<u16> = Vec::new();
    for (p, _, _) in &f.ports {
        if !ports.contains(p) {
            ports.push(*p);
        }
    }
    if ports.is_empty() {
        ports.push(443);
    }
    if ports.len() > MAX_PORTS {
        return Err(Error::Recipe {
            message: format!(
                "the old resources use {} upstream ports; egressgen supports at most {MAX_PORTS}",
                ports.len()
            ),
            help: None,
        });
    }
    for role in [PORT_ROUTE, PORT_ENTRY, PORT_NGINX] {
        let here: Vec<&(u16, &str, String)> =
            f.ports.iter().filter(|(_, r, _)| *r == role).collect();
        if here.is_empty() {
            continue;
        }
        for p in &ports {
            if !here.iter().any(|(q, _, _)| q == p) {
                let at: Vec<&str> = here.iter().map(|(_, _, a)| a.as_str()).collect();
                disagreements.push(format!(
                    "upstream port {p} is not an old {role} ({}); the new gateway forwards every listed domain on every listed port",
                    at.join(", ")
                ));
            }
        }
    }

    let name = f
        .subsets
        .iter()
        .find(|s| config_name_ok(s))
        .cloned()
        .unwrap_or_else(|| "migrated".to_string());
    let config_namespace = match f.config_namespaces.iter().collect::<Vec<_>>().as_slice() {
        [Some(ns)] if config_name_ok(ns) => Some(ns.clone()),
        _ => None,
    };
    let files: Vec<String> = f
        .old
        .iter()
        .map(|(i, _)| escaped(&objs[*i].file))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // The new gateway must not be selected by the old Gateway, nor the old
    // pods by the new one, while both run. The old pods carry at least the
    // old selector's labels, so either set inside the other is a clash.
    let defaults = config::GatewaySpec::default().labels.value;
    let default_labels: Vec<(String, String)> = defaults.into_iter().collect();
    let clash = f
        .old_selectors
        .iter()
        .any(|s| selectors_clash(s, &default_labels));
    let labels: Vec<(String, String)> = if clash {
        vec![(
            SIDE_BY_SIDE_LABEL.0.to_string(),
            SIDE_BY_SIDE_LABEL.1.to_string(),
        )]
    } else {
        Vec::new()
    };

    #[derive(Serialize)]
    struct Ctx<'a> {
        version: &'static str,
        files: &'a [String],
        name: &'a str,
        labels: &'a [(String, String)],
        istio_version: Option<&'a str>,
        config_namespace: Option<&'a str>,
        ports: Option<&'a [u16]>,
        domains: Vec<String>,
    }
    let ctx = Ctx {
        version: env!("CARGO_PKG_VERSION"),
        files: &files,
        name: &name,
        labels: &labels,
        istio_version: opts.istio_version.as_deref(),
        config_namespace: config_namespace.as_deref(),
        ports: (ports != [443]).then_some(ports.as_slice()),
        domains: allowlist.entries().iter().map(|p| p.to_string()).collect(),
    };
    let config_text =
        crate::render::render_template("egressgateway", &ctx).map_err(|e| Error::Recipe {
            message: e.to_string(),
            help: None,
        })?;
    let mut config_text = config_text;
    config_text.push('\n');
    // What we write must load: the round trip starts here.
    let (new_cfg, _) = config::parse("migrated config", &config_text, &Overrides::default())
        .map_err(|e| Error::Recipe {
            message: format!("the migrated config does not load: {e}"),
            help: Some(
                "pass --istio-version X.Y with a supported version (1.16 or newer), or fix the old ports".into(),
            ),
        })?;
    // An old object with the name of one the new config renders is
    // replaced by step 1: deleting it afterwards would delete the new one.
    let rendered = crate::render::render(&new_cfg).map_err(|e| Error::Recipe {
        message: format!("the migrated config does not render: {e}"),
        help: None,
    })?;
    let new_objs: Vec<(String, String, String, String)> =
        load::parse(0, "rendered", &rendered.manifest)?
            .into_iter()
            .map(|d| {
                let text = |p: &[&str]| {
                    d.root
                        .path(p)
                        .and_then(Node::as_str)
                        .unwrap_or("")
                        .to_string()
                };
                let api = text(&["apiVersion"]);
                let group = api_group(&api).to_string();
                (
                    group,
                    text(&["kind"]),
                    text(&["metadata", "namespace"]),
                    text(&["metadata", "name"]),
                )
            })
            .collect();
    let replaced: Vec<usize> = f
        .old
        .iter()
        .map(|(i, _)| *i)
        .filter(|i| {
            let o = &objs[*i];
            let group = api_group(&o.api_version);
            new_objs.iter().any(|(g, k, ns, n)| {
                g == group
                    && *k == o.kind
                    && *n == o.name
                    // No namespace in the file: applied to the context's,
                    // `default` unless set otherwise.
                    && o.namespace.as_deref().unwrap_or("default") == ns
            })
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for i in &replaced {
        f.review.push(format!(
            "{} ({}) has the name of an object the new config renders: step 1 replaces it in place, so it is not deleted",
            objs[*i].display(),
            objs[*i].loc()
        ));
    }

    let review = disagreements.len() + f.review.len();
    let plan = plan(
        &objs,
        &f,
        &allowlist,
        &dropped,
        &disagreements,
        &ports,
        config_namespace.as_deref(),
        clash,
        &replaced,
        opts,
    );
    Ok(Migration {
        config: config_text,
        plan,
        review,
    })
}

/// Adds an object, unwrapping `kind: List`.
fn collect(file: &str, node: Node, out: &mut Vec<Obj>) {
    let text = |n: &Node, k: &str| n.get(k).and_then(Node::as_str).map(str::to_string);
    if text(&node, "kind").as_deref() == Some("List") {
        if let Some(items) = node.get("items") {
            for item in items.items() {
                collect(file, item.clone(), out);
            }
        }
        return;
    }
    let (Some(api_version), Some(kind)) = (text(&node, "apiVersion"), text(&node, "kind")) else {
        return;
    };
    let meta = node.get("metadata");
    out.push(Obj {
        file: file.to_string(),
        at: node.at,
        api_version,
        kind,
        name: meta.and_then(|m| text(m, "name")).unwrap_or_default(),
        namespace: meta.and_then(|m| text(m, "namespace")),
        node,
    });
}

fn is_istio(o: &Obj) -> bool {
    is_istio_api(&o.api_version)
}

/// Istio objects of one kind.
fn of_kind<'a>(objs: &'a [Obj], kind: &'a str) -> impl Iterator<Item = (usize, &'a Obj)> {
    objs.iter()
        .enumerate()
        .filter(move |(_, o)| o.kind == kind && is_istio(o))
}

fn strings(n: Option<&Node>) -> Vec<(String, Pos)> {
    n.map(Node::items)
        .unwrap_or(&[])
        .iter()
        .filter_map(|h| h.scalar_text().map(|s| (s, h.at)))
        .collect()
}

/// `sniHosts`, or `sni_hosts` as Istio <=1.1 documents wrote it.
fn sni_hosts(m: &Node) -> Option<&Node> {
    m.get("sniHosts").or_else(|| m.get("sni_hosts"))
}

/// The gateways a route match applies to: its own `gateways`, else its
/// VirtualService's.
fn match_gateways(m: &Node, vs_gateways: &[String]) -> Vec<String> {
    m.get("gateways")
        .map_or_else(|| vs_gateways.to_vec(), |g| gateway_names(Some(g)))
}

fn gateway_names(n: Option<&Node>) -> Vec<String> {
    match n {
        None => vec!["mesh".to_string()],
        Some(n) => strings(Some(n)).into_iter().map(|(s, _)| s).collect(),
    }
}

/// The hosts that VirtualServices with a TLS or TCP route at a Gateway (not
/// `mesh`) route:
/// their `hosts` and gateway-side `sniHosts`, each with the index of its
/// VirtualService. The recipe routes each allowed name twice, from the mesh
/// to the egress gateway and again at the gateway, in one VirtualService
/// or in two.
#[derive(Default)]
struct GatewayRouted {
    /// VirtualServices with a `*` host: every name.
    any: Vec<usize>,
    patterns: Vec<(Pattern, usize)>,
}

impl GatewayRouted {
    fn of(objs: &[Obj]) -> GatewayRouted {
        let mut routed = GatewayRouted::default();
        for (i, vs) in of_kind(objs, "VirtualService") {
            let Some(spec) = vs.spec() else { continue };
            let vs_gws = gateway_names(spec.get("gateways"));
            if vs_gws.iter().all(|g| g == "mesh") {
                continue;
            }
            // Only TLS or TCP routes at a Gateway carry the recipe's names
            // there; an HTTP route (an ingress VirtualService, often with
            // `hosts: ["*"]`) does not make a mesh route the recipe's.
            let at_gateway = |route: &Node| {
                let matches = route.list("match");
                matches.is_empty()
                    || matches
                        .iter()
                        .any(|m| match_gateways(m, &vs_gws).iter().any(|g| g != "mesh"))
            };
            if !spec
                .list("tls")
                .iter()
                .chain(spec.list("tcp").iter())
                .any(at_gateway)
            {
                continue;
            }
            let mut hosts = strings(spec.get("hosts"));
            for m in spec.list("tls").iter().flat_map(|r| r.list("match")) {
                if match_gateways(m, &vs_gws).iter().any(|g| g != "mesh") {
                    hosts.extend(strings(sni_hosts(m)));
                }
            }
            for (h, _) in hosts {
                if h == "*" {
                    routed.any.push(i);
                } else if let Ok((p, _)) = Pattern::parse(&h) {
                    routed.patterns.push((p, i));
                }
            }
        }
        routed
    }

    /// The VirtualServices whose Gateway-bound routes take some of the
    /// names of `host`, with Istio's host matching (`*.example.com` and
    /// `a.example.com` share a name either way round, `*` takes every
    /// name).
    fn takers(&self, host: &str) -> BTreeSet<usize> {
        let mut out: BTreeSet<usize> = self.any.iter().copied().collect();
        if let Ok((h, _)) = Pattern::parse(host) {
            out.extend(
                self.patterns
                    .iter()
                    .filter(|(p, _)| *p == h || p.covers(&h) || h.covers(p))
                    .map(|(_, i)| *i),
            );
        }
        out
    }
}

/// The role of a VirtualService that routes the names only at the old
/// Gateway: it goes with the rest of the recipe (step 4), once no sidecar
/// sends traffic there.
const GATEWAY_SIDE_ROUTE: &str = "routes the allowed names at the old gateway";

/// The Gateways (name, namespace) a VirtualService binds, but `mesh`.
fn bound_gateways(vs: &Obj, gateways: &[String]) -> Vec<(String, Option<String>)> {
    gateways
        .iter()
        .filter(|g| *g != "mesh")
        .map(|g| {
            let (ns, name) = crate::lint::rules::gateway_ref(g, vs.namespace.as_deref());
            (name.to_string(), ns.map(str::to_string))
        })
        .collect()
}

fn recognise(objs: &[Obj], f: &mut Found) -> Result<(), Error> {
    let old_gateways = recognise_routes(objs, f)?;
    recognise_pieces(objs, f, &old_gateways)?;
    recognise_workload(objs, f);
    Ok(())
}

/// Step 1: VirtualServices that send mesh TLS for sniHosts to a
/// cluster-local service, the old gateway: the VirtualService is bound to a
/// Gateway too, or another one routes the same names at a Gateway (the
/// recipe split in two). A mesh TLS route with neither is an ordinary
/// in-mesh route, not the recipe's. Returns the Gateways they name (name,
/// namespace).
fn recognise_routes(objs: &[Obj], f: &mut Found) -> Result<Vec<(String, Option<String>)>, Error> {
    let at_gateway = GatewayRouted::of(objs);
    // VirtualServices that route a mesh route's names at the gateway, when
    // the recipe's routes are split in two.
    let mut gateway_sides = BTreeSet::new();
    let mut old_gateways: Vec<(String, Option<String>)> = Vec::new();
    for (i, vs) in of_kind(objs, "VirtualService") {
        let Some(spec) = vs.spec() else { continue };
        let vs_gws = gateway_names(spec.get("gateways"));
        let bound_to_gateway = vs_gws.iter().any(|g| g != "mesh");
        let mut in_mesh_only = false;
        let mut is_recipe = false;
        let mut sni_lists = Vec::new();
        for route in spec.list("tls") {
            let dests: Vec<&Node> = route
                .list("route")
                .iter()
                .filter_map(|r| r.get("destination"))
                .collect();
            for m in route.list("match") {
                let gws = match_gateways(m, &vs_gws);
                let Some(sni) = sni_hosts(m) else { continue };
                if gws.iter().any(|g| g == "mesh") {
                    if !bound_to_gateway {
                        let takers: BTreeSet<usize> = strings(Some(sni))
                            .iter()
                            .flat_map(|(s, _)| at_gateway.takers(s))
                            .collect();
                        if takers.is_empty() {
                            in_mesh_only = true;
                            continue;
                        }
                        gateway_sides.extend(takers);
                    }
                    for d in &dests {
                        let Some(host) = d.get("host").and_then(Node::as_str) else {
                            continue;
                        };
                        let Some(svc) = ServiceRef::parse(host, vs.namespace.as_deref()) else {
                            continue;
                        };
                        is_recipe = true;
                        if !f.gateway_services.contains(&svc) {
                            f.gateway_services.push(svc);
                        }
                        if let Some(s) = d.get("subset").and_then(Node::as_str) {
                            f.subsets.push(s.to_string());
                        }
                    }
                    if let Some(p) = m.get("port").and_then(Node::as_i64) {
                        push_port(f, p, PORT_ROUTE, vs, m.get("port").map_or(vs.at, |n| n.at));
                    }
                    sni_lists.push((VS_SNI, sni));
                } else {
                    // A gateway-side TLS route (the no-mTLS variant).
                    sni_lists.push((VS_GATEWAY_SNI, sni));
                    for d in &dests {
                        if d.get("host").and_then(Node::as_str) == Some(SNI_PROXY_HOST) {
                            f.nginx = true;
                        }
                    }
                }
            }
        }
        for route in spec.list("tcp") {
            for r in route.list("route") {
                if r.path(&["destination", "host"]).and_then(Node::as_str) == Some(SNI_PROXY_HOST) {
                    f.nginx = true;
                }
            }
        }
        if in_mesh_only && !is_recipe {
            f.review.push(format!(
                "{} ({}) routes mesh TLS by sniHosts, but is bound to no Gateway and no VirtualService routes those names at one: left alone, as not part of the recipe",
                vs.display(),
                vs.loc()
            ));
        }
        if !is_recipe {
            continue;
        }
        f.old
            .push((i, "routes the allowed names to the old gateway"));
        f.config_namespaces.insert(vs.namespace.clone());
        gateway_sides.remove(&i);
        old_gateways.extend(bound_gateways(vs, &vs_gws));
        if let Some(hosts) = spec.get("hosts") {
            push_list(f, VS_HOSTS, vs, hosts);
        }
        for (role, node) in sni_lists {
            push_list(f, role, vs, node);
        }
    }
    for j in gateway_sides {
        let vs = &objs[j];
        if f.old.iter().any(|(i, _)| *i == j) {
            continue;
        }
        f.old
            .push((j, "routes the allowed names at the old gateway"));
        f.config_namespaces.insert(vs.namespace.clone());
        let spec = vs.spec();
        old_gateways.extend(bound_gateways(
            vs,
            &gateway_names(spec.and_then(|s| s.get("gateways"))),
        ));
        if let Some(hosts) = spec.and_then(|s| s.get("hosts")) {
            push_list(f, VS_HOSTS, vs, hosts);
        }
    }
    if f.gateway_services.is_empty() {
        return Err(Error::Recipe {
            message: "found no VirtualService that routes TLS `sniHosts` from the mesh to an egress gateway; this does not look like the Istio <=1.19 wildcard egress recipe".into(),
            help: Some("pass the files or directories that hold the recipe's VirtualService, Gateway, DestinationRule, ServiceEntry and EnvoyFilters".into()),
        });
    }
    Ok(old_gateways)
}

/// Step 2: the rest of the recipe. ServiceEntries last, each matched
/// against the routes' and Gateways' names only, so that neither input
/// order nor one ServiceEntry can pull in another. Fails without the
/// recipe's signature.
fn recognise_pieces(
    objs: &[Obj],
    f: &mut Found,
    old_gateways: &[(String, Option<String>)],
) -> Result<(), Error> {
    let entries_last = objs
        .iter()
        .enumerate()
        .filter(|(_, o)| o.kind != "ServiceEntry")
        .chain(
            objs.iter()
                .enumerate()
                .filter(|(_, o)| o.kind == "ServiceEntry"),
        );
    let mut routed: Option<Vec<Pattern>> = None;
    for (i, o) in entries_last {
        let spec = o.spec();
        match o.kind.as_str() {
            "Gateway" if is_istio(o) => {
                let named = old_gateways.iter().any(|(n, ns)| {
                    *n == o.name && (ns.is_none() || o.namespace.is_none() || *ns == o.namespace)
                });
                if !named {
                    continue;
                }
                f.old.push((i, "the old gateway's listener"));
                for server in spec
                    .and_then(|s| s.get("servers"))
                    .map(Node::items)
                    .unwrap_or(&[])
                {
                    match server.path(&["tls", "mode"]).and_then(Node::as_str) {
                        Some("PASSTHROUGH") => f.passthrough = true,
                        Some("MUTUAL") => f.file_certs = true,
                        _ => {}
                    }
                    if let Some(hosts) = server.get("hosts") {
                        let hosts_no_ns = Node {
                            at: hosts.at,
                            value: Value::Seq(
                                hosts
                                    .items()
                                    .iter()
                                    .filter_map(|h| {
                                        let s = h.as_str()?;
                                        let s = s.split_once('/').map_or(s, |(_, h)| h);
                                        (s != "*").then(|| Node {
                                            at: h.at,
                                            value: Value::Str(s.to_string()),
                                            kubectl_bool: None,
                                        })
                                    })
                                    .collect(),
                            ),
                            kubectl_bool: None,
                        };
                        if !hosts_no_ns.items().is_empty() {
                            push_list(f, GW_HOSTS, o, &hosts_no_ns);
                        }
                    }
                }
            }
            "DestinationRule" if is_istio(o) => {
                let Some(host) = spec.and_then(|s| s.get("host")).and_then(Node::as_str) else {
                    continue;
                };
                if host == SNI_PROXY_HOST {
                    f.nginx = true;
                    f.old.push((i, "disables mTLS to the nginx SNI proxy"));
                    continue;
                }
                let Some(svc) = ServiceRef::parse(host, o.namespace.as_deref()) else {
                    continue;
                };
                if f.gateway_services
                    .iter()
                    .any(|g| g.matches(&svc.name, svc.namespace.as_deref()))
                {
                    f.old.push((i, "mTLS and subset for the old gateway"));
                }
            }
            "ServiceEntry" if is_istio(o) => {
                let hosts = spec.and_then(|s| s.get("hosts"));
                let host_strings = strings(hosts);
                if host_strings.iter().any(|(h, _)| h == SNI_PROXY_HOST) {
                    f.nginx = true;
                    f.old.push((i, "registers the nginx SNI proxy (127.0.0.1)"));
                    continue;
                }
                // Part of the recipe when it names any host the routes name.
                let routed: &Vec<Pattern> = routed.get_or_insert_with(|| {
                    f.lists.iter().flat_map(|l| l.patterns.clone()).collect()
                });
                let overlaps = host_strings.iter().any(|(h, _)| {
                    Pattern::parse(h).is_ok_and(|(p, _)| {
                        routed
                            .iter()
                            .any(|q| *q == p || q.covers(&p) || p.covers(q))
                    })
                });
                if !overlaps {
                    continue;
                }
                f.old.push((i, "registers the allowed names"));
                if let Some(h) = hosts {
                    push_list(f, SE_HOSTS, o, h);
                }
                for port in spec
                    .and_then(|s| s.get("ports"))
                    .map(Node::items)
                    .unwrap_or(&[])
                {
                    let proto = port
                        .get("protocol")
                        .and_then(Node::as_str)
                        .unwrap_or("")
                        .to_ascii_uppercase();
                    if proto == "TLS" || proto == "HTTPS" {
                        if let Some(n) = port.get("number") {
                            if let Some(v) = n.as_i64() {
                                push_port(f, v, PORT_ENTRY, o, n.at);
                            }
                        }
                    }
                }
            }
            "EnvoyFilter" if is_istio(o) => {
                let mut names = Vec::new();
                walk_strings(&o.node, None, &mut |key, s| {
                    if matches!(key, "name" | "filterName") && REMOVED_FILTERS.contains(&s) {
                        names.push(s.to_string());
                    }
                    if key == "name" && s == "mixer" {
                        f.mixer_anchor = true;
                    }
                });
                if names.is_empty() {
                    continue;
                }
                if spec.is_some_and(|s| s.get("filters").is_some()) {
                    f.filters_api = true;
                }
                if names.iter().any(|n| n.contains("tcp_cluster_rewrite")) {
                    f.sni_cluster = true;
                }
                names.dedup();
                let role: &'static str = if names.iter().any(|n| n == "forward_downstream_sni") {
                    "inserts forward_downstream_sni (removed in Istio 1.20)"
                } else if names.iter().any(|n| n == "sni_verifier") {
                    "inserts sni_verifier (removed in Istio 1.20)"
                } else {
                    "inserts tcp_cluster_rewrite with sni_cluster (tcp_cluster_rewrite removed in Istio 1.20)"
                };
                f.old.push((i, role));
            }
            "ConfigMap" => {
                let mut conf = None;
                for (_, v) in spec
                    .or(o.node.get("data"))
                    .map(Node::entries)
                    .unwrap_or(&[])
                {
                    if let Some(s) = v.as_str() {
                        if s.contains("ssl_preread") {
                            conf = Some(s.to_string());
                        }
                    }
                }
                let Some(conf) = conf else { continue };
                f.nginx = true;
                f.old.push((i, "the nginx SNI proxy's configuration"));
                if let Some(port) = nginx_upstream_port(&conf) {
                    push_port(f, i64::from(port), PORT_NGINX, o, o.at);
                }
                f.nginx_resolver = nginx_resolver(&conf);
            }
            "IstioOperator" => {
                for g in spec
                    .and_then(|s| s.path(&["components", "egressGateways"]))
                    .map(Node::items)
                    .unwrap_or(&[])
                {
                    if let Some(n) = g.get("name").and_then(Node::as_str) {
                        if f.gateway_services.iter().any(|s| s.name == n) {
                            f.operator_gateways.push(format!("{n} ({})", o.loc()));
                        }
                    }
                }
            }
            _ => {}
        }
    }

    // Routes to a gateway alone are not the recipe: egressgen's own output
    // and the post-1.20 pattern have them too, and migrating those would
    // plan to delete what replaces them.
    let signature = f.nginx || f.old.iter().any(|(i, _)| objs[*i].kind == "EnvoyFilter");
    if !signature {
        return Err(Error::Recipe {
            message: "found routes to an egress gateway, but none of the recipe's own pieces: no EnvoyFilter with forward_downstream_sni, sni_verifier or tcp_cluster_rewrite (removed in Istio 1.20), and no nginx SNI proxy; this does not look like the Istio <=1.19 wildcard egress recipe".into(),
            help: Some("egressgen's own manifests and the post-1.20 pattern need no migration (check them with `egressgen lint`); for the old recipe, pass its EnvoyFilters too".into()),
        });
    }
    Ok(())
}

/// Step 3: the old gateway's own workload (Service, pods, their identity,
/// autoscaler), when the input holds it.
fn recognise_workload(objs: &[Obj], f: &mut Found) {
    let selectors: Vec<Vec<(String, String)>> = f
        .old
        .iter()
        .filter(|(i, _)| objs[*i].kind == "Gateway")
        .map(|(i, _)| labels(objs[*i].spec().and_then(|s| s.get("selector"))))
        .collect();
    f.old_selectors = selectors.clone();
    let mut deployments: Vec<(String, Option<String>)> = Vec::new();
    for (i, o) in objs.iter().enumerate() {
        match (o.api_version.as_str(), o.kind.as_str()) {
            ("v1", "Service")
                if f.gateway_services
                    .iter()
                    .any(|g| g.matches(&o.name, o.namespace.as_deref())) =>
            {
                f.old.push((i, "the old gateway's Service"));
            }
            (_, "Deployment") => {
                let pod = labels(o.node.path(&["spec", "template", "metadata", "labels"]));
                let selected = selectors.iter().any(|s| !s.is_empty() && selects(s, &pod));
                if selected {
                    f.old.push((i, "the old gateway pods (Envoy + nginx)"));
                    deployments.push((o.name.clone(), o.namespace.clone()));
                }
            }
            _ => {}
        }
    }
    let accounts: Vec<(String, Option<String>)> = f
        .old
        .iter()
        .filter(|(i, _)| objs[*i].kind == "Deployment")
        .filter_map(|(i, _)| {
            let d = &objs[*i];
            d.node
                .path(&["spec", "template", "spec", "serviceAccountName"])
                .and_then(Node::as_str)
                .map(|sa| (sa.to_string(), d.namespace.clone()))
        })
        .collect();
    for (i, o) in objs.iter().enumerate() {
        if o.api_version == "v1"
            && o.kind == "ServiceAccount"
            && accounts
                .iter()
                .any(|(sa, ns)| *sa == o.name && *ns == o.namespace)
        {
            f.old.push((i, "the old gateway pods' identity"));
        }
        // The HPA scales a Deployment of its own namespace.
        let target = |k: &str| {
            o.node
                .path(&["spec", "scaleTargetRef", k])
                .and_then(Node::as_str)
        };
        if o.kind == "HorizontalPodAutoscaler"
            && target("kind") == Some("Deployment")
            && target("name").is_some_and(|n| {
                deployments
                    .iter()
                    .any(|(d, ns)| d == n && *ns == o.namespace)
            })
        {
            f.old.push((i, "scales the old gateway"));
        }
    }
}

/// Whether an old Gateway's selector and the new gateway's pod labels
/// pick each other's pods: the old pods carry at least the old selector's
/// labels, so either set inside the other is a clash.
fn selectors_clash(old: &[(String, String)], new: &[(String, String)]) -> bool {
    let within = |a: &[(String, String)], b: &[(String, String)]| a.iter().all(|kv| b.contains(kv));
    !old.is_empty() && (within(old, new) || within(new, old))
}

fn push_port(f: &mut Found, p: i64, role: &'static str, o: &Obj, at: Pos) {
    let at = format!("{}:{}:{}", escaped(&o.file), at.line, at.column);
    match u16::try_from(p) {
        Ok(port) if port > 0 => f.ports.push((port, role, at)),
        _ => f
            .review
            .push(format!("skipped {role} {p} ({at}): not a TCP port")),
    }
}

fn push_list(f: &mut Found, role: &'static str, o: &Obj, hosts: &Node) {
    let what = format!("{} ({role})", o.display());
    let mut patterns = Vec::new();
    for h in hosts.items() {
        let Some(raw) = h.scalar_text() else { continue };
        match Pattern::parse(&raw) {
            Ok((p, _)) => patterns.push(p),
            Err(e) => f.review.push(format!(
                "skipped host {} in {what} ({}:{}:{}): {e}",
                quoted(&raw),
                escaped(&o.file),
                h.at.line,
                h.at.column
            )),
        }
    }
    f.lists.push(HostList {
        role,
        at: format!("{}:{}:{}", escaped(&o.file), hosts.at.line, hosts.at.column),
        patterns,
    });
}

/// Calls `f(key, value)` for every string value under a mapping key.
fn walk_strings(n: &Node, key: Option<&str>, f: &mut dyn FnMut(&str, &str)) {
    match &n.value {
        Value::Str(s) => f(key.unwrap_or(""), s),
        Value::Seq(items) => items.iter().for_each(|i| walk_strings(i, key, f)),
        Value::Map(entries) => {
            for (k, v) in entries {
                let k = k.scalar_text().unwrap_or_default();
                walk_strings(v, Some(&k), f);
            }
        }
        _ => {}
    }
}

/// The port of `proxy_pass $ssl_preread_server_name:PORT;`.
fn nginx_upstream_port(conf: &str) -> Option<u16> {
    conf.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("proxy_pass"))
        .find_map(|l| {
            let target = l
                .trim_start_matches("proxy_pass")
                .trim()
                .trim_end_matches(';');
            let (host, port) = target.rsplit_once(':')?;
            host.contains("ssl_preread_server_name")
                .then(|| port.trim().parse().ok())
                .flatten()
        })
}

/// The `resolver` directive's first address.
fn nginx_resolver(conf: &str) -> Option<String> {
    conf.lines().map(str::trim).find_map(|l| {
        let rest = l.strip_prefix("resolver ")?;
        rest.split_whitespace()
            .next()
            .map(|s| s.trim_end_matches(';').to_string())
    })
}

/// A DNS label fit for a Kubernetes name.
fn config_name_ok(s: &str) -> bool {
    crate::schema::check_dns_label(s).is_ok()
}

/// A name or namespace safe to paste into a shell command: a Kubernetes
/// name (DNS-1123 subdomain), which starts and ends with a letter or digit,
/// so it can never be read as a flag (`--all`).
fn shell_safe(s: &str) -> bool {
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    s.len() <= 253
        && edge(s.as_bytes().first())
        && edge(s.as_bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

/// `kubectl delete` resource type for a kind, fully qualified for Istio
/// kinds (`gateway` alone is ambiguous next to the Gateway API).
fn kubectl_type(o: &Obj) -> String {
    let group = o.api_version.split_once('/').map(|(g, _)| g).unwrap_or("");
    let plural = match o.kind.as_str() {
        "ServiceEntry" => "serviceentries".to_string(),
        "HorizontalPodAutoscaler" => "horizontalpodautoscalers".to_string(),
        k => format!("{}s", k.to_ascii_lowercase()),
    };
    if group.is_empty() || !group.ends_with(".istio.io") {
        plural
    } else {
        format!("{plural}.{group}")
    }
}

fn delete_line(o: &Obj) -> String {
    let ns_ok = o.namespace.as_deref().is_none_or(shell_safe);
    if !shell_safe(&o.name) || !ns_ok {
        return format!(
            "# not a valid Kubernetes name, delete by hand: {} ({})",
            o.display(),
            o.loc()
        );
    }
    let ns = match &o.namespace {
        Some(ns) => format!(" -n {ns}"),
        None => String::new(),
    };
    let note = if o.namespace.is_none() {
        "  # no namespace in the file: the one it was applied to"
    } else {
        ""
    };
    format!("kubectl delete {} {}{ns}{note}", kubectl_type(o), o.name)
}

#[allow(clippy::too_many_arguments)]
fn plan(
    objs: &[Obj],
    f: &Found,
    allowlist: &Allowlist,
    dropped: &[crate::domain::Dropped],
    disagreements: &[String],
    ports: &[u16],
    config_namespace: Option<&str>,
    label_clash: bool,
    replaced: &[usize],
    opts: &Options,
) -> String {
    let delete = |i: usize| {
        if replaced.contains(&i) {
            format!(
                "# not deleted: {} is now the new config's (step 1 replaced it)",
                objs[i].display()
            )
        } else {
            delete_line(&objs[i])
        }
    };
    let mut out = String::new();
    let cfg = crate::escape::shell_word(opts.output_name.as_deref().unwrap_or("egress.yaml"));
    let _ = writeln!(
        out,
        "Migration plan: Istio <=1.19 wildcard egress recipe -> egressgen\n"
    );
    let mut old: Vec<&(usize, &str)> = f.old.iter().collect();
    old.sort_by_key(|(i, _)| *i);
    old.dedup_by_key(|(i, _)| *i);
    let _ = writeln!(
        out,
        "Recognised {} old {}:",
        old.len(),
        if old.len() == 1 {
            "resource"
        } else {
            "resources"
        }
    );
    for (i, role) in &old {
        let o = &objs[*i];
        let _ = writeln!(out, "  {}  {}: {role}", o.loc(), o.display());
    }
    let variant = if f.sni_cluster {
        "sni_cluster/tcp_cluster_rewrite variant"
    } else if f.nginx {
        "nginx SNI proxy variant"
    } else {
        "variant without the SNI proxy in the input"
    };
    let api = if f.filters_api {
        "EnvoyFilter `workloadLabels`/`filters` API (Istio <=1.3)"
    } else {
        "EnvoyFilter `configPatches` API"
    };
    let _ = writeln!(out, "  ({variant}; {api})\n");

    let n = allowlist.len();
    let _ = writeln!(
        out,
        "Allowlist: {n} {}",
        if n == 1 { "entry" } else { "entries" }
    );
    for p in allowlist.entries() {
        let _ = writeln!(out, "  {p}");
    }
    // Duplicates across the old lists are expected; covered entries are news.
    for d in dropped.iter().filter(|d| d.covered_by.is_some()) {
        let _ = writeln!(out, "  note: {d}");
    }
    let _ = writeln!(
        out,
        "Upstream ports: {}",
        ports
            .iter()
            .map(u16::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !disagreements.is_empty() || !f.review.is_empty() {
        let _ = writeln!(out, "\nReview ({}):", disagreements.len() + f.review.len());
        for d in disagreements.iter().chain(&f.review) {
            let _ = writeln!(out, "  - {d}");
        }
    }

    let _ = writeln!(out, "\nSteps:");
    let _ = writeln!(
        out,
        "  1. Render and apply the new gateway; it runs beside the old one:\n       egressgen render -c {cfg} -o egress-gateway.yaml\n       kubectl apply -f egress-gateway.yaml"
    );
    let routes: Vec<&&(usize, &str)> = old
        .iter()
        .filter(|(i, role)| objs[*i].kind == "VirtualService" && *role != GATEWAY_SIDE_ROUTE)
        .collect();
    let _ = writeln!(
        out,
        "  2. Move the sidecars to the new route by deleting the old one (sidecars use the oldest VirtualService for a host):"
    );
    for (i, _) in &routes {
        let _ = writeln!(out, "       {}", delete(*i));
    }
    let _ = writeln!(
        out,
        "  3. Check: egressgen explain -c {cfg} {}; then curl a listed host from a pod and read the new gateway's log.",
        allowlist
            .entries()
            .first()
            .map(|p| match p {
                Pattern::Exact(n) => n.clone(),
                Pattern::Wildcard(n) => format!("www.{n}"),
            })
            .unwrap_or_default()
    );
    let _ = writeln!(out, "  4. Delete the rest of the old recipe:");
    let order = [
        "VirtualService",
        "EnvoyFilter",
        "Gateway",
        "DestinationRule",
        "ServiceEntry",
        "ConfigMap",
        "HorizontalPodAutoscaler",
        "Deployment",
        "Service",
        "ServiceAccount",
    ];
    for kind in order {
        for (i, _) in old
            .iter()
            .filter(|(i, _)| objs[*i].kind == kind)
            .filter(|(_, role)| kind != "VirtualService" || *role == GATEWAY_SIDE_ROUTE)
        {
            let _ = writeln!(out, "       {}", delete(*i));
        }
    }
    for g in &f.operator_gateways {
        let _ = writeln!(
            out,
            "       # and remove the egress gateway {g} from your IstioOperator, or istioctl will recreate it"
        );
    }

    let _ = writeln!(out, "\nBehaviour changes:");
    let mut changes: Vec<String> = Vec::new();
    changes.push(if f.sni_cluster {
        "The gateway now enforces the allowlist itself (an internal listener whose server_names are the allowlist); before, sni_cluster sent each connection to whatever cluster its SNI named.".into()
    } else {
        "The gateway now enforces the allowlist itself (an internal listener whose server_names are the allowlist) and forwards with Envoy's sni_dynamic_forward_proxy; before, the nginx SNI proxy forwarded any SNI that reached it.".into()
    });
    changes.push("forward_downstream_sni and sni_verifier are gone (Istio 1.20 removed them): the gateway reads the application's own SNI inside the mTLS tunnel, so a client cannot route to one name and claim another.".into());
    if f.passthrough {
        changes.push("The old Gateway used PASSTHROUGH (no mTLS); the new one requires Istio mTLS (ISTIO_MUTUAL), so workloads without a sidecar lose egress through it.".into());
    }
    if f.file_certs {
        changes.push("The old Gateway read certificates from /etc/certs (MUTUAL); the new one uses Istio's SDS certificates (ISTIO_MUTUAL).".into());
    }
    if f.mixer_anchor || f.filters_api {
        changes.push("Mixer policies on requestedServerName no longer apply (Mixer was removed in Istio 1.8); use the allowlist, and spec.allowedClients to limit who may use the gateway.".into());
    }
    if let Some(r) = &f.nginx_resolver {
        changes.push(format!(
            "Names are resolved by the gateway pod's DNS (cluster DNS) instead of nginx's `resolver {}`; Envoy re-resolves cached names every 60s (spec.dns.refreshRate).",
            escaped(r)
        ));
    }
    if f.nginx {
        changes.push("The gateway pods no longer run nginx or as root: one Envoy container, non-root (UID 1337).".into());
    }
    if !disagreements.is_empty() {
        changes.push("The allowlist is the union of the old lists, so names that one old resource lacked (see Review) are now allowed end to end.".into());
    }
    changes.push(match config_namespace {
        Some(ns) => format!("Routes, the ServiceEntry, Gateway and DestinationRule stay in namespace `{ns}` (spec.configNamespace)."),
        None => "Routes, the ServiceEntry, Gateway and DestinationRule go to istio-system (the root namespace, so they apply mesh-wide); the old ones had no or several namespaces.".into(),
    });
    changes.push("The new gateway is a separate Deployment (istio-egressgateway in istio-egress) with 2 replicas, a PodDisruptionBudget and access logs for each connection.".into());
    if label_clash {
        changes.push(format!(
            "The old Gateway selects the default gateway labels, so the new pods are labelled `{}: {}` (spec.gateway.labels) to keep the two apart while both run.",
            SIDE_BY_SIDE_LABEL.0, SIDE_BY_SIDE_LABEL.1
        ));
    }
    if opts.istio_version.is_none() {
        changes.push("The config targets Istio 1.22 APIs (networking.istio.io/v1); on Istio 1.16-1.21 set spec.istio.version (or pass --istio-version to migrate or render).".into());
    }
    for c in changes {
        let _ = writeln!(out, "  - {c}");
    }
    out
}

/// `egressgen migrate`: reads the paths, writes the config (to `-o`
/// atomically, else stdout) and prints the plan (stdout with `-o`, else
/// stderr). Exit 0, or 1 when there is something to review.
pub fn run(args: crate::cli::MigrateArgs) -> anyhow::Result<u8> {
    use std::io::Write;
    let sources = match load::Filter::new(&[], &[])
        .and_then(|f| load::read_paths(&args.paths, &f, load::STDIN_NAME))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return Ok(crate::cli::exit::USAGE);
        }
    };
    let opts = Options {
        istio_version: args.istio_version.clone(),
        output_name: args.output.as_ref().map(|p| p.display().to_string()),
    };
    let m = match migrate(&sources, &opts) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("{e}");
            return Ok(crate::cli::exit::USAGE);
        }
    };
    match &args.output {
        Some(path) => {
            crate::output::write_atomic(path, m.config.as_bytes())
                .map_err(|e| anyhow::anyhow!(crate::output::write_error(path, &e)))?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{}", m.plan);
            let _ = writeln!(out, "Wrote {}", crate::escape::path(path));
        }
        None => {
            let _ = crate::output::print(&m.config);
            eprintln!("{}", m.plan);
        }
    }
    Ok(if m.review > 0 {
        crate::cli::exit::FINDINGS
    } else {
        crate::cli::exit::OK
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mesh route for `*.wikipedia.org` and a gateway side that routes
    /// only `en.wikipedia.org` overlap: the mesh route is the recipe's.
    #[test]
    fn a_narrower_gateway_side_takes_a_wildcard_mesh_route() {
        let text = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: gw-side, namespace: istio-system}
spec:
  hosts: [en.wikipedia.org]
  gateways: [egress-sni]
  tcp:
  - route: [{destination: {host: dummy.local}}]
";
        let mut objs = Vec::new();
        for doc in load::parse(0, "t.yaml", text).unwrap() {
            collect("t.yaml", doc.root, &mut objs);
        }
        let routed = GatewayRouted::of(&objs);
        assert_eq!(routed.takers("*.wikipedia.org").len(), 1);
        assert_eq!(routed.takers("en.wikipedia.org").len(), 1);
        assert!(routed.takers("*.example.org").is_empty());
    }

    #[test]
    fn reads_nginx_directives() {
        let conf = "stream {\n server {\n  resolver 8.8.8.8 ipv6=off;\n  listen 127.0.0.1:8443;\n  proxy_pass   $ssl_preread_server_name:443;\n  ssl_preread on;\n }\n}\n";
        assert_eq!(nginx_upstream_port(conf), Some(443));
        assert_eq!(nginx_resolver(conf).as_deref(), Some("8.8.8.8"));
        assert_eq!(nginx_upstream_port("proxy_pass backend:443;"), None);
    }

    #[test]
    fn service_refs() {
        let g = ServiceRef::parse(
            "istio-egressgateway-with-sni-proxy.istio-system.svc.cluster.local",
            None,
        )
        .unwrap();
        assert_eq!(g.name, "istio-egressgateway-with-sni-proxy");
        assert_eq!(g.namespace.as_deref(), Some("istio-system"));
        assert!(ServiceRef::parse("www.wikipedia.org", None).is_none());
        // Istio expands only a name without a dot (as lint's `fqdn` does).
        assert!(ServiceRef::parse("gw.istio-system.svc", None).is_none());
        assert_eq!(
            ServiceRef::parse("gw", Some("a"))
                .unwrap()
                .namespace
                .as_deref(),
            Some("a")
        );
    }

    #[test]
    fn shell_unsafe_names_are_not_pasted() {
        assert!(shell_safe("istio-system"));
        assert!(!shell_safe("a;rm -rf /"));
        assert!(!shell_safe("$(x)"));
        assert!(!shell_safe("--all"));
        let l = |kv: &[(&str, &str)]| -> Vec<(String, String)> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let new = l(&[("istio", "egressgateway")]);
        assert!(selectors_clash(&l(&[("istio", "egressgateway")]), &new));
        // The old pods have the new gateway's label too: the new Gateway
        // would pick them.
        assert!(selectors_clash(
            &l(&[("app", "istio-egressgateway"), ("istio", "egressgateway")]),
            &new
        ));
        assert!(!selectors_clash(
            &l(&[("istio", "egressgateway-with-sni-proxy")]),
            &new
        ));
        assert!(!shell_safe("-n"));
        assert!(!shell_safe(".."));
    }
}
