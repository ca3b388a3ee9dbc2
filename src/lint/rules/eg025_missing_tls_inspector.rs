//! ## What it does
//! Reports a listener added by an EnvoyFilter `LISTENER` patch with
//! `operation: ADD` (the SNI forwarder's internal listener) that matches
//! filter chains by `server_names` but has no working TLS inspector listener
//! filter. A `MERGE` is not checked: it changes a listener istiod generated,
//! which keeps its own listener filters (`patchListener` in istio/istio
//! `envoyfilter/listener_patch.go` merges the value into it; `ADD`,
//! `MERGE` and `REMOVE` are the only listener-level operations there). Also checked: `transport_protocol: tls`,
//! and an `envoy.filters.listener.tls_inspector` entry whose `typed_config`
//! has another `@type`, or none. Envoy picks an extension by its
//! `typed_config` type URL, not by its name (Envoy 1.22 release notes: "type
//! URL is used to lookup extensions regardless of the name field"); a
//! `TypedStruct` wrapper counts by its inner `type_url`.
//!
//! ## Why is this bad?
//! The SNI is read by the TLS inspector listener filter; Envoy's
//! [docs](https://www.envoyproxy.io/docs/envoy/latest/configuration/listeners/listener_filters/tls_inspector):
//! it "detects the Server Name Indication ... This can be used to select a
//! FilterChain via the server_names ... of a FilterChainMatch". Envoy
//! stopped injecting it on its own (envoyproxy/envoy#14404). Without it no
//! connection has a server name, no `server_names` chain ever matches and
//! every egress connection is closed. A wrong `@type` instantiates another
//! extension; an unknown type or no `typed_config` makes Envoy reject the
//! listener. A
//! `LISTENER_FILTER` patch cannot repair it: istiod applies those to the
//! listeners it generated, before the added ones are appended
//! (`patchListeners` in istio/istio `envoyfilter/listener_patch.go`).
//!
//! ## Example
//! ```yaml
//! value:
//!   name: sni_listener
//!   internal_listener: {}
//!   filter_chains:
//!   - filter_chain_match:
//!       server_names:
//!       - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! value:
//!   name: sni_listener
//!   internal_listener: {}
//!   listener_filters:
//!   - name: envoy.filters.listener.tls_inspector
//!     typed_config:
//!       "@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector
//!   filter_chains:
//!   - filter_chain_match:
//!       server_names:
//!       - "*.wikipedia.org"
//! ```

use super::{Ctx, Rule};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG025",
    name: "missing-tls-inspector",
    severity: Severity::Error,
    source: include_str!("eg025_missing_tls_inspector.rs"),
    check,
};

/// The TLS inspector's config message, as Envoy looks it up.
const TLS_INSPECTOR: &str = "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector";

/// The names the TLS inspector has been written with (current, deprecated,
/// and the short form in Envoy's own example).
const TLS_INSPECTOR_NAMES: [&str; 3] = [
    "envoy.filters.listener.tls_inspector",
    "envoy.listener.tls_inspector",
    "tls_inspector",
];

const SUGGESTED: &str = "add `listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]`";

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for p in &model.patches {
        // Only an ADD brings a listener of its own; a MERGE keeps the
        // generated listener's listener filters.
        if p.apply_to != "LISTENER" || p.operation != "ADD" {
            continue;
        }
        let Some(value) = model.resources[p.resource]
            .spec()
            .and_then(|s| s.list("configPatches").get(p.index))
            .and_then(|n| n.path(&["patch", "value"]))
        else {
            continue;
        };
        let Some((needs, consequence)) = needs_inspector(value) else {
            continue;
        };
        let base = format!("spec.configPatches[{}].patch.value", p.index);
        let kind = if value.get("internal_listener").is_some() {
            "internal listener"
        } else {
            "listener"
        };
        let listener = match value.get("name").and_then(Node::as_str) {
            Some(n) => format!("{kind} {}", quoted(n)),
            None => kind.to_string(),
        };
        let filters = value.list("listener_filters");
        if filters
            .iter()
            .any(|f| config_type(f).is_some_and(|t| t == TLS_INSPECTOR))
        {
            continue;
        }
        let named = filters.iter().enumerate().find(|(_, f)| {
            f.get("name")
                .and_then(Node::as_str)
                .is_some_and(|n| TLS_INSPECTOR_NAMES.contains(&n))
        });
        if let Some((fi, f)) = named {
            let fpath = format!("{base}.listener_filters[{fi}]");
            let (at, field, message) = match f.path(&["typed_config", "@type"]) {
                Some(t) => (
                    t.at,
                    format!("{fpath}.typed_config.@type"),
                    format!(
                        "the TLS inspector of {listener} has typed_config `@type` {}: Envoy picks the extension by that type, not by the name, so it is no TLS inspector and no {needs} chain matches",
                        quoted(&t.scalar_text().unwrap_or_default())
                    ),
                ),
                None => (
                    f.at,
                    format!("{fpath}.typed_config"),
                    format!(
                        "the TLS inspector of {listener} has no typed_config `@type`: Envoy (1.22 and later) finds extensions by that type, not by the name, and rejects the listener"
                    ),
                ),
            };
            ctx.report(
                p.resource,
                at,
                &field,
                message,
                Some(format!(
                    "set `\"@type\": type.googleapis.com/{TLS_INSPECTOR}`"
                )),
            );
            continue;
        }
        let at = value
            .entry("listener_filters")
            .or_else(|| value.entry("name"))
            .map_or(p.at, |(k, _)| k.at);
        ctx.report(
            p.resource,
            at,
            &format!("{base}.listener_filters"),
            format!(
                "{listener} matches filter chains by {needs} but has no `envoy.filters.listener.tls_inspector` listener filter: {consequence}, no chain matches and every connection is closed"
            ),
            Some(SUGGESTED.to_string()),
        );
    }
}

/// What in the listener's filter chains needs the TLS inspector, if
/// anything (`server_names` or `transport_protocol: tls`), and what goes
/// wrong without it.
fn needs_inspector(listener: &Node) -> Option<(&'static str, &'static str)> {
    let matches = || {
        listener
            .list("filter_chains")
            .iter()
            .filter_map(|c| c.get("filter_chain_match"))
    };
    if matches().any(|m| !m.list("server_names").is_empty()) {
        return Some(("`server_names`", "the SNI is never read"));
    }
    if matches().any(|m| m.get("transport_protocol").and_then(Node::as_str) == Some("tls")) {
        return Some((
            "`transport_protocol: tls`",
            "TLS is never detected (every connection is `raw_buffer`)",
        ));
    }
    None
}

/// The config message a listener filter instantiates: its `typed_config`
/// `@type` without the `type.googleapis.com/` prefix, or for a `TypedStruct`
/// wrapper (`udpa.type.v1` or `xds.type.v3`) its inner `type_url`.
fn config_type(filter: &Node) -> Option<&str> {
    let tc = filter.get("typed_config")?;
    let outer = strip_prefix(tc.get("@type")?.as_str()?);
    if outer == "udpa.type.v1.TypedStruct" || outer == "xds.type.v3.TypedStruct" {
        return Some(strip_prefix(tc.get("type_url")?.as_str()?));
    }
    Some(outer)
}

/// A type URL's message name: the part after the last `/`.
fn strip_prefix(url: &str) -> &str {
    url.rsplit('/').next().unwrap_or(url)
}
