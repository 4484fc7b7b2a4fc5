#!/usr/bin/env bash
# Per-client limits on the real binary, with clients bound to two loopback source addresses:
# 127.0.0.2 past its connection cap is cut while 127.0.0.3 is served, a closed connection frees
# its slot, a handshake burst and a burst of new names from one address are cut while the other
# address is served; the log line and the acmedge_limited_total metric exist.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
C="$AE_SRC/tests/integration/abuse/limits_client.py"
A=127.0.0.2
B=127.0.0.3

metric() { # metric LIMIT : current acmedge_limited_total for that label (0 when absent)
  local v
  v=$(curl -s --max-time 10 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" |
    awk -v l="limit=\"$1\"" 'index($0, "acmedge_limited_total{") == 1 && index($0, l) {print $2}')
  echo "${v:-0}"
}

# ---- connections per client --------------------------------------------------------------------
ae_config_write "$T/acmedge.json" '{"limits": {"per_ip_connections": 3, "per_ip_handshakes_per_s": 1000,
  "per_ip_new_names_per_min": 1000}, "tls": {"handshake_timeout_ms": 60000}, "workers": 2}'
acmedge_start "$T/acmedge.json"

ae_bg holdA "$AE_PY" "$C" hold --src $A --port "$AE_HTTPS_PORT" --n 4 --wait 5 --hold 120
ae_wait_for grep -q 'cut=' "$T/holdA.log" || ae_wait_for grep -q 'cut=' "$T/holdA.log" ||
  ae_fail "hold client did not report: $(cat "$T/holdA.log")"
grep -q 'cut=1 open=3' "$T/holdA.log" || ae_fail "expected 1 of 4 connections from $A cut: $(cat "$T/holdA.log")"

# The other address is served while $A holds its three slots.
"$AE_PY" "$C" tls --src $B --port "$AE_HTTPS_PORT" --sni known.example.test ||
  ae_fail "$B was not served while $A was at its limit"
# $A itself gets nothing more.
if "$AE_PY" "$C" tls --src $A --port "$AE_HTTPS_PORT" --sni known.example.test; then
  ae_fail "$A was served past per_ip_connections"
fi
grep -q "limits.*127.0.0.2: closing: per_ip_connections exceeded" "$T/acmedge.log" ||
  ae_fail "no log line for the refused connection"
[ "$(metric per_ip_connections)" -ge 2 ] || ae_fail "acmedge_limited_total{limit=per_ip_connections} not counted"

# Closing the held connections frees the slots (the server sees the FINs asynchronously).
ae_kill_pid "$(cat "$T/holdA.pid")"
served=0
for ((i = 0; i < 50; i++)); do
  if "$AE_PY" "$C" tls --src $A --port "$AE_HTTPS_PORT" --sni known.example.test; then
    served=1
    break
  fi
  sleep 0.2
done
[ "$served" = 1 ] || ae_fail "$A still refused after closing its connections"
acmedge_stop

# ---- handshakes per second and new names per minute ---------------------------------------------
ae_config_write "$T/acmedge2.json" '{"limits": {"per_ip_connections": 1000, "per_ip_handshakes_per_s": 5,
  "per_ip_new_names_per_min": 3}}'
acmedge_start "$T/acmedge2.json"
out=$("$AE_PY" "$C" burst --src $A --port "$AE_HTTPS_PORT" --n 40 --wait 10)
cut=${out#cut=}
[ "$cut" -ge 1 ] && [ "$cut" -le 35 ] || ae_fail "handshake burst from $A: expected some (not all) cut, got $out"
# Limits are per second: $B is served right after $A's burst.
"$AE_PY" "$C" tls --src $B --port "$AE_HTTPS_PORT" --sni known.example.test ||
  ae_fail "$B was not served beside $A's handshake burst"
[ "$(metric per_ip_handshakes_per_s)" -ge 1 ] || ae_fail "handshake limit not counted in the metric"

# New names: 3 a minute. 8 attempts fall in at most two minute windows, so at least 2 are cut and
# at most 6 are served; a fixed count would depend on where the minute boundary falls.
sleep 1.1 # a fresh handshake window for $A (its burst above used this second's budget)
out=$("$AE_PY" "$C" names --src $A --port "$AE_HTTPS_PORT" --n 8)
served=$(echo "$out" | sed -n 's/served=\([0-9]*\) .*/\1/p')
[ -n "$served" ] && [ "$served" -ge 3 ] && [ "$served" -le 6 ] ||
  ae_fail "new names from $A: expected 3..6 served of 8, got $out"
out=$("$AE_PY" "$C" names --src $B --port "$AE_HTTPS_PORT" --n 2)
[ "$out" = "served=2 cut=0" ] || ae_fail "new names from $B: expected both served, got $out"
grep -q "per_ip_new_names_per_min exceeded for new name n" "$T/acmedge.log" ||
  ae_fail "no log line for the new-name limit"
[ "$(metric per_ip_new_names_per_min)" -ge 2 ] || ae_fail "new-name limit not counted in the metric"
acmedge_stop
echo "PASS"
