#!/usr/bin/env bash
# Benchmark: `egressgen lint` of the manifest rendered from 20,000 domains,
# side by side with Python's yaml.safe_load_all (CSafeLoader when PyYAML has
# libyaml) parsing the same file. Release build.
# Usage: bench/lint.sh        (prints a Markdown table; paste it into BENCHMARKS.md)
# "x vs Python" above 1 means egressgen is faster. CPU time is less sensitive
# than wall time to other load on a shared machine.
# Needs python3 with PyYAML (apt-get install python3-yaml); uses hyperfine when
# installed (apt-get install hyperfine), else a timed loop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
python3 bench/gen-domains.py 20000 > "$work/egress.yaml"
"$bin" render -c "$work/egress.yaml" -o "$work/manifest.yaml" 2>/dev/null
bytes=$(wc -c < "$work/manifest.yaml")
docs=$(grep -c '^kind:' "$work/manifest.yaml")
loader=$(python3 -c 'import yaml; print("CSafeLoader (libyaml)" if getattr(yaml, "__with_libyaml__", False) else "SafeLoader (pure Python)")')
cat > "$work/pyload.py" <<'PY'
import sys, yaml
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
with open(sys.argv[1]) as f:
    n = sum(1 for _ in yaml.load_all(f, Loader=Loader))
PY
# Lint must agree the rendered manifest is clean, with and without --config.
"$bin" lint "$work/manifest.yaml" 2>/dev/null
"$bin" lint -c "$work/egress.yaml" "$work/manifest.yaml" 2>/dev/null

machine
echo "input: manifest rendered from 20000 domains, $bytes bytes, $docs documents; Python loader: $loader"
echo
names=("egressgen lint" "egressgen lint --config" "python yaml.safe_load_all")
cmds=("$bin lint $work/manifest.yaml"
      "$bin lint -c $work/egress.yaml $work/manifest.yaml"
      "python3 $work/pyload.py $work/manifest.yaml")
means=()
if command -v hyperfine >/dev/null; then
  args=()
  for i in 0 1 2; do args+=(-n "${names[$i]}" "${cmds[$i]}"); done
  hyperfine --warmup 2 --runs 10 -N --export-json "$work/h.json" "${args[@]}" >/dev/null 2>&1
  mapfile -t means < <(python3 -c 'import json,sys; [print(r["mean"]) for r in json.load(open(sys.argv[1]))["results"]]' "$work/h.json")
  mapfile -t sds < <(python3 -c 'import json,sys; [print(r["stddev"] or 0) for r in json.load(open(sys.argv[1]))["results"]]' "$work/h.json")
  mapfile -t cpus < <(python3 -c 'import json,sys; [print(r["user"] + r["system"]) for r in json.load(open(sys.argv[1]))["results"]]' "$work/h.json")
else
  for i in 0 1 2; do
    s=$(date +%s%N)
    for _ in $(seq 10); do ${cmds[$i]} >/dev/null 2>&1 || true; done
    e=$(date +%s%N)
    means+=("$(python3 -c "print(($e - $s) / 10 / 1e9)")")
    sds+=(0)
    cpus+=("${means[$i]}")
  done
fi
echo "| command | mean wall time | ± | CPU time (user+sys) | throughput (wall) | wall vs Python | CPU vs Python |"
echo "|---|---|---|---|---|---|---|"
for i in 0 1 2; do
  python3 - "${names[$i]}" "${means[$i]}" "${sds[$i]}" "$bytes" "${means[2]}" "${cpus[$i]}" "${cpus[2]}" <<'PY'
import sys
name, mean, sd, size, py, cpu, pycpu = sys.argv[1], *map(float, sys.argv[2:4]), int(sys.argv[4]), *map(float, sys.argv[5:8])
print(f"| `{name}` | {mean*1000:.0f} ms | {sd*1000:.0f} ms | {cpu*1000:.0f} ms | {size/mean/1e6:.1f} MB/s | {py/mean:.2f}x | {pycpu/cpu:.2f}x |")
PY
done
