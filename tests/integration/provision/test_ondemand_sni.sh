#!/usr/bin/env bash
# Unknown SNI -> default certificate at once, issuance in the background, then the Pebble
# certificate (chain verified against Pebble's root); restart serves it from storage, no new order.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

name=new.example.test
od_is_default "$name" || ae_fail "first handshake for $name did not get the default certificate"
od_wait_issued "$name" 20
ae_verify_chain "$name" || ae_fail "chain for $name does not verify against Pebble's root: $(cat "$T/verify-$name.out")"

for ev in domain_requested issuance_started challenge_ready challenge_valid cert_issued cert_installed renewal_scheduled; do
  [ "$(od_events "$ev" "$name")" -ge 1 ] || ae_fail "missing $ev event for $name"
done
[ "$(pebble_count_orders)" -eq 1 ] || ae_fail "expected 1 order, Pebble saw $(pebble_count_orders)"

# Persisted per design §7, key private.
ca_host="127.0.0.1_$PEBBLE_PORT"
d="$T/storage/certs/$ca_host/$name"
[ -s "$d/cert.pem" ] && [ -s "$d/key.pem" ] && [ -s "$d/meta.json" ] || ae_fail "certificate not stored under $d"
[ "$(stat -c %a "$d/key.pem")" = 600 ] || ae_fail "key.pem mode is $(stat -c %a "$d/key.pem"), want 600"
[ "$(stat -c %a "$T/default.key")" = 600 ] || ae_fail "default.key mode is not 600"

# Restart: served from storage, zero new orders.
acmedge_stop
orders=$(pebble_count_orders)
acmedge_start "$T/acmedge.json"
od_is_pebble "$name" || ae_fail "after restart $name is not served its stored certificate"
ae_verify_chain "$name" || ae_fail "after restart the chain for $name does not verify"
[ "$(od_events cert_loaded "$name")" -ge 1 ] || ae_fail "no cert_loaded event after restart"
sleep 1
[ "$(pebble_count_orders)" -eq "$orders" ] || ae_fail "restart caused a new order"
acmedge_stop
echo "ok"
