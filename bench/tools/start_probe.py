#!/usr/bin/env python3
"""Start-up probe (used by bench/cluster.sh): started before the server, it measures on one
https port, all times as UNIX epoch milliseconds:
  listen: the first accepted TCP connection;
  first:  the first handshake for --first NAME that serves that name's stored serial;
  all:    when every name of --sample ("name serial-hex" lines) has been served its stored serial
          once (handshakes from --threads threads, started once `first` is reached; a name served
          a different certificate, e.g. the default one, is retried until --timeout).
Prints one line: "listen_ms=.. first_ms=.. all_ms=.. sampled=N wrong=W failed=F missing=M", where
wrong counts handshakes that served another certificate, failed those that did not complete, and
missing the names never served their serial.
"""
import argparse
import queue
import socket
import ssl
import sys
import threading
import time

from cryptography import x509

CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
CTX.check_hostname = False
CTX.verify_mode = ssl.CERT_NONE


def now_ms():
    return time.time_ns() // 1_000_000


def serial(port, name):
    """Serial (int) of the leaf served for name; None when the handshake fails."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            with CTX.wrap_socket(s, server_hostname=name) as t:
                der = t.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    return x509.load_der_x509_certificate(der).serial_number


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--first", required=True, help="NAME:SERIAL_HEX")
    ap.add_argument("--sample", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--ready", help="file created once the probe polls (start the server after it)")
    a = ap.parse_args()
    end = time.monotonic() + a.timeout
    fname, fserial = a.first.split(":")
    fserial = int(fserial, 16)
    rows = [l.split() for l in open(a.sample) if l.strip()]

    listen = None
    if a.ready:
        open(a.ready, "w").close()
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", a.port), timeout=1).close()
            listen = now_ms()
            break
        except OSError:
            time.sleep(0.002)
    if listen is None:
        print("error: the port never accepted", file=sys.stderr)
        return 1
    first = None
    while time.monotonic() < end:
        if serial(a.port, fname) == fserial:
            first = now_ms()
            break
        time.sleep(0.002)
    if first is None:
        print(f"error: {fname} never served its stored serial", file=sys.stderr)
        return 1

    q = queue.Queue()
    for name, ser in rows:
        q.put((name, int(ser, 16)))
    lock = threading.Lock()
    st = {"wrong": 0, "failed": 0, "last": first, "missing": 0}

    def worker():
        while True:
            try:
                name, want = q.get_nowait()
            except queue.Empty:
                return
            while True:
                got = serial(a.port, name)
                if got == want:
                    with lock:
                        st["last"] = max(st["last"], now_ms())
                    break
                with lock:
                    st["failed" if got is None else "wrong"] += 1
                if time.monotonic() >= end:
                    with lock:
                        st["missing"] += 1
                    break
                time.sleep(0.01)

    ts = [threading.Thread(target=worker) for _ in range(a.threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(f"listen_ms={listen} first_ms={first} all_ms={st['last']} sampled={len(rows)} wrong={st['wrong']} "
          f"failed={st['failed']} missing={st['missing']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
