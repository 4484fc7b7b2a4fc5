#!/usr/bin/env python3
"""Slow chunked streamer for the proxy tests: GET /stream?chunks=N&size=B&delay=S sends N chunks
of B bytes, sleeping S seconds before each. Usage: streamer.py PORT"""

import time

import httpserver as hs


def handle(srv, conn):
    while True:
        req = hs.read_request(conn)
        if req is None:
            return
        srv.count_request(conn, req)
        for _ in hs.body_chunks(conn, req):
            pass
        q = req.query()
        n, size, delay = int(q.get("chunks", "10")), int(q.get("size", "1024")), float(q.get("delay", "0.1"))
        conn.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n")
        for i in range(n):
            time.sleep(delay)
            data = (b"%d:" % i).ljust(size, b".")
            conn.send(b"%x\r\n" % len(data) + data + b"\r\n")
        conn.send(b"0\r\n\r\n")
        if not req.keep_alive():
            return


if __name__ == "__main__":
    hs.Server(hs.port_arg(), handle).run()
