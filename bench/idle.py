#!/usr/bin/env python3
"""Hold many idle connections through a proxy and report the proxy's RSS per connection.

Each connection sends one real ClientHello (made once by Python's ssl module) and waits
for the first bytes of the server's reply, so the proxy has read the hello, connected
upstream and is relaying; then the connection just sits there. The proxy's resident
memory (VmRSS of the given PIDs and their children) is read before and while all are
held. Prints one JSON object. Loopback only; bounded by --deadline; closes everything
before exiting.
"""

import argparse
import errno
import json
import os
import resource
import selectors
import socket
import ssl
import sys
import time


def client_hello(sni: str) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=sni)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()


def tree(pids):
    """The given PIDs and all their descendants."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], list(pids)
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pids) -> int:
    total = 0
    for p in tree(pids):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--sni", required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--pid", type=int, action="append", required=True, help="proxy PID (repeat)")
    ap.add_argument("--batch", type=int, default=200, help="connections in flight at once")
    ap.add_argument("--deadline", type=float, default=90.0)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    conns = min(args.conns, hard - 64)

    hello = client_hello(args.sni)
    before = rss_kib(args.pid)
    sel = selectors.DefaultSelector()
    held, errors, opened = [], 0, 0
    pending = 0
    stop = time.monotonic() + args.deadline
    while (opened < conns or pending) and time.monotonic() < stop:
        while opened < conns and pending < args.batch:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            rc = s.connect_ex((args.host, args.port))
            opened += 1
            if rc not in (0, errno.EINPROGRESS):
                errors += 1
                s.close()
                continue
            sel.register(s, selectors.EVENT_WRITE, "connecting")
            pending += 1
        for key, _mask in sel.select(timeout=0.5):
            s = key.fileobj
            if key.data == "connecting":
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sel.unregister(s)
                    s.close()
                    errors += 1
                    pending -= 1
                    continue
                s.send(hello)  # ~0.5 KB into an empty socket buffer: never short
                sel.modify(s, selectors.EVENT_READ, "sent")
            else:
                sel.unregister(s)
                pending -= 1
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if data:
                    held.append(s)
                else:
                    errors += 1
                    s.close()
    time.sleep(1.0)
    during = rss_kib(args.pid)
    result = {
        "requested": args.conns,
        "attempted": conns,
        "held": len(held),
        "errors": errors,
        "timed_out": pending,
        "rss_before_kib": before,
        "rss_held_kib": during,
        "bytes_per_conn": round((during - before) * 1024 / len(held)) if held else None,
        "hello_bytes": len(hello),
    }
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    for s in held:
        s.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0 if held else 1


if __name__ == "__main__":
    sys.exit(main())
