#!/usr/bin/python3
"""Raw HTTP/2 frame scripts for the HTTP/2 lifecycle and abuse tests (hyperframe/hpack from
/usr/bin/python3, TLS with ALPN h2). Each case prints one JSON line of what the server did.

  h2_frames.py CASE --port P --sni NAME [--count N] [--timeout S] [--path P] [--ready FILE]
               [--go FILE]

Cases:
  made-you-reset  N streams, each HEADERS+END_STREAM followed by a frame that makes the server
                  reset it (--variant wu0: WINDOW_UPDATE 0 on the stream; data-closed: DATA
                  after END_STREAM; wu-overflow: a WINDOW_UPDATE past 2^31-1 on the
                  stream; bad-field: a NUL in a field value)
  hblock-stall    HEADERS without END_HEADERS, then --count CONTINUATIONs one per --drip
                  seconds (0: nothing at all); reports when the server closed
  silent          TLS with ALPN h2, then nothing
  garbage         TLS with ALPN h2, then a wrong preface
  no-ack          preface and SETTINGS, but the server's SETTINGS is never acknowledged
  idle            preface, SETTINGS and its ACK, then nothing
  drain           stream 1 on --path (a slow answer), touches --ready once it went out, and
                  after the server's final GOAWAY opens stream 3; reports the GOAWAYs, the
                  answers of both streams and the close
  no-read         window opened to 2^31-1, GET --path, then nothing is read until --go exists
                  (or --timeout); then reads to the end and reports the bytes received
  trailers        POST --path with a body and trailer fields, reports the response and its
                  trailers (--variant cl: the request carries a content-length)
  hints           POST --path with an empty body; reports interim and final responses
  expect          POST --path with expect: 100-continue and no body until an interim 100
                  arrives; reports the interim statuses and the final answer
Every loop is bounded by --timeout."""

import argparse
import json
import os
import socket
import ssl
import sys
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def connect(a, rcvbuf=0):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    raw.settimeout(a.timeout)
    raw.connect(("127.0.0.1", a.port))
    s = ctx.wrap_socket(raw, server_hostname=a.sni)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit("ALPN did not select h2: %r" % s.selected_alpn_protocol())
    return s


class Reader:
    """Frames from the server, with the HPACK decoder kept in step."""

    def __init__(self, sock):
        self.sock, self.buf, self.dec, self.closed = sock, b"", hpack.Decoder(), False
        self.dec.max_allowed_table_size = 65536

    def next(self, deadline):
        """(type, flags, stream, payload), or None at the close or the deadline."""
        while True:
            if len(self.buf) >= 9:
                ln = int.from_bytes(self.buf[:3], "big")
                if len(self.buf) >= 9 + ln:
                    t, fl, sid = self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7FFFFFFF
                    p, self.buf = self.buf[9:9 + ln], self.buf[9 + ln:]
                    return t, fl, sid, p
            if self.closed or time.monotonic() >= deadline:
                return None
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            if not d:
                self.closed = True
            self.buf += d

    def fields(self, flags, p):
        if flags & 0x8:
            p = p[1:len(p) - p[0]]
        if flags & 0x20:
            p = p[5:]
        return [(k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
                for k, v in self.dec.decode(p)]


def req_block(enc, a, method="GET", path=None, extra=()):
    return enc.encode([(":method", method), (":scheme", "https"), (":authority", a.sni),
                       (":path", path or a.path)] + list(extra))


def handshake(sock, ack=True):
    sock.sendall(PREFACE + frame(4, 0, 0) + (frame(4, ACK, 0) if ack else b""))


def wait_close(rd, res, deadline, on_frame=None):
    t0 = time.monotonic()
    while True:
        f = rd.next(deadline)
        if f is None:
            break
        t, fl, sid, p = f
        if t == 7:
            res.setdefault("goaways", []).append([int.from_bytes(p[:4], "big") & 0x7FFFFFFF,
                                                   int.from_bytes(p[4:8], "big")])
            res["goaway"] = int.from_bytes(p[4:8], "big")
        elif t == 3:
            res["rst"] = res.get("rst", 0) + 1
        if on_frame:
            on_frame(f)
    res["closed"] = rd.closed
    res["seconds"] = round(time.monotonic() - t0, 2)


def case_made_you_reset(a, sock, res):
    handshake(sock)
    enc = hpack.Encoder()
    sent = 0
    try:
        for i in range(a.count):
            sid = 1 + 2 * i
            extra = [("x-bad", "a\x00b")] if a.variant == "bad-field" else []
            out = frame(1, END_HEADERS | END_STREAM, sid, req_block(enc, a, extra=extra))
            if a.variant == "bad-field":
                pass
            elif a.variant == "wu-overflow":
                out += frame(8, 0, sid, (2 ** 31 - 1).to_bytes(4, "big"))
            elif a.variant == "data-closed":
                out += frame(0, 0, sid, b"x")
            else:
                out += frame(8, 0, sid, (0).to_bytes(4, "big"))
            sock.sendall(out)
            sent += 1
    except OSError:
        pass
    res["sent"] = sent
    wait_close(Reader(sock), res, time.monotonic() + a.timeout)


def case_hblock_stall(a, sock, res):
    handshake(sock)
    enc = hpack.Encoder()
    sock.sendall(frame(1, 0, 1, req_block(enc, a)))
    rd = Reader(sock)
    t0 = time.monotonic()
    for i in range(a.count):
        wait_close(rd, res, time.monotonic() + a.drip)
        if rd.closed:
            break
        try:
            sock.sendall(frame(9, 0, 1, enc.encode([("x-drip-%d" % i, "v")])))
        except OSError:
            break
    if not rd.closed:
        wait_close(rd, res, t0 + a.timeout)
    res["seconds"] = round(time.monotonic() - t0, 2)


def case_quiet(a, sock, res, prefix):
    if prefix:
        sock.sendall(prefix)
    wait_close(Reader(sock), res, time.monotonic() + a.timeout)


def case_drain(a, sock, res):
    handshake(sock)
    enc = hpack.Encoder()
    sock.sendall(frame(1, END_HEADERS | END_STREAM, 1, req_block(enc, a)))
    open(a.ready, "w").close()
    rd = Reader(sock)
    res["streams"] = {}

    def on_frame(f):
        t, fl, sid, p = f
        st = res["streams"].setdefault(str(sid), {})
        if t == 1:
            for k, v in rd.fields(fl, p):
                if k == ":status":
                    st["status"] = int(v)
        elif t == 0:
            st["body"] = st.get("body", "") + p.decode("latin-1")
            if p:
                sock.sendall(frame(8, 0, 0, len(p).to_bytes(4, "big")))
        if t in (0, 1) and fl & END_STREAM:
            st["ended"] = True
        if t == 3:
            st["reset"] = int.from_bytes(p[:4], "big")
        if t == 7 and int.from_bytes(p[:4], "big") & 0x7FFFFFFF != 0x7FFFFFFF and "late_sent" not in res:
            # The final GOAWAY: a stream opened now is past its last-stream-id.
            res["late_sent"] = time.monotonic()
            try:
                sock.sendall(frame(1, END_HEADERS | END_STREAM, 3, req_block(enc, a, path="/after-goaway")))
            except OSError:
                pass
    wait_close(rd, res, time.monotonic() + a.timeout, on_frame)
    res.pop("late_sent", None)
    res["streams"].pop("0", None)


def case_no_read(a, sock, res):
    sock.sendall(PREFACE + frame(4, 0, 0, (4).to_bytes(2, "big") + (2 ** 31 - 1).to_bytes(4, "big"))
                 + frame(8, 0, 0, (2 ** 31 - 1 - 65535).to_bytes(4, "big")) + frame(4, ACK, 0))
    enc = hpack.Encoder()
    sock.sendall(frame(1, END_HEADERS | END_STREAM, 1, req_block(enc, a)))
    t0 = time.monotonic()
    while time.monotonic() - t0 < a.timeout and not os.path.exists(a.go):
        time.sleep(0.1)
    rd = Reader(sock)
    n = 0

    def on_frame(f):
        nonlocal n
        if f[0] == 0:
            n += len(f[3])
    wait_close(rd, res, time.monotonic() + a.timeout, on_frame)
    res["data_bytes"] = n


def exchange(a, sock, res, frames_after_headers, extra, want_interim=False):
    handshake(sock)
    enc = hpack.Encoder()
    sock.sendall(frame(1, END_HEADERS, 1, req_block(enc, a, "POST", extra=extra)))
    rd = Reader(sock)
    res["interim"], res["body"] = [], ""
    sent = [False]

    def send_rest():
        if not sent[0]:
            sent[0] = True
            sock.sendall(frames_after_headers(enc))

    if not want_interim:
        send_rest()
    deadline = time.monotonic() + a.timeout
    while True:
        f = rd.next(deadline)
        if f is None:
            break
        t, fl, sid, p = f
        if sid != 1:
            if t == 7:
                res["goaway"] = int.from_bytes(p[4:8], "big")
            elif t == 4 and not fl & ACK:
                pass
            continue
        if t == 1:
            hd = rd.fields(fl, p)
            st = dict(hd).get(":status")
            if st and int(st) < 200:
                res["interim"].append([int(st), hd])
                send_rest()
            elif st:
                res["status"], res["headers"] = int(st), hd
            else:
                res["trailers"] = hd
        elif t == 0:
            res["body"] += p.decode("latin-1")
            res["data_frames"] = res.get("data_frames", 0) + 1
        elif t == 3:
            res["reset"] = int.from_bytes(p[:4], "big")
            break
        if t in (0, 1) and fl & END_STREAM:
            res["ended"] = True
            break
    res["body_sent"] = sent[0]


def case_trailers(a, sock, res):
    extra = [("content-length", "11")] if a.variant == "cl" else []

    def rest(enc):
        return (frame(0, 0, 1, b"hello world") +
                frame(1, END_HEADERS | END_STREAM, 1,
                      enc.encode([("x-req-sum", "42"), ("x-auth-sub", "forged"), ("host", "evil.test")])))
    exchange(a, sock, res, rest, extra)


def case_expect(a, sock, res):
    def rest(enc):
        return frame(0, END_STREAM, 1, b"0123456789")
    exchange(a, sock, res, rest, [("content-length", "10"), ("expect", "100-continue")], want_interim=True)


def case_hints(a, sock, res):
    exchange(a, sock, res, lambda enc: frame(0, END_STREAM, 1, b""), [])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("case")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--drip", type=float, default=0)
    p.add_argument("--variant", default="")
    p.add_argument("--ready", default="/dev/null")
    p.add_argument("--go", default="/nonexistent")
    p.add_argument("--timeout", type=float, default=20)
    a = p.parse_args()
    sock = connect(a, rcvbuf=4096 if a.case == "no-read" else 0)
    res = {"closed": False}
    try:
        if a.case == "made-you-reset":
            case_made_you_reset(a, sock, res)
        elif a.case == "hblock-stall":
            case_hblock_stall(a, sock, res)
        elif a.case == "silent":
            case_quiet(a, sock, res, b"")
        elif a.case == "garbage":
            case_quiet(a, sock, res, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        elif a.case == "no-ack":
            case_quiet(a, sock, res, PREFACE + frame(4, 0, 0))
        elif a.case == "idle":
            case_quiet(a, sock, res, PREFACE + frame(4, 0, 0) + frame(4, ACK, 0))
        elif a.case == "drain":
            case_drain(a, sock, res)
        elif a.case == "no-read":
            case_no_read(a, sock, res)
        elif a.case == "trailers":
            case_trailers(a, sock, res)
        elif a.case == "hints":
            case_hints(a, sock, res)
        elif a.case == "expect":
            case_expect(a, sock, res)
        else:
            raise SystemExit("unknown case " + a.case)
    finally:
        sock.close()
    print(json.dumps(res))


if __name__ == "__main__":
    sys.exit(main())
