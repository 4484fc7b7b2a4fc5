#!/usr/bin/env python3
"""TLS client for the proxy tests (loopback only).

  raw  --port P --sni NAME --data 'escaped bytes' [--timeout S]
       sends the bytes (Python escapes: \\r \\n \\x00), prints everything received until the
       server closes or the timeout passes; exit 0.
  ws   --port P --sni NAME [--host H] [--path /]
       WebSocket handshake through the proxy, one masked text frame and one binary frame, checks
       both echoes and the close handshake; exit 0 on success.
  idle --port P --sni NAME --count N --hold S [--host H] [--ready FILE]
       opens N keep-alive connections, one request each, then holds them open S seconds
       (writes FILE when all are established)."""

import argparse
import base64
import codecs
import os
import socket
import ssl
import sys
import time


def connect(port, sni, timeout=10):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    # Like curl and browsers: without it a small request can wait for a delayed ACK.
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname=sni)


def cmd_raw(a):
    data = codecs.decode(a.data, "unicode_escape").encode("latin-1")
    s = connect(a.port, a.sni, a.timeout)
    s.sendall(data)
    out = b""
    end = time.time() + a.timeout
    try:
        while time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            d = s.recv(65536)
            if not d:
                break
            out += d
    except (socket.timeout, ssl.SSLError, ConnectionResetError):
        pass
    sys.stdout.write(out.decode("latin-1"))
    return 0


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        d = s.recv(n - len(out))
        if not d:
            raise EOFError("closed")
        out += d
    return out


def ws_send(s, op, data):
    mask = os.urandom(4)
    n = len(data)
    if n < 126:
        hdr = bytes([0x80 | op, 0x80 | n])
    else:
        hdr = bytes([0x80 | op, 0x80 | 126]) + n.to_bytes(2, "big")
    s.sendall(hdr + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))


def ws_recv(s):
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exact(s, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exact(s, 8), "big")
    if b1 & 0x80:
        raise ValueError("server frames must not be masked")
    return b0 & 0x0F, recv_exact(s, n) if n else b""


def cmd_ws(a):
    s = connect(a.port, a.sni)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (a.path, a.host or a.sni, key)).encode())
    head = b""
    while b"\r\n\r\n" not in head:
        d = s.recv(1)
        if not d:
            print("closed before the 101: %r" % head)
            return 1
        head += d
    if not head.startswith(b"HTTP/1.1 101"):
        print("no 101: %r" % head)
        return 1
    ws_send(s, 1, b"hello through the proxy")
    op, data = ws_recv(s)
    if op != 1 or data != b"hello through the proxy":
        print("bad text echo: %d %r" % (op, data))
        return 1
    blob = os.urandom(40000)
    ws_send(s, 2, blob)
    op, data = ws_recv(s)
    if op != 2 or data != blob:
        print("bad binary echo: %d len %d" % (op, len(data)))
        return 1
    ws_send(s, 8, b"\x03\xe8")
    op, data = ws_recv(s)
    if op != 8:
        print("no close frame: %d" % op)
        return 1
    print("websocket ok")
    return 0


def cmd_idle(a):
    socks = []
    req = ("GET /idle HTTP/1.1\r\nHost: %s\r\n\r\n" % (a.host or a.sni)).encode()
    for _ in range(a.count):
        s = connect(a.port, a.sni)
        s.sendall(req)
        buf = b""
        while b"\r\n\r\n" not in buf:
            d = s.recv(65536)
            if not d:
                raise EOFError("closed")
            buf += d
        head, rest = buf.split(b"\r\n\r\n", 1)
        cl = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                cl = int(line.split(b":", 1)[1])
        while len(rest) < cl:
            rest += s.recv(65536)
        socks.append(s)
    if a.ready:
        with open(a.ready, "w") as f:
            f.write("%d\n" % len(socks))
    time.sleep(a.hold)
    for s in socks:
        s.close()
    return 0


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["raw", "ws", "idle"])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--host")
    p.add_argument("--data", default="")
    p.add_argument("--timeout", type=float, default=5)
    p.add_argument("--path", default="/")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--hold", type=float, default=1)
    p.add_argument("--ready")
    a = p.parse_args()
    return {"raw": cmd_raw, "ws": cmd_ws, "idle": cmd_idle}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
