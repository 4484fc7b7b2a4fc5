#!/usr/bin/env bash
# first_handshake "wait": the very first handshake for a new name is held and completes with the
# issued certificate; with a tiny wait_timeout_ms a held handshake falls back to the default.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"on_demand": {"first_handshake": "wait", "wait_timeout_ms": 15000}}'
acmedge_start "$T/acmedge.json"

name=held.example.test
od_is_pebble "$name" || ae_fail "first handshake for $name did not get the issued certificate: $(od_issuer "$name")"
ae_verify_chain "$name" || ae_fail "chain for $name does not verify"
acmedge_stop

# Timeout path: Pebble is stopped, so issuance cannot finish; the handshake must still complete.
pebble_stop
ae_config_write "$T/acmedge2.json" '{"on_demand": {"first_handshake": "wait", "wait_timeout_ms": 500}}'
acmedge_start "$T/acmedge2.json"
start=$(date +%s%N)
od_is_default timeout.example.test || ae_fail "held handshake did not fall back to the default certificate"
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
[ "$elapsed" -lt 8000 ] || ae_fail "fallback took $elapsed ms"
acmedge_stop
echo "ok"
