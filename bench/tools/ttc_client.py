#!/usr/bin/env python3
"""Time-to-certificate client for bench/ttc.sh.

For every name (all names started together, one thread each) it handshakes with 127.0.0.1:PORT using
SNI = name, verifying the served chain against the CA root and the name. A handshake that does not
verify (for example a default certificate) is retried every INTERVAL seconds. The time to certificate
of a name is the time from its first connection attempt (its first ClientHello) to the end of its
first verifying handshake. A name that has not verified after TIMEOUT seconds is a failure.

Output: one line per name ("ttc NAME SECONDS ATTEMPTS" or "fail NAME ATTEMPTS REASON") on stdout,
then one summary line:
    summary names=N ok=K failures=F median=S p90=S max=S
(seconds, "-" when no name succeeded).
"""

import argparse
import math
import socket
import ssl
import sys
import threading
import time


def measure(name, port, ctx, interval, timeout, start_barrier, out, idx):
    start_barrier.wait()
    t0 = time.monotonic()
    deadline = t0 + timeout
    attempts = 0
    last_err = "no attempt"
    while True:
        now = time.monotonic()
        if now >= deadline:
            out[idx] = (name, None, attempts, last_err)
            return
        attempts += 1
        sock = None
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=deadline - now)
            # The server may hold the handshake until issuance; the deadline bounds it.
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            with ctx.wrap_socket(sock, server_hostname=name) as tls:
                sock = None
                tls.do_handshake()
            out[idx] = (name, time.monotonic() - t0, attempts, None)
            return
        except ssl.SSLCertVerificationError as e:
            last_err = "verify: " + str(e.verify_message)
        except (OSError, ssl.SSLError) as e:
            last_err = type(e).__name__ + ": " + str(e)
        finally:
            if sock is not None:
                sock.close()
        left = deadline - time.monotonic()
        if left > 0:
            time.sleep(min(interval, left))


def percentile(sorted_vals, q):
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, math.ceil(q * len(sorted_vals)))
    return sorted_vals[rank - 1]


def median(sorted_vals):
    n = len(sorted_vals)
    mid = n // 2
    if n % 2:
        return sorted_vals[mid]
    return (sorted_vals[mid - 1] + sorted_vals[mid]) / 2


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ca", required=True, help="PEM file of the trusted root")
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("names", nargs="+")
    args = ap.parse_args()

    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.check_hostname = True
    ctx.verify_mode = ssl.CERT_REQUIRED

    n = len(args.names)
    out = [None] * n
    barrier = threading.Barrier(n)
    threads = []
    for i, name in enumerate(args.names):
        th = threading.Thread(target=measure, daemon=True,
                              args=(name, args.port, ctx, args.interval, args.timeout, barrier, out, i))
        th.start()
        threads.append(th)
    for th in threads:
        th.join(args.timeout + 30)

    times = []
    failures = 0
    for i, res in enumerate(out):
        if res is None:
            print("fail %s 0 thread did not finish" % args.names[i])
            failures += 1
            continue
        name, ttc, attempts, err = res
        if ttc is None:
            print("fail %s %d %s" % (name, attempts, err))
            failures += 1
        else:
            print("ttc %s %.3f %d" % (name, ttc, attempts))
            times.append(ttc)
    times.sort()
    if times:
        stats = "median=%.3f p90=%.3f max=%.3f" % (median(times), percentile(times, 0.9), times[-1])
    else:
        stats = "median=- p90=- max=-"
    print("summary names=%d ok=%d failures=%d %s" % (n, len(times), failures, stats))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
