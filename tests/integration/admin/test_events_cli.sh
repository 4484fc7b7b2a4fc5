#!/usr/bin/env bash
# `acmedge events` and `acmedge domains` against the real admin API code served by the
# admin_stub test tool (canned domains, scripted events; no CA needed): table and JSON output,
# replay with --since, reconnect with Last-Event-ID after the server drops the stream, bearer
# token, unix socket, unreachable server, SIGINT.
set -euo pipefail
AE_SRC=${AE_SRC:-$(cd "$(dirname "$0")/../../.." && pwd)}
. "$AE_SRC/tests/lib/common.sh"
ae_setup
STUB=${AE_TOOL_admin_stub:?AE_TOOL_admin_stub must point at the admin_stub tool}

# start_stub NAME ADDR ARGS... : starts the stub, waits for it, sets STUB_PORT.
start_stub() {
  local name=$1
  shift
  ae_bg "$name" "$STUB" "$@"
  ae_wait_for grep -q '^listening ' "$T/$name.log" || ae_fail "$name did not start"
  STUB_PORT=$(awk '/^listening /{print $2; exit}' "$T/$name.log")
}

# wait_lines FILE N : waits (<= 10 s) until FILE has at least N lines.
wait_lines() {
  local i
  for ((i = 0; i < 100; i++)); do
    if [ -f "$1" ] && [ "$(wc -l <"$1")" -ge "$2" ]; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# ---- domains: table and JSON
start_stub stub1 127.0.0.1:0 --emit 6 --interval-ms 10
A=127.0.0.1:$STUB_PORT
ae_wait_for grep -q 'cert_installed' "$T/stub1.log" || ae_fail "stub did not emit its events"

timeout 20 "$ACMEDGE_BIN" domains --admin "$A" >"$T/table" || ae_fail "domains exited $?"
head -1 "$T/table" | grep -E '^DOMAIN +STATE +EXPIRES-IN +ISSUER +LAST-ERROR +RETRY-AT +OCSP$' >/dev/null ||
  ae_fail "bad table header: $(head -1 "$T/table")"
grep -Eq '^a\.example\.test +valid +60d [01]h +acme +- +- +(-|[a-z_]+)$' "$T/table" ||
  ae_fail "valid row wrong: $(cat "$T/table")"
grep -Eq '^b\.example\.test +failed +- +- +urn:ietf:params:acme:error:rejectedIdentifier: blocked +[0-9-]+T[0-9:]+Z +-$' "$T/table" ||
  ae_fail "failed row wrong: $(cat "$T/table")"

ACMEDGE_ADMIN=$A timeout 20 "$ACMEDGE_BIN" domains --json >"$T/domains.json" || ae_fail "domains --json failed"
"$AE_PY" - "$T/domains.json" <<'PY' || ae_fail "domains --json output wrong"
import json, sys
d = json.load(open(sys.argv[1]))
assert [x["domain"] for x in d] == ["a.example.test", "b.example.test"], d
assert d[0]["state"] == "valid" and d[1]["state"] == "failed", d
PY

# ---- events: JSON replay from the start, then the human-readable form
timeout 3 "$ACMEDGE_BIN" events --admin "$A" --json --since 0 >"$T/ev.json" 2>"$T/ev.err" || true
"$AE_PY" - "$T/ev.json" <<'PY' || ae_fail "events --json output wrong: $(cat "$T/ev.json")"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert [e["id"] for e in ev] == [1, 2, 3, 4, 5, 6], ev
assert [e["type"] for e in ev] == ["domain_requested", "issuance_started", "challenge_ready",
                                   "challenge_valid", "cert_issued", "cert_installed"], ev
for e in ev:
    assert list(e)[:4] == ["id", "time", "type", "domain"], e
    assert e["domain"] == "stub.example.test"
    assert len(e["time"]) == 20 and e["time"].endswith("Z")
assert ev[4]["serial"] == "0a1b2c" and ev[4]["not_after"] == "2030-01-01T00:00:00Z"
PY

timeout 3 "$ACMEDGE_BIN" events --admin "$A" --since 3 >"$T/ev.txt" 2>/dev/null || true
[ "$(wc -l <"$T/ev.txt")" -eq 3 ] || ae_fail "--since 3 should print 3 events: $(cat "$T/ev.txt")"
grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z  cert_issued +stub\.example\.test  serial=0a1b2c  not_after=2030-01-01T00:00:00Z$' "$T/ev.txt" ||
  ae_fail "human line wrong: $(cat "$T/ev.txt")"
if grep -q $'\033' "$T/ev.txt"; then ae_fail "colour codes written to a non-TTY"; fi

# SIGINT ends a following client promptly with status 0. The signal goes out once the client
# has printed the replayed events: its handler is installed and it is following the stream
# (a fixed delay loses the race against a slow start under the sanitizers).
"$ACMEDGE_BIN" events --admin "$A" --json --since 0 >"$T/int.out" 2>&1 &
CLI=$!
echo "$CLI" >>"$T/.pids"
wait_lines "$T/int.out" 6 || ae_fail "events client printed nothing: $(cat "$T/int.out")"
kill -INT "$CLI"
for ((i = 0; i < 30; i++)); do ae_pid_alive "$CLI" || break; sleep 0.1; done
ae_pid_alive "$CLI" && ae_fail "events did not stop on SIGINT"
wait "$CLI" || ae_fail "events exited $? on SIGINT"

# ---- reconnect: the server drops the stream, two events happen meanwhile, the client resumes
start_stub stub2 127.0.0.1:0 --emit 3 --interval-ms 10 --restart-emit 2
B=127.0.0.1:$STUB_PORT
"$ACMEDGE_BIN" events --admin "$B" --json --since 0 >"$T/re.json" 2>"$T/re.err" &
CLI=$!
echo "$CLI" >>"$T/.pids"
wait_lines "$T/re.json" 3 || ae_fail "first 3 events not seen"
kill -USR1 "$(cat "$T/stub2.pid")"
wait_lines "$T/re.json" 5 || ae_fail "events after the reconnect not seen: $(cat "$T/re.json") / $(cat "$T/re.err")"
sleep 0.3
"$AE_PY" - "$T/re.json" <<'PY' || ae_fail "reconnect replay wrong: $(cat "$T/re.json")"
import json, sys
ids = [json.loads(l)["id"] for l in open(sys.argv[1])]
assert ids == [1, 2, 3, 4, 5], ids
PY
grep -q 'reconnecting' "$T/re.err" || ae_fail "no reconnect notice on stderr"
kill -INT "$CLI"
wait "$CLI" || true

# ---- bearer token
start_stub stub3 127.0.0.1:0 --emit 1 --token s3cret
C=127.0.0.1:$STUB_PORT
set +e
env -u ACMEDGE_ADMIN_TOKEN timeout 10 "$ACMEDGE_BIN" domains --admin "$C" >/dev/null 2>"$T/tok.err"
RC=$?
set -e
[ "$RC" -eq 1 ] || ae_fail "domains without token: exit $RC"
grep -q '401' "$T/tok.err" || ae_fail "no 401 reported: $(cat "$T/tok.err")"
set +e
ACMEDGE_ADMIN_TOKEN=wrong timeout 10 "$ACMEDGE_BIN" events --admin "$C" >/dev/null 2>"$T/tok2.err"
RC=$?
set -e
[ "$RC" -eq 1 ] || ae_fail "events with a wrong token: exit $RC"
ACMEDGE_ADMIN_TOKEN=s3cret timeout 10 "$ACMEDGE_BIN" domains --admin "$C" >/dev/null ||
  ae_fail "domains with the token failed"
CODE=$(curl -s -o /dev/null -w '%{http_code}' "http://$C/healthz")
[ "$CODE" = 401 ] || ae_fail "healthz without token: $CODE"

# ---- unix socket
start_stub stub4 "unix:$T/admin.sock" --emit 1
[ "$(stat -c %a "$T/admin.sock")" = 600 ] || ae_fail "socket mode $(stat -c %a "$T/admin.sock")"
timeout 10 "$ACMEDGE_BIN" domains --admin "unix:$T/admin.sock" | grep '^a\.example\.test' >/dev/null ||
  ae_fail "domains over the unix socket failed"
timeout 2 "$ACMEDGE_BIN" events --admin "$T/admin.sock" --json --since 0 >"$T/unix.json" 2>/dev/null || true
grep -q '"id":1,' "$T/unix.json" || ae_fail "events over the unix socket failed"

# ---- unreachable
DEAD=$(ae_free_port)
set +e
timeout 10 "$ACMEDGE_BIN" domains --admin "127.0.0.1:$DEAD" >/dev/null 2>"$T/dead.err"
RC1=$?
timeout 10 "$ACMEDGE_BIN" events --admin "127.0.0.1:$DEAD" >/dev/null 2>"$T/dead2.err"
RC2=$?
set -e
[ "$RC1" -eq 1 ] && [ "$RC2" -eq 1 ] || ae_fail "unreachable: exits $RC1/$RC2"
grep -q "cannot reach admin API at 127.0.0.1:$DEAD" "$T/dead.err" || ae_fail "message: $(cat "$T/dead.err")"
grep -q "cannot reach admin API at 127.0.0.1:$DEAD" "$T/dead2.err" || ae_fail "message: $(cat "$T/dead2.err")"

echo "PASS"
