#!/usr/bin/env bash
# With Pebble rejecting 40% of good nonces, issuance still succeeds (badNonce retried with the
# fresh nonce of the error response), several names in parallel.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=40
pebble_start
ae_config_write "$T/acmedge.json"

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --parallel --timeout 50 \
  n1.example.test n2.example.test n3.example.test n4.example.test \
  >"$T/issue.out" 2>"$T/issue.log" || { cat "$T/issue.out"; ae_fail "issuance failed under nonce rejection"; }
cat "$T/issue.out"
[ "$(grep -c '^ok ' "$T/issue.out")" = 4 ] || ae_fail "not all 4 names issued"
grep -q 'Configured to reject 40% of good nonces' "$PEBBLE_LOG" || ae_fail "Pebble did not pick up PEBBLE_WFE_NONCEREJECT"
n=$(grep -c 'badNonce from' "$T/issue.log" || true)
echo "badNonce retries: $n"
[ "$n" -ge 1 ] || ae_fail "no badNonce was retried (expected some at 40%)"
[ "$(pebble_count_accounts)" = 1 ] || ae_fail "Pebble logged $(pebble_count_accounts) accounts, want 1"
echo PASS
