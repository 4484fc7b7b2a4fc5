#!/usr/bin/env bash
# HTTP/2 attacks under legitimate load (docs/http2.md, "Security"): a paced h2load client keeps
# requesting through acmedge while tests/integration/helpers/h2_flood.py repeats one attack
# (Rapid Reset, CONTINUATION flood, HPACK bomb, SETTINGS flood, PING flood, empty-DATA flood,
# never-reading clients) connection after connection for the whole window. The legitimate
# requests completed in each attack window must be >= 80 % of those completed in a window of the
# same length without attack, and the request-counting upstream must see no request of any
# attack except the bounded Rapid Reset ones.
#
# Robustness (ctest -j2 on 2 cores, then ASan): the load is paced (h2load --rps) well below what
# acmedge serves even under ASan, so the baseline is what the pacing allows and an attack shows
# up only if it takes acmedge's time away from the legitimate connections; only ratios between
# windows of equal length are compared, and a window that falls short is measured once more
# before the test fails.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
COUNT_PORT=$(ae_free_port)
ECHO_PORT=$(ae_free_port)
: >"$T/counted.log"
ae_bg counter "$AE_PY" "$PX_UP/counter.py" "$COUNT_PORT" "$T/counted.log"
ae_bg echo "$AE_PY" "$PX_UP/echo.py" "$ECHO_PORT"
for p in "$COUNT_PORT" "$ECHO_PORT"; do
  ae_wait_for ae_port_open "$p" || ae_fail "upstream on port $p did not start"
done
ae_config_write "$T/acmedge.json" "{
  \"on_demand\": {\"enabled\": false},
  \"log\": {\"level\": \"info\"},
  \"proxy\": {\"response_timeout_ms\": 30000},
  \"routes\": [{\"hosts\": [\"count.example.test\"], \"upstream\": \"127.0.0.1:$COUNT_PORT\"},
               {\"hosts\": [\"app.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\"}]}"
acmedge_start "$T/acmedge.json"

WINDOW=${H2_LOAD_WINDOW:-6}   # seconds per measurement window
CLIENTS=4                      # legitimate h2 connections
RPS=40                         # requests per second per connection (160/s in all)
MIN_PCT=80

# load NAME : one paced h2load window on the counting route; prints the requests that succeeded.
load() {
  local out ok
  # -m 16: h2load catches up on paced requests it could not send yet, so a latency spike of a few
  # hundred ms on a loaded machine does not lower the count; a starved acmedge still does.
  out=$(timeout $((WINDOW * 5 + 30)) h2load -c "$CLIENTS" -m 16 --rps "$RPS" -D "$WINDOW" \
    --connect-to "127.0.0.1:$AE_HTTPS_PORT" "https://count.example.test:$AE_HTTPS_PORT/load" 2>&1) || true
  echo "$out" >>"$T/h2load-$1.log"
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  echo "${ok:-0}"
}

# attack CASE [ARGS] : starts the attacker for longer than a window (it ramps up first). It runs
# at the lowest CPU priority: a real attacker spends its own machine's CPU, not ours, and on two
# shared cores a flooding Python process would otherwise slow the legitimate client and upstream
# down by itself; acmedge still gets every frame the attacker manages to send.
attack_start() {
  local c=$1
  shift
  nice -n 19 "$AE_PY" "$AE_SRC/tests/integration/helpers/h2_flood.py" --port "$AE_HTTPS_PORT" \
    --sni "$ATTACK_SNI" --case "$c" --seconds $((WINDOW + 3)) "$@" >"$T/flood-$c.json" 2>>"$T/flood.log" &
  ATTACK_PID=$!
  echo "$ATTACK_PID" >>"$T/.pids"
}

attack_wait() {
  local i
  # The attacker stops on its own after WINDOW + 3 s (+ its socket timeouts); bounded here too.
  for ((i = 0; i < 300; i++)); do
    ae_pid_alive "$ATTACK_PID" || break
    sleep 0.1
  done
  ae_kill_pid "$ATTACK_PID" 20
  wait "$ATTACK_PID" 2>/dev/null || true
}

# ---- baseline -------------------------------------------------------------------------------------
# A warm-up window (upstream pool, TLS session caches), then the baseline; the larger of two
# windows is the baseline, so a slow first window does not make the attack windows look good.
load warmup >/dev/null
BASE=$(load base1)
b2=$(load base2)
[ "$b2" -gt "$BASE" ] && BASE=$b2
# Sanity: the pacing allows CLIENTS*RPS*WINDOW; a baseline far below that means acmedge or the
# upstream cannot carry even the paced load here, and ratios would mean little.
[ "$BASE" -ge $((CLIENTS * RPS * WINDOW / 4)) ] || ae_fail "baseline too low: $BASE requests in ${WINDOW}s"
echo "baseline: $BASE requests in ${WINDOW}s"

# ---- each attack during a window -----------------------------------------------------------------
# Under ASan (3-5x slower), the never-reading clients are the one case measured close to the
# bound: their 400 streams make acmedge fetch 1 MB each from a Python upstream and fill 128 KiB
# per stream through instrumented copies while the window runs (85 % measured under ASan, 93-98 %
# plain). That case only is relaxed to 65 % under ASan; every other case keeps 80 %.
ASAN_BUILD=0
# Not "ldd | grep -q": under pipefail, grep quitting early can SIGPIPE ldd and hide the match.
case "$(ldd "$ACMEDGE_BIN" 2>/dev/null)" in *libasan*) ASAN_BUILD=1 ;; esac
ratio_ok() { [ $(($1 * 100)) -ge $((BASE * MIN_PCT)) ]; }
declare -A RESULT
for c in rapid-reset continuation hpack-bomb settings-flood ping-flood empty-data slow-reader; do
  ATTACK_SNI=count.example.test
  extra=()
  if [ "$c" = slow-reader ]; then
    ATTACK_SNI=app.example.test
    extra=(--parallel 4)
  fi
  MIN_PCT=80
  if [ "$c" = slow-reader ] && [ "$ASAN_BUILD" = 1 ]; then MIN_PCT=65; fi
  got=0
  for try in 1 2; do
    attack_start "$c" "${extra[@]}"
    sleep 1
    got=$(load "$c-$try")
    attack_wait
    ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died during $c"
    echo "$c (try $try): $got of baseline $BASE; attacker: $(cat "$T/flood-$c.json")"
    [ -s "$T/flood-$c.json" ] || ae_fail "$c: the attacker printed nothing: $(tail -5 "$T/flood.log")"
    ratio_ok "$got" && break
  done
  ratio_ok "$got" || ae_fail "$c: legitimate load fell to $got of $BASE requests (< $MIN_PCT %)"
  RESULT[$c]=$got
done

# ---- the attacks did what they should have, at the server ----------------------------------------
field() { "$AE_PY" -c 'import json,sys; v=json.load(sys.stdin)
for k in sys.argv[1].split("."): v = v.get(k, 0) if isinstance(v, dict) else 0
print(v)' "$1" <"$T/flood-$2.json"; }
# HPACK bomb: every answer is 431 (the decoded block is ~11 MB), none 200.
[ "$(field status.431 hpack-bomb)" -gt 0 ] || ae_fail "HPACK bomb never answered 431: $(cat "$T/flood-hpack-bomb.json")"
[ "$(field status.200 hpack-bomb)" = 0 ] || ae_fail "HPACK bomb answered 200: $(cat "$T/flood-hpack-bomb.json")"
# Floods end connections: empty DATA with ENHANCE_YOUR_CALM, Rapid Reset with a GOAWAY.
[ "$(field goaway.11 empty-data)" -gt 0 ] || ae_fail "empty-DATA flood not answered with ENHANCE_YOUR_CALM: $(cat "$T/flood-empty-data.json")"
[ "$(field closed rapid-reset)" -gt 0 ] || ae_fail "Rapid Reset connections never closed: $(cat "$T/flood-rapid-reset.json")"
[ "$(field closed continuation)" -gt 0 ] || ae_fail "CONTINUATION flood connections never closed: $(cat "$T/flood-continuation.json")"

# ---- nothing of the attacks reached the upstream, beyond the bounded Rapid Reset starts -----------
if grep -v '^GET /load 0$\|^GET /rr 0$' "$T/counted.log" | grep . >/dev/null; then
  ae_fail "requests reached the upstream that should not have: $(grep -v '^GET /load 0$\|^GET /rr 0$' "$T/counted.log" | sort | uniq -c | sed -n 1,10p)"
fi
rr=$(grep -c '^GET /rr ' "$T/counted.log" || true)
rr_conns=$(field connections rapid-reset)
# nghttp2's reset bucket (1000 burst) plus what is in flight when the GOAWAY goes out, per connection.
[ "$rr" -le $((rr_conns * 1100 + 1100)) ] || ae_fail "Rapid Reset started $rr upstream requests over $rr_conns connections"
# The legitimate requests the upstream saw are at most what h2load started (no duplicates).
started=$(cat "$T"/h2load-*.log | sed -n 's/^requests: .* \([0-9]*\) started.*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
seen=$(grep -c '^GET /load ' "$T/counted.log" || true)
[ "$seen" -le "$started" ] || ae_fail "upstream saw $seen legitimate requests, h2load started only $started"
acmedge_stop
for c in "${!RESULT[@]}"; do echo "$c: ${RESULT[$c]}/$BASE"; done
echo "ok"
