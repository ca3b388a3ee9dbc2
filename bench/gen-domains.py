#!/usr/bin/env python3
"""Writes an EgressGateway config with N realistic domains to stdout.

Usage: bench/gen-domains.py 20000 > /tmp/egress-20k.yaml
A mix of exact names and wildcards over many registrable domains, with no
name covered by another (so nothing is dropped).
"""
import sys

n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
print("apiVersion: egressgen.io/v1alpha1\nkind: EgressGateway\nmetadata:\n  name: bench\nspec:\n  domains:")
for i in range(n):
    org = f"org{i // 4:05d}-{('cdn', 'api', 'auth', 'data')[i % 4]}"
    if i % 5 == 0:
        print(f'    - "*.{org}.example.com"')
    else:
        print(f"    - svc-{i:05d}.{org}.example.net")
