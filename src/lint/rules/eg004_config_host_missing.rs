//! ## What it does
//! With `--config`, reports a domain of the config that is missing from one
//! of the four host lists, at that list.
//!
//! ## Why is this bad?
//! The domain was approved but the manifest does not carry it everywhere, so
//! the traffic is dropped: by the sidecar (no VirtualService or ServiceEntry)
//! or by the gateway (no `server_names` entry).
//!
//! ## Example
//! ```yaml
//! # egress.yaml: domains: ["*.wikipedia.org", api.github.com]
//! kind: ServiceEntry
//! spec:
//!   hosts:
//!   - "*.wikipedia.org"
//! ```
//!
//! ## Use instead
//! ```yaml
//! kind: ServiceEntry
//! spec:
//!   hosts:
//!   - api.github.com
//!   - "*.wikipedia.org"
//! ```
//! Run `egressgen render -c egress.yaml -o manifest.yaml` to rewrite all four.

use super::{Ctx, Rule, config_hosts};
use crate::escape::quoted;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG004",
    name: "config-host-missing",
    severity: Severity::Error,
    source: include_str!("eg004_config_host_missing.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let (Some(_), Some(cfg)) = (config_hosts(ctx.opts), ctx.opts.config.as_ref()) else {
        return;
    };
    let config = ctx.opts.config_name.clone();
    let regenerate = ctx.opts.regenerate.clone();
    let model = ctx.model;
    for place in model.present_places() {
        let Some(list) = model.lists_of(place).next() else {
            continue;
        };
        for p in cfg.allowlist.entries() {
            let key = p.to_string();
            if model.has(place, &key) {
                continue;
            }
            ctx.report(
                list.resource,
                list.at,
                &list.field_path,
                format!(
                    "{} from the config ({config}) is missing from {}",
                    quoted(&key),
                    place.describe()
                ),
                Some(format!(
                    "run {regenerate} and apply the result, or add {} here",
                    quoted(&key)
                )),
            );
        }
    }
}
