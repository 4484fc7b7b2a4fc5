#!/usr/bin/env python3
"""Fake service manager: receives sd_notify datagrams on a unix socket and appends one line per
datagram to OUT: "<monotonic seconds> <state with newlines as |> <probe>" where probe, for
datagrams containing READY=1, says which of the given TCP ports accepted a connection at that
moment ("ports=open" or "ports=closed:<port>")."""
import os
import socket
import sys
import time


def probe(ports):
    closed = []
    for p in ports:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(("127.0.0.1", p))
        except OSError:
            closed.append(str(p))
        finally:
            s.close()
    return "ports=open" if not closed else "ports=closed:" + ",".join(closed)


def main():
    path, out = sys.argv[1], sys.argv[2]
    ports = [int(p) for p in sys.argv[3:]]
    if os.path.exists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    with open(out, "a", buffering=1) as f:
        f.write("%.3f LISTENING -\n" % time.monotonic())
        while True:
            data = sock.recv(4096).decode("utf-8", "replace")
            extra = probe(ports) if "READY=1" in data.split("\n") else "-"
            f.write("%.3f %s %s\n" % (time.monotonic(), data.replace("\n", "|"), extra))


if __name__ == "__main__":
    main()
