//! Renders a [`Config`] into the multi-document manifest.
//!
//! One minijinja template per resource lives in `templates/`, embedded in
//! the binary. This module decides which documents exist (splitting long
//! host lists to respect Kubernetes and Istio limits) and builds each
//! template's context; the templates decide the YAML; [`yaml`] makes every
//! interpolated value YAML-safe.

pub mod command;
pub mod yaml;

use std::collections::BTreeMap;

use minijinja::{Environment, UndefinedBehavior};
use serde::Serialize;

use crate::config::{
    AllowedClients, Autoscaling, Config, DnsCache, LookupFamily, NetworkPolicy, Resources,
};

/// The templates, in the order their documents appear.
const TEMPLATES: &[(&str, &str)] = &[
    ("header", include_str!("../../templates/header.yaml.j2")),
    (
        "serviceaccount",
        include_str!("../../templates/serviceaccount.yaml.j2"),
    ),
    ("service", include_str!("../../templates/service.yaml.j2")),
    (
        "deployment",
        include_str!("../../templates/deployment.yaml.j2"),
    ),
    (
        "poddisruptionbudget",
        include_str!("../../templates/poddisruptionbudget.yaml.j2"),
    ),
    (
        "horizontalpodautoscaler",
        include_str!("../../templates/horizontalpodautoscaler.yaml.j2"),
    ),
    (
        "authorizationpolicy",
        include_str!("../../templates/authorizationpolicy.yaml.j2"),
    ),
    (
        "networkpolicy",
        include_str!("../../templates/networkpolicy.yaml.j2"),
    ),
    ("role", include_str!("../../templates/role.yaml.j2")),
    (
        "rolebinding",
        include_str!("../../templates/rolebinding.yaml.j2"),
    ),
    ("gateway", include_str!("../../templates/gateway.yaml.j2")),
    (
        "destinationrule",
        include_str!("../../templates/destinationrule.yaml.j2"),
    ),
    (
        "virtualservice",
        include_str!("../../templates/virtualservice.yaml.j2"),
    ),
    (
        "keepalive",
        include_str!("../../templates/keepalive.yaml.j2"),
    ),
    (
        "serviceentry",
        include_str!("../../templates/serviceentry.yaml.j2"),
    ),
    (
        "telemetry",
        include_str!("../../templates/telemetry.yaml.j2"),
    ),
    (
        "envoyfilter",
        include_str!("../../templates/envoyfilter.yaml.j2"),
    ),
    // Not part of the manifest: the EgressGateway file `migrate` writes.
    (
        "egressgateway",
        include_str!("../../templates/egressgateway.yaml.j2"),
    ),
];

/// `spec.hosts` of a ServiceEntry holds at most this many items (CRD
/// `maxItems`).
pub const SERVICE_ENTRY_MAX_HOSTS: usize = 256;

/// Largest object `kubectl apply` can store: its last-applied-configuration
/// annotation (the object as compact JSON) must fit the 256 KiB limit on all
/// annotations together (`TotalAnnotationSizeLimitB`).
pub const OBJECT_LIMIT_BYTES: usize = 256 * 1024;

/// Largest request etcd takes by default (`--max-request-bytes`, 1.5 MiB);
/// the API server cannot store a larger object, however it is applied.
pub const ETCD_LIMIT_BYTES: usize = 1536 * 1024;

/// Budget for one VirtualService's hosts, as JSON bytes. It leaves room for
/// the rest of the object and for annotations added by other tools.
const VIRTUAL_SERVICE_HOST_BUDGET: usize = 200 * 1024;

/// The access log line of the internal listener: the TCP-relevant fields of
/// the reference's format, one connection per line.
const ACCESS_LOG_FORMAT: &str = "[%START_TIME%] %REQUESTED_SERVER_NAME% %RESPONSE_FLAGS% \
%CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% \
%BYTES_SENT% %DURATION% \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %UPSTREAM_LOCAL_ADDRESS% \
%DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS%\n";

/// The output of a render.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub manifest: String,
    /// Things the user should know (printed on stderr by the CLI).
    pub warnings: Vec<String>,
}

/// A template failed to render. This is a bug in egressgen, never bad input.
#[derive(Debug, thiserror::Error)]
#[error("internal error: template `{template}` failed to render: {source}")]
pub struct Error {
    template: String,
    #[source]
    source: minijinja::Error,
}

#[derive(Serialize)]
struct Api {
    networking: &'static str,
    telemetry: &'static str,
    security: &'static str,
    envoy_filter: &'static str,
}

/// The gateway's port name for a port's `suffix` (`""`, `-8443`):
/// `tls-egress-8443`, or `tls-eg-10443` where that would pass 15
/// characters. A container port name is an IANA service name, at most 15
/// characters (Kubernetes `validation.IsValidPortName`), and the API server
/// refuses a Deployment with a longer one.
fn port_name(suffix: &str) -> String {
    let name = format!("tls-egress{suffix}");
    if name.len() <= 15 {
        name
    } else {
        format!("tls-eg{suffix}")
    }
}

/// One upstream port and every name and number its path uses.
#[derive(Serialize)]
struct PortCtx {
    upstream: u16,
    service: u16,
    target: u16,
    /// Service, container and Gateway server port name: `tls-egress`, then
    /// `tls-egress-8443`, ...; see [`port_name`].
    port_name: String,
    /// ServiceEntry port name: `tls`, then `tls-8443`, ...
    entry_name: String,
    /// Internal listener and its cluster: `sni_listener`/`sni_cluster`, then
    /// `sni_listener_8443`/`sni_cluster_8443`, ...
    listener: String,
    cluster: String,
    /// Stats of the forwarding tcp_proxy: `sni_forward`, then `sni_forward_8443`.
    stat_prefix: String,
    /// The forward-proxy cluster and its DNS cache: one pair per port.
    /// Envoy releases before the `dfp_mixed_scheme` runtime guard key a
    /// shared cache and cluster by the name alone (`DnsCacheImpl::
    /// loadDnsCacheEntry`, `Cluster::LoadBalancer::chooseHost`), so a name
    /// would keep the port of the listener that first resolved it.
    forward_cluster: String,
    dns_cache: String,
}

#[derive(Serialize)]
struct GatewayCtx<'a> {
    name: &'a str,
    namespace: &'a str,
    deployment: &'a str,
    service_account: &'a str,
    labels: &'a BTreeMap<String, String>,
    service_port: u16,
    target_port: u16,
    replicas: u32,
    resources: &'a Resources,
    openshift: bool,
    /// Render a PodDisruptionBudget (asked for, and 2+ pods to keep one of).
    pod_disruption_budget: bool,
    topology_spread: bool,
    autoscaling: &'a Option<Autoscaling>,
    /// The Service's cluster-local FQDN, as VirtualService and
    /// DestinationRule `host`.
    host: String,
}

#[derive(Serialize)]
struct Context<'a> {
    version: &'static str,
    istio_version: String,
    domain_count: usize,
    api: Api,
    gateway: GatewayCtx<'a>,
    config_namespace: &'a str,
    subset: &'a str,
    upstream_port: u16,
    ports: Vec<PortCtx>,
    lookup_family: LookupFamily,
    dns_cache: &'a DnsCache,
    allowed_clients: &'a Option<AllowedClients>,
    network_policy: &'a Option<NetworkPolicy>,
    access_log: bool,
    access_log_format: &'static str,
    domains: &'a [String],
}

/// One of several objects that share a host list.
#[derive(Serialize)]
struct Chunk<'a> {
    name: String,
    index: usize,
    count: usize,
    hosts: &'a [String],
}

/// Renders the manifest for `cfg`. Same input, same bytes.
pub fn render(cfg: &Config) -> Result<Rendered, Error> {
    let env = environment();
    let domains: Vec<String> = cfg
        .allowlist
        .entries()
        .iter()
        .map(|p| p.to_string())
        .collect();
    let g = &cfg.gateway;
    let mut warnings = Vec::new();
    let min_pods = g
        .autoscaling
        .as_ref()
        .map_or(g.replicas, |a| a.min_replicas);
    if g.pod_disruption_budget && min_pods < 2 {
        warnings.push(format!(
            "no PodDisruptionBudget: with {min_pods} gateway pod, one that keeps a pod up would \
             block every node drain; run 2 or more replicas for egress to survive drains"
        ));
    }
    let render_pdb = g.pod_disruption_budget && min_pods >= 2;
    let ports: Vec<PortCtx> = cfg
        .ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let suffix = p.suffix(i);
            let under = suffix.replace('-', "_");
            PortCtx {
                upstream: p.upstream,
                service: p.service,
                target: p.target,
                port_name: port_name(&suffix),
                entry_name: format!("tls{suffix}"),
                listener: format!("sni_listener{under}"),
                cluster: format!("sni_cluster{under}"),
                stat_prefix: format!("sni_forward{under}"),
                forward_cluster: format!("dynamic_forward_proxy_cluster{under}"),
                dns_cache: format!("dynamic_forward_proxy_cache_config{under}"),
            }
        })
        .collect();
    let ctx = Context {
        version: env!("CARGO_PKG_VERSION"),
        istio_version: cfg.istio.to_string(),
        domain_count: domains.len(),
        api: Api {
            networking: cfg.istio.networking_api(),
            telemetry: cfg.istio.telemetry_api(),
            security: cfg.istio.security_api(),
            envoy_filter: cfg.istio.envoy_filter_api(),
        },
        gateway: GatewayCtx {
            name: &g.name,
            namespace: &g.namespace,
            deployment: &g.deployment,
            service_account: &g.service_account,
            labels: &g.labels,
            service_port: g.service_port,
            target_port: g.target_port,
            replicas: g.replicas,
            resources: &g.resources,
            openshift: g.openshift,
            pod_disruption_budget: render_pdb,
            topology_spread: g.topology_spread,
            autoscaling: &g.autoscaling,
            host: format!("{}.{}.svc.cluster.local", g.name, g.namespace),
        },
        config_namespace: &cfg.config_namespace,
        subset: &cfg.name,
        upstream_port: cfg.upstream_port,
        ports,
        lookup_family: cfg.lookup_family,
        dns_cache: &cfg.dns_cache,
        allowed_clients: &cfg.allowed_clients,
        network_policy: &cfg.network_policy,
        access_log: cfg.access_log,
        access_log_format: ACCESS_LOG_FORMAT,
        domains: &domains,
    };
    let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));

    let mut docs = Vec::new();
    let mut one = |name: &str, extra: Option<minijinja::Value>| -> Result<(), Error> {
        let tmpl = env.get_template(name).map_err(|source| Error {
            template: name.to_string(),
            source,
        })?;
        let result = match extra {
            Some(chunk) => tmpl.render(minijinja::context! { chunk => chunk, ..ctx.clone() }),
            None => tmpl.render(&ctx),
        };
        docs.push(result.map_err(|source| Error {
            template: name.to_string(),
            source,
        })?);
        Ok(())
    };

    for name in ["serviceaccount", "service", "deployment"] {
        one(name, None)?;
    }
    if render_pdb {
        one("poddisruptionbudget", None)?;
    }
    if g.autoscaling.is_some() {
        one("horizontalpodautoscaler", None)?;
    }
    if g.openshift {
        for name in ["role", "rolebinding"] {
            one(name, None)?;
        }
    }
    if cfg.allowed_clients.is_some() {
        one("authorizationpolicy", None)?;
    }
    for name in ["gateway", "destinationrule"] {
        one(name, None)?;
    }
    let vs_base = format!("direct-{}-through-egress-gateway", cfg.name);
    let vs_split = virtual_service_split(&domains, cfg.ports.len());
    for chunk in chunks(&vs_base, &domains, vs_split) {
        one(
            "virtualservice",
            Some(minijinja::Value::from(minijinja::value::Serde(&chunk))),
        )?;
    }
    one("keepalive", None)?;
    let se_split: Vec<usize> = (SERVICE_ENTRY_MAX_HOSTS..domains.len())
        .step_by(SERVICE_ENTRY_MAX_HOSTS)
        .collect();
    for chunk in chunks(&cfg.name, &domains, se_split) {
        one(
            "serviceentry",
            Some(minijinja::Value::from(minijinja::value::Serde(&chunk))),
        )?;
    }
    if cfg.access_log {
        one("telemetry", None)?;
    }
    one("envoyfilter", None)?;
    if let Some(np) = &cfg.network_policy {
        for ns in &np.namespaces {
            one(
                "networkpolicy",
                Some(minijinja::Value::from(minijinja::value::Serde(ns))),
            )?;
        }
    }

    let filter_bytes = envoy_filter_json_estimate(&domains, cfg.ports.len());
    if filter_bytes > ETCD_LIMIT_BYTES {
        warnings.push(format!(
            "the EnvoyFilter holds all {} server names once per upstream port and is about {} KiB, \
             over the {} KiB that etcd stores by default (`--max-request-bytes`): the API server \
             refuses it, `kubectl apply --server-side` included; use fewer, wider wildcards, or \
             split the allowlist over several gateways (one config each)",
            domains.len(),
            filter_bytes / 1024,
            ETCD_LIMIT_BYTES / 1024
        ));
    } else if filter_bytes > OBJECT_LIMIT_BYTES {
        warnings.push(format!(
            "the EnvoyFilter holds all {} server names and is about {} KiB, over the {} KiB that \
             client-side `kubectl apply` can store in its last-applied annotation; apply with \
             `kubectl apply --server-side` (or fewer, wider wildcards)",
            domains.len(),
            filter_bytes / 1024,
            OBJECT_LIMIT_BYTES / 1024
        ));
    }

    let header = env
        .get_template("header")
        .and_then(|t| t.render(&ctx))
        .map_err(|source| Error {
            template: "header".into(),
            source,
        })?;
    let mut manifest = String::with_capacity(docs.iter().map(|d| d.len() + 4).sum::<usize>() + 256);
    manifest.push_str(&header);
    manifest.push('\n');
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            manifest.push_str("---\n");
        }
        manifest.push_str(doc);
        manifest.push('\n');
    }
    Ok(Rendered { manifest, warnings })
}

/// Renders one named template with `ctx`, through the same YAML-safe
/// formatter as the manifest. Used for files other than the manifest.
pub fn render_template(name: &str, ctx: &impl Serialize) -> Result<String, Error> {
    environment()
        .get_template(name)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(ctx))))
        .map_err(|source| Error {
            template: name.to_string(),
            source,
        })
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_formatter(|out, _state, value| {
        yaml::write_value(out, value).map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::WriteFailure,
                "cannot write a YAML value",
            )
        })
    });
    for (name, source) in TEMPLATES {
        env.add_template(name, source)
            .expect("embedded templates parse (tested)");
    }
    env
}

/// Splits `items` at the given indices into named chunks: `base`, then
/// `base-2`, `base-3`, ... so the first object keeps its name as lists grow.
fn chunks<'a>(base: &str, items: &'a [String], splits: Vec<usize>) -> Vec<Chunk<'a>> {
    let mut bounds = vec![0];
    bounds.extend(splits);
    bounds.push(items.len());
    let count = bounds.len() - 1;
    bounds
        .windows(2)
        .enumerate()
        .map(|(i, w)| Chunk {
            name: if i == 0 {
                base.to_string()
            } else {
                format!("{base}-{}", i + 1)
            },
            index: i + 1,
            count,
            hosts: &items[w[0]..w[1]],
        })
        .collect()
}

/// JSON bytes a host costs in a list: quotes and a comma.
fn json_item_bytes(host: &str) -> usize {
    host.len() + 3
}

/// Where to split VirtualService hosts so each object stays well under the
/// object limit. Each host appears once in `hosts` and once in the
/// `sniHosts` of each port's route.
fn virtual_service_split(hosts: &[String], ports: usize) -> Vec<usize> {
    let mut splits = Vec::new();
    let mut used = 0;
    for (i, h) in hosts.iter().enumerate() {
        let cost = (1 + ports) * json_item_bytes(h);
        if used + cost > VIRTUAL_SERVICE_HOST_BUDGET && i > 0 {
            splits.push(i);
            used = 0;
        }
        used += cost;
    }
    splits
}

/// Compact-JSON size of the EnvoyFilter: its fixed part plus the names,
/// once per port's internal listener.
fn envoy_filter_json_estimate(hosts: &[String], ports: usize) -> usize {
    const FIXED_PER_PORT: usize = 4 * 1024;
    ports * (FIXED_PER_PORT + hosts.iter().map(|h| json_item_bytes(h)).sum::<usize>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_names_keep_the_first_stable() {
        let items: Vec<String> = (0..5).map(|i| i.to_string()).collect();
        let c = chunks("se", &items, vec![2, 4]);
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["se", "se-2", "se-3"]);
        assert_eq!(c[2].hosts, ["4"]);
        assert_eq!(chunks("se", &items, vec![]).len(), 1);
    }
}
