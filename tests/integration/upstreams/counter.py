#!/usr/bin/env python3
"""Request-counting upstream for the framing tests: for every complete request it parses (head and
whole body, Content-Length or chunked) it appends "METHOD TARGET BODY_LEN" to LOGFILE, flushed
before answering 200, so a request the proxy should have refused, or one smuggled inside another's
body, shows up as a line of its own.
Usage: counter.py PORT LOGFILE"""

import sys

import httpserver as hs


def main():
    port, logfile = int(sys.argv[1]), sys.argv[2]
    log = open(logfile, "a", buffering=1)

    def handle(srv, conn):
        while True:
            try:
                req = hs.read_request(conn)
                if req is None:
                    return
                n = sum(len(p) for p in hs.body_chunks(conn, req))
            except (ValueError, EOFError, OSError):
                return
            srv.count_request(conn, req)
            with srv.lock:
                log.write("%s %s %d\n" % (req.method, req.target, n))
                log.flush()
            conn.send(hs.response("200 OK", b"counted\n"))
            if not req.keep_alive():
                return

    hs.Server(port, handle).run()


if __name__ == "__main__":
    main()
