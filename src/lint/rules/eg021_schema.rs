//! ## What it does
//! Reports fields that the real Istio CRD schemas reject: unknown fields
//! (a misspelt `sniHost`), wrong types and bad enum values. Kubernetes
//! objects are checked against their schemas too, and against the name
//! rules the API server adds: a Service name that is no DNS-1035 label, a
//! container port name over 15 characters. The CRDs' CEL rules
//! (`x-kubernetes-validations`, such as "port number cannot be duplicated"
//! on a ServiceEntry) are checked unless a type, required, enum or size
//! error came first, as the API server does, and so are the keys of
//! `x-kubernetes-list-type: map` lists (two ServiceEntry ports of the same
//! name). Values are checked as kubectl sends them: it reads YAML 1.1,
//! where a plain `yes`, `on` or `y` is a boolean, so such a word where a
//! string belongs is reported.
//!
//! ## Why is this bad?
//! A misspelt field is dropped or rejected: `sniHost: [...]` instead of
//! `sniHosts` leaves the match without hosts, so a typo silently empties an
//! allowlist or widens a route. A bad name makes `kubectl apply` fail.
//!
//! ## Example
//! ```yaml
//! tls:
//! - match:
//!   - sniHost:
//!     - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! tls:
//! - match:
//!   - sniHosts:
//!     - "*.wikipedia.org"
//! ```

use super::{Ctx, Rule};
use crate::escape::{escaped, quoted};
use crate::lint::Severity;
use crate::lint::extract::api_group;
use crate::lint::load::Node;
use crate::schema;

pub const RULE: Rule = Rule {
    code: "EG021",
    name: "schema",
    severity: Severity::Error,
    source: include_str!("eg021_schema.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for (i, r) in model.resources.iter().enumerate() {
        let Some(violations) = schema::validate(&r.api_version, &r.kind, &r.node.to_json()) else {
            // IstioOperator (`install.istio.io`) is istioctl's install input,
            // not a served networking/security API: no schema is shipped for it.
            if r.is_istio() && api_group(&r.api_version) != "install.istio.io" {
                let at = r.node.get("apiVersion").map_or(r.at, |n| n.at);
                ctx.report(
                    i,
                    at,
                    "apiVersion",
                    format!(
                        "no Istio schema for {} {}: the API server does not serve this version",
                        quoted(&r.api_version),
                        quoted(&r.kind)
                    ),
                    Some("use a served version, e.g. networking.istio.io/v1 (Istio 1.22+) or v1alpha3".into()),
                );
            }
            continue;
        };
        for v in violations {
            // EG007 reports an oversized ServiceEntry with a better message.
            if r.kind == "ServiceEntry"
                && v.path == ["spec", "hosts"]
                && v.message.contains("more than")
            {
                continue;
            }
            let (node, field_path) = locate(&r.node, &v.path);
            let within = if field_path.is_empty() {
                "(top level)".to_string()
            } else {
                field_path.clone()
            };
            let mut at = node.map_or(r.at, |n| n.at);
            let message;
            let help;
            if let Some(field) = unexpected_field(&v.message) {
                // Point at the unknown key itself.
                if let Some((k, _)) = node.and_then(|n| n.entry(&field)) {
                    at = k.at;
                }
                message = format!("unknown field {} in {} {}", quoted(&field), r.kind, within);
                help = Some(format!(
                    "check the spelling against the {} {} schema; unknown fields are dropped by the API server",
                    escaped(&r.api_version),
                    r.kind
                ));
            } else if let Some(field) = required_field(&v.message) {
                message = format!(
                    "missing required field {} in {} {}",
                    quoted(&field),
                    r.kind,
                    within
                );
                help = Some(format!(
                    "add {} (see the {} {} schema)",
                    quoted(&field),
                    escaped(&r.api_version),
                    r.kind
                ));
            } else if let Some((text, b)) = node
                .filter(|_| v.message.contains("is not of type \"string\""))
                .and_then(|n| Some((n.scalar_text()?, n.kubectl_bool?)))
            {
                message = format!(
                    "{field_path} is {}, which kubectl reads as the boolean {b} (YAML 1.1), where a string belongs; the API server refuses it",
                    quoted(&text)
                );
                help = Some(format!("quote it: \"{}\"", escaped(&text)));
            } else {
                let shown_path = if field_path.is_empty() {
                    "object".to_string()
                } else {
                    field_path.clone()
                };
                message = match node.and_then(Node::scalar_text) {
                    Some(value) => format!(
                        "{shown_path} is {}: {}",
                        quoted(&value),
                        escaped(&v.message)
                    ),
                    None => format!("{shown_path}: {}", escaped(&v.message)),
                };
                help = Some(v.help.clone().unwrap_or_else(|| {
                    format!("see the {} {} schema", escaped(&r.api_version), r.kind)
                }));
            }
            ctx.report(i, at, &field_path, message, help);
        }
    }
}

/// The node at a schema path (keys and list indices) and the path written
/// as `spec.tls[0].match[0]`. Stops at the deepest node that exists.
fn locate<'a>(root: &'a Node, path: &[String]) -> (Option<&'a Node>, String) {
    let mut node = root;
    let mut shown = String::new();
    for seg in path {
        let next = match seg.parse::<usize>() {
            Ok(i) if !node.items().is_empty() => node.items().get(i),
            _ => node.get(seg),
        };
        let Some(n) = next else { break };
        if seg.parse::<usize>().is_ok() && !node.items().is_empty() {
            shown.push_str(&format!("[{seg}]"));
        } else {
            if !shown.is_empty() {
                shown.push('.');
            }
            shown.push_str(&escaped(seg));
        }
        node = n;
    }
    (Some(node), shown)
}

/// `sniHosts` out of `"sniHosts" is a required property`.
fn required_field(message: &str) -> Option<String> {
    let name = message.strip_suffix(" is a required property")?;
    let name = name.strip_prefix('"')?.strip_suffix('"')?;
    Some(name.to_string())
}

/// `'sniHost'` out of "Additional properties are not allowed ('sniHost' was unexpected)".
fn unexpected_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("Additional properties are not allowed (")?;
    let start = rest.find('\'')? + 1;
    let end = start + rest[start..].find('\'')?;
    Some(rest[start..end].to_string())
}
