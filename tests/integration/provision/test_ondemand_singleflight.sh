#!/usr/bin/env bash
# Singleflight: NAMES new names, each hit by PER concurrent first handshakes at once (all names in
# the same burst) -> exactly one order per name at Pebble and one issuance_started each; all
# names served. 10 names x 5 handshakes proves the same as more of either: every name sees
# concurrent handshakes that find no certificate, and several names are in flight together.
# (The burst used to be 20 x 5: 100 client processes and 20 concurrent orders, which is where
# Pebble 2.4 is known to stall in a long run on a loaded 2-core machine.)
# The wait is on progress, not on a fixed clock: as long as names keep being issued or Pebble
# keeps logging, it waits (up to 300 s in all); after STALL_S seconds without either, Pebble is
# sent SIGQUIT so its goroutine dump lands in pebble.log, and the test fails naming the stall.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

NAMES=10 PER=5 STALL_S=90 TOTAL_S=300

pids=()
for i in $(seq 1 $NAMES); do
  for j in $(seq 1 $PER); do
    timeout 30 gnutls-cli --insecure --sni-hostname="n$i.example.test" -p "$AE_HTTPS_PORT" 127.0.0.1 \
      </dev/null >/dev/null 2>&1 &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p" || true; done

# issued_count : names whose cert_issued event is in the log.
issued_count() {
  local i n=0
  for i in $(seq 1 $NAMES); do
    if [ "$(od_events cert_issued "n$i.example.test")" -ge 1 ]; then n=$((n + 1)); fi
  done
  echo $n
}
start=$SECONDS last_change=$SECONDS last_issued=-1 last_plog=-1
while :; do
  issued=$(issued_count)
  plog=$(stat -c %s "$T/pebble.log" 2>/dev/null || echo 0)
  [ "$issued" -ge "$NAMES" ] && break
  if [ "$issued" != "$last_issued" ] || [ "$plog" != "$last_plog" ]; then
    last_change=$SECONDS last_issued=$issued last_plog=$plog
  fi
  if ((SECONDS - last_change >= STALL_S)); then
    kill -QUIT "$(cat "$T/pebble.pid")" 2>/dev/null || true
    sleep 2
    ae_fail "stalled: $issued/$NAMES names issued, no progress at acmedge or Pebble for ${STALL_S}s (Pebble goroutines dumped to pebble.log)"
  fi
  ((SECONDS - start < TOTAL_S)) || ae_fail "only $issued/$NAMES names issued after ${TOTAL_S}s (Pebble still answering)"
  sleep 0.5
done
for i in $(seq 1 $NAMES); do
  od_wait_issued "n$i.example.test" 60
done
[ "$(pebble_count_orders)" -eq $NAMES ] || ae_fail "expected exactly $NAMES orders, Pebble saw $(pebble_count_orders)"
for i in $(seq 1 $NAMES); do
  [ "$(od_events issuance_started "n$i.example.test")" -eq 1 ] || ae_fail "n$i.example.test: not exactly one issuance"
done
acmedge_stop
echo "ok"
