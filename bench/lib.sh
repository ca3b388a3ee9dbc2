# Shared setup of bench/render.sh, bench/lint.sh and bench/fn.sh; sourced, not run.
# After `source bench/lib.sh`: the working directory is the repository, the release build is
# current, $bin is the binary, $work a temporary folder removed on exit.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --quiet
bin=target/release/egressgen
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One line naming the machine and its load, for BENCHMARKS.md.
machine() {
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -r), load $(cut -d' ' -f1 /proc/loadavg), $(date -u +%F)"
}
