#!/usr/bin/env bash
# A name Pebble refuses (domainBlocklist): one order, issuance_failed with rejectedIdentifier and
# retry_at, the default certificate meanwhile, and no further CA traffic before retry_at.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
pebble_start '"domainBlocklist": ["blocked.example.test"]'
ae_config_write "$T/acmedge.json" '{"on_demand": {"backoff": {"initial_s": 60, "max_s": 3600}}}'
acmedge_start "$T/acmedge.json"

name=blocked.example.test
od_is_default "$name" || ae_fail "blocked name did not get the default certificate"
od_wait_event issuance_failed "$name" 20
line=$(grep -F "[event] issuance_failed " "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | sed -n 1p)
echo "$line" | grep 'rejectedIdentifier' >/dev/null || ae_fail "issuance_failed lacks rejectedIdentifier: $line"
echo "$line" | grep '"retry_at":"20' >/dev/null || ae_fail "issuance_failed lacks retry_at: $line"
orders=$(pebble_count_order_requests)
[ "$orders" -eq 1 ] || ae_fail "expected one newOrder request, got $orders"
for i in 1 2 3 4 5; do
  od_is_default "$name" || ae_fail "blocked name not served the default certificate"
  curl -s -o /dev/null -H "Host: $name" "http://127.0.0.1:$AE_HTTP_PORT/" || true
done
sleep 1
[ "$(pebble_count_order_requests)" -eq 1 ] || ae_fail "CA contacted again before retry_at"
[ "$(od_events issuance_started "$name")" -eq 1 ] || ae_fail "issuance retried before retry_at"
code=$(curl -s -o /dev/null -D "$T/h" -w '%{http_code}' -H "Host: $name" "http://127.0.0.1:$AE_HTTP_PORT/")
[ "$code" = 503 ] || ae_fail "failed name on port 80: expected 503, got $code"
acmedge_stop
echo "ok"
