#!/usr/bin/env bash
# An http-01 answer whose announcement an instance missed (stored in Redis, never PUBLISHed) is
# read from Redis on the port-80 miss and answered; a missed token is remembered (one Redis read
# however often it is asked), and a flood of random tokens is bounded (at most 20 reads a second).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/cluster.sh"
ae_setup
redis_start
cl_ports # instance A on 127.0.0.2
export ACMEDGE_RECONCILE_MS=1000
cl_config a \
  "{\"storage\": {\"type\": \"redis\", \"path\": \"$T/st\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", \"encrypt_keys\": false}}}"
inst_run a
ACMEDGE_PID=$(cat "$T/a.pid")
for ((i = 0; i < 100; i++)); do
  grep -q '^cmdstat_subscribe:' <<<"$(ae_rcli INFO commandstats)" && break
  sleep 0.1
done
ae_bg monitor redis-cli -h 127.0.0.1 -p "$REDIS_PORT" MONITOR
MON=$(cat "$T/monitor.pid")
for ((i = 0; i < 50; i++)); do [ -s "$T/monitor.log" ] && break; sleep 0.1; done
get() { # get TOKEN -> "STATUS BODY"
  curl -s -m 10 -o "$T/body" -w '%{http_code}' -H 'Host: late.example.test' \
    "http://$(cl_addr a):$CL_HTTP/.well-known/acme-challenge/$1" || true
}
reads() { grep -cF "\"GET\" \"acmedge{ns}:chal:http:$1" "$T/monitor.log" || true; }

# --- an answer announced while this instance did not listen: found in Redis ---
tok=LateTok_0123456789abcdefghijklmnopqrstuvwxy
ka="$tok.thumbprintABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ae_rcli SET "acmedge{ns}:chal:http:$tok" "$ka" PX 60000 >/dev/null
code=$(get "$tok")
[ "$code" = 200 ] || ae_fail "missed challenge answer: HTTP $code, expected 200"
[ "$(cat "$T/body")" = "$ka" ] || ae_fail "missed challenge answer: body '$(cat "$T/body")'"
code=$(get "$tok")
[ "$code" = 200 ] || ae_fail "second ask: HTTP $code"
echo "missed answer read from Redis: ok"

# --- an unknown token: 404, one Redis read however often asked ---
miss=MissTok_0123456789abcdefghijklmnopqrstuvwxy
for ((i = 0; i < 10; i++)); do
  code=$(get "$miss")
  [ "$code" = 404 ] || ae_fail "unknown token: HTTP $code, expected 404"
done
# not token-shaped: never looked up
code=$(get 'no%2Etoken')
[ "$code" = 404 ] || ae_fail "malformed token: HTTP $code, expected 404"

# --- a flood of random tokens: bounded reads ---
t0=$(date +%s%3N)
for ((i = 0; i < 200; i++)); do echo "Flood$i$RANDOM$RANDOM"; done |
  xargs -P 8 -I{} curl -s -m 10 -o /dev/null -H 'Host: late.example.test' \
    "http://$(cl_addr a):$CL_HTTP/.well-known/acme-challenge/{}"
el=$(($(date +%s%3N) - t0))
code=$(get "$tok")
[ "$code" = 200 ] || ae_fail "the found answer is gone after the flood: HTTP $code"
sleep 0.5 # MONITOR output is written as Redis runs the commands; let the last lines arrive
kill "$MON" 2>/dev/null || true
wait "$MON" 2>/dev/null || true
[ "$(reads "$tok")" -eq 1 ] || ae_fail "$(reads "$tok") Redis reads for the found token, expected 1"
[ "$(reads "$miss")" -eq 1 ] || ae_fail "$(reads "$miss") Redis reads for the unknown token, expected 1"
[ "$(reads no)" -eq 0 ] || ae_fail "a malformed token was looked up"
flood=$(reads Flood)
max=$((20 * (el / 1000 + 2)))
echo "flood: 200 random tokens in $el ms -> $flood Redis reads (bound $max)"
[ "$flood" -le "$max" ] || ae_fail "$flood Redis reads for 200 random tokens in $el ms, bound $max"
[ "$flood" -ge 1 ] || ae_fail "no Redis read at all for the flood: the look-up is not exercised"
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died"
acmedge_stop
echo ok
