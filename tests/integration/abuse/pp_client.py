#!/usr/bin/env python3
"""PROXY protocol v2 client: sends a hand-built header, then (optionally) a TLS handshake.

  pp_client.py PORT MODE [--claim IP] [--src IP] [--hold S]
  MODE: proxy   valid PROXY header claiming --claim, then TLS; exit 0 when the handshake completes
        local   LOCAL header, then TLS
        plain   TLS without any header
        trunc   the first 10 header bytes, then waits; exit 0 when the server closes within 30 s
        hold    valid PROXY header claiming --claim, then TLS, then keeps the connection --hold s
"""
import argparse
import socket
import ssl
import struct
import sys
import time

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header(cmd, claim):
    if cmd == "local":
        return SIG + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    if ":" in claim:
        body = socket.inet_pton(socket.AF_INET6, claim) + socket.inet_pton(socket.AF_INET6, "::1")
        body += struct.pack("!HH", 40000, 443)
        fam = 0x21
    else:
        body = socket.inet_aton(claim) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, 443)
        fam = 0x11
    tlv = bytes([0x04]) + struct.pack("!H", 3) + b"abc"  # PP2_TYPE_NOOP, skipped by the server
    body += tlv
    return SIG + bytes([0x21, fam]) + struct.pack("!H", len(body)) + body


def tls(sock):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t = ctx.wrap_socket(sock, server_hostname="pp.example.test")
    return t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("port", type=int)
    p.add_argument("mode", choices=["proxy", "local", "plain", "trunc", "hold"])
    p.add_argument("--claim", default="198.51.100.9")
    p.add_argument("--src", default="127.0.0.1")
    p.add_argument("--hold", type=float, default=60)
    a = p.parse_args()
    try:
        s = socket.create_connection(("127.0.0.1", a.port), timeout=30, source_address=(a.src, 0))
        if a.mode == "trunc":
            s.sendall(header("proxy", a.claim)[:10])
            start = time.monotonic()
            try:
                data = s.recv(1)
            except (ConnectionResetError, OSError):
                data = b""
            print(f"closed after {time.monotonic() - start:.1f}s", flush=True)
            return 0 if data == b"" else 1
        if a.mode != "plain":
            s.sendall(header("local" if a.mode == "local" else "proxy", a.claim))
        t = tls(s)
        print("handshake ok", flush=True)
        if a.mode == "hold":
            time.sleep(a.hold)
        t.close()
        return 0
    except (OSError, ssl.SSLError) as e:
        print(f"failed: {e}", flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
