#!/usr/bin/env bash
# Port 80: a fresh allowed name gets 503 + Retry-After and starts issuance; once issued, 308 to
# https; the challenge path is what Pebble's validator used (challenge_valid over http-01);
# unknown tokens and denied names get 404.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"acme": {"challenges": ["http-01"]}}'
acmedge_start "$T/acmedge.json"
ae_wait_for ae_port_open "$AE_HTTP_PORT" || ae_fail "port 80 listener not up"

name=plain.example.test
url="http://127.0.0.1:$AE_HTTP_PORT/some/page?x=1"
curl -s -o "$T/body1" -D "$T/h1" -H "Host: $name" "$url" || true
head -1 "$T/h1" | grep ' 503' >/dev/null || ae_fail "fresh name: expected 503, got $(head -1 "$T/h1")"
grep -qi '^Retry-After: [0-9]' "$T/h1" || ae_fail "503 without Retry-After"

od_wait_event cert_installed "$name" 20
grep -F "[event] challenge_valid " "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | grep '"challenge":"http-01"' >/dev/null ||
  ae_fail "challenge was not validated over http-01"

curl -s -o /dev/null -D "$T/h2" -H "Host: $name" "$url" || true
head -1 "$T/h2" | grep ' 308' >/dev/null || ae_fail "issued name: expected 308, got $(head -1 "$T/h2")"
grep -qi "^Location: https://$name:$AE_HTTPS_PORT/some/page?x=1" "$T/h2" ||
  ae_fail "bad Location: $(grep -i '^Location' "$T/h2")"

code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $name" "http://127.0.0.1:$AE_HTTP_PORT/.well-known/acme-challenge/unknownToken123")
[ "$code" = 404 ] || ae_fail "unknown challenge token: expected 404, got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Host: evil.example.org" "$url")
[ "$code" = 404 ] || ae_fail "denied name: expected 404, got $code"
[ "$(od_events domain_denied evil.example.org)" -ge 1 ] || ae_fail "no domain_denied for evil.example.org"
[ "$(pebble_count_orders)" -eq 1 ] || ae_fail "expected 1 order, got $(pebble_count_orders)"
acmedge_stop
echo "ok"
