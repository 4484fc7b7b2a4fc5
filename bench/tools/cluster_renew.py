#!/usr/bin/env python3
"""Propagation of renewals issued by an instance itself (used by bench/cluster.sh).

Instance A issues its names from the internal CA; every renewal is forced through A's admin API
(POST /v1/domains/{name}/renew): A mints, commits (lock, fenced commit script, PUBLISH). t0 is the
moment this script's own subscriber receives A's `cert` message for the new version; each
receiver is polled with TLS handshakes (SNI = name) until it serves a leaf other than the one it
served before (and other than the default certificate). Renewals run one at a time, names in
turn, --rounds renewals per name.
Prints "kind=renew inst=B name=... ver=V ms=.. issue_ms=.." per sample (issue_ms: from the POST
to the PUBLISH, i.e. A's own mint and commit; ms "never" when not within --timeout) and
"kind=failed inst=B n=N": handshakes that did not complete during the swaps.
"""
import argparse
import sys
import time
import urllib.error
import urllib.request

from cluster_prop import Sub, leaf, poll


class VerSub(Sub):
    """The subscriber, keeping the arrival time of every version of every name."""

    def __init__(self, port, channel):
        super().__init__(port, channel)
        self.versions = {}

    def run(self):
        while True:
            try:
                r = self.read_reply()
            except (EOFError, OSError):
                return
            now = time.monotonic()
            if isinstance(r, list) and len(r) == 3 and r[0] == "message":
                p = r[2].split()
                if len(p) >= 4 and p[0] == "cert":
                    with self.cv:
                        self.versions.setdefault((p[2], int(p[3])), now)
                        self.cv.notify_all()


def served(inst, name, default, deadline):
    """Waits until the one instance inst serves name a leaf other than the default; its DER."""
    seen = []
    poll([inst], name, lambda d: d != default and not seen.append(d), deadline, {})
    return seen[-1] if seen else None


def renew(admin, name, deadline):
    """POST renew until accepted (409/503: an earlier renewal or a read still running)."""
    while True:
        req = urllib.request.Request(f"http://127.0.0.1:{admin}/v1/domains/{name}/renew", data=b"",
                                     method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                if r.status in (200, 202):
                    return True
        except urllib.error.HTTPError as e:
            if e.code not in (409, 503) or time.monotonic() > deadline:
                print(f"error: renew {name}: {e.code} {e.read()[:200]!r}", file=sys.stderr)
                return False
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--channel", default="acmedge{ns}:ev")
    ap.add_argument("--issuer", required=True, help="LABEL:HTTPS_PORT:ADMIN_PORT of instance A")
    ap.add_argument("--inst", action="append", required=True, help="LABEL:HTTPS_PORT of a receiver")
    ap.add_argument("--names", required=True, help="file: one name per line")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    sys.setswitchinterval(0.0002)
    ilabel, iport, iadmin = a.issuer.split(":")
    issuer = [(ilabel, int(iport))]
    insts = [(i.split(":")[0], int(i.split(":")[1])) for i in a.inst]
    names = [l.strip() for l in open(a.names) if l.strip()]
    # A name no instance may issue gets the default certificate.
    default = leaf(issuer[0][1], "not-allowed.invalid")
    if default is None:
        print("error: no default certificate from A", file=sys.stderr)
        return 1
    sub = VerSub(a.redis_port, a.channel)
    sub.start()
    versions = sub.versions

    def wait_ver(name, ver, timeout):
        end = time.monotonic() + timeout
        with sub.cv:
            while (name, ver) not in versions:
                left = end - time.monotonic()
                if left <= 0:
                    return None
                sub.cv.wait(left)
            return versions[(name, ver)]

    # A issues each name (first handshake), then every receiver serves it.
    cur = {}
    for name in names:
        der = served(issuer[0], name, default, time.monotonic() + 30)
        if der is None:
            print(f"error: A never served {name}", file=sys.stderr)
            return 1
        got = poll(insts, name, lambda d, w=der: d == w, time.monotonic() + 30, {})
        if len(got) != len(insts):
            print(f"error: {name}: not every receiver serves A's certificate", file=sys.stderr)
            return 1
        cur[name] = der
    ver = {}
    for name in names:
        with sub.cv:
            seen = [v for (n, v) in versions if n == name]
        ver[name] = max(seen) if seen else 1

    fails = {}
    for _ in range(a.rounds):
        for name in names:
            old = cur[name]
            t_post = time.monotonic()
            if not renew(int(iadmin), name, t_post + a.timeout):
                return 1
            got = poll(insts, name, lambda d, o=old: d != o and d != default, time.monotonic() + a.timeout, fails)
            t0 = wait_ver(name, ver[name] + 1, 5)
            if t0 is None:
                print(f"error: no cert message for {name} version {ver[name] + 1}", file=sys.stderr)
                return 1
            ver[name] += 1
            news = {leaf(p, name) for _, p in insts + issuer}
            if len(news) != 1:
                print(f"error: {name}: A and the receivers serve different certificates after the renewal",
                      file=sys.stderr)
                return 1
            cur[name] = news.pop()
            for label, _ in insts:
                ms = f"{(got[label] - t0) * 1000:.1f}" if label in got else "never"
                print(f"kind=renew inst={label} name={name} ver={ver[name]} ms={ms} "
                      f"issue_ms={(t0 - t_post) * 1000:.1f}", flush=True)
    for label, _ in insts:
        print(f"kind=renewfail inst={label} n={fails.get(label, 0)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
