#!/usr/bin/env python3
"""Raw TLS record client for the alert tests: sends hand-made bytes and reports what the server
answered on the wire (alert level/description, or the first handshake message type).

  rawtls.py alert --port P --case NAME      sends case NAME, asserts the fatal alert it must get
  rawtls.py accept --port P --case NAME     sends case NAME, asserts a ServerHello comes back
  rawtls.py list                            prints the case names
  rawtls.py sni --port P --name-hex HEX     sends a TLS 1.2 hello whose host_name is the bytes
                                            HEX and prints "cert SUBJECT" (the served leaf) or
                                            "alert NAME"
"""
import argparse
import socket
import struct
import sys
import time

ALERTS = {"unexpected_message": 10, "record_overflow": 22, "handshake_failure": 40,
          "illegal_parameter": 47, "decode_error": 50, "protocol_version": 70,
          "unrecognized_name": 112}


def rec(ct, body, ver=0x0301):
    return struct.pack("!BHH", ct, ver, len(body)) + body


def vec(n, data):
    return len(data).to_bytes(n, "big") + data


def ext(t, data):
    return struct.pack("!HH", t, len(data)) + data


def sni_ext(list_body):
    return ext(0, vec(2, list_body))


def host(name):
    return b"\x00" + vec(2, name)


def hello(exts, suites=b"\xc0\x2f\xc0\x2b\x13\x01", version=0x0303):
    body = struct.pack("!H", version) + bytes(range(32)) + b"\x00" + vec(2, suites) + b"\x01\x00"
    if exts is not None:
        body += vec(2, exts)
    return b"\x01" + vec(3, body)


def common_exts(name=b"alerts.example.test", pad=0):
    e = sni_ext(host(name))
    e += ext(10, vec(2, b"\x00\x1d\x00\x17"))           # supported_groups: x25519, P-256
    e += ext(11, b"\x01\x00")                           # ec_point_formats
    e += ext(13, vec(2, b"\x04\x03\x08\x04\x04\x01"))   # signature_algorithms
    e += ext(0xff01, b"\x00")                           # renegotiation_info
    t = 21                                              # padding, then private-use types
    while pad > 0:
        n = min(pad, 40000)
        e += ext(t, b"\x00" * n)
        pad -= n
        t = 0xfe00 if t == 21 else t + 1
    return e


def frags(msg, size):
    return b"".join(rec(22, msg[i:i + size]) for i in range(0, len(msg), size))


def good(pad=0, name=b"alerts.example.test", extra=b""):
    return hello(common_exts(name, pad) + extra)


CASES = {
    # name: (bytes, expected alert or None for "accepted")
    "sni-nul": (rec(22, hello(sni_ext(host(b"a\x00b.example")))), "illegal_parameter"),
    "sni-bel": (rec(22, hello(sni_ext(host(b"a\x07b.example")))), "illegal_parameter"),
    "sni-esc": (rec(22, hello(sni_ext(host(b"\x1b[2Jx.example")))), "illegal_parameter"),
    "sni-utf8": (rec(22, hello(sni_ext(host("é.example".encode())))), "illegal_parameter"),
    "sni-space": (rec(22, hello(sni_ext(host(b"a b.example")))), "illegal_parameter"),
    # LDH bytes in a shape that is not a host name: a denied name, not a malformed hello
    # (docs/internal-ca.md, "Hostile names"): ServerHello with the default certificate
    "sni-ipv4": (rec(22, good(name=b"127.0.0.1")), None),
    "sni-trailing-dot": (rec(22, good(name=b"a.example.")), None),
    "sni-empty-list": (rec(22, hello(sni_ext(b""))), "illegal_parameter"),
    "sni-two-names": (rec(22, hello(sni_ext(host(b"a.example") + host(b"b.example")))),
                      "illegal_parameter"),
    "sni-list-overlong": (rec(22, hello(ext(0, b"\x00\x20" + host(b"a.example")))), "decode_error"),
    "sni-trailing-byte": (rec(22, hello(ext(0, vec(2, host(b"a.example") + b"\x00")))),
                          "decode_error"),
    "ext-overrun": (rec(22, hello(b"\x00\x17\x00\x05")), "decode_error"),
    "duplicate-ext": (rec(22, hello(ext(23, b"") + ext(23, b""))), "illegal_parameter"),
    "record-overflow": (struct.pack("!BHH", 22, 0x0301, 16385) + b"\x01" * 16385, "record_overflow"),
    "appdata-first": (rec(23, b"\x00" * 8), "unexpected_message"),
    "heartbeat-first": (rec(24, b"\x01\x00\x10" + b"\x00" * 16), "unexpected_message"),
    "not-client-hello": (rec(22, b"\x02\x00\x00\x00"), "unexpected_message"),
    "empty-hello": (rec(22, b"\x01\x00\x00\x00"), "decode_error"),
    "sslv2-hello": (b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10" + b"\x00" * 37, "protocol_version"),
    # 30 KB of cipher suites + 40 KB of padding: a message over the 64 KiB cap
    "hello-over-64k": (frags(hello(common_exts(pad=40000), suites=b"\x0a\x0a" * 15000), 16384),
                       "decode_error"),
    "plain-http": (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "unexpected_message"),
    # accepted by the peek, refused by GnuTLS: its alert, flushed before the close
    "no-common-suite": (rec(22, hello(common_exts(), suites=b"\x00\x05\x00\x0a")), "handshake_failure"),
    "tls10-only": (rec(22, hello(common_exts(), version=0x0301)), "protocol_version"),
    "bad-key-share": (rec(22, hello(common_exts() + ext(43, b"\x02\x03\x04") +
                                    ext(51, vec(2, b"\x00\x1d\x00\x20" + b"\x01" * 8)),
                                    suites=b"\x13\x01")), "decode_error"),
    # accepted
    "one-byte-records": (frags(good(), 1), None),
    "sixty-kib-hello": (frags(good(pad=60000), 16384), None),
    "sni-unknown-type-after-host": (rec(22, hello(
        sni_ext(host(b"alerts.example.test") + b"\x08" + vec(2, b"opaque")) +
        common_exts()[len(sni_ext(host(b"alerts.example.test"))):])), None),
    "unknown-groups": (rec(22, hello(sni_ext(host(b"alerts.example.test")) +
                                     ext(10, vec(2, b"\x7a\x7a\x11\xec\x00\x1d")) +
                                     common_exts()[len(sni_ext(host(b"alerts.example.test"))) + 10:])),
                       None),
}


def read_answer(sock, timeout):
    """Reads records until the first alert or handshake message, or until the peer closes."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if len(data) >= 5:
            ct, _, ln = struct.unpack("!BHH", data[:5])
            if len(data) >= 5 + min(ln, 2):
                if ct == 21 and len(data) >= 7:
                    return ("alert", data[5], data[6])
                if ct == 22 and len(data) >= 6:
                    return ("handshake", data[5], None)
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            return ("reset", None, None)
        if not chunk:
            return ("closed", data, None)
        data += chunk
    return ("timeout", data, None)


def run(port, name, timeout):
    payload, _ = CASES[name]
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if name == "one-byte-records":  # also over many TCP segments
            for i in range(0, len(payload), 6):
                sock.sendall(payload[i:i + 6])
        else:
            sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    ans = read_answer(sock, timeout)
    sock.close()
    return ans


def served_leaf(port, name, timeout):
    """Sends a TLS 1.2-only hello for host_name bytes name; returns ("cert", leaf DER) from the
    server's plaintext Certificate message, or ("alert", description) or (kind, None)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.settimeout(timeout)
    try:
        sock.sendall(rec(22, hello(common_exts(name))))
        data, hs = b"", b""
        deadline = time.time() + timeout
        while time.time() < deadline:
            while len(data) >= 5 and len(data) >= 5 + struct.unpack("!H", data[3:5])[0]:
                ct, ln = data[0], struct.unpack("!H", data[3:5])[0]
                body, data = data[5:5 + ln], data[5 + ln:]
                if ct == 21:
                    return ("alert", body[1] if len(body) > 1 else None)
                if ct != 22:
                    return ("record %d" % ct, None)
                hs += body
                while len(hs) >= 4 and len(hs) >= 4 + int.from_bytes(hs[1:4], "big"):
                    mt, ml = hs[0], int.from_bytes(hs[1:4], "big")
                    msg, hs = hs[4:4 + ml], hs[4 + ml:]
                    if mt == 11:  # Certificate: list<3>, first entry<3> is the leaf
                        return ("cert", msg[6:6 + int.from_bytes(msg[3:6], "big")])
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                return ("reset", None)
            if not chunk:
                return ("closed", None)
            data += chunk
        return ("timeout", None)
    finally:
        sock.close()


def main_sni(a):
    kind, x = served_leaf(a.port, bytes.fromhex(a.name_hex), a.timeout)
    if kind == "cert":
        from cryptography import x509
        print("cert " + x509.load_der_x509_certificate(x).subject.rfc4514_string())
    elif kind == "alert":
        names = {v: k for k, v in ALERTS.items()}
        print("alert " + names.get(x, str(x)))
    else:
        print(kind)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["alert", "accept", "list", "sni"])
    ap.add_argument("--name-hex")
    ap.add_argument("--port", type=int)
    ap.add_argument("--case")
    ap.add_argument("--timeout", type=float, default=30.0)
    a = ap.parse_args()
    if a.cmd == "list":
        for k, (_, want) in CASES.items():
            print(k, want or "accept")
        return
    if a.cmd == "sni":
        main_sni(a)
        return
    _, want = CASES[a.case]
    kind, x, y = run(a.port, a.case, a.timeout)
    if a.cmd == "alert":
        if kind != "alert" or x != 2 or y != ALERTS[want]:
            sys.exit("%s: want fatal %s (%d), got %s %r %r" % (a.case, want, ALERTS[want], kind, x, y))
    else:
        if kind != "handshake" or x != 2:
            sys.exit("%s: want a ServerHello, got %s %r %r" % (a.case, kind, x, y))
    print("%s: ok (%s)" % (a.case, want or "ServerHello"))


if __name__ == "__main__":
    main()
