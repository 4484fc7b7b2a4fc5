#!/usr/bin/env bash
# ACME revocation (RFC 8555 7.6) through the admin API and the CLI: Pebble records the reason;
# the CA's alreadyRevoked and badRevocationReason come back verbatim; the staple is dropped
# before the API answers; a staple fetch held in flight by a slow responder during the revoke
# never brings "good" back (generation check).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
source "$AE_SRC/tests/lib/ocsp.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
ocsp_pebble_start
# Three issuances use the whole burst: the replacements wait for a token (a minute), so the
# revoked certificates stay in place long enough to be revoked a second time.
ae_config_write "$T/acmedge.json" '{"on_demand": {"rate": {"per_minute": 1, "burst": 3}}}'
acmedge_start "$T/acmedge.json"
A="127.0.0.1:$AE_ADMIN_PORT"

# pebble_status SERIAL : Pebble's view of a certificate (JSON), trying the serial as printed
# and without leading zeros.
pebble_status() {
  local s
  s=$(echo "$1" | tr 'A-F' 'a-f')
  curl -sf --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/cert-status-by-serial/$s" ||
    curl -sf --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/cert-status-by-serial/${s##0}"
}

a=alpha.example.test
g=gen.example.test
b=beta.example.test
ocsp_issue "$a"
ocsp_issue "$g"
ocsp_issue "$b"
ocsp_index_set "$a" V
ocsp_index_set "$g" V
ocsp_expect "$a" tls1_3 good
stored=$(dirname "$(ocsp_cert_file "$a")")/ocsp.der
[ -s "$stored" ] || ae_fail "no stored staple for $a"
serial_a=$(ocsp_serial "$a")

# --- API: revoke with reason 4; the staple is gone when the answer arrives ---------------------
code=$(curl -s -o "$T/revoke-a.json" -w '%{http_code}' -X POST -d '{"reason": 4}' "http://$A/v1/domains/$a/revoke")
[ -e "$stored" ] && ae_fail "stored staple still there when the revoke API answered"
[ "$code" = 200 ] || ae_fail "revoke $a: HTTP $code: $(cat "$T/revoke-a.json")"
grep -qi "\"serial\": *\"$serial_a\"" "$T/revoke-a.json" || ae_fail "revoke answer lacks the serial: $(cat "$T/revoke-a.json")"
st=$(pebble_status "$serial_a") || ae_fail "Pebble does not know serial $serial_a"
echo "$st" | grep '"Status": *"Revoked"' >/dev/null || ae_fail "Pebble status not Revoked: $st"
echo "$st" | grep '"Reason": *4' >/dev/null || ae_fail "Pebble did not record reason 4: $st"
od_wait_event cert_revoked "$a" 10
line=$(grep -F '[event] cert_revoked ' "$T/acmedge.log" | grep -F "\"domain\":\"$a\"" | sed -n 1p)
echo "$line" | grep '"source":"acme"' >/dev/null || ae_fail "cert_revoked lacks source acme: $line"
echo "$line" | grep '"reason":"superseded"' >/dev/null || ae_fail "cert_revoked lacks the reason: $line"

# --- CLI: the second revocation surfaces alreadyRevoked ---------------------------------------
if "$ACMEDGE_BIN" revoke "$a" --reason keyCompromise --admin "$A" >"$T/cli2.out" 2>&1; then
  ae_fail "second revocation succeeded: $(cat "$T/cli2.out")"
fi
grep -q 'alreadyRevoked' "$T/cli2.out" || ae_fail "second revocation did not surface alreadyRevoked: $(cat "$T/cli2.out")"
# Reason 7 is unused in RFC 5280: the CA refuses it and says so.
if "$ACMEDGE_BIN" revoke "$b" --reason 7 --admin "$A" >"$T/cli7.out" 2>&1; then
  ae_fail "reason 7 accepted: $(cat "$T/cli7.out")"
fi
grep -q 'badRevocationReason' "$T/cli7.out" || ae_fail "reason 7 did not surface badRevocationReason: $(cat "$T/cli7.out")"
code=$(curl -s -o "$T/revoke-x.json" -w '%{http_code}' -X POST -d '{}' "http://$A/v1/domains/nothing.example.test/revoke")
[ "$code" = 404 ] || ae_fail "revoking an unknown name: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d '{"reason": "x"}' "http://$A/v1/domains/$b/revoke")
[ "$code" = 400 ] || ae_fail "non-numeric reason: HTTP $code"

# --- generation: a fetch held in flight during the revoke never re-inserts "good" --------------
ocsp_mode hold
before=$(ocsp_requests)
ocsp_handshake "$g" tls1_3 >/dev/null
for ((i = 0; i < 100; i++)); do
  [ "$(ocsp_requests)" -gt "$before" ] && break
  sleep 0.1
done
[ "$(ocsp_requests)" -gt "$before" ] || ae_fail "no staple fetch started for $g"
"$ACMEDGE_BIN" revoke "$g" --reason keyCompromise --admin "$A" >"$T/clig.out" 2>&1 ||
  ae_fail "revoke $g failed: $(cat "$T/clig.out")"
ocsp_mode pass # the held fetch now gets the responder's (stale) "good"
for ((i = 0; i < 100; i++)); do
  grep -q "OCSP answer for serial $(ocsp_serial "$g" | tr 'A-F' 'a-f' | sed 's/^0*//') discarded" "$T/acmedge.log" && break
  sleep 0.1
done
grep -q "discarded: the entry changed meanwhile" "$T/acmedge.log" || ae_fail "the held fetch's answer was not discarded"
[ "$(od_events ocsp_stapled "$g")" -eq 0 ] || ae_fail "a staple fetched before the revoke was stored after it"
[ -e "$(dirname "$(ocsp_cert_file "$g")")/ocsp.der" ] && ae_fail "a staple for the revoked $g was persisted"
acmedge_stop
echo ok
