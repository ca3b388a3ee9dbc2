#!/usr/bin/env bash
# Benchmark: `egressgen render` of 1,000 and 20,000 domains, release build.
# Usage: bench/render.sh            (prints a Markdown table)
# Uses hyperfine when installed (apt-get install hyperfine), else a timed loop.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
for n in 1000 20000; do
  python3 bench/gen-domains.py "$n" > "$work/egress-$n.yaml"
done
machine
if command -v hyperfine >/dev/null; then
  hyperfine --warmup 2 --runs 15 -N --export-markdown "$work/table.md" \
    "$bin render -c $work/egress-1000.yaml -o $work/out-1000.yaml" \
    "$bin render -c $work/egress-20000.yaml -o $work/out-20000.yaml" >/dev/null
  sed "s#$work/##g; s#$bin#egressgen#g" "$work/table.md"
else
  for n in 1000 20000; do
    times=()
    for _ in $(seq 15); do
      s=$(date +%s%N); "$bin" render -c "$work/egress-$n.yaml" -o "$work/out.yaml" 2>/dev/null; e=$(date +%s%N)
      times+=($(( (e - s) / 1000000 )))
    done
    median=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 8p)
    echo "| render $n domains | median ${median} ms |"
  done
fi
printf 'output size for 20000 domains: %s bytes, %s documents\n' \
  "$(wc -c < "$work/out-20000.yaml" 2>/dev/null || $bin render -c "$work/egress-20000.yaml" | wc -c)" \
  "$($bin render -c "$work/egress-20000.yaml" 2>/dev/null | grep -c '^kind:')"
