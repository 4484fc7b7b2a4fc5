#!/usr/bin/env bash
# on_demand.fallback_cert "internal": while ACME is pending or failing, an allowed name is served a
# leaf minted for exactly that name (verifies against the internal root with a hostname check);
# once issued, the Pebble certificate replaces it. 500 handshakes for a new name -> 1 mint and 1
# order. Denied and hostile names keep the default certificate and mint nothing.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"internal_ca": {"enabled": true},
  "on_demand": {"fallback_cert": "internal", "backoff": {"initial_s": 1, "max_s": 3600}}}'
acmedge_start "$T/acmedge.json"
"$ACMEDGE_BIN" ca root -c "$T/acmedge.json" >"$T/root.pem" || ae_fail "acmedge ca root failed"

metric() {
  curl -sf --max-time 5 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" >"$T/metrics.txt" || ae_fail "GET /metrics failed"
  awk -v m="$1" '$1 == m {print $2; exit}' "$T/metrics.txt"
}
[ "$(metric acmedge_internal_ca_mints_total)" = 0 ] || ae_fail "mints before any handshake"

# A burst for one new name: one stand-in mint, one order, then the Pebble certificate.
burst=burst.example.test
# (What is asserted is the singleflight; under sanitizers on a loaded machine some of the 500
# handshakes may hit the client's 10 s timeout, which says nothing about minting.)
out=$("$AE_TOOL_hsload" -c 50 -n 500 --sni "$burst" 127.0.0.1 "$AE_HTTPS_PORT" 2>&1 | tail -1)
echo "burst: $out"
case "$out" in
  "RESULT ok=0 "*) ae_fail "burst handshakes: $out" ;;
  "RESULT ok="*) ;;
  *) ae_fail "burst handshakes: $out" ;;
esac
od_wait_issued "$burst" 60
ae_verify_chain "$burst" || ae_fail "Pebble chain for $burst does not verify: $(cat "$T/verify-$burst.out")"
[ "$(metric acmedge_internal_ca_mints_total)" = 1 ] || ae_fail "expected 1 mint for the burst, got $(metric acmedge_internal_ca_mints_total)"
[ "$(pebble_count_orders)" -eq 1 ] || ae_fail "expected 1 order for the burst, Pebble saw $(pebble_count_orders)"
[ "$(od_events issuance_started "$burst")" -eq 1 ] || ae_fail "$burst: not exactly one issuance"

# ACME down: the first handshake for a new name gets a leaf for that exact name.
pebble_stop
name=fb.example.test
# The very first handshake (held while storage is read and the leaf minted), no retry.
timeout 60 gnutls-cli --x509cafile="$T/root.pem" --sni-hostname="$name" --verify-hostname="$name" \
  --print-cert -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >"$T/fb.out" 2>&1 ||
  ae_fail "the first handshake for $name did not verify against the internal root: $(tail -5 "$T/fb.out")"
awk 'd{next} /BEGIN CERT/{p=1} p{print} /END CERT/{if (p) d=1}' "$T/fb.out" >"$T/fb-leaf.pem"
certtool -i --infile "$T/fb-leaf.pem" >"$T/fb-leaf.txt" 2>&1 || ae_fail "served leaf unreadable: $(cat "$T/fb.out")"
grep -q "DNSname: $name" "$T/fb-leaf.txt" || ae_fail "stand-in leaf is not for $name"
grep -q 'Issuer:.*acmedge Internal Intermediate CA' "$T/fb-leaf.txt" || ae_fail "stand-in leaf not from the internal CA"
if timeout 10 gnutls-cli --x509cafile="$T/root.pem" --sni-hostname="$name" --verify-hostname=other.example.test \
  -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >/dev/null 2>&1; then
  ae_fail "stand-in leaf for $name verified for another name"
fi
od_wait_event issuance_failed "$name" 30
mints=$(metric acmedge_internal_ca_mints_total)
[ "$mints" = 2 ] || ae_fail "expected 2 mints, got $mints"

# Denied (not in allow) and hostile names: default certificate, nothing minted.
od_is_default other.test || ae_fail "denied name other.test did not get the default certificate"
# (A non-LDH SNI is refused with illegal_parameter: no certificate at all; see test_ca_hostile.)
if ae_sni_cert a_b.example.test | grep 'Internal' >/dev/null; then ae_fail "hostile name a_b.example.test got an internal leaf"; fi
[ "$(metric acmedge_internal_ca_mints_total)" = "$mints" ] || ae_fail "a denied or hostile name was minted for"

# ACME back: the next attempt after the backoff installs the Pebble certificate over the stand-in.
pebble_restart
od_wait_issued "$name" 60
ae_verify_chain "$name" || ae_fail "Pebble chain for $name does not verify: $(cat "$T/verify-$name.out")"
[ "$(metric acmedge_fallback_leaf_cache_entries)" = 0 ] || ae_fail "stand-in leaves not dropped after issuance"
# GET /v1/domains: the Pebble certificate is issuer "acme", with its DN beside it.
curl -sf "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" -o "$T/domains.json" || ae_fail "GET /v1/domains failed"
"$AE_PY" - "$T/domains.json" "$name" <<'PY' || ae_fail "/v1/domains issuer wrong: $(cat "$T/domains.json")"
import json, sys
row = [d for d in json.load(open(sys.argv[1])) if d["domain"] == sys.argv[2]][0]
assert row["issuer"] == "acme", row
assert "Pebble" in row["issuer_dn"], row
PY
grep -F "[event] cert_issued " "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | grep -F '"issuer":"acme"' >/dev/null ||
  ae_fail "cert_issued for $name lacks issuer acme"
acmedge_stop
echo "ok"
