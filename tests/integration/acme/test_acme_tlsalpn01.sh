#!/usr/bin/env bash
# tls-alpn-01 issuance against Pebble: the validation handshakes reach the real TLS front, which
# serves the RFC 8737 certificate minted by the challenge module.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"acme": {"challenges": ["tls-alpn-01"]}}'

timeout 60 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --out "$T/out" --timeout 50 \
  alpn.example.test >"$T/issue.out" 2>"$T/issue.log" || { cat "$T/issue.out"; ae_fail "issuance failed"; }
cat "$T/issue.out"
grep -qx 'ok alpn.example.test tls-alpn-01' "$T/issue.out" || ae_fail "no 'ok alpn.example.test tls-alpn-01' line"
grep -q '^progress alpn.example.test challenge_valid tls-alpn-01$' "$T/issue.out" || ae_fail "no challenge_valid"
certtool --verify --load-ca-certificate "$T/pebble-root.pem" --infile "$T/out/alpn.example.test.pem" \
  >"$T/verify.out" 2>&1 || { cat "$T/verify.out"; ae_fail "chain does not verify against Pebble's root"; }
certtool -i --infile "$T/out/alpn.example.test.pem" | grep 'DNSname: alpn.example.test' >/dev/null || ae_fail "SAN missing"
echo PASS
