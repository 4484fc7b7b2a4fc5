#!/usr/bin/env python3
"""Hand-driven TLS clients for the TLS front-end integration tests (loopback only).

  slowhello --port P --sni NAME [--expect-cert PEM]
      Generates a real ClientHello (ssl.MemoryBIO), sends it one byte per TCP segment, then
      finishes the handshake; with --expect-cert the served leaf must equal the PEM's first cert.
  garbage --port P [--wait S]
      Sends non-TLS bytes; exit 0 when the server closes the connection within S seconds.
  stall --port P --min S1 --max S2
      Sends the first bytes of a ClientHello and stops; exit 0 when the server closes between
      S1 and S2 seconds later (handshake timeout).
  hold --port P --sni NAME --go-file F [--cert-out FILE] [--wait S]
      Handshakes, writes the leaf (PEM) to FILE, waits until F exists, then sends an HTTP
      request on the same connection; exit 0 when an HTTP response comes back.
Exit status 0 = expectation met, 1 = not met (reason on stderr).
"""
import argparse
import hashlib
import os
import socket
import ssl
import sys
import time


def fail(msg):
    print("tlsclient: " + msg, file=sys.stderr)
    sys.exit(1)


def connect(port, timeout=10.0):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def pump_handshake(sock, obj, inc, out, first_flight_slow):
    """Drives obj's handshake over sock; the first flight goes out one byte at a time."""
    first = True
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        if data:
            if first and first_flight_slow:
                for i in range(len(data)):
                    sock.sendall(data[i:i + 1])
                    time.sleep(0.0005)  # many TCP reads, well inside the 2 s handshake timeout
            else:
                sock.sendall(data)
            first = False
        if done:
            return
        chunk = sock.recv(65536)
        if not chunk:
            fail("server closed during the handshake")
        inc.write(chunk)


def leaf_pem(obj):
    der = obj.getpeercert(binary_form=True)
    if not der:
        fail("no peer certificate")
    return ssl.DER_cert_to_PEM_cert(der)


def first_pem_der(path):
    with open(path) as f:
        text = f.read()
    start = text.index("-----BEGIN CERTIFICATE-----")
    end = text.index("-----END CERTIFICATE-----", start) + len("-----END CERTIFICATE-----")
    return ssl.PEM_cert_to_DER_cert(text[start:end])


def tls_over(sock, sni, slow):
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = client_ctx().wrap_bio(inc, out, server_hostname=sni)
    pump_handshake(sock, obj, inc, out, slow)
    return obj, inc, out


def http_exchange(sock, obj, inc, out, host, timeout):
    obj.write(("GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host).encode())
    sock.sendall(out.read())
    resp = b""
    deadline = time.time() + timeout
    while time.time() < deadline and b"\r\n" not in resp:
        try:
            resp += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            break
        chunk = sock.recv(65536)
        if not chunk:
            break
        inc.write(chunk)
    return resp


def cmd_slowhello(a):
    sock = connect(a.port)
    obj, _, _ = tls_over(sock, a.sni, True)
    if a.expect_cert:
        der = obj.getpeercert(binary_form=True)
        if der != first_pem_der(a.expect_cert):
            fail("served certificate differs from " + a.expect_cert)
    print("ok %s %s %s" % (obj.version(), obj.cipher()[0],
                           hashlib.sha256(obj.getpeercert(binary_form=True)).hexdigest()[:16]))
    sock.close()


def wait_closed(sock, secs):
    sock.settimeout(secs)
    try:
        while True:
            data = sock.recv(4096)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def cmd_garbage(a):
    sock = connect(a.port)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
    if not wait_closed(sock, a.wait):
        fail("connection with garbage bytes was not closed within %.1f s" % a.wait)
    print("closed")


def cmd_stall(a):
    sock = connect(a.port)
    t0 = time.time()
    sock.sendall(b"\x16\x03\x01\x01\x00\x01\x00")
    if not wait_closed(sock, a.max):
        fail("stalled ClientHello not closed within %.1f s" % a.max)
    took = time.time() - t0
    if took < a.min:
        fail("stalled ClientHello closed after %.2f s, before the %.1f s timeout" % (took, a.min))
    print("closed after %.2f s" % took)


def cmd_hold(a):
    sock = connect(a.port, timeout=a.wait + 10)
    obj, inc, out = tls_over(sock, a.sni, False)
    if a.cert_out:
        with open(a.cert_out + ".tmp", "w") as f:
            f.write(leaf_pem(obj))
        os.rename(a.cert_out + ".tmp", a.cert_out)
    deadline = time.time() + a.wait
    while not os.path.exists(a.go_file):
        if time.time() > deadline:
            fail("go file never appeared")
        time.sleep(0.1)
    resp = http_exchange(sock, obj, inc, out, a.sni, 10)
    line = resp.split(b"\r\n", 1)[0].decode(errors="replace")
    if not line.startswith("HTTP/1.1 "):
        fail("no HTTP response on the held connection (got %r)" % resp[:80])
    print(line)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("slowhello")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--sni", required=True)
    s.add_argument("--expect-cert")
    g = sub.add_parser("garbage")
    g.add_argument("--port", type=int, required=True)
    g.add_argument("--wait", type=float, default=5.0)
    st = sub.add_parser("stall")
    st.add_argument("--port", type=int, required=True)
    st.add_argument("--min", type=float, default=0.0)
    st.add_argument("--max", type=float, default=10.0)
    h = sub.add_parser("hold")
    h.add_argument("--port", type=int, required=True)
    h.add_argument("--sni", required=True)
    h.add_argument("--go-file", required=True)
    h.add_argument("--cert-out")
    h.add_argument("--wait", type=float, default=60.0)
    a = p.parse_args()
    {"slowhello": cmd_slowhello, "garbage": cmd_garbage, "stall": cmd_stall, "hold": cmd_hold}[a.cmd](a)


if __name__ == "__main__":
    main()
