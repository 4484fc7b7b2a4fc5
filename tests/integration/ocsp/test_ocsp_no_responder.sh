#!/usr/bin/env bash
# Certificates without an OCSP URL (plain Pebble, like Let's Encrypt since 2025): no staple, no
# fetch, no OCSP warnings or events however many handshakes, "no_responder" in /v1/domains.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
source "$AE_SRC/tests/lib/ocsp.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

n=plain.example.test
ocsp_issue "$n"
ocsp_expect "$n" tls1_3 none
for ((i = 0; i < 10; i++)); do
  ocsp_handshake "$n" tls1_2 >/dev/null
done
ocsp_expect_now "$n" tls1_3 none
[ "$(od_events ocsp_failed)" -eq 0 ] || ae_fail "ocsp_failed emitted for a certificate without a responder"
[ "$(od_events ocsp_stapled)" -eq 0 ] || ae_fail "ocsp_stapled emitted without a responder"
if grep -E '(warn|error) +\[ocsp\]' "$T/acmedge.log"; then
  ae_fail "OCSP warnings for a certificate without a responder"
fi
m=$(curl -s "http://127.0.0.1:$AE_ADMIN_PORT/metrics")
if echo "$m" | grep -E '^acmedge_ocsp_fetches_total\{[^}]*\} [1-9]'; then
  ae_fail "OCSP fetches counted without a responder"
fi
echo "$m" | grep -E '^acmedge_ocsp_unstapled_handshakes_total [1-9]' >/dev/null || ae_fail "unstapled handshakes not counted"
curl -s "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" | "$AE_PY" -c '
import json, sys
d = {x["domain"]: x for x in json.load(sys.stdin)}
s = d["'"$n"'"]["ocsp"]["state"]
assert s == "no_responder", s' || ae_fail "/v1/domains does not say no_responder"
acmedge_stop
echo ok
