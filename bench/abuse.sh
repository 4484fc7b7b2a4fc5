#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Random-SNI flood: how acmedge and Caddy's on-demand TLS hold up when clients send a stream of
# names nobody has a certificate for. Each side gets a fresh Pebble and runs two phases:
#   outside  random names RANDOM12.example.org, outside the allow list (acmedge "allow":
#            ["*.example.test"]; Caddy's ask endpoint answers 200 for *.example.test only);
#   inside   random names RANDOM12.example.test, all allowed, so each one may become an order.
# Each phase is bounded by ABUSE_MAX handshakes or ABUSE_SECS seconds. Reported per phase:
# connections answered per second (completed handshakes + refused ones), the outcome counts,
# orders placed at Pebble during the phase (+2 s), the server's CPU time per connection
# (utime+stime from /proc: the client shares the cores, so connections/s is bounded by the
# client), its RSS before and after, its log growth, and for acmedge the domain_denied events it logged. A third row ("idle") covers
# ABUSE_IDLE seconds without traffic after the inside phase: what the server still orders for the
# names the flood left behind. During the inside phase a legitimate name under another registrable
# domain (legit-N.example.net, allowed on every side) is asked for every second after 3 s of flood;
# "legit s" is the time until it is served a Pebble certificate ("none" within ABUSE_SECS + 60 s).
#
# Usage: bench/abuse.sh          (~3 min)
# Environment:
#   ACMEDGE_BIN    acmedge binary (default: build/acmedge)
#   CADDY_BIN      caddy binary (default: caddy)
#   ABUSE_SIDES    sides to measure (default "acmedge acmedge-dns acmedge-fair caddy";
#                  acmedge-dns adds on_demand.dns_check with challtestsrv answering a foreign
#                  address; acmedge-fair adds fair_queue shares instead: max_share 0.25,
#                  rate_share 0.1, unasked_ttl_s 30)
#   ABUSE_MAX      handshakes per phase at most (default 20000)
#   ABUSE_SECS     seconds per phase at most (default 30)
#   ABUSE_THREADS  client threads (default 8)
#   ABUSE_TIMEOUT  seconds a client waits for one handshake (default 5)
#   ABUSE_IDLE     seconds watched after the flood (default 30)
#   AE_KEEP=1      keep the work dir (logs of both sides)
# Everything listens on and talks to 127.0.0.1 only. Every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/ttc.sh
source "$BENCH_DIR/lib/ttc.sh"

ABUSE_SIDES=${ABUSE_SIDES:-"acmedge acmedge-dns acmedge-fair caddy"}
ABUSE_MAX=${ABUSE_MAX:-20000}
ABUSE_SECS=${ABUSE_SECS:-30}
ABUSE_THREADS=${ABUSE_THREADS:-8}
ABUSE_TIMEOUT=${ABUSE_TIMEOUT:-5}
ABUSE_IDLE=${ABUSE_IDLE:-30}
export PEBBLE_WFE_NONCEREJECT=0

bench_require_sides "$ABUSE_SIDES"
bench_require_tools pebble pebble-challtestsrv certtool curl
bench_base abuse

# lines FILE / bytes FILE : current size of a log.
lines() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }
bytes() { if [ -f "$1" ]; then wc -c <"$1"; else echo 0; fi; }

# denied_since LOG LINES : domain_denied events acmedge logged after the first LINES lines of LOG.
denied_since() {
  tail -n +"$(($2 + 1))" "$1" | grep -c '\[event\] domain_denied' || true
}

# flood SIDE PHASE SUFFIX PID LOG : one bounded phase of random names under SUFFIX; appends
# "side phase ok failed timeout secs conn_per_s orders cpu_ms_per_conn rss_before rss_after
# log_lines log_bytes denied_events" to $RESULTS.
flood() {
  local side=$1 phase=$2 suffix=$3 pid=$4 log=$5
  local rss0 rss1 orders0 orders1 l0 l1 b0 b1 summary ok failed timeout secs rate denied=- c0 c1 per
  rss0=$(rss_kib "$pid")
  c0=$(cpu_ms "$pid")
  orders0=$(pebble_count_orders)
  l0=$(lines "$log")
  b0=$(bytes "$log")
  "$AE_PY" "$BENCH_DIR/tools/sni_client.py" --port "$AE_HTTPS_PORT" --threads "$ABUSE_THREADS" \
    --timeout "$ABUSE_TIMEOUT" --random "$suffix" --max "$ABUSE_MAX" --secs "$ABUSE_SECS" \
    --verbose >"$T/client-$phase.out" 2>>"$T/client.log" &
  local cpid=$!
  echo "$cpid" >>"$T/.pids"
  local legit=-
  if [ "$phase" = inside ]; then
    legit=$(legit_time "$cpid")
  fi
  wait "$cpid" || ae_fail "flood client exited with an error"
  c1=$(cpu_ms "$pid")
  sleep 2
  ae_pid_alive "$pid" || ae_fail "$side exited during the $phase phase"
  rss1=$(rss_kib "$pid")
  orders1=$(pebble_count_orders)
  l1=$(lines "$log")
  b1=$(bytes "$log")
  summary=$(grep '^summary ' "$T/client-$phase.out")
  ok=$(_field ok "$summary")
  failed=$(_field failed "$summary")
  timeout=$(_field timeout "$summary")
  secs=$(_field secs "$summary")
  rate=$(awk -v a="$ok" -v b="$failed" -v s="$secs" 'BEGIN { printf "%.0f", (a + b) / s }')
  per=$(awk -v c="$((c1 - c0))" -v n="$((ok + failed + timeout))" 'BEGIN { printf "%.3f", n ? c / n : 0 }')
  if [ "${side%%-*}" = acmedge ]; then
    denied=$(denied_since "$log" "$l0")
  fi
  echo "$side $phase $ok $failed $timeout $secs $rate $((orders1 - orders0)) $per $rss0 $rss1 $((l1 - l0)) $((b1 - b0)) $denied $legit" >>"$RESULTS"
}

# legit_time FLOODPID : after 3 s of flood, asks for a fresh legitimate name under another
# registrable domain every second; prints the seconds until it is served a Pebble certificate,
# or "none" after ABUSE_SECS + 60 s.
legit_time() {
  local name="legit-$RANDOM.example.net" t0 i
  if [ -n "${PEBBLE_CHALL_MGMT:-}" ]; then
    curl -sf --max-time 10 -X POST -d "{\"host\": \"$name\", \"addresses\": [\"127.0.0.1\"]}" \
      "$PEBBLE_CHALL_MGMT/add-a" >/dev/null || true
  fi
  sleep 3
  t0=$(date +%s.%N)
  for ((i = 0; i < ABUSE_SECS + 60; i++)); do
    if ae_sni_cert "$name" | grep 'Issuer:' | grep Pebble >/dev/null; then
      awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'
      return 0
    fi
    sleep 1
  done
  echo none
}

# idle SIDE PID LOG : no traffic for ABUSE_IDLE seconds; appends a row like flood's, without
# client numbers.
idle() {
  local side=$1 pid=$2 log=$3 rss0 rss1 orders0 orders1 l0 l1 b0 b1 denied=-
  rss0=$(rss_kib "$pid")
  orders0=$(pebble_count_orders)
  l0=$(lines "$log")
  b0=$(bytes "$log")
  sleep "$ABUSE_IDLE"
  ae_pid_alive "$pid" || ae_fail "$side exited while idle"
  rss1=$(rss_kib "$pid")
  orders1=$(pebble_count_orders)
  l1=$(lines "$log")
  b1=$(bytes "$log")
  if [ "${side%%-*}" = acmedge ]; then
    denied=$(denied_since "$log" "$l0")
  fi
  echo "$side idle - - - $ABUSE_IDLE - $((orders1 - orders0)) - $rss0 $rss1 $((l1 - l0)) $((b1 - b0)) $denied -" >>"$RESULTS"
}

# start_side SIDE : fresh work dir, Pebble validating on fresh ports, then the server; sets
# SERVER_PID and SERVER_LOG.
start_side() {
  local side=$1
  bench_run_dir "$BASE/$side"
  case $side in
  acmedge)
    # The shipped on_demand defaults (rate 60/min burst 60, per_3h 300, max_concurrent 8,
    # max_queue 1000, first_handshake "default"), log level info so the events are logged.
    ae_config_write "$T/acmedge.json" '{"on_demand": {"backoff": {"initial_s": 60, "max_s": 86400},
      "allow": ["*.example.test", "*.example.net"]}, "log": {"level": "info", "format": "text"}}'
    acmedge_start "$T/acmedge.json"
    SERVER_PID=$ACMEDGE_PID
    SERVER_LOG=$T/acmedge.log
    ;;
  acmedge-fair)
    # The wide pattern without dns_check, with the fair queue's shares: one registrable domain
    # may hold a quarter of the queue and use a tenth of the 3 h cap; unasked names go after 30 s.
    ae_config_write "$T/acmedge.json" '{"on_demand": {"backoff": {"initial_s": 60, "max_s": 86400},
      "allow": ["*.example.test", "*.example.net"],
      "fair_queue": {"max_share": 0.25, "rate_share": 0.1, "unasked_ttl_s": 30}},
      "log": {"level": "info", "format": "text"}}'
    acmedge_start "$T/acmedge.json"
    SERVER_PID=$ACMEDGE_PID
    SERVER_LOG=$T/acmedge.log
    ;;
  acmedge-dns)
    # The same, plus on_demand.dns_check against challtestsrv, whose default answer now points
    # elsewhere: random names do not resolve to the proxy (real ones would be added with /add-a).
    curl -sf --max-time 10 -X POST -d '{"ip": "192.0.2.55"}' "$PEBBLE_CHALL_MGMT/set-default-ipv4" >/dev/null ||
      ae_fail "challtestsrv /set-default-ipv4 failed"
    ae_config_write "$T/acmedge.json" "{\"on_demand\": {\"backoff\": {\"initial_s\": 60, \"max_s\": 86400},
      \"allow\": [\"*.example.test\", \"*.example.net\"],
      \"dns_check\": {\"expect\": [\"127.0.0.1\"], \"resolver\": \"127.0.0.1:$PEBBLE_DNS_PORT\"}},
      \"log\": {\"level\": \"info\", \"format\": \"text\"}}"
    acmedge_start "$T/acmedge.json"
    SERVER_PID=$ACMEDGE_PID
    SERVER_LOG=$T/acmedge.log
    ;;
  caddy)
    caddy_start ask_allow.py example.test example.net
    SERVER_PID=$CADDY_PID
    SERVER_LOG=$T/caddy.log
    ;;
  esac
  sleep 1
}

# stop_side SIDE : SIGTERM to the server, records how long it took to exit and its status, then
# stops the rest of the side.
stop_side() {
  local side=$1 pid=$SERVER_PID i rc=0 t0 t1 exited=0
  t0=$(date +%s.%N)
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 150; i++)); do
    if ! ae_pid_alive "$pid"; then
      exited=1
      break
    fi
    sleep 0.1
  done
  t1=$(date +%s.%N)
  # Decided once: a second liveness check can race with the shell reaping the process.
  if ((exited)); then
    wait "$pid" 2>/dev/null || rc=$?
  else
    kill -KILL "$pid" 2>/dev/null || true
    rc=killed
  fi
  echo "$side $rc $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')" >>"$BASE/stops"
  bench_run_stop
}

for side in $ABUSE_SIDES; do
  echo "$side: starting Pebble and the server..." >&2
  start_side "$side"
  echo "$side: outside the allow list (${ABUSE_SECS}s / $ABUSE_MAX handshakes at most)..." >&2
  flood "$side" outside example.org "$SERVER_PID" "$SERVER_LOG"
  echo "$side: inside the allow list (${ABUSE_SECS}s / $ABUSE_MAX handshakes at most)..." >&2
  flood "$side" inside example.test "$SERVER_PID" "$SERVER_LOG"
  if ((ABUSE_IDLE > 0)); then
    echo "$side: idle for ${ABUSE_IDLE}s..." >&2
    idle "$side" "$SERVER_PID" "$SERVER_LOG"
  fi
  if [ "${side%%-*}" = acmedge ]; then
    grep '\[event\] domain_denied' "$SERVER_LOG" | sed -n 's/.*"reason":"\([a-z_]*\)".*/\1/p' |
      sort | uniq -c >"$BASE/acmedge-deny-reasons" || true
  else
    echo "$(grep -c '^ask ' "$T/ask.log" || true) $(cpu_ms "$(cat "$T/ask.pid")")" >"$BASE/caddy-asks"
  fi
  stop_side "$side"
done

# ---- report --------------------------------------------------------------------------------------
echo
echo "Random-SNI flood, $ABUSE_THREADS client threads, <= $ABUSE_MAX handshakes or ${ABUSE_SECS}s per phase"
printf '%-12s %-8s %6s %6s %7s %6s %6s %6s %11s %11s %11s %9s %10s %7s %7s\n' server phase ok failed timeout \
  secs "conn/s" orders "CPU ms/conn" "RSS before" "RSS after" "log lines" "log bytes" denied "legit s"
while read -r side phase ok failed timeout secs rate orders per rss0 rss1 ll lb denied legit; do
  printf '%-12s %-8s %6s %6s %7s %6s %6s %6s %11s %7s KiB %7s KiB %9s %10s %7s %7s\n' "$side" "$phase" "$ok" \
    "$failed" "$timeout" "$secs" "$rate" "$orders" "$per" "$rss0" "$rss1" "$ll" "$lb" "$denied" "$legit"
done <"$RESULTS"
if [ -s "$BASE/acmedge-deny-reasons" ]; then
  echo "acmedge domain_denied events by reason (whole run): $(awk '{ printf "%s%s=%s", (NR > 1 ? " " : ""), $2, $1 }' "$BASE/acmedge-deny-reasons")"
fi
if [ -s "$BASE/caddy-asks" ]; then
  read -r asks ask_ms <"$BASE/caddy-asks"
  echo "caddy: ask requests (whole run): $asks; the ask server's CPU time: $ask_ms ms (not in Caddy's CPU ms/conn)"
fi
while read -r side rc secs; do
  echo "$side: exit status after SIGTERM: $rc (${secs}s)"
done <"$BASE/stops"
