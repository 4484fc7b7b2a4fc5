#!/usr/bin/env python3
"""Upstream with the less common HTTP/1.1 answers, for the HTTP/2 lifecycle tests. Every request
appends "START METHOD TARGET" to LOGFILE when its head arrives and "DONE METHOD TARGET BODY_LEN
TRAILERS" once its body was read (TRAILERS: the request's chunked trailer fields as name=value
joined by ';', '-' when none). Paths:
  /slow?delay=S   200 after S seconds
  /trailers       chunked 200 whose last chunk carries the trailers x-checksum and x-count
  /hints          103 Early Hints (a Link field), then 200
  /continue       100 Continue when the request expects it, then reads the body, 200
  /nocontent      204 without a body
  /big            64 MiB with a content-length
  anything else   200 with a JSON report: body length and request trailers
Usage: special.py PORT LOGFILE"""

import json
import sys
import time

import httpserver as hs


def read_body(conn, req):
    """The whole body and its chunked trailer fields."""
    te = (req.get("Transfer-Encoding") or "").lower()
    if te != "chunked":
        n = int(req.get("Content-Length") or "0")
        return (conn.read_exact(n) if n else b""), []
    parts, trailers = [], []
    while True:
        line = conn.read_until(b"\r\n")
        if line is None:
            raise EOFError("eof in chunk size")
        size = int(line.split(b";")[0].strip(), 16)
        if size == 0:
            while True:
                t = conn.read_until(b"\r\n")
                if t is None or t == b"\r\n":
                    return b"".join(parts), trailers
                k, v = t.decode("latin-1").rstrip("\r\n").split(":", 1)
                trailers.append((k.strip(), v.strip()))
        parts.append(conn.read_exact(size))
        if conn.read_exact(2) != b"\r\n":
            raise ValueError("bad chunk end")


def main():
    port, logfile = int(sys.argv[1]), sys.argv[2]
    log = open(logfile, "a", buffering=1)

    def note(srv, line):
        with srv.lock:
            log.write(line + "\n")
            log.flush()

    def handle(srv, conn):
        while True:
            req = hs.read_request(conn)
            if req is None:
                return
            srv.count_request(conn, req)
            note(srv, "START %s %s" % (req.method, req.target))
            path, q = req.path(), req.query()
            if path == "/continue" and (req.get("Expect") or "").lower() == "100-continue":
                conn.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            body, trailers = read_body(conn, req)
            tr = ";".join("%s=%s" % kv for kv in trailers) or "-"
            note(srv, "DONE %s %s %d %s" % (req.method, req.target, len(body), tr))
            if path == "/slow":
                time.sleep(float(q.get("delay", "1")))
                conn.send(hs.response("200 OK", b"slow done\n", "text/plain"))
            elif path == "/trailers":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
                          b"Trailer: x-checksum, x-count\r\n\r\n"
                          b"6\r\nhello \r\n6\r\nworld\n\r\n0\r\nX-Checksum: abc123\r\nx-count: 2\r\n\r\n")
            elif path == "/hints":
                conn.send(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
                conn.send(hs.response("200 OK", b"hinted\n", "text/plain"))
            elif path == "/big":
                conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % (64 << 20))
                block = b"b" * 65536
                for _ in range(1024):
                    conn.send(block)
            elif path == "/nocontent":
                conn.send(b"HTTP/1.1 204 No Content\r\nX-Empty: yes\r\n\r\n")
            else:
                out = {"method": req.method, "target": req.target, "body_len": len(body),
                       "trailers": trailers, "headers": req.headers}
                conn.send(hs.response("200 OK", json.dumps(out).encode() + b"\n"))
            if not req.keep_alive():
                return

    hs.Server(port, handle).run()


if __name__ == "__main__":
    main()
