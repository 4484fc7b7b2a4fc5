#!/usr/bin/env bash
# After a CA reset (Pebble restarted: it forgot every account) a run with the stored account
# gets accountDoesNotExist, registers the same key again within the job and succeeds.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
key="$T/storage/accounts/127.0.0.1_$PEBBLE_PORT/account.key"

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --timeout 50 first.example.test \
  >"$T/run1.out" 2>"$T/run1.log" || { cat "$T/run1.out"; ae_fail "first issuance failed"; }
sum1=$(sha256sum <"$key")
url1=$(jq -r .url "$T/storage/accounts/127.0.0.1_$PEBBLE_PORT/account.json")

pebble_restart
timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --out "$T/out" --timeout 50 second.example.test \
  >"$T/run2.out" 2>"$T/run2.log" || { cat "$T/run2.out"; ae_fail "issuance after the CA reset failed"; }
cat "$T/run1.out" "$T/run2.out"
grep -q '^ok second.example.test ' "$T/run2.out" || ae_fail "no ok line after the CA reset"
grep -q 'does not know account' "$T/run2.log" || ae_fail "accountDoesNotExist was not seen/handled"
[ "$(grep -c '^fail' "$T/run2.out" || true)" = 0 ] || ae_fail "a failure was reported"
[ "$(sha256sum <"$key")" = "$sum1" ] || ae_fail "the account key changed"
url2=$(jq -r .url "$T/storage/accounts/127.0.0.1_$PEBBLE_PORT/account.json")
echo "account before: $url1 after: $url2"
[ "$url2" != null ] && [ -n "$url2" ] || ae_fail "account.json has no url after re-registration"
certtool --verify --load-ca-certificate "$T/pebble-root.pem" --infile "$T/out/second.example.test.pem" \
  >/dev/null 2>&1 || ae_fail "chain does not verify against the new root"
echo PASS
