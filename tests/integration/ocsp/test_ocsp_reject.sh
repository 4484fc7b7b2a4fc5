#!/usr/bin/env bash
# Bad OCSP answers are never stapled, and a good staple already held is kept until its own
# nextUpdate (then no staple at all): responder down, HTTP 500, garbage, oversized, a response
# for another certificate, one signed by an unrelated key, one without nextUpdate.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
source "$AE_SRC/tests/lib/ocsp.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0
export OCSP_NMIN=1 # nextUpdate one minute after thisUpdate: refresh after 30 s
ocsp_pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

# --- a held good staple survives failed refreshes, but never outlives its nextUpdate ---------
k=kept.example.test
ocsp_issue "$k"
ocsp_index_set "$k" V
ocsp_expect "$k" tls1_3 good
next=$(grep -F '[event] ocsp_stapled ' "$T/acmedge.log" | grep -F "\"domain\":\"$k\"" | sed -n 1p |
  sed 's/.*"next_update":"\([^"]*\)".*/\1/')
next_s=$(date -u -d "$next" +%s) || ae_fail "no next_update in ocsp_stapled: $next"
ocsp_mode 500
od_wait_event ocsp_failed "$k" 60
grep -F '[event] ocsp_failed ' "$T/acmedge.log" | grep -F "\"domain\":\"$k\"" | grep 'HTTP 500' >/dev/null ||
  ae_fail "ocsp_failed for $k does not name HTTP 500"
[ "$(date +%s)" -lt $((next_s - 2)) ] || ae_fail "refresh failed only after nextUpdate (too slow to judge)"
ocsp_expect_now "$k" tls1_3 good

# --- fresh names: each bad answer is rejected, nothing is stapled ----------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ocsp/rogue.key" \
  -out "$T/ocsp/rogue.pem" -subj "/CN=rogue responder" -days 2 2>/dev/null
# check_bad NAME EXPECTED_REASON_SUBSTRING MODE... : issue NAME, make its serial "good" at the
# real responder, answer with MODE, and expect a rejection naming the reason, with no staple.
check_bad() {
  local name=$1 reason=$2
  shift 2
  ocsp_mode "$@"
  ocsp_handshake "$name" tls1_2 >/dev/null
  od_wait_event ocsp_failed "$name" 40
  local line
  line=$(grep -F '[event] ocsp_failed ' "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | sed -n 1p)
  echo "$line" | grep -F "$reason" >/dev/null || ae_fail "$name ($*): ocsp_failed does not say '$reason': $line"
  ocsp_expect_now "$name" tls1_2 none
  ocsp_expect_now "$name" tls1_3 none
  [ "$(od_events ocsp_stapled "$name")" -eq 0 ] || ae_fail "$name ($*): a bad answer was stapled"
}
issue_good() {
  ocsp_issue "$1"
  ocsp_index_set "$1" V
}

issue_good down.example.test
check_bad down.example.test "responder unreachable" down
issue_good e500.example.test
check_bad e500.example.test "HTTP 500" 500
issue_good garbage.example.test
check_bad garbage.example.test "unparsable" garbage
issue_good big.example.test
check_bad big.example.test "responder unreachable" big

# A genuine answer from the real responder, but for another certificate (not $k's, which must
# keep failing its refreshes).
o=other.example.test
issue_good "$o"
openssl ocsp -issuer "$T/pebble-intermediate.pem" -serial "0x$(ocsp_serial down.example.test)" \
  -url "http://127.0.0.1:$OCSP_BACKEND_PORT/" -no_nonce -noverify -respout "$T/ocsp/other.der" >/dev/null 2>&1 ||
  ae_fail "could not fetch the other certificate's response"
check_bad "$o" "another certificate" file "$T/ocsp/other.der"

# Right certificate, signed by an unrelated key; and right signer without nextUpdate.
r=rogue.example.test
issue_good "$r"
openssl ocsp -issuer "$T/pebble-intermediate.pem" -serial "0x$(ocsp_serial "$r")" -no_nonce \
  -reqout "$T/ocsp/rogue-req.der" >/dev/null 2>&1
openssl ocsp -index "$T/ocsp/index.txt" -CA "$T/pebble-intermediate.pem" -rsigner "$T/ocsp/rogue.pem" \
  -rkey "$T/ocsp/rogue.key" -reqin "$T/ocsp/rogue-req.der" -respout "$T/ocsp/rogue.der" -nmin 1 >/dev/null 2>&1 ||
  ae_fail "could not build the rogue response"
check_bad "$r" "signature" file "$T/ocsp/rogue.der"
n=nonext.example.test
issue_good "$n"
openssl ocsp -issuer "$T/pebble-intermediate.pem" -serial "0x$(ocsp_serial "$n")" -no_nonce \
  -reqout "$T/ocsp/nonext-req.der" >/dev/null 2>&1
openssl ocsp -index "$T/ocsp/index.txt" -CA "$T/pebble-intermediate.pem" -rsigner "$T/pebble-intermediate.pem" \
  -rkey "$T/ocsp/inter.key" -reqin "$T/ocsp/nonext-req.der" -respout "$T/ocsp/nonext.der" >/dev/null 2>&1 ||
  ae_fail "could not build the response without nextUpdate"
check_bad "$n" "no nextUpdate" file "$T/ocsp/nonext.der"

m=$(curl -s "http://127.0.0.1:$AE_ADMIN_PORT/metrics")
for outcome in http_error invalid unreachable; do
  echo "$m" | grep -E "^acmedge_ocsp_fetches_total\{outcome=\"$outcome\"\} [1-9]" >/dev/null ||
    ae_fail "no $outcome fetch counted"
done

# --- never past nextUpdate: once it passed, $k goes out without a staple ----------------------
for ((i = 0; i < 300; i++)); do
  [ "$(date +%s)" -gt $((next_s + 1)) ] && break
  sleep 0.5
done
ocsp_expect_now "$k" tls1_3 none
[ "$(od_events ocsp_stapled "$k")" -eq 1 ] || ae_fail "$k was stapled again from a bad answer"
acmedge_stop
echo ok
