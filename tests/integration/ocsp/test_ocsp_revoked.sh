#!/usr/bin/env bash
# The responder turns a certificate "revoked" (keyCompromise): the next refresh stops stapling,
# emits cert_revoked (source ocsp) and replaces the certificate at once with a new one (new
# serial, new key) that is then served.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
source "$AE_SRC/tests/lib/ocsp.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
export OCSP_NMIN=1 # refresh 30 s after thisUpdate
ocsp_pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

spki() { openssl x509 -noout -pubkey -in "$1" | openssl pkey -pubin -outform DER | sha256sum | cut -d' ' -f1; }

r=revoked.example.test
ocsp_issue "$r"
ocsp_index_set "$r" V
ocsp_expect "$r" tls1_3 good
serial1=$(ocsp_serial "$r")
spki1=$(spki "$(ocsp_cert_file "$r")")

ocsp_index_set "$r" R keyCompromise
od_wait_event cert_revoked "$r" 90
line=$(grep -F '[event] cert_revoked ' "$T/acmedge.log" | grep -F "\"domain\":\"$r\"" | sed -n 1p)
echo "$line" | grep '"source":"ocsp"' >/dev/null || ae_fail "cert_revoked lacks source ocsp: $line"
echo "$line" | grep '"reason":"keyCompromise"' >/dev/null || ae_fail "cert_revoked lacks the reason: $line"

# A replacement is ordered at once and served.
for ((i = 0; i < 600; i++)); do
  [ "$(od_events cert_installed "$r")" -ge 2 ] && break
  sleep 0.1
done
[ "$(od_events cert_installed "$r")" -ge 2 ] || ae_fail "no replacement certificate installed for $r"
serial2=$(ocsp_serial "$r")
[ "$serial2" != "$serial1" ] || ae_fail "replacement has the revoked serial"
spki2=$(spki "$(ocsp_cert_file "$r")")
[ "$spki2" != "$spki1" ] || ae_fail "replacement reuses the compromised key"
served=""
for ((i = 0; i < 5; i++)); do
  served=$(timeout 20 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername "$r" </dev/null 2>/dev/null |
    openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//' || true)
  [ -n "$served" ] && break
  sleep 0.5
done
[ "$served" = "$serial2" ] || ae_fail "served serial '$served', expected the replacement $serial2"
# The new certificate is unknown to the responder: not stapled, and the revoked one's staple is gone.
ocsp_expect_now "$r" tls1_3 none
acmedge_stop
echo ok
