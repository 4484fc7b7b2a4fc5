#!/usr/bin/env python3
"""HTTP/1.1 framing cases through the real proxy over TLS (raw bytes on a python3 ssl socket),
against counter.py. Each case names the rule it exercises (the rows of docs/http-framing.md),
sends its bytes (whole, or one TLS record per byte where noted), asserts the status line, that a
refusal closes the connection at once with Connection: close, and that the counting upstream saw
exactly the requests it should (0 for a refusal: nothing smuggled).
Usage: framing_client.py PORT SNI COUNTER_LOG"""

import select
import socket
import ssl
import sys
import time

H = b"Host: framing.example.test\r\n"
CHUNKED = b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\n" + H + b"\r\n"
WS = b"GET /ws HTTP/1.1\r\n" + H + b"Upgrade: websocket\r\n"
WS_KEY = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"


def fields(n, size):
    return b"".join(b"X-F%d: " % i + b"v" * (size - len(b"X-F%d: " % i)) + b"\r\n" for i in range(n))


# (annotation, request bytes, expected status, expected upstream lines, split into 1-byte writes)
CASES = [
    # row 1: chunk framing is the proxy's own decision
    ("1 chunk data followed by a smuggled request instead of CRLF",
     CHUNKED + b"5\r\nhello" + SMUGGLED + b"0\r\n\r\n", 400, [], False),
    ("1 the same, one byte per write", CHUNKED + b"5\r\nhello" + SMUGGLED + b"0\r\n\r\n", 400, [], True),
    ("1 chunk data followed by XX", CHUNKED + b"5\r\nhelloXX0\r\n\r\n", 400, [], False),
    ("1 chunk-size with trailing whitespace", CHUNKED + b"5 \r\nhello\r\n0\r\n\r\n", 400, [], False),
    ("1 chunk-size overflowing 64 bits", CHUNKED + b"10000000000000005\r\nhello\r\n0\r\n\r\n", 400, [], False),
    ("1 last-chunk ended by bare LF", CHUNKED + b"5\r\nhello\r\n0\r\n\n", 400, [], False),
    ("1 trailer with obs-fold", CHUNKED + b"0\r\nX-T: a\r\n b\r\n\r\n", 400, [], False),
    ("1 leading zeros and a trailer are valid", CHUNKED + b"0005\r\nhello\r\n0\r\nX-T: a\r\n\r\n", 200,
     ["POST /c 5"], False),
    # row 2: chunk extensions accepted, dropped, bounded
    ("2 chunk extensions are dropped", CHUNKED + b"5;a=b;c=\"d e\"\r\nhello\r\n0;z\r\n\r\n", 200, ["POST /c 5"], False),
    ("2 one chunk extension over 4 KiB", CHUNKED + b"5;x=" + b"a" * 4200 + b"\r\nhello\r\n0\r\n\r\n", 400, [], False),
    ("2 chunk extensions over 4 KiB in total", CHUNKED + b"1;ext=0123456789\r\nx\r\n" * 300 + b"0\r\n\r\n", 400, [],
     False),
    # row 3: Transfer-Encoding
    ("3 HTAB and SP around chunked", b"POST /te HTTP/1.1\r\n" + H +
     b"Transfer-Encoding:\t chunked \t\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, ["POST /te 3"], False),
    ("3 unknown coding", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501, [],
     False),
    ("3 chunked not last", b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400, [],
     False),
    ("3 TE in HTTP/1.0", b"POST / HTTP/1.0\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, [], False),
    ("3 TE with Content-Length", b"POST / HTTP/1.1\r\n" + H +
     b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, [], False),
    # row 4: request line
    ("4 double SP", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", 400, [], False),
    ("4 leading whitespace", b" GET / HTTP/1.1\r\n" + H + b"\r\n", 400, [], False),
    ("4 trailing whitespace", b"GET / HTTP/1.1 \r\n" + H + b"\r\n", 400, [], False),
    ("4 bare CR in the request line", b"GET /a\rb HTTP/1.1\r\n" + H + b"\r\n", 400, [], False),
    ("4 * with GET", b"GET * HTTP/1.1\r\n" + H + b"\r\n", 400, [], False),
    ("4 * with OPTIONS", b"OPTIONS * HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", 200, ["OPTIONS * 0"], False),
    ("4 HTTP/0.9 style, refused at once", b"GET /\r\n", 400, [], False),
    ("4 HTTP/1.2 handled as HTTP/1.1", b"GET /v12 HTTP/1.2\r\n" + H + b"Connection: close\r\n\r\n", 200,
     ["GET /v12 0"], False),
    ("4 HTTP/2.0", b"GET / HTTP/2.0\r\n" + H + b"\r\n", 505, [], False),
    ("4 HTTP/3.0", b"GET / HTTP/3.0\r\n" + H + b"\r\n", 505, [], False),
    ("4 request line over 8 KiB", b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414, [], False),
    # row 5: header limits
    ("5 20 KiB head of 1 KiB lines", b"GET /big HTTP/1.1\r\n" + H + fields(20, 1024) + b"Connection: close\r\n\r\n",
     200, ["GET /big 0"], False),
    ("5 field line over 8 KiB", b"GET / HTTP/1.1\r\n" + H + fields(1, 9000) + b"\r\n", 431, [], False),
    ("5 head over 32 KiB", b"GET / HTTP/1.1\r\n" + H + fields(40, 1024) + b"\r\n", 431, [], False),
    ("5 101 fields", b"GET / HTTP/1.1\r\n" + H + fields(100, 10) + b"\r\n", 431, [], False),
    # row 6: WebSocket only as a complete handshake
    ("6 Upgrade: websocket without Connection: upgrade", WS + WS_KEY + b"Sec-WebSocket-Version: 13\r\n\r\n", 400, [],
     False),
    ("6 WebSocket key of the wrong size", WS + b"Connection: upgrade\r\nSec-WebSocket-Key: abc=\r\n"
     b"Sec-WebSocket-Version: 13\r\n\r\n", 400, [], False),
    ("6 WebSocket version 8", WS + b"Connection: upgrade\r\n" + WS_KEY + b"Sec-WebSocket-Version: 8\r\n\r\n", 400, [],
     False),
    # field rules kept
    ("- obs-fold", b"GET / HTTP/1.1\r\n" + H + b"X: a\r\n b\r\n\r\n", 400, [], False),
    ("- field name not a token", b"GET / HTTP/1.1\r\n" + H + b"X(a): b\r\n\r\n", 400, [], False),
    ("- whitespace before colon", b"GET / HTTP/1.1\r\n" + H + b"X : a\r\n\r\n", 400, [], False),
    ("- NUL in a value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", 400, [], False),
    ("- differing Content-Length", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\nab",
     400, [], False),
    ("- Content-Length with a sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +1\r\n\r\na", 400, [], False),
    ("- Host missing", b"GET / HTTP/1.1\r\n\r\n", 400, [], False),
    ("- Host twice", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", 400, [], False),
]

TIMEOUT = 20.0  # generous: sanitizer builds are slow; a hang until the header timeout (60 s) fails


def connect(port, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(s, server_hostname=sni)


def exchange(port, sni, data, split):
    """Sends data; returns (bytes received until the server closed, closed?)."""
    s = connect(port, sni)
    out, closed = b"", False
    try:
        if split:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                # Stop writing once the proxy has answered: bytes sent after it closed would only
                # provoke a reset. (Readable may also mean a TLS session ticket: no app data.)
                if select.select([s], [], [], 0)[0]:
                    s.setblocking(False)
                    try:
                        d = s.recv(65536)
                        out += d
                        closed = not d
                    except ssl.SSLWantReadError:
                        d = None
                    s.setblocking(True)
                    s.settimeout(TIMEOUT)
                    if d is not None:
                        break
        else:
            s.sendall(data)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        pass  # refused before everything was sent
    end = time.time() + TIMEOUT
    try:
        while not closed and time.time() < end:
            s.settimeout(max(0.05, end - time.time()))
            d = s.recv(65536)
            if not d:
                closed = True
                break
            out += d
    except (socket.timeout, ssl.SSLError, ConnectionResetError, OSError) as e:
        closed = not isinstance(e, socket.timeout)
    s.close()
    return out, closed


def log_lines(path):
    with open(path) as f:
        return [l.strip() for l in f if l.strip()]


def wait_lines(path, n):
    end = time.time() + TIMEOUT
    while time.time() < end:
        if len(log_lines(path)) >= n:
            break
        time.sleep(0.05)
    return log_lines(path)


def main():
    port, sni, logpath = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    seen = log_lines(logpath)
    failures = 0
    for name, data, status, want, split in CASES:
        out, closed = exchange(port, sni, data, split)
        head = out.split(b"\r\n\r\n", 1)[0].decode("latin-1")
        ok = head.startswith("HTTP/1.1 %d " % status)
        why = "" if ok else "status line %r" % head.split("\r\n", 1)[0]
        if ok and not closed:
            ok, why = False, "connection not closed"
        if ok and status >= 400 and "\r\nconnection: close" not in head.lower():
            ok, why = False, "refusal without Connection: close"
        # An accepted request was answered by the upstream, so its line is there already; for a
        # refusal give a smuggled request a moment to arrive (the final canary catches later ones).
        if not want:
            time.sleep(0.2)
        lines = wait_lines(logpath, len(seen) + len(want)) if want else log_lines(logpath)
        new = lines[len(seen):]
        if ok and new != want:
            ok, why = False, "upstream saw %r, expected %r" % (new, want)
        seen = lines
        print("%s  row %s" % ("ok  " if ok else "FAIL", name + ("" if ok else ": " + why)), flush=True)
        failures += not ok
    # Canary: one more request; everything the upstream saw in total must be exactly the expected.
    out, _ = exchange(port, sni, b"GET /canary HTTP/1.1\r\n" + H + b"Connection: close\r\n\r\n", False)
    lines = wait_lines(logpath, len(seen) + 1)
    expected = [l for c in CASES for l in c[3]] + ["GET /canary 0"]
    if lines[-len(expected):] != expected or len(lines) != len(expected):
        print("FAIL upstream saw %r, expected %r" % (lines, expected), flush=True)
        failures += 1
    print("%d cases, %d failures" % (len(CASES), failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
