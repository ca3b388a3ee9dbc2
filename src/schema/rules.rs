//! The CEL validation rules (`x-kubernetes-validations`) of the Istio CRDs
//! kept in `schemas/istio/`. The API server evaluates them after the
//! OpenAPI schema, and refuses an object that breaks one; `jsonschema`
//! does not know them. There are few, so each rule's text maps to its
//! meaning written in Rust, with CEL's semantics: `has(self.f)` is true for
//! a field that is present, `all` over a map runs over its keys, and an
//! evaluation error (a missing field, an unparsable duration) refuses the
//! object as the API server does. `tests::every_embedded_rule_is_known`
//! keeps this table complete when the schemas change.

use serde_json::Value;

/// A rule an object breaks: where (keys and list indices) and the CRD's
/// message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub path: Vec<String>,
    pub message: String,
}

/// The duplicates a `x-kubernetes-list-type` forbids and, with `cel`,
/// every rule of `schema` that `instance` breaks, walking the schema's
/// `properties`, `items` and `additionalProperties` along the instance.
pub fn check(schema: &Value, instance: &Value, cel: bool) -> Vec<Broken> {
    let mut out = Vec::new();
    walk(schema, instance, cel, &mut Vec::new(), &mut out);
    out
}

fn walk(schema: &Value, v: &Value, cel: bool, path: &mut Vec<String>, out: &mut Vec<Broken>) {
    for r in schema
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|_| cel)
    {
        let rule = r.get("rule").and_then(Value::as_str).unwrap_or_default();
        if holds(rule, v) == Some(false) {
            let message = r.get("message").and_then(Value::as_str);
            out.push(Broken {
                path: path.clone(),
                message: message.unwrap_or(rule).to_string(),
            });
        }
    }
    let props = schema.get("properties").and_then(Value::as_object);
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or_else(|| schema.get("additionalProperties").filter(|a| a.is_object()));
                if let Some(sub) = sub {
                    path.push(k.clone());
                    walk(sub, child, cel, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            duplicates(schema, items, path, out);
            if let Some(sub) = schema.get("items") {
                for (i, child) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(sub, child, cel, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// `x-kubernetes-list-type: map` (items unique by the list-map keys) and
/// `set` (unique items), which the API server checks with the schema
/// (apiextensions-apiserver `ValidateListSetsAndMaps`, "Duplicate value").
fn duplicates(schema: &Value, items: &[Value], path: &mut Vec<String>, out: &mut Vec<Broken>) {
    let keys: Vec<&str> = match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect(),
        Some("set") => Vec::new(),
        _ => return,
    };
    let id = |v: &Value| -> Vec<Value> {
        if keys.is_empty() {
            vec![v.clone()]
        } else {
            keys.iter()
                .map(|k| v.get(*k).cloned().unwrap_or_default())
                .collect()
        }
    };
    for (i, item) in items.iter().enumerate() {
        if items[..i].iter().any(|earlier| id(earlier) == id(item)) {
            path.push(i.to_string());
            out.push(Broken {
                path: path.clone(),
                message: if keys.is_empty() {
                    "an earlier item of this list is the same; the API server refuses duplicates"
                        .to_string()
                } else {
                    format!(
                        "an earlier item of this list has the same {}; the API server refuses duplicates",
                        keys.join(" and ")
                    )
                },
            });
            path.pop();
        }
    }
}

/// `has(self.f)`.
fn has(v: &Value, f: &str) -> bool {
    v.get(f).is_some_and(|x| !x.is_null())
}

fn str_or<'a>(v: &'a Value, f: &str, default: &'a str) -> &'a str {
    v.get(f).and_then(Value::as_str).unwrap_or(default)
}

/// `(has(self.a) ? 1 : 0) + (has(self.b) ? 1 : 0) ... <= 1`.
fn at_most_one(v: &Value, fields: &[&str]) -> bool {
    fields.iter().filter(|f| has(v, f)).count() <= 1
}

/// The keys of a map, or the string items of a list.
fn key_strings(v: &Value) -> Option<Vec<&str>> {
    match v {
        Value::Object(m) => Some(m.keys().map(String::as_str).collect()),
        Value::Array(items) => items.iter().map(Value::as_str).collect(),
        _ => None,
    }
}

/// CEL `size()`: characters of a string, entries of a list or map.
fn size(v: &Value) -> Option<usize> {
    match v {
        Value::String(s) => Some(s.chars().count()),
        Value::Array(a) => Some(a.len()),
        Value::Object(m) => Some(m.len()),
        _ => None,
    }
}

/// Whether `v` keeps `rule`; `None` for a rule this table does not know.
fn holds(rule: &str, v: &Value) -> Option<bool> {
    let s = v.as_str();
    let ok = match rule {
        "(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            at_most_one(v, &["selector", "targetRef", "targetRefs"])
        }
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1" => {
            at_most_one(v, &["workloadSelector", "targetRefs"])
        }
        "(has(self.tlsCertificates) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1"
        | "(has(self.credentialNames) ? 1 : 0) + (has(self.tlsCertificates) ? 1 : 0) <= 1" => {
            at_most_one(v, &["tlsCertificates", "credentialNames"])
        }
        "(has(self.credentialName) ? 1 : 0) + (has(self.credentialNames) ? 1 : 0) <= 1" => {
            at_most_one(v, &["credentialName", "credentialNames"])
        }
        "(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1" => {
            at_most_one(v, &["workloadSelector", "endpoints"])
        }
        "(has(self.serviceAccounts) || has(self.notServiceAccounts)) ? (!has(self.principals) &&\n!has(self.notPrincipals) && !has(self.namespaces) && !has(self.notNamespaces)) : true" => {
            !(has(v, "serviceAccounts") || has(v, "notServiceAccounts"))
                || ["principals", "notPrincipals", "namespaces", "notNamespaces"]
                    .iter()
                    .all(|f| !has(v, f))
        }
        "self.all(key, !key.contains(\"*\"))" => key_strings(v)?.iter().all(|k| !k.contains('*')),
        "self.all(key, key.size() != 0)" => key_strings(v)?.iter().all(|k| !k.is_empty()),
        "self.all(key, size(key) < 63 && key.matches(\"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$\"))" => {
            key_strings(v)?
                .iter()
                .all(|k| k.chars().count() < 63 && alnum_dash_label(k))
        }
        "self.all(key, 0 < int(key) && int(key) <= 65535)" => key_strings(v)?
            .iter()
            .all(|k| cel_int(k).is_some_and(|n| 0 < n && n <= 65535)),
        "!self.contains(\"*\")" => !s?.contains('*'),
        "self != \"*\"" => s != Some("*"),
        "self.size() == 0" => size(v)? == 0,
        "0 < self && self <= 65535" => v.as_i64().is_some_and(|n| 0 < n && n <= 65535),
        "duration(self) >= duration('1ms')" => go_duration_nanos(s?).is_some_and(|ns| ns >= 1e6),
        "has(self.context) ? ((self.context == \"WAYPOINT\") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)" => {
            (str_or(v, "context", "") == "WAYPOINT" && has(v, "context")) == has(v, "waypoint")
        }
        "has(self.portLevelMtls) ? (((has(self.selector) && has(self.selector.matchLabels)) ? self.selector.matchLabels : {}).size() > 0) : true" => {
            !has(v, "portLevelMtls")
                || v.get("selector")
                    .and_then(|s| s.get("matchLabels"))
                    .and_then(size)
                    .is_some_and(|n| n > 0)
        }
        "!((has(self.addresses) ? self.addresses : []).exists(k, k.contains(\"/\")) && !((has(self.resolution) ? self.resolution : \"NONE\") in [\"STATIC\", \"NONE\"]))" =>
        {
            let cidr = v
                .get("addresses")
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter()
                        .any(|k| k.as_str().is_some_and(|k| k.contains('/')))
                });
            !cidr || matches!(str_or(v, "resolution", "NONE"), "STATIC" | "NONE")
        }
        "((has(self.resolution) ? self.resolution : \"NONE\") == \"NONE\") ? !has(self.endpoints) : true" => {
            str_or(v, "resolution", "NONE") != "NONE" || !has(v, "endpoints")
        }
        "((has(self.resolution) ? self.resolution : \"\") == \"DNS_ROUND_ROBIN\") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true" => {
            str_or(v, "resolution", "") != "DNS_ROUND_ROBIN"
                || v.get("endpoints").and_then(size).unwrap_or(0) <= 1
        }
        "has(self.address) || has(self.network)" => has(v, "address") || has(v, "network"),
        "(has(self.address) ? self.address : \"\").startsWith(\"unix://\") ? !has(self.ports) : true" => {
            !str_or(v, "address", "").starts_with("unix://") || !has(v, "ports")
        }
        "self.startsWith(\"unix://\") ? (self.substring(7, 8) == \"/\" || self.substring(7, 8) == \"@\") : true" =>
        {
            // `substring(7, 8)` of "unix://" alone is an error: refused.
            match s?.strip_prefix("unix://") {
                Some(rest) => rest.starts_with('/') || rest.starts_with('@'),
                None => true,
            }
        }
        "self.startsWith(\"unix://\") ? !self.endsWith(\"/\") : true" => {
            !s?.starts_with("unix://") || !s?.ends_with('/')
        }
        "self.all(l1, self.exists_one(l2, l1.number == l2.number))" => {
            let items = v.as_array()?;
            items.iter().all(|a| {
                items
                    .iter()
                    .filter(|b| a.get("number") == b.get("number"))
                    .count()
                    == 1
            })
        }
        "((has(self.operation) ? self.operation : \"\") == \"UPSERT\") ? (self.value != \"\") : true" =>
        {
            // `self.value` of an UPSERT without one is an error: refused.
            str_or(v, "operation", "") != "UPSERT"
                || v.get("value").is_some_and(|x| x.as_str() != Some(""))
        }
        "((has(self.operation) ? self.operation : \"\") == \"REMOVE\") ? !has(self.value) : true" => {
            str_or(v, "operation", "") != "REMOVE" || !has(v, "value")
        }
        _ => return None,
    };
    Some(ok)
}

/// `^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$`.
fn alnum_dash_label(k: &str) -> bool {
    let b = k.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// CEL `int(string)`: an optional sign and decimal digits.
fn cel_int(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// CEL `duration(string)`, which is Go's `time.ParseDuration`: an optional
/// sign, then numbers with an optional fraction, each with a unit (`ns`,
/// `us`, `µs`, `ms`, `s`, `m`, `h`); `0` alone needs none. In nanoseconds.
fn go_duration_nanos(s: &str) -> Option<f64> {
    let (sign, mut rest) = match s.strip_prefix('-') {
        Some(r) => (-1.0, r),
        None => (1.0, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return None;
        }
        let n: f64 = num.parse().ok()?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * scale;
        rest = next;
    }
    // Go's int64 nanoseconds: past about 292 years it is an "invalid
    // duration" error, which refuses the object.
    let limit = 2f64.powi(63);
    if total > limit || (sign > 0.0 && total == limit) {
        return None;
    }
    Some(sign * total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every rule in the embedded schemas is in the table: a schema update
    /// that brings a new rule fails here until the rule is written.
    #[test]
    fn every_embedded_rule_is_known() {
        fn rules(n: &Value, out: &mut Vec<String>) {
            match n {
                Value::Object(m) => {
                    for r in m
                        .get("x-kubernetes-validations")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        out.push(r["rule"].as_str().unwrap().to_string());
                    }
                    m.values().for_each(|v| rules(v, out));
                }
                Value::Array(a) => a.iter().for_each(|v| rules(v, out)),
                _ => {}
            }
        }
        let mut all = Vec::new();
        for text in crate::schema::istio_schema_texts() {
            rules(&serde_json::from_str(text).unwrap(), &mut all);
        }
        assert!(all.len() > 100, "{}", all.len());
        for r in all {
            // Each known rule answers for some value (here: an empty map
            // or string); an unknown one answers None for all.
            let known = [json!({}), json!(""), json!([]), json!(1)]
                .iter()
                .any(|v| holds(&r, v).is_some());
            assert!(known, "no Rust for the CRD rule {r:?}");
        }
    }

    #[test]
    fn go_durations() {
        for (s, ns) in [
            ("1ms", 1e6),
            ("1.5s", 1.5e9),
            ("1h2m", 3720e9),
            ("500us", 5e5),
            ("0", 0.0),
            ("-1s", -1e9),
            ("2562047h", 2562047.0 * 3600e9),
        ] {
            assert_eq!(go_duration_nanos(s), Some(ns), "{s}");
        }
        for bad in [
            "",
            "1",
            "1d",
            "s",
            "1..2s",
            "1S",
            "0s5",
            "2562048h",
            "10000000h",
        ] {
            assert_eq!(go_duration_nanos(bad), None, "{bad}");
        }
    }

    #[test]
    fn rules_hold_as_the_api_server_evaluates_them() {
        let ports = "self.all(l1, self.exists_one(l2, l1.number == l2.number))";
        assert_eq!(
            holds(ports, &json!([{"number": 443}, {"number": 8443}])),
            Some(true)
        );
        assert_eq!(
            holds(ports, &json!([{"number": 443}, {"number": 443}])),
            Some(false)
        );
        let d = "duration(self) >= duration('1ms')";
        assert_eq!(holds(d, &json!("1ms")), Some(true));
        assert_eq!(holds(d, &json!("500us")), Some(false));
        assert_eq!(holds(d, &json!("10")), Some(false), "no unit: an error");
        let upsert = "((has(self.operation) ? self.operation : \"\") == \"UPSERT\") ? (self.value != \"\") : true";
        assert_eq!(holds(upsert, &json!({"operation": "UPSERT"})), Some(false));
        assert_eq!(holds(upsert, &json!({"value": "x"})), Some(true));
        let uds = "self.startsWith(\"unix://\") ? (self.substring(7, 8) == \"/\" || self.substring(7, 8) == \"@\") : true";
        assert_eq!(holds(uds, &json!("unix://")), Some(false));
        assert_eq!(holds(uds, &json!("unix:///run/x.sock")), Some(true));
        assert_eq!(holds(uds, &json!("10.0.0.1")), Some(true));
        let keys = "self.all(key, size(key) < 63 && key.matches(\"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$\"))";
        assert_eq!(holds(keys, &json!({"tls": 1, "tls-2": 2})), Some(true));
        assert_eq!(holds(keys, &json!({"-tls": 1})), Some(false));
        let waypoint = "has(self.context) ? ((self.context == \"WAYPOINT\") ? has(self.waypoint) : !has(self.waypoint)) : !has(self.waypoint)";
        assert_eq!(holds(waypoint, &json!({"context": "GATEWAY"})), Some(true));
        assert_eq!(holds(waypoint, &json!({"waypoint": {}})), Some(false));
        assert_eq!(
            holds(waypoint, &json!({"context": "WAYPOINT"})),
            Some(false)
        );
    }
}
