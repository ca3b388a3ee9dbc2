#!/usr/bin/env bash
# Benchmark: the KRM function `egressgen fn` (generator) and `egressgen fn lint`
# (validator) on a large package, release build.
# Usage: bench/fn.sh [ITEMS]   (default 5000 ConfigMaps, about 1 MB, plus the
# objects of a 1,000-domain EgressGateway; prints a Markdown table)
# Uses hyperfine when installed (apt-get install hyperfine), else a timed loop.
set -euo pipefail
items=${1:-5000}
source "$(dirname "$0")/lib.sh"
python3 bench/gen-domains.py 1000 > "$work/egress.yaml"
python3 - "$items" "$work/egress.yaml" > "$work/in.yaml" <<'PY'
import json, sys
n, config = int(sys.argv[1]), open(sys.argv[2]).read()
print("apiVersion: config.kubernetes.io/v1\nkind: ResourceList\nitems:")
for i in range(n):
    print(f"""- apiVersion: v1
  kind: ConfigMap
  metadata:
    name: app-{i}
    namespace: team-{i % 50}
    annotations:
      internal.config.kubernetes.io/path: apps/app-{i}.yaml
  data:
    settings.json: {json.dumps(json.dumps({"replicas": i % 7, "owner": f"team-{i % 50}", "pad": "x" * 80}))}""")
print("functionConfig:")
print("".join("  " + line + "\n" for line in config.splitlines()), end="")
PY
# The second run's input already holds the generated objects: it must
# replace them, not add to them.
"$bin" fn < "$work/in.yaml" > "$work/once.yaml"
machine
echo "input: $(wc -c < "$work/in.yaml") bytes, $items items; after one run: $(grep -c '^- apiVersion' "$work/once.yaml") items"
cmds=("$bin fn" "$bin fn" "$bin fn lint")
inputs=("$work/in.yaml" "$work/once.yaml" "$work/once.yaml")
names=("fn (generate)" "fn (generate again, replacing)" "fn lint (validate)")
if command -v hyperfine >/dev/null; then
  args=()
  for i in 0 1 2; do
    args+=(-n "${names[$i]}" "${cmds[$i]} < ${inputs[$i]} > /dev/null")
  done
  hyperfine --warmup 1 --runs 10 --export-markdown "$work/table.md" "${args[@]}" >/dev/null
  cat "$work/table.md"
else
  echo "| command | median of 10 |"
  echo "|---|---|"
  for i in 0 1 2; do
    times=()
    for _ in $(seq 10); do
      s=$(date +%s%N)
      ${cmds[$i]} < "${inputs[$i]}" > /dev/null || true
      e=$(date +%s%N)
      times+=($(( (e - s) / 1000000 )))
    done
    echo "| ${names[$i]} | $(printf '%s\n' "${times[@]}" | sort -n | sed -n 5p) ms |"
  done
fi
