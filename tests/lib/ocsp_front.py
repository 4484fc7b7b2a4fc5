#!/usr/bin/env python3
"""OCSP responder front for the OCSP integration tests (loopback only).

  ocsp_front.py --port P --backend B --mode-file F --log L

Accepts OCSP POSTs on 127.0.0.1:P and answers according to the first word of the mode file
(re-read for every request), logging one "REQ <n> <mode>" line per request to L:
  pass          forward the request to the real responder (openssl ocsp) on 127.0.0.1:B
  down          close the connection without answering
  500           answer HTTP 500
  garbage       answer 200 with bytes that are not an OCSP response
  big           answer 200 with 2 MiB of zeros
  file PATH     answer 200 with the bytes of PATH
  hold          wait (up to 120 s) until the mode is no longer "hold", then act on the new mode
"""
import argparse
import http.server
import socket
import threading
import time

lock = threading.Lock()
count = 0


def read_mode(path):
    try:
        with open(path) as f:
            words = f.read().split()
    except OSError:
        words = []
    return words or ["pass"]


def forward(port, req):
    """POSTs req to the responder with HTTP/1.0 (openssl ocsp spins on a kept-alive 1.1
    connection the peer closes) and returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST / HTTP/1.0\r\nContent-Type: application/ocsp-request\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(req) + req)
        data = b""
        while len(data) < 4 * 1024 * 1024:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 502
    return status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def answer(self, code, body):
        self.send_response(code)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        global count
        n = int(self.headers.get("Content-Length", "0"))
        req = self.rfile.read(n) if 0 < n < 65536 else b""
        mode = read_mode(self.server.mode_file)
        with lock:
            count += 1
            with open(self.server.log_path, "a") as f:
                f.write("REQ %d %s\n" % (count, mode[0]))
        deadline = time.time() + 120
        while mode[0] == "hold" and time.time() < deadline:
            time.sleep(0.05)
            mode = read_mode(self.server.mode_file)
        if mode[0] == "down":
            self.close_connection = True
            self.connection.close()
            return
        if mode[0] == "500":
            self.answer(500, b"internal error\n")
        elif mode[0] == "garbage":
            self.answer(200, b"<html>this is not OCSP</html>\n")
        elif mode[0] == "big":
            self.answer(200, b"\0" * (2 * 1024 * 1024))
        elif mode[0] == "file" and len(mode) > 1:
            with open(mode[1], "rb") as f:
                self.answer(200, f.read())
        else:
            status, body = forward(self.server.backend, req)
            self.answer(status, body)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--backend", type=int, required=True)
    ap.add_argument("--mode-file", required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    srv.mode_file = a.mode_file
    srv.log_path = a.log
    srv.backend = a.backend
    srv.serve_forever()


if __name__ == "__main__":
    main()
