#!/usr/bin/env python3
"""Continuous TLS handshakes for the internal CA rotation test.

Usage: ca_hsloop.py PORT ROOT_PEM STOP_FILE OUT_JSON NAME...

THREADS threads (env, default 2) each handshake with the names in turn, verifying the chain
against ROOT_PEM with a hostname check (Python's ssl, i.e. OpenSSL, with X509_STRICT), until
STOP_FILE exists or DEADLINE_S (env, default 500) seconds have passed. Every 2 s, and at the end,
OUT_JSON gets {"ok", "failed", "errors" (first 20), "akis" ({AKI hex: handshakes}), "done"}.
"""
import json
import os
import socket
import ssl
import sys
import threading
import time

from cryptography import x509

port, root, stop_file, out_path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
names = sys.argv[5:]
threads_n = int(os.environ.get("THREADS", "2"))
deadline = time.monotonic() + float(os.environ.get("DEADLINE_S", "500"))

ctx = ssl.create_default_context(cafile=root)
ctx.check_hostname = True
ctx.verify_mode = ssl.CERT_REQUIRED
ctx.verify_flags |= ssl.VERIFY_X509_STRICT

lock = threading.Lock()
state = {"ok": 0, "failed": 0, "errors": [], "akis": {}, "done": False}


def aki_of(der):
    cert = x509.load_der_x509_certificate(der)
    ext = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    return ext.value.key_identifier.hex()


def finished():
    return os.path.exists(stop_file) or time.monotonic() > deadline


def worker(k):
    i = k
    while not finished():
        name = names[i % len(names)]
        i += 1
        try:
            # Generous: under sanitizers on a loaded machine one handshake may take seconds.
            with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
                with ctx.wrap_socket(raw, server_hostname=name) as tls:
                    aki = aki_of(tls.getpeercert(binary_form=True))
            with lock:
                state["ok"] += 1
                state["akis"][aki] = state["akis"].get(aki, 0) + 1
        except Exception as e:  # every failure counts, whatever its kind
            with lock:
                state["failed"] += 1
                if len(state["errors"]) < 20:
                    state["errors"].append("%s %s: %r" % (time.strftime("%H:%M:%S"), name, e))
        time.sleep(0.01)


def dump():
    with lock:
        text = json.dumps(state)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, out_path)


workers = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads_n)]
for w in workers:
    w.start()
while any(w.is_alive() for w in workers):
    dump()
    for w in workers:
        w.join(timeout=2)
        break
state["done"] = True
dump()
