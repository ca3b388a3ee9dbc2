//! ## What it does
//! With `--config`, reports a host in the manifest that is not in the
//! config's normalised domain list, at the line where it appears.
//!
//! ## Why is this bad?
//! The config is the source of truth. A host the config does not list was
//! added by hand, or is left over from an old allowlist: the gateway lets
//! through traffic nobody approved.
//!
//! ## Example
//! ```yaml
//! # egress.yaml: domains: ["*.wikipedia.org"]
//! kind: ServiceEntry
//! spec:
//!   hosts:
//!   - "*.wikipedia.org"
//!   - pastebin.com
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: ServiceEntry
//! spec:
//!   hosts:
//!   - "*.wikipedia.org"
//! ```
//! Or add the host to `spec.domains` in the config and run `egressgen render`.

use super::{Ctx, Rule, config_hosts};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG003",
    name: "host-not-in-config",
    severity: Severity::Error,
    source: include_str!("eg003_host_not_in_config.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let Some(truth) = config_hosts(ctx.opts) else {
        return;
    };
    let model = ctx.model;
    let config = ctx.opts.config_name.clone();
    let regenerate = ctx.opts.regenerate.clone();
    for l in &model.lists {
        for h in &l.hosts {
            let Some(key) = &h.key else {
                continue;
            };
            if truth.contains(key) {
                continue;
            }
            ctx.report(
                l.resource,
                h.at,
                &h.field_path,
                format!(
                    "{} is in {} but not in the config's domains ({config})",
                    quoted(&h.raw),
                    l.place.describe()
                ),
                Some(format!(
                    "remove it, or add it to spec.domains in {config} and run {regenerate}"
                )),
            );
        }
    }
}
