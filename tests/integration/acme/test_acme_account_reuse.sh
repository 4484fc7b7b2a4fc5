#!/usr/bin/env bash
# The account is registered once and reused by a later run (same storage): Pebble logs one
# account for two orders, and the stored key stays the same, private (0600).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
key="$T/storage/accounts/127.0.0.1_$PEBBLE_PORT/account.key"

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --timeout 50 one.example.test \
  >"$T/run1.out" 2>"$T/run1.log" || { cat "$T/run1.out"; ae_fail "first issuance failed"; }
grep -q '^ok one.example.test ' "$T/run1.out" || ae_fail "first run: no ok line"
[ -f "$key" ] || ae_fail "no account key at $key"
[ "$(stat -c %a "$key")" = 600 ] || ae_fail "account.key mode is $(stat -c %a "$key"), want 600"
sum1=$(sha256sum <"$key")

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --timeout 50 two.example.test three.example.test \
  >"$T/run2.out" 2>"$T/run2.log" || { cat "$T/run2.out"; ae_fail "second issuance failed"; }
cat "$T/run1.out" "$T/run2.out"
grep -q '^ok two.example.test ' "$T/run2.out" || ae_fail "second run: no ok line for two"
grep -q '^ok three.example.test ' "$T/run2.out" || ae_fail "second run: no ok line for three"
[ "$(sha256sum <"$key")" = "$sum1" ] || ae_fail "account key changed"
[ "$(stat -c %a "$key")" = 600 ] || ae_fail "account.key mode changed"
grep -q 'registering account' "$T/run2.log" && ae_fail "second run registered the account again"
[ "$(pebble_count_accounts)" = 1 ] || ae_fail "Pebble logged $(pebble_count_accounts) accounts, want 1"
[ "$(pebble_count_orders)" = 3 ] || ae_fail "Pebble logged $(pebble_count_orders) orders, want 3"
echo PASS
