//! ## What it does
//! Reports an object defined twice in the input: the same API group,
//! kind, namespace and name, say in two files of one folder. An error when
//! the two differ; a warning when they are the same.
//!
//! ## Why is this bad?
//! `kubectl apply` keeps whichever it applies last, so when they differ
//! the cluster's object depends on file order, and one of the two is dead
//! text that reviewers still read. lint checks the last one, as the
//! cluster would get it, and reports the earlier one here instead of
//! repeating every host of it as a duplicate (EG006).
//!
//! ## Example
//! ```yaml
//! # a/egress.yaml and b/egress.yaml both hold:
//! kind: ServiceEntry
//! metadata:
//!   name: wildcard
//!   namespace: istio-system
//! ```
//!
//! ## Use instead
//! ```yaml
//! # One definition: delete the stale copy, or lint only the folder that
//! # is applied.
//! ```

use super::{Ctx, Rule};
use crate::escape::escaped;
use crate::lint::Severity;

pub const RULE: Rule = Rule {
    code: "EG026",
    name: "duplicate-object",
    severity: Severity::Error,
    source: include_str!("eg026_duplicate_object.rs"),
    check,
};

fn check(ctx: &mut Ctx) {
    let model = ctx.model;
    for (earlier, later) in &model.overridden {
        let kept = ctx.resource(*later);
        let earlier_at = format!("{}:{}", escaped(model.file(earlier)), earlier.at.line);
        let (severity, how) = if earlier.node.to_json() == kept.node.to_json() {
            (Severity::Warning, "the same object")
        } else {
            (
                Severity::Error,
                "a different object: the cluster gets whichever `kubectl apply` applies last",
            )
        };
        ctx.report_as(
            severity,
            *later,
            kept.at,
            "",
            format!(
                "{} is also defined at {earlier_at}, as {how}; lint checks this later one",
                kept.display()
            ),
            Some("keep one definition: delete the stale copy, or lint only what is applied".into()),
        );
    }
}
