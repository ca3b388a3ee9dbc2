//! ## What it does
//! Reports an SNI forward proxy filter whose `dns_cache_config` differs from
//! the dynamic forward proxy cluster's `dns_cache_config` of the same name,
//! or names a cache no cluster uses. Configs are compared as Envoy does
//! (`MessageDifferencer::Equivalent`): a field at its proto3 default
//! (`dns_lookup_family: AUTO`, `false`, `[]`) counts as unset.
//!
//! ## Why is this bad?
//! The filter resolves the SNI into a shared DNS cache, and the cluster
//! reads the resolved host from the cache of the same name. Envoy requires
//! both configurations to be identical ("this configuration must match that
//! of associated dynamic forward proxy filter configuration",
//! `envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig`) and
//! rejects the second one it loads ("config specified DNS cache ... with
//! different settings"); a different name means the cluster never sees the
//! resolved host.
//!
//! ## Example
//! ```yaml
//! # cluster
//! dns_cache_config: {name: dynamic_forward_proxy_cache_config, dns_lookup_family: V4_ONLY}
//! # filter
//! dns_cache_config: {name: dynamic_forward_proxy_cache_config, dns_lookup_family: AUTO}
//! ```
//!
//! ## Use instead
//! ```yaml
//! # the same block in both places
//! dns_cache_config: {name: dynamic_forward_proxy_cache_config, dns_lookup_family: V4_ONLY}
//! ```

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG010",
    name: "dns-cache-mismatch",
    severity: Severity::Error,
    source: include_str!("eg010_dns_cache_mismatch.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    if model.dns_caches_cluster.is_empty() {
        return;
    }
    for f in &model.dns_caches_filter {
        let Some(c) = model.dns_caches_cluster.iter().find(|c| c.name == f.name) else {
            let names: Vec<String> = model
                .dns_caches_cluster
                .iter()
                .map(|c| quoted(&c.name))
                .collect();
            ctx.report(
                f.resource,
                f.at,
                &f.field_path,
                format!(
                    "the filter's dns_cache_config {} is used by no dynamic forward proxy cluster, so the cluster never sees the resolved host",
                    quoted(&f.name)
                ),
                Some(format!("use the cluster's cache: {}", names.join(", "))),
            );
            continue;
        };
        if proto_value(&c.config) == proto_value(&f.config) {
            continue;
        }
        let diff = differences(&c.config, &f.config);
        let at = ctx.loc(c.resource, c.at);
        ctx.report(
            f.resource,
            f.at,
            &f.field_path,
            format!(
                "dns_cache_config {} differs from the cluster's ({at}): {diff}; Envoy requires them identical",
                quoted(&f.name)
            ),
            Some("copy the cluster's dns_cache_config here, or render both with `egressgen render`".into()),
        );
    }
}

/// `key: cluster value vs filter value` for each top-level key that differs.
fn differences(cluster: &Node, filter: &Node) -> String {
    let show = |n: Option<&Node>| match n {
        Some(n) => crate::escape::escaped(&n.to_json().to_string()),
        None => "unset".to_string(),
    };
    let mut keys: Vec<String> = Vec::new();
    for n in [cluster, filter] {
        for (k, _) in n.entries() {
            let k = k.scalar_text().unwrap_or_default();
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
    }
    let field = |n: &Node, k: &str| n.get(k).map(|v| canonical(k, v.to_json()));
    keys.iter()
        .filter(|k| field(cluster, k).flatten() != field(filter, k).flatten())
        .map(|k| {
            format!(
                "{k} is {} in the cluster, {} here",
                show(cluster.get(k)),
                show(filter.get(k))
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A `dns_cache_config` as Envoy compares two of them:
/// `MessageDifferencer::Equivalent` (`DnsCacheManagerImpl::getCache`,
/// envoyproxy/envoy
/// `source/extensions/common/dynamic_forward_proxy/dns_cache_manager_impl.cc`),
/// which treats a field set to its proto3 default as unset. So
/// `dns_lookup_family: AUTO` (the enum's 0), `false`, `[]` and `{}` are
/// dropped; a wrapper or a Duration (`max_hosts: 1024`, `dns_refresh_rate:
/// 60s`) is a set field even at Envoy's default, so it stays.
fn proto_value(config: &Node) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for (k, v) in config.entries() {
        let k = k.scalar_text().unwrap_or_default();
        if let Some(v) = canonical(&k, v.to_json()) {
            out.insert(k, v);
        }
    }
    serde_json::Value::Object(out)
}

/// Field `key`'s value, or `None` when it equals the proto3 default.
fn canonical(key: &str, v: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    let default = match &v {
        J::Bool(b) => !b,
        J::Array(a) => a.is_empty(),
        J::Object(o) => o.is_empty(),
        J::String(s) => key == "dns_lookup_family" && s == "AUTO",
        J::Number(n) => key == "dns_lookup_family" && n.as_u64() == Some(0),
        J::Null => true,
    };
    (!default).then_some(v)
}
