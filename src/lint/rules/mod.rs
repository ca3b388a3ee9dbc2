//! The lint rules: one file per code, each documented where it lives.
//!
//! A rule reads the [`Model`] and reports through [`Ctx::report`]; it
//! never prints. Its file starts with a `//!` doc in four sections (What it
//! does / Why is this bad? / Example / Use instead), which `egressgen lint
//! --explain` prints and from which the README table is generated.

use std::collections::HashMap;

use super::extract::{Model, Resource};
use super::load::Pos;
use super::{Finding, Options, Severity};

mod eg001_missing_host;
mod eg002_stray_host;
mod eg003_host_not_in_config;
mod eg004_config_host_missing;
mod eg005_invalid_host;
mod eg006_overlapping_host;
mod eg007_service_entry_too_large;
mod eg008_unknown_internal_listener;
mod eg009_unknown_cluster;
mod eg010_dns_cache_mismatch;
mod eg011_missing_subset;
mod eg012_route_not_to_gateway;
mod eg013_gateway_port_not_target_port;
mod eg014_tls_not_istio_mutual;
mod eg015_port_mismatch;
mod eg016_missing_keepalive;
mod eg017_selector_mismatch;
mod eg018_unscoped_envoyfilter;
mod eg019_merge_without_port;
mod eg020_mesh_wide_telemetry;
mod eg021_schema;
mod eg022_allow_any_outbound;
mod eg023_unknown_gateway;
mod eg024_patch_context_not_gateway;
mod eg025_missing_tls_inspector;
mod eg026_duplicate_object;

/// One lint rule.
#[derive(Debug)]
pub struct Rule {
    pub code: &'static str,
    /// kebab-case name, e.g. `missing-host`.
    pub name: &'static str,
    pub severity: Severity,
    /// The rule's own source file, whose `//!` doc is the documentation.
    pub source: &'static str,
    pub check: fn(&mut Ctx),
}

impl Rule {
    /// The `//!` documentation of the rule, as Markdown.
    pub fn doc(&self) -> String {
        let mut out = String::new();
        for line in self.source.lines() {
            let Some(rest) = line.strip_prefix("//!") else {
                break;
            };
            out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
            out.push('\n');
        }
        out
    }

    /// The text of one `## Section` of the doc.
    pub fn section(&self, title: &str) -> String {
        let doc = self.doc();
        let mut lines = doc
            .lines()
            .skip_while(|l| l.trim() != format!("## {title}"));
        lines.next();
        let body: Vec<&str> = lines.take_while(|l| !l.starts_with("## ")).collect();
        body.join("\n").trim().to_string()
    }

    /// The first sentence of "What it does", for tables.
    pub fn summary(&self) -> String {
        let what = self.section("What it does").replace('\n', " ");
        match what.find(". ") {
            Some(i) => what[..=i].to_string(),
            None => what,
        }
    }
}

/// Every rule, in code order.
pub const RULES: &[Rule] = &[
    eg001_missing_host::RULE,
    eg002_stray_host::RULE,
    eg003_host_not_in_config::RULE,
    eg004_config_host_missing::RULE,
    eg005_invalid_host::RULE,
    eg006_overlapping_host::RULE,
    eg007_service_entry_too_large::RULE,
    eg008_unknown_internal_listener::RULE,
    eg009_unknown_cluster::RULE,
    eg010_dns_cache_mismatch::RULE,
    eg011_missing_subset::RULE,
    eg012_route_not_to_gateway::RULE,
    eg013_gateway_port_not_target_port::RULE,
    eg014_tls_not_istio_mutual::RULE,
    eg015_port_mismatch::RULE,
    eg016_missing_keepalive::RULE,
    eg017_selector_mismatch::RULE,
    eg018_unscoped_envoyfilter::RULE,
    eg019_merge_without_port::RULE,
    eg020_mesh_wide_telemetry::RULE,
    eg021_schema::RULE,
    eg022_allow_any_outbound::RULE,
    eg023_unknown_gateway::RULE,
    eg024_patch_context_not_gateway::RULE,
    eg025_missing_tls_inspector::RULE,
    eg026_duplicate_object::RULE,
];

/// Looks a rule up by code, case-insensitively.
pub fn find(code: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.code.eq_ignore_ascii_case(code))
}

/// What a rule sees, and where it reports.
pub struct Ctx<'a> {
    pub model: &'a Model,
    pub opts: &'a Options,
    pub rule: &'static Rule,
    findings: Vec<Finding>,
}

impl<'a> Ctx<'a> {
    pub fn new(model: &'a Model, opts: &'a Options) -> Ctx<'a> {
        Ctx {
            model,
            opts,
            rule: &RULES[0],
            findings: Vec::new(),
        }
    }

    pub fn resource(&self, i: usize) -> &'a Resource {
        &self.model.resources[i]
    }

    /// Reports a finding of the current rule on resource `i`, unless the
    /// resource's `egressgen.io/ignore` annotation lists the code.
    pub fn report(
        &mut self,
        i: usize,
        at: Pos,
        field_path: &str,
        message: String,
        help: Option<String>,
    ) {
        self.report_as(self.rule.severity, i, at, field_path, message, help);
    }

    /// [`Ctx::report`] with a severity other than the rule's.
    pub fn report_as(
        &mut self,
        severity: Severity,
        i: usize,
        at: Pos,
        field_path: &str,
        message: String,
        help: Option<String>,
    ) {
        let r = &self.model.resources[i];
        if r.ignore.iter().any(|c| c == self.rule.code) {
            return;
        }
        self.findings.push(Finding {
            code: self.rule.code,
            severity,
            message,
            help,
            file: self.model.file(r).to_string(),
            line: at.line,
            column: at.column,
            resource: Some(r.reference()),
            field_path: field_path.to_string(),
        });
    }

    /// `file:line` of a position in resource `i`, for messages: the file
    /// name escaped, as in the finding's own location.
    pub fn loc(&self, i: usize, at: Pos) -> String {
        let file = crate::escape::escaped(self.model.file(self.resource(i)));
        format!("{file}:{}", at.line)
    }

    pub fn finish(self) -> Vec<Finding> {
        self.findings
    }
}

/// The normalised config domains, when `--config` is given.
pub fn config_hosts(opts: &Options) -> Option<std::collections::HashSet<String>> {
    opts.config.as_ref().map(|c| {
        c.allowlist
            .entries()
            .iter()
            .map(|p| p.to_string())
            .collect()
    })
}

/// A host as Istio resolves it for the resource that writes it
/// (`ResolveShortnameToFQDN`, istio/istio `pilot/pkg/model/config.go`): only
/// a name without a dot is a short name, expanded to
/// `name.<namespace>.svc.cluster.local`. Anything with a dot is taken as
/// written, so `gw.istio-egress` or `gw.istio-egress.svc` name no Service.
pub fn fqdn(host: &str, ns: Option<&str>) -> String {
    let host = host.to_ascii_lowercase();
    if host.contains('.') || host == "*" {
        return host;
    }
    format!("{host}.{}.svc.cluster.local", ns.unwrap_or("default"))
}

/// `(namespace, name)` of the Gateway a reference names, as Istio's
/// `resolveGatewayName` (istio/istio, pilot) resolves it: `ns/name`, `./name`
/// (the VirtualService's namespace), the legacy FQDN `name.ns[.svc...]`, or a
/// short `name` in the VirtualService's namespace.
pub fn gateway_ref<'a>(reference: &'a str, vs_ns: Option<&'a str>) -> (Option<&'a str>, &'a str) {
    if let Some((ns, name)) = reference.split_once('/') {
        return (if ns == "." { vs_ns } else { Some(ns) }, name);
    }
    if let Some((name, rest)) = reference.split_once('.') {
        let ns = rest.split('.').next().unwrap_or(rest);
        return (Some(ns), name);
    }
    (vs_ns, reference)
}

/// VirtualServices that hold a mesh TLS route with `sniHosts`.
pub fn mesh_tls_routes(model: &Model) -> Vec<usize> {
    let mut v: Vec<usize> = model
        .lists
        .iter()
        .filter(|l| l.place == super::extract::Place::SniHosts)
        .map(|l| l.resource)
        .collect();
    v.dedup();
    v
}

/// Services that front the gateway pods: their selector is part of some
/// Gateway's selector. With no Gateway in the input, every Service.
pub fn gateway_services(model: &Model) -> Vec<usize> {
    use super::extract::{labels, selects};
    let gateway_selectors: Vec<Vec<(String, String)>> = model
        .of_kind("Gateway")
        .map(|(_, g)| labels(g.spec().and_then(|s| s.get("selector"))))
        .collect();
    model
        .of_kind("Service")
        .filter(|(_, s)| {
            let sel = labels(s.spec().and_then(|s| s.get("selector")));
            gateway_selectors.is_empty()
                || (!sel.is_empty() && gateway_selectors.iter().any(|g| selects(&sel, g)))
        })
        .map(|(i, _)| i)
        .collect()
}

/// Services in front of Gateway `g`'s pods: their selector is part of the
/// Gateway's. These are the Services whose ports istiod translates for it
/// (`resolvePorts`, istio/istio `pilot/pkg/model/gateway.go`).
pub fn services_of_gateway(model: &Model, g: usize) -> Vec<usize> {
    use super::extract::{labels, selects};
    let gw = labels(model.resources[g].spec().and_then(|s| s.get("selector")));
    model
        .of_kind("Service")
        .filter(|(_, s)| {
            let sel = labels(s.spec().and_then(|s| s.get("selector")));
            !sel.is_empty() && selects(&sel, &gw)
        })
        .map(|(i, _)| i)
        .collect()
}

/// The ports Gateway `g`'s servers listen on: a server whose number is a
/// port of a Service in front of its pods listens on that port's
/// `targetPort` (the first such Service port, as istiod's `resolvePorts`
/// in istio/istio `pilot/pkg/model/gateway.go` picks for a label-selected
/// gateway), any other on its number.
pub fn listener_ports(model: &Model, g: usize) -> Vec<i64> {
    use super::load::Node;
    let mut map: Vec<(i64, i64)> = Vec::new();
    for s in services_of_gateway(model, g) {
        let ports = model.resources[s]
            .spec()
            .map_or(&[][..], |s| s.list("ports"));
        for p in ports {
            let port = p.get("port").and_then(Node::as_i64);
            let target = p.get("targetPort").map_or(port, Node::as_i64);
            if let (Some(port), Some(target)) = (port, target) {
                map.push((port, target));
            }
        }
    }
    model.resources[g]
        .server_ports()
        .into_iter()
        .map(|n| map.iter().find(|(p, _)| *p == n).map_or(n, |(_, t)| *t))
        .collect()
}

/// The Gateways of the egress path: those in front of which sits a Service
/// that a mesh TLS route (`sniHosts`) sends the allowlist to. Other
/// Gateways of the input (an ingress with `SIMPLE` TLS on 443) are not the
/// egress gateway's business. When the input links no Gateway that way,
/// every Gateway, since any of them may be the one.
pub fn egress_gateways(model: &Model) -> Vec<usize> {
    use super::load::Node;
    let mut dests: Vec<String> = Vec::new();
    for i in mesh_tls_routes(model) {
        let vs = &model.resources[i];
        let routes = vs.spec().map_or(&[][..], |s| s.list("tls"));
        for d in routes.iter().flat_map(|r| r.list("route")) {
            if let Some(h) = d.path(&["destination", "host"]).and_then(Node::as_str) {
                dests.push(fqdn(h, vs.namespace.as_deref()));
            }
        }
    }
    let all: Vec<usize> = model.of_kind("Gateway").map(|(i, _)| i).collect();
    let linked: Vec<usize> = all
        .iter()
        .copied()
        .filter(|&g| {
            services_of_gateway(model, g).into_iter().any(|s| {
                let s = &model.resources[s];
                dests.contains(&fqdn(&s.name, s.namespace.as_deref()))
            })
        })
        .collect();
    if linked.is_empty() { all } else { linked }
}

/// Where to point at a whole resource: its `metadata.name`, else its start.
pub fn name_pos(r: &Resource) -> Pos {
    r.node.path(&["metadata", "name"]).map_or(r.at, |n| n.at)
}

/// Where to point at a resource's `spec` key, else its start.
pub fn spec_pos(r: &Resource) -> Pos {
    r.node.entry("spec").map_or(r.at, |(k, _)| k.at)
}

/// The `file:line` of each place's first list, for messages.
pub fn first_list_locs(ctx: &Ctx) -> HashMap<super::extract::Place, String> {
    let mut m = HashMap::new();
    for l in &ctx.model.lists {
        m.entry(l.place)
            .or_insert_with(|| ctx.loc(l.resource, l.at));
    }
    m
}

/// The README table of every code, then each code's example and fix,
/// generated from the rule docs.
pub fn markdown_table() -> String {
    let mut out = String::from("| Code | Name | Severity | What it finds |\n|---|---|---|---|\n");
    for r in RULES {
        out.push_str(&format!(
            "| [{}](#{}) | `{}` | {} | {} |\n",
            r.code,
            r.code.to_ascii_lowercase(),
            r.name,
            r.severity.as_str(),
            r.summary().replace('|', "\\|")
        ));
    }
    for r in RULES {
        out.push_str(&format!(
            "\n#### {}\n\n`{}` ({}). {}\n\n**Why:** {}\n\n**Example**\n\n{}\n\n**Fix**\n\n{}\n",
            r.code,
            r.name,
            r.severity.as_str(),
            r.section("What it does").replace('\n', " "),
            r.section("Why is this bad?").replace('\n', " "),
            r.section("Example"),
            r.section("Use instead"),
        ));
    }
    out
}
