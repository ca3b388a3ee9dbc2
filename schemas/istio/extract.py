#!/usr/bin/env python3
"""Copies the openAPIV3Schema of the Istio CRDs egressgen renders or lints.

Usage: python3 schemas/istio/extract.py ../shared/reference/istio-crds.yaml
Writes schemas/istio/<Kind>.<version>.json, one per served version, unchanged
apart from dropping `description` text (size). The validator in
src/schema.rs adds the strictness (unknown fields are errors).
Source: istio/istio manifests/charts/base/files/crd-all.gen.yaml (Apache-2.0).
"""
import json, os, sys
import yaml

KINDS = {"Gateway", "VirtualService", "DestinationRule", "ServiceEntry", "EnvoyFilter",
         "Telemetry", "AuthorizationPolicy", "PeerAuthentication", "Sidecar"}

def strip(node):
    if isinstance(node, dict):
        return {k: strip(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip(v) for v in node]
    return node

out_dir = os.path.dirname(os.path.abspath(__file__))
with open(sys.argv[1]) as f:
    for doc in yaml.safe_load_all(f):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        kind = spec["names"]["kind"]
        if kind not in KINDS:
            continue
        for v in spec["versions"]:
            if not v.get("served", True):
                continue
            schema = strip(v["schema"]["openAPIV3Schema"])
            schema["x-egressgen-source"] = f'{spec["group"]}/{v["name"]} {kind} from istio-crds.yaml'
            path = os.path.join(out_dir, f'{kind}.{v["name"]}.json')
            with open(path, "w") as o:
                json.dump(schema, o, indent=1, sort_keys=True)
                o.write("\n")
            print(path)
