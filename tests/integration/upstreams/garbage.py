#!/usr/bin/env python3
"""Misbehaving upstream for the proxy tests, by path: /garbage (not HTTP), /close (closes without
answering), /bighead (100 KB response header), /clte (Content-Length with Transfer-Encoding),
/truncated (promises 100 bytes, sends 10, closes). Usage: garbage.py PORT"""

import httpserver as hs


def handle(srv, conn):
    req = hs.read_request(conn)
    if req is None:
        return
    srv.count_request(conn, req)
    for _ in hs.body_chunks(conn, req):
        pass
    p = req.path()
    if p == "/garbage":
        conn.send(b"this is not http\r\n\r\n")
    elif p == "/close":
        pass
    elif p == "/bighead":
        conn.send(b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 100000 + b"\r\nContent-Length: 2\r\n\r\nok")
    elif p == "/clte":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
    elif p == "/truncated":
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789")
    else:
        conn.send(hs.response("200 OK", b"fine\n", "text/plain"))


if __name__ == "__main__":
    hs.Server(hs.port_arg(), handle).run()
