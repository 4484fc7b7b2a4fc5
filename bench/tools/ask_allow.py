#!/usr/bin/env python3
"""On-demand "ask" endpoint for the Caddy side of bench/abuse.sh: GET ...?domain=NAME answers 200
when NAME is a subdomain of one of the given suffixes (like an allow pattern "*.SUFFIX"), 404
otherwise. One line per request on stderr ("ask 200 NAME" / "ask 404 NAME"), so the caller can
count the requests.

Usage: ask_allow.py PORT SUFFIX...   (listens on 127.0.0.1 only)
"""

import http.server
import sys
import urllib.parse

SUFFIXES = []


def allowed(name):
    name = name.lower().rstrip(".")
    for s in SUFFIXES:
        if name.endswith("." + s) and len(name) > len(s) + 1:
            return True
    return False


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        query = urllib.parse.urlparse(self.path).query
        name = urllib.parse.parse_qs(query).get("domain", [""])[0]
        code = 200 if allowed(name) else 404
        body = b"ok\n" if code == 200 else b"no\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        sys.stderr.write("ask %d %s\n" % (code, name))

    def log_message(self, fmt, *args):
        pass


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: ask_allow.py PORT SUFFIX...")
    port = int(sys.argv[1])
    SUFFIXES.extend(s.lower().strip(".") for s in sys.argv[2:])
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
