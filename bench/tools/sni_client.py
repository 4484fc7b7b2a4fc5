#!/usr/bin/env python3
"""TLS handshake client for bench/memory.sh and bench/abuse.sh (127.0.0.1 only).

Two modes, both with THREADS threads doing one full handshake per connection (no resumption,
no application data), then closing:

  --names FILE --ca CA   every name of FILE exactly once; the chain must verify against CA and
                         match the name (so a server that answers with some other certificate
                         counts as a failure).
  --random SUFFIX        fresh random names RANDOM12.SUFFIX, each used once, no verification;
                         stops after --max handshakes or --secs seconds, whichever comes first.
                         Outcomes: ok (handshake completed, whatever certificate), failed (alert,
                         reset, EOF), timeout (no handshake within --timeout seconds).

The last line printed is "summary ok=N failed=N timeout=N secs=S hs_per_s=R" (hs_per_s counts
completed handshakes). With --verbose the first few failures are printed to stderr.
"""

import argparse
import random
import socket
import ssl
import string
import sys
import threading
import time

ALPHABET = string.ascii_lowercase + string.digits


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.timeout = 0
        self.shown = 0
        self.issued = 0


def handshake(ctx, port, name, timeout):
    """Returns "ok", "failed" or "timeout" (and an error text) for one connection."""
    sock = None
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        sock.settimeout(timeout)
        tls = ctx.wrap_socket(sock, server_hostname=name, do_handshake_on_connect=False)
        sock = tls
        tls.do_handshake()
        return "ok", None
    except (socket.timeout, TimeoutError) as e:
        return "timeout", str(e)
    except (ssl.SSLError, OSError) as e:
        return "failed", "%s: %s" % (name, e)
    finally:
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=5.0, help="seconds per connection")
    ap.add_argument("--names")
    ap.add_argument("--ca")
    ap.add_argument("--random")
    ap.add_argument("--max", type=int, default=20000)
    ap.add_argument("--secs", type=float, default=30.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    if bool(args.names) == bool(args.random):
        sys.exit("sni_client.py: give exactly one of --names and --random")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.options |= ssl.OP_NO_TICKET
    names = None
    if args.names:
        if not args.ca:
            sys.exit("sni_client.py: --names needs --ca")
        ctx.load_verify_locations(cafile=args.ca)
        ctx.check_hostname = True
        with open(args.names) as f:
            names = [line.strip() for line in f if line.strip()]
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE

    st = State()
    t0 = time.monotonic()
    deadline = t0 + args.secs if args.random else None

    def next_name(rng):
        with st.lock:
            if names is not None:
                if st.issued >= len(names):
                    return None
                n = names[st.issued]
            else:
                if st.issued >= args.max or time.monotonic() >= deadline:
                    return None
                n = None
            st.issued += 1
        if n is None:
            n = "".join(rng.choice(ALPHABET) for _ in range(12)) + "." + args.random
        return n

    def worker(seed):
        rng = random.Random(seed)
        while True:
            name = next_name(rng)
            if name is None:
                return
            outcome, err = handshake(ctx, args.port, name, args.timeout)
            with st.lock:
                setattr(st, outcome, getattr(st, outcome) + 1)
                show = err is not None and args.verbose and st.shown < 5
                if show:
                    st.shown += 1
            if show:
                print("sni_client: %s %s" % (outcome, err), file=sys.stderr)

    seed = random.SystemRandom().getrandbits(64)
    threads = [threading.Thread(target=worker, args=(seed + i,)) for i in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.monotonic() - t0
    print(
        "summary ok=%d failed=%d timeout=%d secs=%.2f hs_per_s=%.0f"
        % (st.ok, st.failed, st.timeout, secs, st.ok / secs if secs > 0 else 0)
    )


if __name__ == "__main__":
    main()
