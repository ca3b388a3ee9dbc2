#!/usr/bin/env python3
"""Does an SNI proxy pass a half-close on, as Envoy's tcp_proxy does?

Usage: bench/half_close.py PROXY_HOST:PORT BACKEND_PORT [NAME]

Starts a plain TCP backend on 127.0.0.1:BACKEND_PORT (point the proxy's route
for NAME, default a.test.local, there), then checks both directions through the
proxy:

  client-first: the client sends a ClientHello and shuts its sending side; the
                backend, after reading that EOF, still answers. The client must
                get the answer.
  backend-first: the backend answers and shuts its sending side; the client,
                after reading that EOF, still sends. The backend must get it.

A proxy that closes both sides at the first EOF fails both. Prints one line per
check and exits 1 if any failed. Used for BENCHMARKS.md (serve finding 16).
"""

import socket
import sys
import threading

from idle import client_hello  # bench/idle.py: a real TLS client's first flight

TIMEOUT = 3.0


def read_all(sock):
    """Everything until EOF (or the timeout)."""
    got = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return got, True
            got += chunk
    except (socket.timeout, ConnectionError):
        return got, False


def backend(listener, mode, result):
    conn, _ = listener.accept()
    conn.settimeout(TIMEOUT)
    with conn:
        if mode == "client-first":
            _, eof = read_all(conn)  # the hello, then the client's FIN
            result["backend saw EOF"] = eof
            try:
                conn.sendall(b"late answer")
                conn.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        else:
            conn.recv(65536)  # the hello
            conn.sendall(b"answer")
            conn.shutdown(socket.SHUT_WR)
            rest, _ = read_all(conn)
            result["backend got"] = rest


def check(proxy, backend_port, name, mode):
    listener = socket.create_server(("127.0.0.1", backend_port), reuse_port=False)
    listener.settimeout(TIMEOUT)
    result = {}
    t = threading.Thread(target=backend, args=(listener, mode, result), daemon=True)
    t.start()
    host, port = proxy.rsplit(":", 1)
    c = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    try:
        c.sendall(client_hello(name))
        if mode == "client-first":
            c.shutdown(socket.SHUT_WR)
            got, _ = read_all(c)
            ok = got.endswith(b"late answer")
            detail = f"client got {got[-11:]!r}"
        else:
            got, eof = read_all(c)
            try:
                c.sendall(b"late data")
                c.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            c.settimeout(TIMEOUT)
            read_all(c)
            t.join(TIMEOUT + 1)
            ok = result.get("backend got", b"") == b"late data"
            detail = f"backend got {result.get('backend got', b'')!r}"
    finally:
        c.close()
        t.join(TIMEOUT + 1)
        listener.close()
    return ok, detail


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    proxy, backend_port = sys.argv[1], int(sys.argv[2])
    name = sys.argv[3] if len(sys.argv) > 3 else "a.test.local"
    failed = 0
    for mode in ("client-first", "backend-first"):
        ok, detail = check(proxy, backend_port, name, mode)
        failed += not ok
        print(f"{proxy} {mode}: {'passed on' if ok else 'LOST'} ({detail})")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
