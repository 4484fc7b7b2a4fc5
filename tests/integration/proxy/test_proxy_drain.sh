#!/usr/bin/env bash
# SIGTERM drain of HTTP/1.1 keep-alive connections (docs/http2.md, "Drain"): an idle keep-alive
# connection is closed at once, before a slow in-flight request on another connection is answered;
# that request completes with Connection: close and its connection closes after the response; the
# process then exits 0.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
SPECIAL_PORT=$(ae_free_port)
: >"$T/special.log"
ae_bg special "$AE_PY" "$PX_UP/special.py" "$SPECIAL_PORT" "$T/special.log"
ae_wait_for ae_port_open "$SPECIAL_PORT" || ae_fail "special upstream did not start"
ae_config_write "$T/acmedge.json" "{
  \"on_demand\": {\"enabled\": false},
  \"log\": {\"level\": \"info\"},
  \"proxy\": {\"idle_timeout_ms\": 60000},
  \"routes\": [{\"hosts\": [\"special.example.test\"], \"upstream\": \"127.0.0.1:$SPECIAL_PORT\"}]}"
acmedge_start "$T/acmedge.json"

# The client sends SIGTERM itself once the slow request is at the upstream, then watches both
# connections and reports when each one ended.
out=$(/usr/bin/python3 - "$AE_HTTPS_PORT" "$ACMEDGE_PID" "$T/special.log" <<'PY'
import json, os, select, signal, socket, ssl, sys, time

port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
DELAY = 6
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["http/1.1"])


def connect():
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    return ctx.wrap_socket(s, server_hostname="special.example.test")


def req(path):
    return ("GET %s HTTP/1.1\r\nHost: special.example.test\r\n\r\n" % path).encode()


def read_response(s):
    """One response with a Content-Length body; returns (head, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            raise SystemExit("EOF before a response head: %r" % buf)
        buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    cl = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            cl = int(v.strip())
    while len(body) < cl:
        d = s.recv(65536)
        if not d:
            raise SystemExit("EOF inside a response body")
        body += d
    return head.decode("latin-1"), body


def eof_now(s):
    """Reads what is there; True on EOF (clean or not)."""
    try:
        d = s.recv(65536)
    except ssl.SSLWantReadError:
        return False
    except (ssl.SSLError, OSError):
        return True
    return not d


r = {}
idle = connect()
idle.sendall(req("/before-drain"))
head, _ = read_response(idle)
r["idle_first"] = head.split("\r\n")[0]
busy = connect()
busy.sendall(req("/slow?delay=%d" % DELAY))
deadline = time.monotonic() + 30
while "START GET /slow?delay=%d\n" % DELAY not in open(log).read():
    if time.monotonic() > deadline:
        raise SystemExit("slow request did not reach the upstream")
    time.sleep(0.05)
t0 = time.monotonic()
os.kill(pid, signal.SIGTERM)
idle.setblocking(False)
while "idle_closed" not in r and time.monotonic() < t0 + DELAY + 30:
    rd, _, _ = select.select([idle], [], [], 0.5)
    if rd or idle.pending():
        if eof_now(idle):
            r["idle_closed"] = round(time.monotonic() - t0, 3)
busy.settimeout(DELAY + 30)
head, body = read_response(busy)
r["busy_answered"] = round(time.monotonic() - t0, 3)
r["busy_head"] = head
r["busy_body"] = body.decode("latin-1")
busy.settimeout(10)
try:
    r["busy_after"] = busy.recv(65536).decode("latin-1")
except (ssl.SSLError, OSError) as e:
    r["busy_after"] = ""
print(json.dumps(r))
PY
) || ae_fail "drain client failed: $out"
/usr/bin/python3 - "$out" <<'PY' || ae_fail "HTTP/1.1 drain: $out"
import json, sys
r = json.loads(sys.argv[1])
assert r["idle_first"].startswith("HTTP/1.1 200"), "first request on the idle connection failed"
assert "idle_closed" in r, "idle keep-alive connection was not closed by the drain"
assert r["idle_closed"] < r["busy_answered"], "idle connection closed only after the in-flight request ended"
assert r["idle_closed"] < 4, "idle connection closed %.1f s after SIGTERM" % r["idle_closed"]
assert r["busy_head"].startswith("HTTP/1.1 200"), "in-flight request not answered"
assert "\r\nconnection: close" in r["busy_head"].lower() + "\r\n", "in-flight response lacks Connection: close"
assert r["busy_body"] == "slow done\n", "in-flight body: %r" % r["busy_body"]
assert r["busy_after"] == "", "busy connection not closed after its response"
PY
# The SIGTERM was sent by the client: wait for the exit instead of signalling again.
for ((i = 0; i < 300; i++)); do
  ae_pid_alive "$ACMEDGE_PID" || break
  sleep 0.1
done
ae_pid_alive "$ACMEDGE_PID" && ae_fail "acmedge did not exit within 30 s of SIGTERM"
rc=0
wait "$ACMEDGE_PID" 2>/dev/null || rc=$?
[ "$rc" -eq 0 ] || ae_fail "acmedge exited with status $rc"
grep -q 'drain: 1 idle HTTP/1.1 connections closed' "$T/acmedge.log" || ae_fail "drain of idle connections not logged"
[ "$(grep -c '^START GET /before-drain' "$T/special.log")" = 1 ] || ae_fail "upstream did not see /before-drain once"
echo "ok"
