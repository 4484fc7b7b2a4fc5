#!/usr/bin/env python3
"""Echo upstream for the proxy tests: reports the request (headers as received, body length and
SHA-256) as JSON, streams bodies back (/echo), sinks uploads (/sink), generates downloads
(/download?size=N[&chunked=1]), answers late (/slow?delay=S) and counts connections (/stats).
Usage: echo.py PORT"""

import hashlib
import json
import time

import httpserver as hs

PATTERN = bytes(range(256)) * 256  # 64 KiB


def handle(srv, conn):
    while True:
        req = hs.read_request(conn)
        if req is None:
            return
        srv.count_request(conn, req)
        path, q = req.path(), req.query()
        if path == "/echo":
            conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                      b"Transfer-Encoding: chunked\r\n\r\n")
            for p in hs.body_chunks(conn, req):
                conn.send(b"%x\r\n" % len(p) + p + b"\r\n")
            conn.send(b"0\r\n\r\n")
        elif path == "/download":
            for _ in hs.body_chunks(conn, req):
                pass
            size = int(q.get("size", "0"))
            chunked = q.get("chunked") == "1"
            if chunked:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n")
            else:
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % size)
            left = size
            while left:
                p = PATTERN[:min(left, len(PATTERN))]
                conn.send(b"%x\r\n" % len(p) + p + b"\r\n" if chunked else p)
                left -= len(p)
            if chunked:
                conn.send(b"0\r\n\r\n")
        else:
            h = hashlib.sha256()
            n = 0
            for p in hs.body_chunks(conn, req):
                h.update(p)
                n += len(p)
            if path == "/slow":
                time.sleep(float(q.get("delay", "1")))
            with srv.lock:
                stats = {"conns": srv.conns, "requests": srv.requests}
            out = {
                "method": req.method, "target": req.target, "version": req.version,
                "headers": req.headers, "body_len": n, "body_sha256": h.hexdigest(),
                "conn": conn.cid, "conn_requests": conn.requests,
            }
            out.update(stats)
            conn.send(hs.response("200 OK", json.dumps(out).encode() + b"\n"))
        if not req.keep_alive():
            return


if __name__ == "__main__":
    hs.Server(hs.port_arg(), handle).run()
