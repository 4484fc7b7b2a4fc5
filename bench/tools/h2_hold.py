#!/usr/bin/python3
"""Open-but-quiet HTTP/2 load for bench/h2.sh's memory figures (loopback only).

  h2_hold.py idle --port P --sni NAME --count N --path PATH --ready FILE --hold S
    N HTTP/2 connections over TLS, one complete GET of PATH on each, then held idle.
  h2_hold.py streams --port P --sni NAME --conns C --streams K --path PATH --ready FILE --hold S
    C connections with K GET streams each that the upstream never answers, held open.
  h2_hold.py upstream --port P --count-file FILE --hold S
    HTTP/1.1 upstream that reads each request head, counts it (FILE holds the running count)
    and never answers; the connection stays open until the peer closes it.

The clients write "ready" to FILE once everything is sent, then sleep up to S seconds (they end
earlier on SIGTERM). Every wait is bounded."""

import argparse
import os
import selectors
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def tls(port, sni):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=30)
    s = ctx.wrap_socket(raw, server_hostname=sni)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit("ALPN did not select h2")
    return s


def h2conn():
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True, header_encoding=None))
    c.initiate_connection()
    # Large windows, so that the server never waits for a WINDOW_UPDATE from a quiet client.
    c.increment_flow_control_window(1 << 24)
    return c


def headers(a, path):
    return [(":method", "GET"), (":scheme", "https"), (":authority", a.sni), (":path", path)]


def drain(s, c):
    out = c.data_to_send()
    if out:
        s.sendall(out)


def one_get(s, c, a, deadline):
    c.send_headers(1, headers(a, a.path), end_stream=True)
    drain(s, c)
    while time.monotonic() < deadline:
        d = s.recv(65536)
        if not d:
            raise SystemExit("server closed the connection before answering")
        for ev in c.receive_data(d):
            if isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                drain(s, c)
                return
            elif isinstance(ev, h2.events.StreamReset):
                raise SystemExit("stream reset by the server")
        drain(s, c)
    raise SystemExit("no answer within the deadline")


def hold(a, socks):
    with open(a.ready, "w") as f:
        f.write("ready %d\n" % len(socks))
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        time.sleep(0.5)


def cmd_idle(a):
    socks = []
    for i in range(a.count):
        try:
            s = tls(a.port, a.sni)
            c = h2conn()
            one_get(s, c, a, time.monotonic() + 30)
        except (OSError, SystemExit) as e:
            raise SystemExit("connection %d of %d: %s" % (i + 1, a.count, e))
        socks.append((s, c))
    hold(a, socks)


def cmd_streams(a):
    socks = []
    for _ in range(a.conns):
        s = tls(a.port, a.sni)
        c = h2conn()
        c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
        # Wait for the server's SETTINGS (its MAX_CONCURRENT_STREAMS) before opening streams.
        end = time.monotonic() + 30
        while c.remote_settings.max_concurrent_streams > 10000 and time.monotonic() < end:
            drain(s, c)
            d = s.recv(65536)
            if not d:
                raise SystemExit("server closed the connection")
            c.receive_data(d)
        drain(s, c)
        for i in range(a.streams):
            c.send_headers(1 + 2 * i, headers(a, a.path), end_stream=True)
        drain(s, c)
        s.setblocking(False)
        socks.append((s, c))
    hold(a, socks)


def cmd_upstream(a):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", a.port))
    srv.listen(4096)
    srv.setblocking(False)
    sel = selectors.DefaultSelector()
    sel.register(srv, selectors.EVENT_READ, None)
    bufs = {}
    count = 0
    last = -1
    end = time.monotonic() + a.hold
    while time.monotonic() < end:
        for key, _ in sel.select(0.2):
            if key.data is None:
                try:
                    while True:
                        conn, _ = srv.accept()
                        conn.setblocking(False)
                        bufs[conn] = b""
                        sel.register(conn, selectors.EVENT_READ, True)
                except BlockingIOError:
                    pass
                continue
            conn = key.fileobj
            try:
                d = conn.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                d = b""
            if not d:
                sel.unregister(conn)
                bufs.pop(conn, None)
                conn.close()
                continue
            bufs[conn] += d
            while b"\r\n\r\n" in bufs[conn]:
                bufs[conn] = bufs[conn].split(b"\r\n\r\n", 1)[1]
                count += 1
        if count != last:
            with open(a.count_file + ".tmp", "w") as f:
                f.write("%d\n" % count)
            os.replace(a.count_file + ".tmp", a.count_file)
            last = count


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("idle", "streams"):
        q = sub.add_parser(name)
        q.add_argument("--port", type=int, required=True)
        q.add_argument("--sni", required=True)
        q.add_argument("--path", default="/")
        q.add_argument("--ready", required=True)
        q.add_argument("--hold", type=float, default=60)
        q.add_argument("--count", type=int, default=1000)
        q.add_argument("--conns", type=int, default=100)
        q.add_argument("--streams", type=int, default=100)
    u = sub.add_parser("upstream")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--count-file", required=True)
    u.add_argument("--hold", type=float, default=3600)
    a = p.parse_args()
    {"idle": cmd_idle, "streams": cmd_streams, "upstream": cmd_upstream}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
