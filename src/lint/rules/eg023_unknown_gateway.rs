//! ## What it does
//! Reports a VirtualService gateway reference (`spec.gateways` or a route's
//! `match[].gateways`) that is neither the reserved `mesh` nor a Gateway in
//! the input. A reference is resolved as Istio's `resolveGatewayName` does:
//! `name` is a Gateway in the VirtualService's namespace, `ns/name` (or
//! `./name`) one in namespace `ns`, and the legacy `name.ns.svc.cluster.local`
//! one in `ns`. Checked when the input holds at least one Gateway: without
//! any, the Gateway may sit in a file that was not linted. A misspelt `mesh`
//! is reported even then: a case variant (`Mesh`, `MESH`) or a name one edit
//! (insert, delete, substitute) or one swap of neighbours away (`mehs`,
//! `msh`, `mes`, `mesh1`). Names further off (`test`, `west`, `desk`) are
//! ordinary gateway names and are left alone without Gateways. If a Gateway
//! of a near-`mesh` name really exists elsewhere, lint it along or silence
//! the resource with `egressgen.io/ignore: EG023`. With Gateways in the
//! input every unknown name is reported; only the near-`mesh` ones get the
//! "did you mean `mesh`" help.
//!
//! ## Why is this bad?
//! Istio binds a route only to the proxies its gateways name and ignores a
//! name that matches nothing. With `mehs` in the mesh TLS route the sidecars
//! never get the route: traffic to the allowed hosts bypasses the egress
//! gateway (or is refused under `REGISTRY_ONLY`), and the route's `sniHosts`
//! silently drop out of the drift checks, which only read mesh routes. A
//! misspelt Gateway in the keep-alive route leaves the Gateway unused, so
//! istiod drops its listener.
//!
//! ## Example
//! ```yaml
//! tls:
//! - match:
//!   - gateways:
//!     - mehs
//!     port: 443
//!     sniHosts:
//!     - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! tls:
//! - match:
//!   - gateways:
//!     - mesh
//!     port: 443
//!     sniHosts:
//!     - "*.wikipedia.org"
//! ```

use super::{Ctx, Rule, gateway_ref};
use crate::escape::quoted;
use crate::lint::Severity;
use crate::lint::load::Node;

pub const RULE: Rule = Rule {
    code: "EG023",
    name: "unknown-gateway",
    severity: Severity::Error,
    source: include_str!("eg023_unknown_gateway.rs"),
    check,
};

/// Istio's reserved name for the sidecars of the mesh.
const MESH: &str = "mesh";

/// How many known gateways the help line lists.
const HELP_LIMIT: usize = 5;

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    let gateways: Vec<(Option<&str>, &str)> = model
        .of_kind("Gateway")
        .map(|(_, g)| (g.namespace.as_deref(), g.name.as_str()))
        .collect();
    for (i, vs) in model.of_kind("VirtualService") {
        let Some(spec) = vs.spec() else { continue };
        let vs_ns = vs.namespace.as_deref();
        for (node, path) in references(spec) {
            // A non-string entry is a schema error (EG021).
            let Some(name) = node.as_str() else { continue };
            if name == MESH {
                continue;
            }
            let (ns, gw_name) = gateway_ref(name, vs_ns);
            // A namespace that is not written down (the resource's or the
            // Gateway's) matches any, as the other rules do.
            let known = gateways.iter().any(|(g_ns, g_name)| {
                *g_name == gw_name && (ns.is_none() || g_ns.is_none() || ns == *g_ns)
            });
            if known {
                continue;
            }
            let typo = looks_like_mesh(name);
            if gateways.is_empty() && !typo {
                continue;
            }
            let target = match ns {
                Some(ns) => format!("{ns}/{gw_name}"),
                None => gw_name.to_string(),
            };
            let message = if typo {
                format!(
                    "gateway {} is not the reserved {} and names no Gateway in the input: the route does not apply to sidecars",
                    quoted(name),
                    quoted(MESH)
                )
            } else if target == name {
                format!(
                    "gateway {} is not in the input: Istio binds the route to nothing for it",
                    quoted(name)
                )
            } else {
                format!(
                    "gateway {} resolves to Gateway {}, which is not in the input: Istio binds the route to nothing for it",
                    quoted(name),
                    quoted(&target)
                )
            };
            let known_list = known_names(&gateways, vs_ns);
            let help = if typo {
                format!(
                    "did you mean {}? Known gateways: {known_list}",
                    quoted(MESH)
                )
            } else {
                format!("name one of the known gateways: {known_list}")
            };
            ctx.report(i, node.at, &path, message, Some(help));
        }
    }
}

/// Every gateway reference of a VirtualService, with its field path.
fn references(spec: &Node) -> Vec<(&Node, String)> {
    let mut refs: Vec<(&Node, String)> = spec
        .list("gateways")
        .iter()
        .enumerate()
        .map(|(gi, g)| (g, format!("spec.gateways[{gi}]")))
        .collect();
    for kind in ["http", "tls", "tcp"] {
        for (ri, route) in spec.list(kind).iter().enumerate() {
            for (mi, m) in route.list("match").iter().enumerate() {
                for (gi, g) in m.list("gateways").iter().enumerate() {
                    refs.push((g, format!("spec.{kind}[{ri}].match[{mi}].gateways[{gi}]")));
                }
            }
        }
    }
    refs
}

/// A misspelt `mesh`: not `mesh` itself, but a case variant of it (`Mesh`,
/// `MESH`) or, ignoring case, one edit (insert, delete, substitute) or one
/// swap of neighbours away (`mehs`, `msh`, `mes`, `mesh1`). Two edits would
/// take in ordinary gateway names (`test`, `west`, `desk`, `fresh`). Names
/// with `/` or `.` are deliberate Gateway references.
fn looks_like_mesh(name: &str) -> bool {
    if name == MESH || name.contains('/') || name.contains('.') {
        return false;
    }
    let lower = name.trim().to_ascii_lowercase();
    // One edit cannot bridge a longer length difference; this also keeps a
    // huge name from being compared at all.
    lower.chars().nth(MESH.len() + 1).is_none() && edit_distance(&lower, MESH) <= 1
}

/// Optimal string alignment distance (Levenshtein plus adjacent swaps).
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// `mesh` and the Gateways of the input, each as the VirtualService would
/// write it: `name` in its own namespace, else `ns/name`.
fn known_names(gateways: &[(Option<&str>, &str)], vs_ns: Option<&str>) -> String {
    let mut names = vec![quoted(MESH)];
    for (ns, name) in gateways {
        let written = match ns {
            Some(ns) if Some(*ns) != vs_ns => format!("{ns}/{name}"),
            _ => name.to_string(),
        };
        let written = quoted(&written);
        if !names.contains(&written) {
            names.push(written);
        }
    }
    let more = names.len().saturating_sub(HELP_LIMIT);
    names.truncate(HELP_LIMIT);
    let mut out = names.join(", ");
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}
