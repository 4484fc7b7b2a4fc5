#!/usr/bin/env bash
# OCSP stapling against a real responder (openssl ocsp behind Pebble's ocspResponderURL):
# "unknown" is not stapled; 100 concurrent handshakes with an empty cache make exactly one
# responder request; the staple is served over TLS 1.2 and 1.3 (openssl s_client, gnutls-cli +
# ocsptool); it is persisted and served at once after a restart with the responder down; a
# corrupt stored staple is deleted and refetched.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
source "$AE_SRC/tests/lib/ocsp.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
ocsp_pebble_start
ae_config_write "$T/acmedge.json" '{"workers": 2}'
acmedge_start "$T/acmedge.json"

# --- unknown: not stapled, asked again soon -------------------------------------------------
u=unknown.example.test
ocsp_issue "$u"
ocsp_expect "$u" tls1_3 none
# Wait for the failure that names "unknown": a first fetch may fail otherwise (e.g. the responder
# still starting under load), and the name is asked for again soon.
failed_unknown() {
  grep -F '[event] ocsp_failed ' "$T/acmedge.log" | grep -F "\"domain\":\"$u\"" | grep 'unknown' >/dev/null
}
for ((i = 0; i < 300; i++)); do
  failed_unknown && break
  ocsp_handshake "$u" tls1_3 >/dev/null
  sleep 0.1
done
failed_unknown || ae_fail "no ocsp_failed for $u says unknown: $(grep -F '[event] ocsp_failed ' "$T/acmedge.log" | tail -3)"
ocsp_expect_now "$u" tls1_3 none
ocsp_index_set "$u" V
ocsp_expect "$u" tls1_3 good 40

# --- singleflight: 100 concurrent handshakes, one responder request --------------------------
s=single.example.test
ocsp_issue "$s"
ocsp_index_set "$s" V
before=$(ocsp_requests)
"$AE_PY" - "$AE_HTTPS_PORT" "$s" <<'PY'
import socket, ssl, sys, threading
port, name = int(sys.argv[1]), sys.argv[2]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
done, errors = [], []
go = threading.Barrier(100)
def one():
    try:
        go.wait(30)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as raw:
            with ctx.wrap_socket(raw, server_hostname=name):
                done.append(1)
    except Exception as e:
        errors.append(repr(e))
ts = [threading.Thread(target=one) for _ in range(100)]
for t in ts: t.start()
for t in ts: t.join(120)
if len(done) != 100:
    sys.exit("only %d of 100 handshakes completed: %s" % (len(done), errors[:3]))
PY
od_wait_event ocsp_stapled "$s" 30
after=$(ocsp_requests)
[ $((after - before)) -eq 1 ] || ae_fail "100 concurrent handshakes made $((after - before)) responder requests, not 1"

# --- served over TLS 1.2 and 1.3, by openssl and by gnutls ------------------------------------
ocsp_expect "$s" tls1_3 good
ocsp_expect "$s" tls1_2 good
grep -q 'OCSP Response Status: successful' "$T/sclient-$s.out" || ae_fail "s_client: response status not successful"
serial=$(ocsp_serial "$s")
got=""
for ((i = 0; i < 5; i++)); do
  rm -f "$T/gnutls.ocsp"
  timeout 20 gnutls-cli --insecure --sni-hostname="$s" --save-ocsp="$T/gnutls.ocsp" -p "$AE_HTTPS_PORT" \
    127.0.0.1 </dev/null >"$T/gnutls-cli.out" 2>&1 || true
  if [ -s "$T/gnutls.ocsp" ]; then
    got=$(ocsptool -j --infile "$T/gnutls.ocsp" 2>&1 || true)
    break
  fi
  grep -q 'Handshake was completed' "$T/gnutls-cli.out" && ae_fail "gnutls-cli: handshake completed without a staple"
done
echo "$got" | grep -i "Serial Number: $serial" >/dev/null || ae_fail "ocsptool does not show serial $serial: $got"
echo "$got" | grep 'Certificate Status: good' >/dev/null || ae_fail "ocsptool does not show good: $got"
[ "$(ocsp_requests)" -eq "$after" ] || ae_fail "a fresh staple was fetched again"

# --- the admin API and CLI show the staple; metrics count it ---------------------------------
curl -s "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" | grep '"ocsp": *{"state": *"good"' >/dev/null ||
  curl -s "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" | "$AE_PY" -c '
import json, sys
d = {x["domain"]: x for x in json.load(sys.stdin)}
assert d["'"$s"'"]["ocsp"]["state"] == "good", d' || ae_fail "/v1/domains does not show the good staple"
"$ACMEDGE_BIN" domains --admin "127.0.0.1:$AE_ADMIN_PORT" >"$T/domains.out" 2>&1 || ae_fail "acmedge domains failed"
grep -F "$s" "$T/domains.out" | grep good >/dev/null || ae_fail "acmedge domains does not show the OCSP state: $(cat "$T/domains.out")"
m=$(curl -s "http://127.0.0.1:$AE_ADMIN_PORT/metrics")
echo "$m" | grep -E '^acmedge_ocsp_stapled_handshakes_total [1-9]' >/dev/null || ae_fail "no stapled handshakes counted"
echo "$m" | grep -E '^acmedge_ocsp_fetches_total\{outcome="good"\} [1-9]' >/dev/null || ae_fail "no good fetch counted"

# --- persistence: restart with the responder down serves the stored staple at once -----------
stored=$(dirname "$(ocsp_cert_file "$s")")/ocsp.der
[ -s "$stored" ] || ae_fail "staple not stored at $stored"
# A corrupt staple for the other name must be dropped and fetched again.
printf 'garbage' >"$(dirname "$(ocsp_cert_file "$u")")/ocsp.der"
acmedge_stop
ocsp_mode down
before=$(ocsp_requests)
acmedge_start "$T/acmedge.json"
ocsp_expect_now "$s" tls1_3 good
ocsp_expect_now "$s" tls1_2 good
[ "$(ocsp_requests)" -eq "$before" ] || ae_fail "a stored fresh staple was fetched again"
# Certificates (and their staples) are read from storage on first use: a handshake for the other
# name loads it, and the corrupt staple file goes away.
ocsp_expect_now "$u" tls1_3 none
ae_wait_for test ! -e "$(dirname "$(ocsp_cert_file "$u")")/ocsp.der" || ae_fail "corrupt stored staple was not deleted"
ocsp_mode pass
ocsp_expect "$u" tls1_3 good 40
[ -s "$(dirname "$(ocsp_cert_file "$u")")/ocsp.der" ] || ae_fail "refetched staple not stored"
acmedge_stop
echo ok
