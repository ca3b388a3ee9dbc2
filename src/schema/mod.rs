//! Validation against the real Istio CRD schemas and Kubernetes schemas
//! kept in `schemas/`.
//!
//! The Istio schemas are the CRDs' `openAPIV3Schema`, copied unchanged (see
//! `schemas/istio/extract.py`). CRDs let unknown fields through the JSON
//! Schema itself (the API server prunes them), so a typo such as `sniHost`
//! would silently empty an allowlist. This module makes every object schema
//! strict: an unknown field is an error, except under
//! `x-kubernetes-preserve-unknown-fields` (EnvoyFilter patch values).
//! The Kubernetes schemas come from the official client's models (see
//! `schemas/kubernetes/generate.py`) and are already strict. The CRDs' CEL
//! rules (`x-kubernetes-validations`) are checked by [`rules`].

mod rules;

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Istio,
    Kubernetes,
}

/// (apiVersion, kind, family, schema text)
const SCHEMAS: &[(&str, &str, Family, &str)] = &[
    (
        "security.istio.io/v1",
        "AuthorizationPolicy",
        Family::Istio,
        include_str!("../../schemas/istio/AuthorizationPolicy.v1.json"),
    ),
    (
        "security.istio.io/v1beta1",
        "AuthorizationPolicy",
        Family::Istio,
        include_str!("../../schemas/istio/AuthorizationPolicy.v1beta1.json"),
    ),
    (
        "networking.istio.io/v1",
        "DestinationRule",
        Family::Istio,
        include_str!("../../schemas/istio/DestinationRule.v1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "DestinationRule",
        Family::Istio,
        include_str!("../../schemas/istio/DestinationRule.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1beta1",
        "DestinationRule",
        Family::Istio,
        include_str!("../../schemas/istio/DestinationRule.v1beta1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "EnvoyFilter",
        Family::Istio,
        include_str!("../../schemas/istio/EnvoyFilter.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1",
        "Gateway",
        Family::Istio,
        include_str!("../../schemas/istio/Gateway.v1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "Gateway",
        Family::Istio,
        include_str!("../../schemas/istio/Gateway.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1beta1",
        "Gateway",
        Family::Istio,
        include_str!("../../schemas/istio/Gateway.v1beta1.json"),
    ),
    (
        "security.istio.io/v1",
        "PeerAuthentication",
        Family::Istio,
        include_str!("../../schemas/istio/PeerAuthentication.v1.json"),
    ),
    (
        "security.istio.io/v1beta1",
        "PeerAuthentication",
        Family::Istio,
        include_str!("../../schemas/istio/PeerAuthentication.v1beta1.json"),
    ),
    (
        "networking.istio.io/v1",
        "ServiceEntry",
        Family::Istio,
        include_str!("../../schemas/istio/ServiceEntry.v1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "ServiceEntry",
        Family::Istio,
        include_str!("../../schemas/istio/ServiceEntry.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1beta1",
        "ServiceEntry",
        Family::Istio,
        include_str!("../../schemas/istio/ServiceEntry.v1beta1.json"),
    ),
    (
        "networking.istio.io/v1",
        "Sidecar",
        Family::Istio,
        include_str!("../../schemas/istio/Sidecar.v1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "Sidecar",
        Family::Istio,
        include_str!("../../schemas/istio/Sidecar.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1beta1",
        "Sidecar",
        Family::Istio,
        include_str!("../../schemas/istio/Sidecar.v1beta1.json"),
    ),
    (
        "telemetry.istio.io/v1",
        "Telemetry",
        Family::Istio,
        include_str!("../../schemas/istio/Telemetry.v1.json"),
    ),
    (
        "telemetry.istio.io/v1alpha1",
        "Telemetry",
        Family::Istio,
        include_str!("../../schemas/istio/Telemetry.v1alpha1.json"),
    ),
    (
        "networking.istio.io/v1",
        "VirtualService",
        Family::Istio,
        include_str!("../../schemas/istio/VirtualService.v1.json"),
    ),
    (
        "networking.istio.io/v1alpha3",
        "VirtualService",
        Family::Istio,
        include_str!("../../schemas/istio/VirtualService.v1alpha3.json"),
    ),
    (
        "networking.istio.io/v1beta1",
        "VirtualService",
        Family::Istio,
        include_str!("../../schemas/istio/VirtualService.v1beta1.json"),
    ),
    (
        "apps/v1",
        "Deployment",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/Deployment.v1.json"),
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/HorizontalPodAutoscaler.v2.json"),
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/NetworkPolicy.v1.json"),
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/PodDisruptionBudget.v1.json"),
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "Role",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/Role.v1.json"),
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/RoleBinding.v1.json"),
    ),
    (
        "v1",
        "Service",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/Service.v1.json"),
    ),
    (
        "v1",
        "ServiceAccount",
        Family::Kubernetes,
        include_str!("../../schemas/kubernetes/ServiceAccount.v1.json"),
    ),
];

/// One way an object breaks its schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending value inside the object, as keys and list
    /// indices (`["spec", "tls", "0", "match"]`).
    pub path: Vec<String>,
    pub message: String,
    /// What to do, when the schema alone does not say.
    pub help: Option<String>,
}

/// The compiled validator of each schema, and the schema for its CEL rules.
type Validators = HashMap<(&'static str, &'static str), (Family, jsonschema::Validator, Value)>;

fn validators() -> &'static Validators {
    static CELL: OnceLock<Validators> = OnceLock::new();
    CELL.get_or_init(|| {
        SCHEMAS
            .iter()
            .map(|(api, kind, family, text)| {
                let mut schema: Value =
                    serde_json::from_str(text).expect("embedded schemas are JSON (tested)");
                if *family == Family::Istio {
                    make_strict(&mut schema);
                }
                let v =
                    jsonschema::validator_for(&schema).expect("embedded schemas compile (tested)");
                ((*api, *kind), (*family, v, schema))
            })
            .collect()
    })
}

/// Adds `additionalProperties: false` to every object schema that lists its
/// properties, unless it preserves unknown fields or says otherwise.
fn make_strict(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let preserve = map
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            if map.contains_key("properties")
                && !preserve
                && !map.contains_key("additionalProperties")
            {
                map.insert("additionalProperties".into(), Value::Bool(false));
            }
            for v in map.values_mut() {
                make_strict(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_strict),
        _ => {}
    }
}

/// The texts of the Istio schemas (for tests of their CEL rules).
#[cfg(test)]
fn istio_schema_texts() -> impl Iterator<Item = &'static str> {
    SCHEMAS.iter().filter(|s| s.2 == Family::Istio).map(|s| s.3)
}

/// True when a schema for this apiVersion and kind is shipped.
pub fn known(api_version: &str, kind: &str) -> bool {
    validators().contains_key(&(api_version, kind))
}

/// Validates a whole object (with apiVersion, kind and metadata). Returns
/// `None` when no schema for it is shipped.
pub fn validate(api_version: &str, kind: &str, object: &Value) -> Option<Vec<Violation>> {
    let (family, validator, schema) = validators().get(&(api_version, kind))?;
    // A CRD schema describes `spec` and `status`; the API server checks
    // apiVersion, kind and metadata itself.
    let instance;
    let target = match (family, object) {
        (Family::Istio, Value::Object(map)) => {
            let mut m = map.clone();
            for k in ["apiVersion", "kind", "metadata"] {
                m.remove(k);
            }
            instance = Value::Object(m);
            &instance
        }
        _ => object,
    };
    // The API server skips the CEL rules after a type, required, enum or
    // size error (`hasBlockingErr`, apiextensions-apiserver
    // `customresource/strategy.go`); an unknown field, which it prunes,
    // does not stop them.
    let mut blocking = false;
    let mut out: Vec<Violation> = validator
        .iter_errors(target)
        .inspect(|e| {
            use jsonschema::error::ValidationErrorKind as K;
            blocking |= matches!(
                e.kind(),
                K::Type { .. }
                    | K::Required { .. }
                    | K::Enum { .. }
                    | K::MaxLength { .. }
                    | K::MaxItems { .. }
                    | K::MaxProperties { .. }
            )
        })
        .map(|e| Violation {
            path: e
                .instance_path()
                .as_str()
                .split('/')
                .skip(1)
                .map(|s| s.replace("~1", "/").replace("~0", "~"))
                .collect(),
            message: e.masked().to_string(),
            help: None,
        })
        .collect();
    match family {
        Family::Kubernetes => out.extend(server_checks(kind, object)),
        Family::Istio => {
            out.extend(metadata_strings(object));
            let broken = rules::check(schema, target, !blocking);
            out.extend(broken.into_iter().map(|b| Violation {
                path: b.path,
                message: b.message,
                help: None,
            }));
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path).then(a.message.cmp(&b.message)));
    out.dedup();
    Some(out)
}

/// Checks the API server makes on names that the OpenAPI schemas do not
/// carry (`k8s.io/apimachinery/pkg/util/validation`): a Service's name is
/// a DNS-1035 label and its port names DNS-1123 labels
/// (`ValidateService`), a container port's name an IANA service name
/// (`IsValidPortName`). An object that breaks one is refused by
/// `kubectl apply`.
fn server_checks(kind: &str, object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    let mut check = |path: &[&str], value: &Value, rule: fn(&str) -> Option<&'static str>| {
        if let Some(why) = value.as_str().and_then(rule) {
            out.push(Violation {
                path: path.iter().map(|s| s.to_string()).collect(),
                message: why.to_string(),
                help: Some(
                    "the API server refuses the object with this name (Kubernetes name validation)"
                        .into(),
                ),
            });
        }
    };
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    match kind {
        "Service" => {
            check(
                &["metadata", "name"],
                &object["metadata"]["name"],
                dns1035_label,
            );
            // A name is required only when there are several ports.
            let ports = list(&object["spec"]["ports"]);
            let rule = if ports.len() > 1 {
                dns1123_label
            } else {
                empty_or_dns1123_label
            };
            for (i, p) in ports.iter().enumerate() {
                let i = i.to_string();
                check(&["spec", "ports", &i, "name"], &p["name"], rule);
            }
        }
        "Deployment" => {
            let pod = &object["spec"]["template"]["spec"];
            for field in ["initContainers", "containers"] {
                for (i, c) in list(&pod[field]).iter().enumerate() {
                    for (j, p) in list(&c["ports"]).iter().enumerate() {
                        let (i, j) = (i.to_string(), j.to_string());
                        let path = ["spec", "template", "spec", field, &i, "ports", &j, "name"];
                        check(&path, &p["name"], empty_or_port_name);
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Label and annotation values must be strings (`ObjectMeta`); the CRD
/// schemas leave metadata to the API server, so it is checked here. A
/// null reads as an empty string and passes.
fn metadata_strings(object: &Value) -> Vec<Violation> {
    let mut out = Vec::new();
    for field in ["labels", "annotations"] {
        let Some(map) = object["metadata"][field].as_object() else {
            continue;
        };
        for (k, v) in map {
            if !(v.is_string() || v.is_null()) {
                out.push(Violation {
                    path: vec!["metadata".into(), field.into(), k.clone()],
                    message: format!("{v} is not of type \"string\""),
                    help: None,
                });
            }
        }
    }
    out
}

/// RFC 1123 label, as Kubernetes requires for names and namespaces.
pub fn check_dns_label(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("is empty");
    }
    if s.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("has characters other than a-z, 0-9 and `-`");
    }
    if s.starts_with('-') || s.ends_with('-') {
        return Err("starts or ends with `-`");
    }
    Ok(())
}

fn dns1123_label(s: &str) -> Option<&'static str> {
    check_dns_label(s).is_err().then_some(
        "not a DNS-1123 label: at most 63 characters of a-z, 0-9 and hyphens, starting and ending \
         with a letter or digit",
    )
}

fn empty_or_dns1123_label(s: &str) -> Option<&'static str> {
    if s.is_empty() { None } else { dns1123_label(s) }
}

/// Container ports may go unnamed.
fn empty_or_port_name(s: &str) -> Option<&'static str> {
    if s.is_empty() { None } else { port_name(s) }
}

fn dns1035_label(s: &str) -> Option<&'static str> {
    let ok = dns1123_label(s).is_none() && s.starts_with(|c: char| c.is_ascii_lowercase());
    (!ok).then_some(
        "not a DNS-1035 label: at most 63 characters of a-z, 0-9 and hyphens, starting with a \
         letter and ending with a letter or digit",
    )
}

fn port_name(s: &str) -> Option<&'static str> {
    let ok = !s.is_empty()
        && s.len() <= 15
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && s.bytes().any(|b| b.is_ascii_lowercase())
        && !s.starts_with('-')
        && !s.ends_with('-')
        && !s.contains("--");
    (!ok).then_some(
        "not a valid port name: at most 15 characters of a-z, 0-9 and hyphens, with at least one \
         letter, and no hyphen at either end or two in a row",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_are_checked_as_the_api_server_does() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "1gw"},
            "spec": {"ports": [{"name": "tls-egress", "port": 443}, {"name": "TLS", "port": 8443}]}});
        let v = validate("v1", "Service", &svc).unwrap();
        let paths: Vec<String> = v.iter().map(|v| v.path.join(".")).collect();
        assert_eq!(paths, ["metadata.name", "spec.ports.1.name"]);
        // One port may go unnamed; two may not.
        let svc = |ports: serde_json::Value| {
            let s = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gw"},
                "spec": {"ports": ports}});
            validate("v1", "Service", &s).unwrap().len()
        };
        assert_eq!(svc(json!([{"name": "", "port": 443}])), 0);
        assert_eq!(
            svc(json!([{"name": "", "port": 443}, {"name": "b", "port": 80}])),
            1
        );
        assert!(v[0].message.starts_with("not a DNS-1035 label"));

        let deployment = |name: &str| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"selector": {}, "template": {"spec": {"containers": [
                    {"name": "c", "ports": [{"name": name, "containerPort": 10443}]}]}}}})
        };
        for ok in ["tls-egress-8443", "tls-eg-10443", "http", ""] {
            assert_eq!(
                validate("apps/v1", "Deployment", &deployment(ok)).unwrap(),
                [],
                "{ok}"
            );
        }
        for bad in ["tls-egress-10443", "10443", "tls--egress", "-tls", "TLS"] {
            let v = validate("apps/v1", "Deployment", &deployment(bad)).unwrap();
            assert_eq!(v.len(), 1, "{bad}: {v:?}");
            assert_eq!(
                v[0].path.join("."),
                "spec.template.spec.containers.0.ports.0.name"
            );
        }
    }

    #[test]
    fn every_embedded_schema_compiles() {
        assert_eq!(validators().len(), SCHEMAS.len());
    }

    #[test]
    fn a_misspelt_field_is_an_error() {
        let vs = json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "x"},
            "spec": {"hosts": ["a.example.com"], "tls": [{"match": [{"port": 443, "sniHost": ["a.example.com"]}]}]}
        });
        let v = validate("networking.istio.io/v1", "VirtualService", &vs).unwrap();
        let messages: Vec<&str> = v.iter().map(|v| v.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "\"sniHosts\" is a required property",
                "Additional properties are not allowed ('sniHost' was unexpected)"
            ]
        );
        assert!(
            v.iter()
                .all(|v| v.path == ["spec", "tls", "0", "match", "0"])
        );
    }

    #[test]
    fn a_bad_enum_is_an_error_and_preserved_fields_are_not() {
        let dr = json!({"spec": {"host": "h", "trafficPolicy": {"tls": {"mode": "ISTIO_MUTAL"}}}});
        let v = validate("networking.istio.io/v1", "DestinationRule", &dr).unwrap();
        assert_eq!(v[0].path, ["spec", "trafficPolicy", "tls", "mode"]);
        let ef = json!({"spec": {"configPatches": [{"applyTo": "CLUSTER", "patch": {"operation": "ADD", "value": {"anything": {"goes": 1}}}}]}});
        assert_eq!(
            validate("networking.istio.io/v1alpha3", "EnvoyFilter", &ef).unwrap(),
            []
        );
    }

    /// As the API server: an enum (or type, required, size) error stops the
    /// CEL rules; an unknown field does not.
    #[test]
    fn cel_rules_run_unless_a_blocking_error_came_first() {
        let se = |extra: (&str, &str)| {
            let mut spec = json!({"hosts": ["a.example.com"],
                "ports": [{"number": 443, "name": "a", "protocol": "TLS"},
                          {"number": 443, "name": "b", "protocol": "TLS"}]});
            spec[extra.0] = json!(extra.1);
            let v = validate(
                "networking.istio.io/v1",
                "ServiceEntry",
                &json!({"spec": spec}),
            );
            v.unwrap()
                .into_iter()
                .map(|v| v.message)
                .collect::<Vec<_>>()
        };
        let pruned = se(("locaton", "MESH_EXTERNAL"));
        assert!(
            pruned
                .iter()
                .any(|m| m == "port number cannot be duplicated"),
            "{pruned:?}"
        );
        let blocked = se(("resolution", "NON"));
        assert!(
            !blocked.iter().any(|m| m.contains("duplicated")),
            "{blocked:?}"
        );
        assert!(!blocked.is_empty());
        // List-map keys are checked apart from the CEL rules, blocked or not.
        let same_names = json!({"spec": {"hosts": ["a.example.com"], "resolution": "NON",
            "ports": [{"number": 443, "name": "a", "protocol": "TLS"},
                      {"number": 8443, "name": "a", "protocol": "TLS"}]}});
        let v = validate("networking.istio.io/v1", "ServiceEntry", &same_names).unwrap();
        assert!(v.iter().any(|v| v.message.contains("same name")), "{v:?}");
    }

    #[test]
    fn kubernetes_kinds_are_strict() {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"ports": [{"port": 443, "targetPrt": 8443}]}});
        let v = validate("v1", "Service", &svc).unwrap();
        assert_eq!(v[0].path, ["spec", "ports", "0"]);
        assert!(validate("v1", "ConfigMap", &svc).is_none());
    }
}
