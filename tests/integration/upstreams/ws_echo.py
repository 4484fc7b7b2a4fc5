#!/usr/bin/env python3
"""WebSocket echo upstream for the proxy tests: answers an Upgrade: websocket request with 101
(RFC 6455 accept key), then echoes every data frame unmasked and answers a close frame.
Usage: ws_echo.py PORT"""

import base64
import hashlib

import httpserver as hs

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_frame(conn):
    b0, b1 = conn.read_exact(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(conn.read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(conn.read_exact(8), "big")
    mask = conn.read_exact(4) if b1 & 0x80 else None
    data = conn.read_exact(n) if n else b""
    if mask:
        data = bytes(c ^ mask[i % 4] for i, c in enumerate(data))
    return b0 & 0x0F, data


def frame(op, data):
    n = len(data)
    if n < 126:
        hdr = bytes([0x80 | op, n])
    elif n < 65536:
        hdr = bytes([0x80 | op, 126]) + n.to_bytes(2, "big")
    else:
        hdr = bytes([0x80 | op, 127]) + n.to_bytes(8, "big")
    return hdr + data


def handle(srv, conn):
    req = hs.read_request(conn)
    if req is None:
        return
    srv.count_request(conn, req)
    key = req.get("Sec-WebSocket-Key")
    if (req.get("Upgrade") or "").lower() != "websocket" or not key:
        conn.send(hs.response("400 Bad Request", b"not a websocket request\n", "text/plain"))
        return
    accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
    conn.send(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
    while True:
        op, data = read_frame(conn)
        if op == 8:
            conn.send(frame(8, data[:2]))
            return
        if op == 9:
            conn.send(frame(10, data))
            continue
        conn.send(frame(op, data))


if __name__ == "__main__":
    hs.Server(hs.port_arg(), handle).run()
