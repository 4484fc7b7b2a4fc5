#!/usr/bin/python3
"""HTTP/2 test client over TLS (python3-h2 / hyperframe from /usr/bin/python3) for the h2 tests.

  h2_client.py request --port P --sni NAME [--authority A] [--method M] [--path P]
      [--header name:value]... [--body N] [--no-end] [--rst-after-body]
      [--timeout S]
    Sends one request with outbound header validation off (so malformed fields go out as
    given), optional body of N bytes,
    and prints one JSON line: status, headers, body_len, reset (error code of a RST_STREAM
    from the server), goaway (error code), closed (the server closed the connection).

  h2_client.py attack --port P --sni NAME --case CASE [--count N] [--timeout S]
    Scripted raw-frame abuse against one connection; prints JSON with what the server did
    (goaway code, frames seen before the close, seconds to the close).

Every loop is bounded by --timeout."""

import argparse
import json
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame as hf


def connect(port, sni, timeout, small_rcvbuf=False):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if small_rcvbuf:
        # A client that never reads: keep the kernel from absorbing the server's answers.
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.settimeout(timeout)
    raw.connect(("127.0.0.1", port))
    s = ctx.wrap_socket(raw, server_hostname=sni)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit("ALPN did not select h2: %r" % s.selected_alpn_protocol())
    return s


def new_conn():
    cfg = h2.config.H2Configuration(client_side=True, validate_outbound_headers=False,
                                    normalize_outbound_headers=False, validate_inbound_headers=False,
                                    header_encoding=None)
    c = h2.connection.H2Connection(config=cfg)
    c.initiate_connection()
    return c


def pump(sock, conn, res, deadline, stop):
    """Reads and handles events until stop(res) or the deadline or the close."""
    while not stop(res) and time.monotonic() < deadline:
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                res["closed"] = True
                return
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            res["closed"] = True
            return
        if not data:
            res["closed"] = True
            return
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            res["client_error"] = str(e)
            return
        for ev in events:
            if isinstance(ev, h2.events.ResponseReceived):
                hd = [(k.decode(), v.decode()) for k, v in ev.headers]
                res["status"] = int(dict(hd)[":status"])
                res["headers"] = hd
                if ev.stream_ended:
                    res["ended"] = True
            elif isinstance(ev, h2.events.TrailersReceived):
                res["trailers"] = [(k.decode(), v.decode()) for k, v in ev.headers]
            elif isinstance(ev, h2.events.DataReceived):
                res["body_len"] = res.get("body_len", 0) + len(ev.data)
                res["data_frames"] = res.get("data_frames", 0) + 1
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                res["ended"] = True
            elif isinstance(ev, h2.events.StreamReset):
                res["reset"] = int(ev.error_code)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                res["goaway"] = int(ev.error_code)
        out = conn.data_to_send()
        if out:
            try:
                sock.sendall(out)
            except OSError:
                res["closed"] = True
                return


def cmd_request(a):
    sock = connect(a.port, a.sni, a.timeout)
    conn = new_conn()
    esc = lambda x: x.encode("latin-1").decode("unicode_escape")
    hdrs = [(":method", esc(a.method)), (":scheme", "https"), (":authority", a.authority or a.sni),
            (":path", esc(a.path))]
    for h in a.header:
        # name:value, a leading ':' belongs to the name; Python escapes (\r, \x00) allowed.
        i = h.index(":", 1)
        k, v = (x.encode("latin-1").decode("unicode_escape") for x in (h[:i], h[i + 1:]))
        hdrs.append((k, v))
    body = b"x" * a.body
    end_on_headers = not body and not a.no_end
    # Raw HEADERS so that pseudo-header order and names are exactly as given.
    conn.send_headers(1, [(k.encode("latin-1"), v.encode("latin-1")) for k, v in hdrs],
                      end_stream=end_on_headers)
    t_end = time.monotonic() + a.timeout
    if body:
        off = 0
        while off < len(body):
            n = min(16384, len(body) - off, conn.local_flow_control_window(1))
            if n <= 0:
                # Wait for WINDOW_UPDATE (bounded by --timeout overall).
                if time.monotonic() > t_end:
                    raise SystemExit("flow-control window never reopened")
                sock.settimeout(1)
                try:
                    d = sock.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    break
                conn.receive_data(d)
                out = conn.data_to_send()
                if out:
                    sock.sendall(out)
                continue
            last = off + n == len(body)
            conn.send_data(1, body[off:off + n], end_stream=last and not a.no_end and not a.rst_after_body)
            off += n
            sock.sendall(conn.data_to_send())
    if a.rst_after_body:
        conn.reset_stream(1, error_code=8)
    res = {"closed": False}
    if a.rst_after_body:
        pump(sock, conn, res, time.monotonic() + 0.5, lambda r: "goaway" in r)
    else:
        pump(sock, conn, res, time.monotonic() + a.timeout,
             lambda r: r.get("ended") or "reset" in r or "goaway" in r)
    sock.close()
    print(json.dumps(res))


def frame(ftype, flags, sid, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + sid.to_bytes(4, "big") + payload


PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def hpack_req(sni, path="/", extra=()):
    import hpack
    enc = hpack.Encoder()
    return enc.encode([(":method", "GET"), (":scheme", "https"), (":authority", sni), (":path", path)] + list(extra))


def watch(sock, res, deadline):
    """Reads frames until the close or the deadline; records GOAWAY and RST counts."""
    buf = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        except OSError:
            res["closed"] = True
            return
        if not d:
            res["closed"] = True
            return
        buf += d
        while len(buf) >= 9:
            ln = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + ln:
                break
            t = buf[3]
            p = buf[9:9 + ln]
            buf = buf[9 + ln:]
            if t == 7:
                res["goaway"] = int.from_bytes(p[4:8], "big")
            elif t == 3:
                res["rst"] = res.get("rst", 0) + 1
            elif t == 1:
                res["headers"] = res.get("headers", 0) + 1


def cmd_attack(a):
    sock = connect(a.port, a.sni, a.timeout, small_rcvbuf=a.case in ("ping-flood", "settings-flood"))
    res = {"closed": False}
    t0 = time.monotonic()
    out = [PREFACE, frame(4, 0, 0), frame(4, 1, 0)]
    sent = 0
    try:
        sock.sendall(b"".join(out))
        if a.case == "rapid-reset":
            blk = hpack_req(a.sni, "/rr")
            for i in range(a.count):
                sid = 1 + 2 * i
                sock.sendall(frame(1, 0x4, sid, blk) + frame(3, 0, sid, (8).to_bytes(4, "big")))
                sent += 1
        elif a.case == "continuation":
            blk = hpack_req(a.sni, "/cont")
            sock.sendall(frame(1, 0, 1, blk))
            for i in range(a.count):
                sock.sendall(frame(9, 0, 1, b"\x40\x01a\x01b"))
                sent += 1
        elif a.case == "empty-data":
            blk = hpack_req(a.sni, "/empty")
            sock.sendall(frame(1, 0x4, 1, blk))
            for i in range(a.count):
                sock.sendall(frame(0, 0, 1))
                sent += 1
        elif a.case == "ping-flood":
            for i in range(a.count):
                sock.sendall(frame(6, 0, 0, i.to_bytes(8, "big")))
                sent += 1
        elif a.case == "settings-flood":
            for i in range(a.count):
                sock.sendall(frame(4, 0, 0))
                sent += 1
        else:
            raise SystemExit("unknown case " + a.case)
    except (OSError, socket.timeout):
        res["closed"] = True
    res["sent"] = sent
    if not res["closed"]:
        watch(sock, res, time.monotonic() + a.timeout)
    res["seconds"] = round(time.monotonic() - t0, 2)
    sock.close()
    print(json.dumps(res))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("request")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--sni", required=True)
    r.add_argument("--authority")
    r.add_argument("--method", default="GET")
    r.add_argument("--path", default="/")
    r.add_argument("--header", action="append", default=[])
    r.add_argument("--body", type=int, default=0)
    r.add_argument("--no-end", action="store_true")
    r.add_argument("--rst-after-body", action="store_true")
    r.add_argument("--timeout", type=float, default=10)
    t = sub.add_parser("attack")
    t.add_argument("--port", type=int, required=True)
    t.add_argument("--sni", required=True)
    t.add_argument("--case", required=True)
    t.add_argument("--count", type=int, default=1000)
    t.add_argument("--timeout", type=float, default=10)
    a = p.parse_args()
    {"request": cmd_request, "attack": cmd_attack}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
