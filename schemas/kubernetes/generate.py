#!/usr/bin/env python3
"""Writes strict JSON Schemas for the Kubernetes kinds egressgen renders.

Usage: pip install kubernetes==37.0.2 && python3 schemas/kubernetes/generate.py
The schemas come from the official Python client's generated models (from
the Kubernetes OpenAPI spec), which forbid unknown fields. Descriptions are
dropped for size.
"""
import json, os
from kubernetes.client import models as m

KINDS = {
    "v1/ServiceAccount": m.V1ServiceAccount,
    "v1/Service": m.V1Service,
    "apps/v1/Deployment": m.V1Deployment,
    "rbac.authorization.k8s.io/v1/Role": m.V1Role,
    "rbac.authorization.k8s.io/v1/RoleBinding": m.V1RoleBinding,
    "policy/v1/PodDisruptionBudget": m.V1PodDisruptionBudget,
    "autoscaling/v2/HorizontalPodAutoscaler": m.V2HorizontalPodAutoscaler,
    "networking.k8s.io/v1/NetworkPolicy": m.V1NetworkPolicy,
}

def strip(node):
    """Drops prose, and turns pydantic's `anyOf: [X, null]` for optional
    fields into X: manifests never carry nulls, and a plain X gives precise
    error messages."""
    if isinstance(node, dict):
        any_of = node.get("anyOf")
        if any_of and {"type": "null"} in any_of:
            rest = [a for a in any_of if a != {"type": "null"}]
            node = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
            if len(rest) == 1:
                node.update(rest[0])
            else:
                node["anyOf"] = rest
        return {k: strip(v) for k, v in node.items() if k not in ("description", "title")}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node

out_dir = os.path.dirname(os.path.abspath(__file__))
for key, model in KINDS.items():
    kind = key.rsplit("/", 1)[1]
    version = key.rsplit("/", 2)[-2]
    schema = strip(model.model_json_schema(by_alias=True))
    schema["x-egressgen-source"] = f"{key} from the kubernetes Python client 37.0.2 models"
    path = os.path.join(out_dir, f"{kind}.{version}.json")
    with open(path, "w") as o:
        json.dump(schema, o, indent=1, sort_keys=True)
        o.write("\n")
    print(path)
