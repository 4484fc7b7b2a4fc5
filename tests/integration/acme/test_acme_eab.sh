#!/usr/bin/env bash
# A CA that requires external account binding: without acme.eab the job fails with the CA's
# externalAccountRequired (not retryable); with the right kid/hmac_key the account is bound and
# the certificate issued.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start '"externalAccountBindingRequired": true, "externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}'

ae_config_write "$T/noeab.json"
rc=0
timeout 60 "$AE_TOOL_acme_issue" --config "$T/noeab.json" --timeout 50 eab.example.test \
  >"$T/run1.out" 2>"$T/run1.log" || rc=$?
cat "$T/run1.out"
[ "$rc" = 1 ] || ae_fail "exit status $rc, want 1"
grep -q '^fail eab.example.test urn:ietf:params:acme:error:externalAccountRequired .*retryable=0$' "$T/run1.out" ||
  ae_fail "expected externalAccountRequired, not retryable"

ae_config_write "$T/eab.json" '{"storage": {"path": "'"$T"'/storage2"}, "acme": {"eab": {"kid": "kid-1", "hmac_key": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}}}'
timeout 60 "$AE_TOOL_acme_issue" --config "$T/eab.json" --out "$T/out" --timeout 50 eab.example.test \
  >"$T/run2.out" 2>"$T/run2.log" || { cat "$T/run2.out"; ae_fail "issuance with EAB failed"; }
cat "$T/run2.out"
grep -q '^ok eab.example.test ' "$T/run2.out" || ae_fail "no ok line with EAB"
[ "$(pebble_count_accounts)" = 1 ] || ae_fail "Pebble logged $(pebble_count_accounts) accounts, want 1"
echo PASS
