#!/usr/bin/env bash
# POST /v1/domains/{name}/renew (the console's "Renew now"): a valid name is renewed at once with
# a new certificate (202, renewal_scheduled with source "api", cert_renewed, a new serial served);
# a second request while the order runs is 409 or a second renewal, never a crash; an unknown name
# is 404 (after one 503 while storage is asked); another method is 405; a malformed name is 400.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"
ADMIN=http://127.0.0.1:$AE_ADMIN_PORT

# status METHOD PATH : the HTTP status of one admin request.
status() { curl -s --noproxy '*' -o "$T/body" -w '%{http_code}' -X "$1" "$ADMIN$2" || true; }

name=now.example.test
od_is_default "$name" || true
od_wait_issued "$name" 60
serial1=$(od_serial "$name")
[ -n "$serial1" ] || ae_fail "could not read the first serial"

[ "$(status POST "/v1/domains/$name/renew")" = 202 ] || ae_fail "renew did not answer 202: $(cat "$T/body")"
grep -q "\"renewing\": *\"$name\"" "$T/body" || ae_fail "renew body: $(cat "$T/body")"
od_wait_event renewal_scheduled "$name" 10
grep -F "[event] renewal_scheduled " "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | grep '"source":"api"' >/dev/null ||
  ae_fail "renewal_scheduled does not say source api"
code=$(status POST "/v1/domains/$name/renew")
case "$code" in 202 | 409) ;; *) ae_fail "second renew answered $code: $(cat "$T/body")" ;; esac
od_wait_event cert_renewed "$name" 60
serial2=""
for ((i = 0; i < 50; i++)); do
  serial2=$(od_serial "$name")
  [ -n "$serial2" ] && [ "$serial2" != "$serial1" ] && break
  sleep 0.2
done
[ "$serial2" != "$serial1" ] || ae_fail "the renewed certificate is not served (serial $serial1)"

# An unknown name is first looked up in storage (503, ask again), then known to be absent (404).
code=""
for ((i = 0; i < 50; i++)); do
  code=$(status POST /v1/domains/unknown.example.test/renew)
  [ "$code" = 503 ] || break
  sleep 0.1
done
[ "$code" = 404 ] || ae_fail "unknown name answered $code: $(cat "$T/body")"
[ "$(status GET "/v1/domains/$name/renew")" = 405 ] || ae_fail "GET renew: $(cat "$T/body")"
[ "$(status POST /v1/domains/%00/renew)" = 400 ] || ae_fail "NUL name: $(cat "$T/body")"
acmedge_stop
echo "ok"
