#!/usr/bin/env bash
# http-01 issuance against Pebble through the real port-80 listener; the chain verifies against
# Pebble's root and the account key is stored 0600.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"acme": {"challenges": ["http-01"]}}'

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --out "$T/out" --timeout 50 \
  a.example.test >"$T/issue.out" 2>"$T/issue.log" || { cat "$T/issue.out"; ae_fail "issuance failed"; }
cat "$T/issue.out"
grep -qx 'ok a.example.test http-01' "$T/issue.out" || ae_fail "no 'ok a.example.test http-01' line"
grep -q '^progress a.example.test challenge_ready http-01$' "$T/issue.out" || ae_fail "no challenge_ready progress"
grep -q '^progress a.example.test challenge_valid http-01$' "$T/issue.out" || ae_fail "no challenge_valid progress"

# The downloaded chain (leaf + intermediate) verifies against the root from /roots/0.
certtool --verify --load-ca-certificate "$T/pebble-root.pem" --infile "$T/out/a.example.test.pem" \
  >"$T/verify.out" 2>&1 || { cat "$T/verify.out"; ae_fail "chain does not verify against Pebble's root"; }
certtool -i --infile "$T/out/a.example.test.pem" | grep 'DNSname: a.example.test' >/dev/null || ae_fail "SAN missing"
[ "$(stat -c %a "$T/out/a.example.test.key")" = 600 ] || ae_fail "key file not 0600"

# The account key was persisted privately; the ACME module wrote no certificate to storage.
ca_host="127.0.0.1_$PEBBLE_PORT"
[ -f "$T/storage/accounts/$ca_host/account.key" ] || ae_fail "no account.key"
[ "$(stat -c %a "$T/storage/accounts/$ca_host/account.key")" = 600 ] || ae_fail "account.key not 0600"
grep -q '"url"' "$T/storage/accounts/$ca_host/account.json" || ae_fail "account.json without url"
[ ! -e "$T/storage/certs" ] || [ -z "$(ls -A "$T/storage/certs")" ] || ae_fail "acme wrote certificates"
[ "$(pebble_count_orders)" = 1 ] || ae_fail "expected 1 order, Pebble logged $(pebble_count_orders)"
[ "$(pebble_count_accounts)" = 1 ] || ae_fail "expected 1 account, Pebble logged $(pebble_count_accounts)"
echo PASS
