#!/usr/bin/env bash
# bench/proxy.sh: `egressgen serve` side by side with nginx stream + ssl_preread, HAProxy
# (req.ssl_sni, with and without splice-auto), sniproxy and a direct connection.
#
# One command: installs the peers from apt if missing, builds egressgen in release mode, starts
# one TLS backend (nginx https, self-signed cert made here) and every proxy in front of it with
# the SAME allowlist, all on loopback, then measures in alternating rounds:
#   1. bulk: one TLS stream of 1 GiB (curl), and the proxy's CPU-seconds per GiB;
#   2. new TLS connections per second (wrk -H 'Connection: close'), proxy CPU per connection;
#   3. requests per second on kept-alive connections (wrk), proxy CPU per request;
#   4. p50/p99 added latency of a fresh connection (connect to finished handshake, minus direct);
# then the RSS of each proxy holding ~10,000 idle connections that have sent a ClientHello.
# Prints a Markdown table; raw data goes to bench/results/<UTC time>/. Not part of CI; every
# step is bounded in time. Needs root (apt, and a private mount namespace for /etc/hosts).
#
# Knobs (environment): ROUNDS=5 DURATION=4 (seconds per wrk run) LAT_SAMPLES=300
#   IDLE_CONNS=10000 WRK_THREADS=2 WRK_CONNS=16 SKIP_BUILD=1 SKIP_IDLE=1 EG_EXTRA="--workers 1"
#   PROFILE=1 (perf-sample egressgen's runs; PROFILE_CALLGRAPH=1 adds DWARF call graphs)
#   SYSCALLS=1 (count each proxy's system calls per connection and per request with perf stat)
#   PEERS="direct egressgen nginx haproxy haproxy-splice sniproxy" (also: egressgen-alt, nginx-half-close, nginx-reuseport)
#   TESTS="bulk conn keepalive latency"
#   HOGS=0 (busy loops at normal priority during the rounds: the proxies next to CPU-bound work)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)

# wrk takes the SNI and Host from the URL and resolves the name itself, so the test names go
# into /etc/hosts. Do that in a private mount namespace (a bind mount over /etc/hosts that only
# this run sees) so the machine's own file is never edited.
if [[ -z "${EGRESSGEN_BENCH_NS:-}" ]]; then
  if unshare --mount --propagation private true 2>/dev/null; then
    exec unshare --mount --propagation private env EGRESSGEN_BENCH_NS=1 "$0" "$@"
  fi
  echo "bench: cannot make a private mount namespace (unshare --mount); run as root" >&2
  exit 2
fi

ROUNDS=${ROUNDS:-5}
HOGS=${HOGS:-0}
DURATION=${DURATION:-4}
LAT_SAMPLES=${LAT_SAMPLES:-300}
IDLE_CONNS=${IDLE_CONNS:-10000}
WRK_THREADS=${WRK_THREADS:-2}
WRK_CONNS=${WRK_CONNS:-16}
PEERS=${PEERS:-"direct egressgen nginx haproxy haproxy-splice sniproxy"}
TESTS=${TESTS:-"bulk conn keepalive latency"}
SNI=api.bench.test
DENIED=denied.bench.test
# Routed by every peer to a plain TCP backend that bench/half_close.py runs, to check whether
# the peer passes a half-close on (it is on the allowlist of all of them).
HALF=half.bench.test
HALF_PORT=18450

BACKEND_PORT=18443
declare -A PORT=([direct]=$BACKEND_PORT [egressgen]=18401 [nginx]=18402 [haproxy]=18403
  [haproxy-splice]=18404 [sniproxy]=18405 [egressgen-alt]=18406 [nginx-half-close]=18407
  [nginx-reuseport]=18408)
declare -A PID=()

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# ---------------------------------------------------------------- install and build
install_peers() {
  local need=()
  command -v nginx >/dev/null || need+=(nginx)
  [[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need+=(libnginx-mod-stream)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v sniproxy >/dev/null || need+=(sniproxy)
  command -v wrk >/dev/null || need+=(wrk)
  command -v curl >/dev/null || need+=(curl)
  command -v openssl >/dev/null || need+=(openssl)
  command -v python3 >/dev/null || need+=(python3)
  command -v ss >/dev/null || need+=(iproute2)
  command -v pgrep >/dev/null || need+=(procps)
  ((${#need[@]})) || return 0
  log "installing ${need[*]}"
  # Keep apt from starting the packages' own services (nginx on :80, sniproxy on :443...).
  local policy=/usr/sbin/policy-rc.d made_policy=""
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [[ -n $made_policy ]] && rm -f "$policy"
  return 0
}

install_peers
BIN=$ROOT/target/release/egressgen
if [[ -z "${SKIP_BUILD:-}" ]]; then
  log "building egressgen (release)"
  (cd "$ROOT" && cargo build --release --locked --quiet)
fi
if [[ " $PEERS " == *" egressgen "* ]] && ! "$BIN" serve --help >/dev/null 2>&1; then
  log "WARNING: $BIN has no 'serve' subcommand yet; leaving egressgen out"
  PEERS=${PEERS/egressgen/}
fi

# ---------------------------------------------------------------- work dir, results, cleanup
WORK=$(mktemp -d /tmp/egressgen-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run as www-data and read the 1 GiB file
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
mkdir -p "$OUT"
RAW=$OUT/raw.jsonl
: >"$RAW"

cleanup() {
  local name
  for name in "${!PID[@]}"; do kill -TERM "${PID[$name]}" 2>/dev/null || true; done
  for name in "${!PID[@]}"; do
    for _ in $(seq 50); do kill -0 "${PID[$name]}" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "${PID[$name]}" 2>/dev/null || true
  done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Connections through proxies hold two descriptors each; use the whole hard limit.
ulimit -n "$(ulimit -Hn)"
NOFILE=$(ulimit -n)

for name in direct egressgen nginx haproxy haproxy-splice sniproxy egressgen-alt nginx-half-close nginx-reuseport; do
  if [[ -n $(ss -ltnH "sport = :${PORT[$name]}") ]]; then
    echo "bench: port ${PORT[$name]} (for $name) is already in use" >&2
    exit 2
  fi
done
if [[ -n $(ss -ltnH "sport = :$HALF_PORT") ]]; then
  echo "bench: port $HALF_PORT (for bench/half_close.py) is already in use" >&2
  exit 2
fi

# The test names resolve to loopback for this run only (see the unshare above).
printf '127.0.0.1 localhost %s %s\n::1 localhost\n' "$SNI" "$DENIED" >"$WORK/hosts"
mount --bind "$WORK/hosts" /etc/hosts

# ---------------------------------------------------------------- backend
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=$SNI" -addext "subjectAltName=DNS:$SNI,DNS:*.cdn.bench.test,DNS:registry.example.org" \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
mkdir -p "$WORK/www"
truncate -s 1G "$WORK/www/1g" # sparse: read from the page cache, no disk
chmod 644 "$WORK/www/1g"

cat >"$WORK/backend.conf" <<EOF
worker_processes 2;
worker_rlimit_nofile $NOFILE;
pid $WORK/backend.pid;
error_log $WORK/backend-error.log error;
events { worker_connections $((NOFILE - 100)); }
http {
  access_log off;
  server_tokens off;
  client_header_timeout 120s;
  keepalive_timeout 120s;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:$BACKEND_PORT ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    root $WORK/www;
    location = /tiny { default_type text/plain; return 200 "ok\n"; }
    location = /1g { }
  }
}
EOF

# ---------------------------------------------------------------- peers, one allowlist
# Allowlist: api.bench.test, registry.example.org, *.cdn.bench.test. Every peer maps those
# names to the backend and refuses everything else.
nginx_conf() { # $1 name (config and pid), $2 port, $3 extra server line, $4 listen options
  cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
worker_processes auto;
worker_rlimit_nofile $NOFILE;
pid $WORK/$1.pid;
error_log $WORK/$1-error.log error;
events { worker_connections $((NOFILE - 100)); }
stream {
  map \$ssl_preread_server_name \$egress_upstream {
    hostnames;
    api.bench.test        127.0.0.1:$BACKEND_PORT;
    registry.example.org  127.0.0.1:$BACKEND_PORT;
    *.cdn.bench.test      127.0.0.1:$BACKEND_PORT;
    $HALF      127.0.0.1:$HALF_PORT;
    default               127.0.0.1:9;
  }
  server {
    listen 127.0.0.1:$2 ${4:-};
    ssl_preread on;
    preread_timeout 10s;
    proxy_connect_timeout 5s;
    proxy_pass \$egress_upstream;
    $3
  }
}
EOF
}
nginx_conf nginx "${PORT[nginx]}" "" >"$WORK/nginx.conf"
# The same with half-close, which egressgen (like Envoy's tcp_proxy) always does: nginx by
# default closes both sides as soon as one side closes.
nginx_conf nginx-half-close "${PORT[nginx-half-close]}" "proxy_half_close on;" >"$WORK/nginx-half-close.conf"
# One SO_REUSEPORT listener per worker, as egressgen has, instead of one shared listener that
# wakes an idle worker (EPOLLEXCLUSIVE).
nginx_conf nginx-reuseport "${PORT[nginx-reuseport]}" "" reuseport >"$WORK/nginx-reuseport.conf"

haproxy_conf() { # $1 port, $2 extra defaults line
  cat <<EOF
global
  # maxconn left to HAProxy: it derives it from the descriptor limit.
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  $2
frontend sni
  bind 127.0.0.1:$1
  tcp-request inspect-delay 10s
  acl allowed req.ssl_sni -i api.bench.test registry.example.org
  acl allowed req.ssl_sni -i -m end .cdn.bench.test
  acl half req.ssl_sni -i $HALF
  tcp-request content accept if allowed or half
  tcp-request content reject
  use_backend half if half
  default_backend backend
backend backend
  server backend 127.0.0.1:$BACKEND_PORT
backend half
  server half 127.0.0.1:$HALF_PORT
EOF
}
haproxy_conf "${PORT[haproxy]}" "" >"$WORK/haproxy.cfg"
haproxy_conf "${PORT[haproxy-splice]}" "option splice-auto" >"$WORK/haproxy-splice.cfg"

cat >"$WORK/sniproxy.conf" <<EOF
user daemon
error_log {
  filename /dev/stderr
  priority error
}
resolver {
  mode ipv4_only
}
listener 127.0.0.1:${PORT[sniproxy]} {
  protocol tls
  table allowed
}
table allowed {
  ^api\\.bench\\.test\$ 127.0.0.1:$BACKEND_PORT
  ^registry\\.example\\.org\$ 127.0.0.1:$BACKEND_PORT
  \\.cdn\\.bench\\.test\$ 127.0.0.1:$BACKEND_PORT
  ^half\\.bench\\.test\$ 127.0.0.1:$HALF_PORT
}
EOF

EG_ARGS=(serve --listen "127.0.0.1:${PORT[egressgen]}"
  --allow api.bench.test --allow registry.example.org --allow '*.cdn.bench.test'
  --resolve "api.bench.test=127.0.0.1:$BACKEND_PORT"
  --resolve "registry.example.org=127.0.0.1:$BACKEND_PORT"
  --resolve "*.cdn.bench.test=127.0.0.1:$BACKEND_PORT"
  --allow "$HALF" --resolve "$HALF=127.0.0.1:$HALF_PORT"
  --max-connections 20000
  --access-log off) # the peers are configured without an access log too
# A second egressgen in the same run, for before/after comparisons: peer `egressgen-alt`, run
# from EG_ALT_BIN (default: the same binary) with EG_ALT_EXTRA flags.
EG_ALT_ARGS=("${EG_ARGS[@]}")
EG_ALT_ARGS[2]=127.0.0.1:${PORT[egressgen-alt]}
# shellcheck disable=SC2206 # word splitting of extra flags is intended
EG_ARGS+=(${EG_EXTRA:-})
# shellcheck disable=SC2206
EG_ALT_ARGS+=(${EG_ALT_EXTRA:-})
EG_ALT_BIN=${EG_ALT_BIN:-$BIN}

start() { # name, command...: run in the foreground of a background job, remember its PID
  local name=$1
  shift
  "$@" >"$OUT/$name.stdout" 2>"$OUT/$name.stderr" &
  PID[$name]=$!
}

wait_listening() { # name
  local port=${PORT[$1]}
  for _ in $(seq 100); do
    [[ -n $(ss -ltnH "sport = :$port") ]] && return 0
    kill -0 "${PID[$1]}" 2>/dev/null || break
    sleep 0.1
  done
  log "$1 did not start listening on $port; its stderr:"
  cat "$OUT/$1.stderr" >&2 || true
  return 1
}

PORT[backend]=$BACKEND_PORT
start backend nginx -p "$WORK" -c "$WORK/backend.conf" -g 'daemon off;'
wait_listening backend
for peer in $PEERS; do
  case $peer in
    direct) continue ;;
    egressgen) start egressgen "$BIN" "${EG_ARGS[@]}" ;;
    egressgen-alt) start egressgen-alt "$EG_ALT_BIN" "${EG_ALT_ARGS[@]}" ;;
    nginx) start nginx nginx -p "$WORK" -c "$WORK/nginx.conf" -g 'daemon off;' ;;
    nginx-half-close) start nginx-half-close nginx -p "$WORK" -c "$WORK/nginx-half-close.conf" -g 'daemon off;' ;;
    nginx-reuseport) start nginx-reuseport nginx -p "$WORK" -c "$WORK/nginx-reuseport.conf" -g 'daemon off;' ;;
    haproxy) start haproxy haproxy -db -f "$WORK/haproxy.cfg" ;;
    haproxy-splice) start haproxy-splice haproxy -db -f "$WORK/haproxy-splice.cfg" ;;
    sniproxy) start sniproxy sniproxy -f -c "$WORK/sniproxy.conf" ;;
    *) echo "bench: unknown peer $peer" >&2 && exit 2 ;;
  esac
  wait_listening "$peer"
done

# ---------------------------------------------------------------- sanity: one CPU share
# With autogroup scheduling (kernel.sched_autogroup_enabled=1, the default of most distributions),
# every session gets its own share of the CPUs: a proxy that has left the bench's session (setsid,
# a daemonising fork) would get as much CPU as the client, the backend and every other peer
# together. By hand, that changed egressgen's connection rate 3 times, and its order against
# sniproxy (BENCHMARKS.md, serve finding 22). So every process on a bench port must share the
# bench's group.
same_group() {
  [[ $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null) == 1 ]] || return 0
  local mine name pid group
  mine=$(cat /proc/$$/autogroup 2>/dev/null) || return 0
  for name in backend $PEERS; do
    [[ $name == direct ]] && continue
    for pid in $(ss -ltnpH "sport = :${PORT[$name]}" | grep -o 'pid=[0-9]*' | cut -d= -f2 | sort -u); do
      group=$(cat "/proc/$pid/autogroup" 2>/dev/null) || continue
      if [[ ${group%% *} != "${mine%% *}" ]]; then
        log "$name (pid $pid) runs in scheduler group ${group%% *}, the bench in ${mine%% *}: the CPU would not be shared fairly; start it in the foreground of the bench"
        exit 2
      fi
    done
  done
}
same_group

# ---------------------------------------------------------------- sanity: same allowlist
# Every peer must serve the allowed name and refuse another one; a peer that does not is left
# out rather than measured.
CHECKED=""
for peer in $PEERS; do
  port=${PORT[$peer]}
  body=$(curl -sk --max-time 5 "https://$SNI:$port/tiny" || true)
  if [[ $peer == direct ]]; then
    refused=yes # the backend itself has no allowlist
  elif curl -sk --max-time 5 -o /dev/null "https://$DENIED:$port/tiny"; then
    refused=no
  else
    refused=yes
  fi
  if [[ $body == ok && $refused == yes ]]; then
    CHECKED+=" $peer"
  else
    log "WARNING: $peer failed the sanity check (allowed body '$body', denied name refused: $refused); left out"
  fi
done
PEERS=$CHECKED
log "peers: $PEERS"

# ---------------------------------------------------------------- half-close
# Envoy's tcp_proxy (and so the gateway, and egressgen) passes a FIN on and keeps the other
# direction open. A proxy that closes both sides at the first FIN does less work per
# connection; the summary says which peers do which (bench/half_close.py).
for peer in $PEERS; do
  [[ $peer == direct ]] && continue
  res=$(python3 "$ROOT/bench/half_close.py" "127.0.0.1:${PORT[$peer]}" "$HALF_PORT" "$HALF" 2>&1 || true)
  client=false backend=false
  [[ $res == *"client-first: passed on"* ]] && client=true
  [[ $res == *"backend-first: passed on"* ]] && backend=true
  echo "{\"test\":\"halfclose\",\"peer\":\"$peer\",\"client_first\":$client,\"backend_first\":$backend}" >>"$RAW"
done

# ---------------------------------------------------------------- measurement helpers
CLK_TCK=$(getconf CLK_TCK)

cpu_ticks() { # utime+stime of a peer's process and its children (nginx workers)
  [[ $1 == direct ]] && { echo 0; return; }
  local total=0 pid s f
  for pid in "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true); do
    s=$(<"/proc/$pid/stat") || continue
    s=${s##*) }
    read -ra f <<<"$s"
    total=$((total + f[11] + f[12]))
  done
  echo "$total"
}

csw() { # voluntary + involuntary context switches of every thread of a peer's processes
  [[ $1 == direct ]] && { echo 0; return; }
  local pid
  for pid in "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true); do
    cat /proc/"$pid"/task/*/status 2>/dev/null
  done | awk '/ctxt_switches/ { n += $2 } END { print n + 0 }'
}

cpu_json() { # peer, ticks before, ticks after -> JSON value (null for direct)
  if [[ $1 == direct ]]; then echo null; else
    awk -v a="$2" -v b="$3" -v t="$CLK_TCK" 'BEGIN { printf "%.3f", (b - a) / t }'
  fi
}

# PROFILE=1: sample egressgen with perf (cpu-clock, so it works without hardware counters)
# during each of its runs; the reports land next to the raw results.
PERF_PID=""
profile_start() { # round, peer, test
  [[ -n "${PROFILE:-}" && $2 == egressgen ]] || return 0
  perf record -q -e cpu-clock -F 1999 ${PROFILE_CALLGRAPH:+--call-graph dwarf} -p "${PID[egressgen]}" \
    -o "$OUT/perf-$3-$1.data" >/dev/null 2>&1 &
  PERF_PID=$!
  sleep 0.3
}
profile_stop() { # round, peer, test
  [[ -n $PERF_PID ]] || return 0
  kill -INT "$PERF_PID" 2>/dev/null || true
  wait "$PERF_PID" 2>/dev/null || true
  PERF_PID=""
  perf report -i "$OUT/perf-$3-$1.data" --stdio --no-children --percent-limit 0.7 2>/dev/null \
    | grep -v '^#' | grep -v '^$' >"$OUT/perf-$3-$1.txt" || true
}

# SYSCALLS=1: count every peer's system calls during the wrk runs (perf stat on the
# raw_syscalls:sys_enter tracepoint; a small cost of its own, so off by default).
SYS_PID=""
syscalls_start() { # peer, test
  SYS_PID=""
  [[ -n "${SYSCALLS:-}" && $1 != direct ]] || return 0
  local pids
  pids=$(echo "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true) | tr ' ' ',')
  perf stat -x, -e raw_syscalls:sys_enter -p "$pids" -o "$OUT/syscalls-$1-$2.csv" >/dev/null 2>&1 &
  SYS_PID=$!
  sleep 0.3
}
syscalls_stop() { # peer, test; sets SYS_COUNT (null when not counted). Not in $(...): perf is
  # this shell's child, and only this shell can wait for it to write its count.
  SYS_COUNT=null
  [[ -n $SYS_PID ]] || return 0
  kill -INT "$SYS_PID" 2>/dev/null || true
  wait "$SYS_PID" 2>/dev/null || true
  SYS_PID=""
  SYS_COUNT=$(awk -F, '/raw_syscalls:sys_enter/ { print $1 + 0; found = 1 } END { if (!found) print "null" }' \
    "$OUT/syscalls-$1-$2.csv" 2>/dev/null || echo null)
}

run_bulk() { # round, peer
  local port=${PORT[$2]} c0 c1 res size secs
  profile_start "$1" "$2" bulk
  c0=$(cpu_ticks "$2")
  # On failure (e.g. the 120 s cap) curl still prints what it got; keep it,
  # summarize.py flags a transfer that is short of 1 GiB.
  res=$(curl -sk --http1.1 --max-time 120 -o /dev/null -w '%{size_download} %{time_total}' \
    "https://$SNI:$port/1g") || true
  [[ $res =~ ^[0-9]+\ [0-9.]+$ ]] || res="0 0"
  c1=$(cpu_ticks "$2")
  profile_stop "$1" "$2" bulk
  read -r size secs <<<"$res"
  printf '{"test":"bulk","round":%d,"peer":"%s","bytes":%s,"secs":%s,"cpu_s":%s}\n' \
    "$1" "$2" "$size" "$secs" "$(cpu_json "$2" "$c0" "$c1")" >>"$RAW"
}

run_wrk() { # round, peer, test (conn|keepalive)
  local port=${PORT[$2]} c0 c1 s0 s1 txt reqs rps errs non2xx hdr=()
  [[ $3 == conn ]] && hdr=(-H 'Connection: close')
  profile_start "$1" "$2" "$3"
  syscalls_start "$2" "$3"
  s0=$(csw "$2")
  c0=$(cpu_ticks "$2")
  txt=$(timeout $((DURATION + 30)) wrk -t"$WRK_THREADS" -c"$WRK_CONNS" -d"${DURATION}s" --timeout 5s \
    "${hdr[@]}" "https://$SNI:$port/tiny" 2>&1 || true)
  c1=$(cpu_ticks "$2")
  s1=$(csw "$2")
  syscalls_stop "$2" "$3"
  profile_stop "$1" "$2" "$3"
  printf '%s\n' "--- round $1 $2 $3" "$txt" >>"$OUT/wrk.log"
  reqs=$(awk '/requests in/ { print $1; exit }' <<<"$txt")
  rps=$(awk '/^Requests\/sec:/ { print $2; exit }' <<<"$txt")
  errs=$(awk '/Socket errors:/ { gsub(",", ""); print $4 + $6 + $8 + $10; exit }' <<<"$txt")
  non2xx=$(awk '/Non-2xx/ { print $NF; exit }' <<<"$txt")
  printf '{"test":"%s","round":%d,"peer":"%s","requests":%s,"rps":%s,"errors":%s,"non2xx":%s,"cpu_s":%s,"csw":%s,"syscalls":%s}\n' \
    "$3" "$1" "$2" "${reqs:-0}" "${rps:-0}" "${errs:-0}" "${non2xx:-0}" "$(cpu_json "$2" "$c0" "$c1")" \
    "$((s1 - s0))" "$SYS_COUNT" >>"$RAW"
}

run_latency() { # round, peer
  local json
  json=$(python3 "$ROOT/bench/latency.py" --port "${PORT[$2]}" --sni "$SNI" --samples "$LAT_SAMPLES" \
    --deadline 30 || echo '{"samples_us":[],"errors":-1}')
  printf '{"test":"latency","round":%d,"peer":"%s",%s\n' "$1" "$2" "${json#\{}" >>"$RAW"
}

# ---------------------------------------------------------------- machine notes
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "command: bench/proxy.sh (ROUNDS=$ROUNDS DURATION=$DURATION LAT_SAMPLES=$LAT_SAMPLES WRK_THREADS=$WRK_THREADS WRK_CONNS=$WRK_CONNS IDLE_CONNS=$IDLE_CONNS HOGS=$HOGS)"
  echo "nproc: $(nproc)"
  echo "cpu: $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
  echo "kernel: $(uname -r)"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "egressgen: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null) $("$BIN" --version 2>/dev/null || true)"
  echo "nginx: $(nginx -v 2>&1 | sed 's/.*: //')"
  echo "haproxy: $(haproxy -v | head -1)"
  echo "sniproxy: $(dpkg-query -W -f '${Version}' sniproxy 2>/dev/null)"
  echo "wrk: $(dpkg-query -W -f '${Version}' wrk 2>/dev/null), curl: $(curl --version | head -1 | cut -d' ' -f2), openssl: $(openssl version | cut -d' ' -f2)"
  echo "descriptor limit: $NOFILE"
  echo "autogroup scheduling: $(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo n/a) (every peer, the backend and the clients in one group)"
  [[ " $PEERS " == *" egressgen-alt "* ]] && echo "egressgen-alt: $EG_ALT_BIN ${EG_ALT_EXTRA:-}"
} >"$OUT/machine.txt"

# ---------------------------------------------------------------- alternating rounds
# CPU-bound neighbours, if asked for: they run through every round and are stopped with the peers.
for ((i = 1; i <= HOGS; i++)); do start "hog$i" sh -c 'while :; do :; done'; done
read -ra LIST <<<"$PEERS"
n=${#LIST[@]}
for ((r = 1; r <= ROUNDS; r++)); do
  # Rotate the order every round so no peer always runs first or last.
  order=()
  for ((i = 0; i < n; i++)); do order+=("${LIST[$(((i + r - 1) % n))]}"); done
  log "round $r/$ROUNDS: ${order[*]} (load $(cut -d' ' -f1 /proc/loadavg))"
  for t in $TESTS; do
    for p in "${order[@]}"; do
      case $t in
        bulk) run_bulk "$r" "$p" ;;
        conn | keepalive) run_wrk "$r" "$p" "$t" ;;
        latency) run_latency "$r" "$p" ;;
      esac
    done
  done
done

# ---------------------------------------------------------------- idle connections
# Each held connection costs the proxy two descriptors (client and upstream side), so the count
# is capped by the descriptor limit, which an unprivileged container may not be able to raise.
if [[ -z "${SKIP_IDLE:-}" ]]; then
  idle=$IDLE_CONNS
  ((idle > (NOFILE - 200) / 2)) && idle=$(((NOFILE - 200) / 2))
  for p in "${LIST[@]}"; do
    [[ $p == direct ]] && continue
    log "idle: $idle connections through $p"
    json=$(python3 "$ROOT/bench/idle.py" --port "${PORT[$p]}" --sni "$SNI" --conns "$idle" \
      --pid "${PID[$p]}" --deadline 45 || echo '{"held":0,"attempted":0,"rss_before_kib":0,"rss_held_kib":0}')
    printf '{"test":"idle","peer":"%s",%s\n' "$p" "${json#\{}" >>"$RAW"
    sleep 3 # let the proxy and the backend close them
  done
fi

echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
python3 "$ROOT/bench/summarize.py" "$RAW" | tee "$OUT/summary.md"
echo
cat "$OUT/machine.txt"
log "raw results: $OUT"
