#!/usr/bin/env python3
"""Turn bench/proxy.sh's raw results (JSON lines) into the Markdown tables of BENCHMARKS.md.

Ratios are taken against `direct` in the same round, then the median over rounds is shown.
Latency percentiles pool every sample of every round; "added" is the peer's percentile
minus direct's. A second table pairs egressgen with each peer round by round (the two ran
minutes apart, under the same machine load), which is steadier than comparing the medians
of two columns when the machine's own speed drifts between rounds. It does not run anything.
"""

import json
import statistics
import sys
from collections import defaultdict

GIB = 1 << 30
PEER_ORDER = ["direct", "egressgen", "egressgen-alt", "nginx", "nginx-half-close", "nginx-reuseport", "haproxy", "haproxy-splice", "sniproxy"]
LABEL = {
    "direct": "direct (limit)",
    "egressgen": "**egressgen serve**",
    "egressgen-alt": "egressgen serve (alt)",
    "nginx": "nginx stream + ssl_preread",
    "nginx-half-close": "nginx + proxy_half_close",
    "nginx-reuseport": "nginx + listen reuseport",
    "haproxy": "HAProxy",
    "haproxy-splice": "HAProxy + splice-auto",
    "sniproxy": "sniproxy",
}


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


# Number format of each test's CPU column in the spread table.
SPREAD_SPEC = {"bulk": ".2f", "conn": ".0f", "keepalive": ".1f"}


def fmt(x, spec, suffix=""):
    return "–" if x is None else f"{x:{spec}}{suffix}"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    by = defaultdict(lambda: defaultdict(dict))  # test -> round -> peer -> record
    idle = {}
    half = {}
    for r in rows:
        if r["test"] == "idle":
            idle[r["peer"]] = r
        elif r["test"] == "halfclose":
            half[r["peer"]] = r
        else:
            by[r["test"]][r["round"]][r["peer"]] = r
    short = [r for r in rows if r["test"] == "bulk" and r["bytes"] < GIB]
    peers = [p for p in PEER_ORDER if any(p in rnd for t in by.values() for rnd in t.values())]
    rounds = max((len(t) for t in by.values()), default=0)

    def series(test, peer, value):
        """Per-round (value, ratio-to-direct) for one peer."""
        vals, ratios = [], []
        for rnd in by[test].values():
            rec, base = rnd.get(peer), rnd.get("direct")
            if rec is None:
                continue
            v = value(rec)
            vals.append(v)
            if base is not None and v is not None and value(base):
                ratios.append(v / value(base))
        return median(vals), median(ratios)

    def spread(test, peer, value, unit):
        """'min–max unit' of a peer's per-round values, or '–'."""
        vals = [v for rnd in by[test].values() if peer in rnd for v in [value(rnd[peer])] if v is not None]
        spec = SPREAD_SPEC[test]
        return f"{min(vals):{spec}}–{max(vals):{spec}} {unit}" if vals else "–"

    def gibps(r):
        return r["bytes"] / GIB / r["secs"] if r.get("secs") else None

    def cpu_per_gib(r):
        return r["cpu_s"] / (r["bytes"] / GIB) if r.get("cpu_s") is not None and r["bytes"] else None

    def cpu_per_req(r):
        return r["cpu_s"] / r["requests"] * 1e6 if r.get("cpu_s") is not None and r["requests"] else None

    lat = {p: [s for rnd in by["latency"].values() if p in rnd for s in rnd[p]["samples_us"]] for p in peers}
    base50, base99 = pct(lat.get("direct", []), 50), pct(lat.get("direct", []), 99)

    out = []
    out.append(
        "| peer | bulk, 1 TLS stream | CPU per GiB | new conn/s | CPU per conn "
        "| keep-alive req/s | CPU per req | added latency p50 / p99 |"
    )
    out.append("|---|---|---|---|---|---|---|---|")
    summary = {}
    for p in peers:
        bulk, bulk_x = series("bulk", p, gibps)
        cgib, _ = series("bulk", p, cpu_per_gib)
        conn, conn_x = series("conn", p, lambda r: r["rps"])
        cconn, _ = series("conn", p, cpu_per_req)
        ka, ka_x = series("keepalive", p, lambda r: r["rps"])
        creq, _ = series("keepalive", p, cpu_per_req)
        p50, p99 = pct(lat[p], 50), pct(lat[p], 99)
        summary[p] = dict(bulk_x=bulk_x, cgib=cgib, conn_x=conn_x, cconn=cconn, ka_x=ka_x, creq=creq,
                          a50=None if p50 is None or base50 is None else p50 - base50,
                          a99=None if p99 is None or base99 is None else p99 - base99)
        if p == "direct":
            cells = [
                fmt(bulk, ".2f", " GiB/s"), "–", fmt(conn, ",.0f", "/s"), "–", fmt(ka, ",.0f", "/s"), "–",
                f"{fmt(p50, '.0f')} / {fmt(p99, '.0f')} µs total",
            ]
        else:
            s = summary[p]
            cells = [
                f"{fmt(bulk_x, '.2f', '×')} ({fmt(bulk, '.2f', ' GiB/s')})",
                fmt(cgib, ".2f", " s"),
                f"{fmt(conn_x, '.2f', '×')} ({fmt(conn, ',.0f', '/s')})",
                fmt(cconn, ".0f", " µs"),
                f"{fmt(ka_x, '.2f', '×')} ({fmt(ka, ',.0f', '/s')})",
                fmt(creq, ".1f", " µs"),
                f"{fmt(s['a50'], '+.0f')} / {fmt(s['a99'], '+.0f')} µs",
            ]
        out.append(f"| {LABEL.get(p, p)} | " + " | ".join(cells) + " |")
    n_lat = len(lat.get("direct", []))
    out.append("")
    out.append(
        f"Medians of {rounds} alternating rounds; ratios are to direct in the same round. "
        f"Latency: TCP connect to finished TLS handshake, {n_lat} samples per peer pooled over the rounds."
    )

    def csw_per_req(r):
        return r["csw"] / r["requests"] if r.get("csw") is not None and r["requests"] else None

    def sys_per_req(r):
        return r["syscalls"] / r["requests"] if r.get("syscalls") is not None and r["requests"] else None

    proxies = [p for p in peers if p != "direct"]
    if any(series("conn", p, csw_per_req)[0] is not None for p in proxies):
        counted = any(series(t, p, sys_per_req)[0] is not None for t in ("conn", "keepalive") for p in proxies)
        out.append("")
        head = "| peer | proxy context switches per new connection | per keep-alive request |"
        out.append(head + (" system calls per new connection | per keep-alive request |" if counted else ""))
        out.append("|---|---|---|" + ("---|---|" if counted else ""))
        for p in proxies:
            a, _ = series("conn", p, csw_per_req)
            b, _ = series("keepalive", p, csw_per_req)
            row = f"| {LABEL.get(p, p)} | {fmt(a, '.2f')} | {fmt(b, '.2f')} |"
            if counted:
                c, _ = series("conn", p, sys_per_req)
                d, _ = series("keepalive", p, sys_per_req)
                row += f" {fmt(c, '.1f')} | {fmt(d, '.1f')} |"
            out.append(row)

    if half:
        yes = lambda b: "yes" if b else "**no**"  # noqa: E731
        out.append("")
        out.append("Passes a half-close on (bench/half_close.py): after one side's FIN, does the other")
        out.append("direction still get through? Closing both sides at the first FIN saves work per connection.")
        out.append("")
        out.append("| peer | client closes first | upstream closes first |")
        out.append("|---|---|---|")
        for p in PEER_ORDER:
            r = half.get(p)
            if r is not None:
                out.append(f"| {LABEL.get(p, p)} | {yes(r['client_first'])} | {yes(r['backend_first'])} |")

    if proxies and any(by[t] for t in ("bulk", "conn", "keepalive")):
        out.append("")
        out.append("Round-to-round spread (min–max over the rounds) of the CPU columns:")
        out.append("")
        out.append("| peer | CPU per GiB | CPU per conn | CPU per req |")
        out.append("|---|---|---|---|")
        for p in proxies:
            out.append(
                f"| {LABEL.get(p, p)} | {spread('bulk', p, cpu_per_gib, 's')} "
                f"| {spread('conn', p, cpu_per_req, 'µs')} | {spread('keepalive', p, cpu_per_req, 'µs')} |"
            )

    if idle:
        out.append("")
        out.append("| peer | idle connections held | RSS before | RSS held | RSS per connection |")
        out.append("|---|---|---|---|---|")
        for p in PEER_ORDER:
            r = idle.get(p)
            if r is None:
                continue
            per = r.get("bytes_per_conn")
            out.append(
                f"| {LABEL.get(p, p)} | {r['held']:,} of {r['attempted']:,} | {r['rss_before_kib'] / 1024:.1f} MiB "
                f"| {r['rss_held_kib'] / 1024:.1f} MiB | {fmt(None if per is None else per / 1024, '.1f', ' KiB')} |"
            )

    # Paired, round by round: egressgen's figure against each peer's in the same round.
    metrics = [
        ("bulk", "bulk", gibps, False),
        ("CPU per GiB", "bulk", cpu_per_gib, True),
        ("new conn/s", "conn", lambda r: r["rps"], False),
        ("CPU per conn", "conn", cpu_per_req, True),
        ("keep-alive req/s", "keepalive", lambda r: r["rps"], False),
        ("CPU per req", "keepalive", cpu_per_req, True),
    ]

    def paired(test, value, peer, lower):
        """(median of egressgen/peer over the rounds, rounds egressgen is at or ahead, rounds)."""
        qs, wins = [], 0
        for rnd in by[test].values():
            a, b = rnd.get("egressgen"), rnd.get(peer)
            va, vb = (value(a), value(b)) if a and b else (None, None)
            if va is None or not vb:
                continue
            qs.append(va / vb)
            wins += (va <= vb) if lower else (va >= vb)
        return (median(qs), wins, len(qs)) if qs else None

    def paired_latency(peer, p):
        """(median over rounds of egressgen's percentile minus the peer's, rounds at or ahead, rounds)."""
        ds, wins = [], 0
        for rnd in by["latency"].values():
            a, b = rnd.get("egressgen"), rnd.get(peer)
            if not a or not b or not a["samples_us"] or not b["samples_us"]:
                continue
            d = pct(a["samples_us"], p) - pct(b["samples_us"], p)
            ds.append(d)
            wins += d <= 0
        return (median(ds), wins, len(ds)) if ds else None

    rivals = [p for p in proxies if p != "egressgen"]
    pairs = {}
    if "egressgen" in peers and rivals:
        out.append("")
        out.append("Same round, side by side: egressgen's figure divided by each peer's in the same round, "
                   "median over the rounds (above 1 is better for rates, below 1 for CPU), and in how many "
                   "rounds egressgen was at or ahead; latency as the difference of the rounds' percentiles.")
        out.append("")
        out.append("| against | " + " | ".join(m[0] for m in metrics) + " | latency p50 / p99 |")
        out.append("|---|" + "---|" * (len(metrics) + 1))
        for p in rivals:
            cells = []
            for name, test, value, lower in metrics:
                r = paired(test, value, p, lower)
                pairs[(p, name)] = r
                cells.append("–" if r is None else f"{r[0]:.2f} ({r[1]}/{r[2]})")
            lat_cells = []
            for q in (50, 99):
                r = paired_latency(p, q)
                pairs[(p, f"p{q}")] = r
                lat_cells.append("–" if r is None else f"{r[0]:+.0f} µs ({r[1]}/{r[2]})")
            out.append(f"| {LABEL.get(p, p)} | " + " | ".join(cells) + " | " + " / ".join(lat_cells) + " |")

    e = summary.get("egressgen")
    if e:
        others = [summary[p] for p in peers if p not in ("direct", "egressgen", "egressgen-alt")]

        def best(key, lower):
            vals = [o[key] for o in others if o[key] is not None]
            return (min if lower else max)(vals) if vals else None

        def check(ok):
            return "–" if ok is None else ("met" if ok else "**missed**")

        def cmp(v, b, lower):
            if v is None or b is None:
                return None
            return v <= b if lower else v >= b

        nginx = summary.get("nginx", {})
        out.append("")
        out.append("| goal | egressgen | target | medians | same round, against every peer |")
        out.append("|---|---|---|---|---|")
        # The paired verdict of a goal: at or ahead of every peer (egressgen-alt aside) in the
        # median of the same-round ratios (or differences, for latency).
        paired_key = {"CPU per GiB": ("CPU per GiB", True), "CPU per connection": ("CPU per conn", True),
                      "keep-alive": ("keep-alive req/s", False), "bulk": ("bulk", False),
                      "new conn/s": ("new conn/s", False), "added latency p50": ("p50", True),
                      "added latency p99": ("p99", True)}

        # The marks that are not relative to a peer hold in both columns.
        absolute = {
            "CPU per GiB": None if e["cgib"] is None else e["cgib"] < 0.5,
            "CPU per connection": None if e["cconn"] is None else e["cconn"] < 350,
            "keep-alive": None if e["ka_x"] is None else e["ka_x"] >= 0.70,
        }

        def paired_verdict(goal):
            key = paired_key.get(goal)
            peers_ = [p for p in rivals if p != "egressgen-alt"]
            if key is None or absolute.get(goal) is False:
                return None if key is None else False
            if goal.startswith("added latency"):
                peers_ = [p for p in peers_ if p == "nginx"]
            got = [pairs.get((p, key[0])) for p in peers_]
            got = [g for g in got if g is not None]
            if not got:
                return None
            if goal.startswith("added latency"):
                return all(g[0] <= 0 for g in got)
            return all((g[0] <= 1) if key[1] else (g[0] >= 1) for g in got)
        goals = [
            ("CPU per GiB", fmt(e["cgib"], ".2f", " s"), "< 0.5 s and ≤ best peer",
             None if e["cgib"] is None else e["cgib"] < 0.5 and cmp(e["cgib"], best("cgib", True), True) is not False),
            ("CPU per connection", fmt(e["cconn"], ".0f", " µs"), "< 350 µs and ≤ best peer",
             None if e["cconn"] is None else e["cconn"] < 350 and cmp(e["cconn"], best("cconn", True), True) is not False),
            ("keep-alive", fmt(e["ka_x"], ".2f", "×"), "≥ 0.70× and ≥ best peer",
             None if e["ka_x"] is None else e["ka_x"] >= 0.70 and cmp(e["ka_x"], best("ka_x", False), False) is not False),
            ("bulk", fmt(e["bulk_x"], ".2f", "×"), "≥ best peer", cmp(e["bulk_x"], best("bulk_x", False), False)),
            ("new conn/s", fmt(e["conn_x"], ".2f", "×"), "≥ best peer", cmp(e["conn_x"], best("conn_x", False), False)),
            ("added latency p50", fmt(e["a50"], ".0f", " µs"), f"≤ nginx ({fmt(nginx.get('a50'), '.0f', ' µs')})",
             cmp(e["a50"], nginx.get("a50"), True)),
            ("added latency p99", fmt(e["a99"], ".0f", " µs"), f"≤ nginx ({fmt(nginx.get('a99'), '.0f', ' µs')})",
             cmp(e["a99"], nginx.get("a99"), True)),
        ]
        if half:
            # The same column against the peers that do the same work: pass a half-close on.
            alike = [summary[p]["cconn"] for p in peers
                     if p not in ("direct", "egressgen", "egressgen-alt") and summary[p]["cconn"] is not None
                     and half.get(p, {}).get("client_first") and half.get(p, {}).get("backend_first")]
            b = min(alike) if alike else None
            goals.insert(2, ("CPU per conn, half-closing peers", fmt(e["cconn"], ".0f", " µs"),
                             f"≤ best peer that passes a half-close on ({fmt(b, '.0f', ' µs')})",
                             cmp(e["cconn"], b, True)))
        for name, val, target, ok in goals:
            out.append(f"| {name} | {val} | {target} | {check(ok)} | {check(paired_verdict(name))} |")
    if short:
        out.append("")
        out.append("**Incomplete bulk transfers** (stalled or failed; their rate above is what they moved):")
        for r in short:
            out.append(f"- round {r['round']}, {r['peer']}: {r['bytes']:,} of {GIB:,} bytes in {r['secs']} s")
    print("\n".join(out))


if __name__ == "__main__":
    main(sys.argv[1])
