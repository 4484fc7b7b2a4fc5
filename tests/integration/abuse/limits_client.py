#!/usr/bin/env python3
"""Client side of the per-client limit tests: connections from a chosen loopback source address.

  hold   --src IP --n N           opens N TCP connections, reports how many the server cut
                                  within --wait seconds and how many stay open; keeps them
                                  open until --hold seconds pass or stdin closes
  tls    --src IP --sni NAME      one TLS handshake; exit 0 when it completes
  burst  --src IP --n N           N quick TCP connections; prints how many were cut
  names  --src IP --n N           N handshakes with new random names; prints served/cut
Every wait is bounded.
"""
import argparse
import os
import select
import socket
import ssl
import sys
import time


def connect(src, port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(src, 0))
    return s


def connect_or_cut(src, port):
    """A connected socket, or None when the server reset it before connect() returned."""
    try:
        return connect(src, port)
    except (ConnectionResetError, ConnectionRefusedError):
        return None


def is_cut(s, wait):
    """True when the server closed or reset s within wait seconds (it never sends first)."""
    r, _, _ = select.select([s], [], [], wait)
    if not r:
        return False
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, OSError):
        return True


def tls_handshake(src, port, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        s = connect(src, port)
        with ctx.wrap_socket(s, server_hostname=sni) as t:
            t.settimeout(10)
            return t.getpeercert(binary_form=True) is not None
    except (OSError, ssl.SSLError):
        return False


def cmd_hold(a):
    all_socks = [connect_or_cut(a.src, a.port) for _ in range(a.n)]
    socks = [s for s in all_socks if s is not None]
    early = a.n - len(socks)
    deadline = time.monotonic() + a.wait
    cut = set()
    while time.monotonic() < deadline and len(cut) < a.n:
        live = [s for s in socks if s not in cut]
        if not live:
            break
        r, _, _ = select.select(live, [], [], max(0.0, deadline - time.monotonic()))
        for s in r:
            if is_cut(s, 0):
                cut.add(s)
        if not r:
            break
    print(f"cut={len(cut) + early} open={len(socks) - len(cut)}", flush=True)
    time.sleep(a.hold)  # the test kills this process to close the connections
    for s in socks:
        s.close()
    return 0


def cmd_burst(a):
    socks = [connect_or_cut(a.src, a.port) for _ in range(a.n)]
    cut = sum(1 for s in socks if s is None or is_cut(s, a.wait / a.n))
    print(f"cut={cut}", flush=True)
    return 0


def cmd_names(a):
    served = cut = 0
    for i in range(a.n):
        name = f"n{os.getpid()}-{i}-{time.monotonic_ns()}.example.test"
        if tls_handshake(a.src, a.port, name):
            served += 1
        else:
            cut += 1
    print(f"served={served} cut={cut}", flush=True)
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["hold", "tls", "burst", "names"])
    p.add_argument("--src", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--sni", default="x.example.test")
    p.add_argument("--wait", type=float, default=10)
    p.add_argument("--hold", type=float, default=60)
    a = p.parse_args()
    if a.cmd == "hold":
        return cmd_hold(a)
    if a.cmd == "burst":
        return cmd_burst(a)
    if a.cmd == "names":
        return cmd_names(a)
    return 0 if tls_handshake(a.src, a.port, a.sni) else 1


if __name__ == "__main__":
    sys.exit(main())
