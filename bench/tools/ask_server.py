#!/usr/bin/env python3
"""Minimal on-demand "ask" endpoint for the Caddy side of bench/ttc.sh: answers 200 to every GET.

Usage: ask_server.py PORT   (listens on 127.0.0.1 only)
"""

import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"ok\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):
        sys.stderr.write("ask: " + (fmt % args) + "\n")


def main():
    port = int(sys.argv[1])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.serve_forever()


if __name__ == "__main__":
    main()
