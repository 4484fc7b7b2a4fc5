#!/usr/bin/env bash
# A name on Pebble's domainBlocklist: the job fails with the CA's rejectedIdentifier problem and
# detail, classified as not retryable, after one newOrder (no retry storm), no crash.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
export PEBBLE_WFE_NONCEREJECT=0 # every newOrder request below is then a distinct attempt
pebble_start '"domainBlocklist": ["blocked.example.test"]'
ae_config_write "$T/acmedge.json"

rc=0
timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --timeout 50 blocked.example.test fine.example.test \
  >"$T/issue.out" 2>"$T/issue.log" || rc=$?
cat "$T/issue.out"
[ "$rc" = 1 ] || ae_fail "exit status $rc, want 1 (failed issuance, clean exit)"
line=$(grep '^fail blocked.example.test ' "$T/issue.out" || true)
[ -n "$line" ] || ae_fail "no fail line"
case "$line" in
  "fail blocked.example.test urn:ietf:params:acme:error:rejectedIdentifier "*"retryable=0") ;;
  *) ae_fail "unexpected result: $line" ;;
esac
echo "$line" | grep -i 'blocked' >/dev/null || ae_fail "the CA's detail is not in the result"
[ "$(grep -c 'blocked.example.test: creating order' "$T/issue.log")" = 1 ] || ae_fail "newOrder was sent more than once"
# The same process (same loop, same client) then issued the next name.
grep -q '^ok fine.example.test ' "$T/issue.out" || ae_fail "no ok line for fine.example.test after the failure"
n=$(grep -c 'POST /order-plz' "$PEBBLE_LOG" || true)
[ "$n" = 2 ] || ae_fail "Pebble received $n newOrder requests, want 2 (one per name)"
[ "$(pebble_count_orders)" -le 2 ] || ae_fail "Pebble logged $(pebble_count_orders) orders, want <= 2"
echo PASS
