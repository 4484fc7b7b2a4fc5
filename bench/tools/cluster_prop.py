#!/usr/bin/env python3
"""Propagation latency between acmedge instances on one Redis (used by bench/cluster.sh).

commit: for each name, a new certificate is committed into Redis with `acmedge storage copy`
(the same commit script an issuing instance runs: bundle write, generation bump, PUBLISH); t0 is
the moment this script's own subscriber receives the `cert` message; each instance is polled with
TLS handshakes (SNI = name) until it serves the new leaf.
delete: `DELETE /v1/domains/{name}` on the first instance; t0 is the `del` message; the other
instances are polled until they no longer serve either version of the name.
Prints one line per sample: "kind=commit inst=B name=... ms=12.3" ("never": not within --timeout),
and the failed handshakes per instance. Samples are taken one name at a time, so a poll round is
one handshake per instance (a few ms of resolution); the subscriber may timestamp a message a
little after an instance already swapped, so a sample can be slightly negative.
"""
import argparse
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request

CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def leaf(port, name):
    """DER of the leaf served for name, or None when the handshake fails."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with CTX.wrap_socket(s, server_hostname=name) as t:
                return t.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None


def der_of(pem_path):
    text = open(pem_path).read()
    first = text[: text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")]
    return ssl.PEM_cert_to_DER_cert(first)


class Sub(threading.Thread):
    """Minimal RESP subscriber: records the arrival time of every 'cert'/'del' message."""

    def __init__(self, port, channel):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=None)
        ch = channel.encode()
        self.sock.sendall(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(ch), ch))
        self.f = self.sock.makefile("rb")
        self.seen = {}
        self.cv = threading.Condition()
        self.read_reply()  # the subscribe confirmation

    def read_reply(self):
        line = self.f.readline()
        if not line:
            raise EOFError("redis closed the subscriber connection")
        kind, rest = line[:1], line[1:].strip()
        if kind == b"*":
            return [self.read_reply() for _ in range(int(rest))]
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.f.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b":":
            return int(rest)
        return rest.decode(errors="replace")

    def run(self):
        while True:
            try:
                r = self.read_reply()
            except (EOFError, OSError):
                return
            now = time.monotonic()
            if isinstance(r, list) and len(r) == 3 and r[0] == "message":
                parts = r[2].split()
                if len(parts) >= 3 and parts[0] in ("cert", "del"):
                    with self.cv:
                        self.seen.setdefault((parts[0], parts[2]), now)
                        self.cv.notify_all()

    def wait(self, kind, name, timeout):
        end = time.monotonic() + timeout
        with self.cv:
            while (kind, name) not in self.seen:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self.cv.wait(left)
            return self.seen[(kind, name)]


def poll(insts, name, done, deadline, fails):
    """Handshakes round-robin until done(der) holds on every instance; {inst: monotonic time}."""
    got = {}
    while len(got) < len(insts) and time.monotonic() < deadline:
        for label, port in insts:
            if label in got:
                continue
            der = leaf(port, name)
            if der is None:
                fails[label] = fails.get(label, 0) + 1
                continue
            if done(der):
                got[label] = time.monotonic()
        time.sleep(0.002)
    return got


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--channel", default="acmedge{ns}:ev")
    ap.add_argument("--inst", action="append", required=True, help="LABEL:HTTPS_PORT:ADMIN_PORT")
    ap.add_argument("--names", required=True, help="file: NAME V1_CERT_PEM V2_CERT_PEM FROM_CONFIG")
    ap.add_argument("--to", required=True, help="the Redis config for acmedge storage copy")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    # The subscriber thread timestamps messages: let it run soon after its read returns, not
    # after the polling thread's 5 ms GIL slice.
    sys.setswitchinterval(0.0002)
    insts = [(i.split(":")[0], int(i.split(":")[1])) for i in a.inst]
    admin = int(a.inst[0].split(":")[2])
    rows = [l.split() for l in open(a.names) if l.strip()]
    sub = Sub(a.redis_port, a.channel)
    sub.start()

    # Every instance holds every name (v1) before anything changes.
    for name, v1, _, _ in rows:
        want = der_of(v1)
        got = poll(insts, name, lambda d, w=want: d == w, time.monotonic() + 30, {})
        if len(got) != len(insts):
            print(f"error: {name}: not every instance serves the stored certificate", file=sys.stderr)
            return 1

    fails = {}
    for name, v1, v2, cfg in rows:
        new = der_of(v2)
        p = subprocess.Popen([a.bin, "storage", "copy", "--from", cfg, "--to", a.to],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        got = poll(insts, name, lambda d: d == new, time.monotonic() + a.timeout, fails)
        _, err = p.communicate(timeout=60)
        t0 = sub.wait("cert", name, 5)
        if p.returncode != 0 or t0 is None:
            print(f"error: {name}: copy exit {p.returncode}, message {'seen' if t0 else 'missing'}: "
                  f"{err.decode(errors='replace').strip()[-300:]}", file=sys.stderr)
            return 1
        for label, _ in insts:
            ms = f"{(got[label] - t0) * 1000:.1f}" if label in got else "never"
            print(f"kind=commit inst={label} name={name} ms={ms}", flush=True)

    old = {name: (der_of(v1), der_of(v2)) for name, v1, v2, _ in rows}
    others = insts[1:]
    for name, _, _, _ in rows:
        t_req = time.monotonic()
        req = urllib.request.Request(f"http://127.0.0.1:{admin}/v1/domains/{name}", method="DELETE")
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.status != 200:
                print(f"error: DELETE {name} answered {r.status}", file=sys.stderr)
                return 1
        t_ans = time.monotonic()
        got = poll(others, name, lambda d, o=old[name]: d not in o, time.monotonic() + a.timeout, fails)
        t0 = sub.wait("del", name, 5)
        if t0 is None:
            print(f"error: no del message for {name}", file=sys.stderr)
            return 1
        for label, _ in others:
            ms = f"{(got[label] - t0) * 1000:.1f}" if label in got else "never"
            ans = f"{(got[label] - t_ans) * 1000:.1f}" if label in got else "never"
            print(f"kind=delete inst={label} name={name} ms={ms} from_answer_ms={ans} "
                  f"delete_call_ms={(t_ans - t_req) * 1000:.1f}", flush=True)
    for label, _ in insts:
        print(f"kind=failed inst={label} n={fails.get(label, 0)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
