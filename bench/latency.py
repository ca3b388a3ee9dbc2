#!/usr/bin/env python3
"""Time fresh TLS connections, one after another, through a proxy or directly.

Each sample is the time from connect() to a finished TLS handshake (what curl calls
time_appconnect): TCP handshake, ClientHello through the proxy, the proxy's upstream
connect and the server's flight back. Prints one JSON object with the samples in
microseconds. It does not verify certificates (the backend's is self-signed) and
does not send a request. Loopback only; bounded by --samples and --deadline.
"""

import argparse
import json
import socket
import ssl
import sys
import time


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", required=True)
    ap.add_argument("--samples", type=int, default=300)
    ap.add_argument("--deadline", type=float, default=30.0, help="stop after this many seconds")
    args = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    samples = []
    errors = 0
    stop = time.monotonic() + args.deadline
    for _ in range(args.samples):
        if time.monotonic() > stop:
            break
        t0 = time.perf_counter_ns()
        try:
            with socket.create_connection((args.host, args.port), timeout=5) as raw:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with ctx.wrap_socket(raw, server_hostname=args.sni):
                    t1 = time.perf_counter_ns()
        except OSError:
            errors += 1
            continue
        samples.append((t1 - t0) / 1000.0)
    json.dump({"samples_us": samples, "errors": errors}, sys.stdout)
    sys.stdout.write("\n")
    return 0 if samples else 1


if __name__ == "__main__":
    sys.exit(main())
