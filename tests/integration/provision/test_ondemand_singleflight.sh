#!/usr/bin/env bash
# 20 new names x 5 concurrent handshakes each -> exactly 20 orders at Pebble; all 20 served.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

pids=()
for i in $(seq 1 20); do
  for j in 1 2 3 4 5; do
    timeout 10 gnutls-cli --insecure --sni-hostname="n$i.example.test" -p "$AE_HTTPS_PORT" 127.0.0.1 \
      </dev/null >/dev/null 2>&1 &
    pids+=($!)
  done
done
for p in "${pids[@]}"; do wait "$p" || true; done

for i in $(seq 1 20); do
  od_wait_issued "n$i.example.test" 60
done
[ "$(pebble_count_orders)" -eq 20 ] || ae_fail "expected exactly 20 orders, Pebble saw $(pebble_count_orders)"
for i in $(seq 1 20); do
  [ "$(od_events issuance_started "n$i.example.test")" -eq 1 ] || ae_fail "n$i.example.test: not exactly one issuance"
done
acmedge_stop
echo "ok"
