#!/usr/bin/env bash
# Admin API protection: `check` refuses a non-loopback admin listener without admin.token; with a
# token, requests without it (or with a wrong one) get 401 and the CLI reports it; with it they
# work; a unix-socket admin listener is created mode 0600. No CA needed.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup

# ---- check refuses a public admin address without a token (nothing is bound by check)
ae_config_write "$T/public.json" '{"listen": {"admin": "0.0.0.0:2020"}}'
set +e
out=$(timeout 20 "$ACMEDGE_BIN" check -c "$T/public.json" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] || ae_fail "check of a tokenless public admin listener exited $rc: $out"
echo "$out" | grep 'listen.admin' >/dev/null || ae_fail "check message does not name listen.admin: $out"
ae_config_write "$T/public-token.json" '{"listen": {"admin": "0.0.0.0:2020"}, "admin": {"token": "t0k3n-abc"}}'
timeout 20 "$ACMEDGE_BIN" check -c "$T/public-token.json" >/dev/null || ae_fail "check refused a public listener with a token"

# ---- token on a loopback listener
ae_config_write "$T/acmedge.json" '{"admin": {"token": "t0k3n-abc"}}'
acmedge_start "$T/acmedge.json"
A=127.0.0.1:$AE_ADMIN_PORT
ae_wait_for ae_port_open "$AE_ADMIN_PORT" || ae_fail "admin port not open"
for path in /healthz /metrics /v1/domains /v1/events; do
  code=$(curl -s --noproxy '*' --max-time 5 -o "$T/body" -w '%{http_code}' "http://$A$path")
  [ "$code" = 401 ] || ae_fail "GET $path without token: $code"
  grep -q '"error":' "$T/body" || ae_fail "401 for $path without a JSON error body"
  code=$(curl -s --noproxy '*' --max-time 5 -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer wrong' "http://$A$path")
  [ "$code" = 401 ] || ae_fail "GET $path with a wrong token: $code"
done
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  -d '{"domain":"x.example.test"}' "http://$A/v1/domains")
[ "$code" = 401 ] || ae_fail "POST without token: $code"
[ "$(curl -s --noproxy '*' -H 'Authorization: Bearer t0k3n-abc' "http://$A/healthz")" = ok ] ||
  ae_fail "healthz with the token failed"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer t0k3n-abc' "http://$A/v1/domains")
[ "$code" = 200 ] || ae_fail "domains with the token: $code"

set +e
env -u ACMEDGE_ADMIN_TOKEN timeout 10 "$ACMEDGE_BIN" domains --admin "$A" >/dev/null 2>"$T/cli.err"
rc=$?
set -e
[ "$rc" -eq 1 ] && grep -q 401 "$T/cli.err" || ae_fail "CLI without token: exit $rc, $(cat "$T/cli.err")"
ACMEDGE_ADMIN_TOKEN=t0k3n-abc timeout 10 "$ACMEDGE_BIN" domains --admin "$A" >/dev/null ||
  ae_fail "CLI with the token failed"

# 404 / 405 with JSON errors
code=$(curl -s --noproxy '*' -o "$T/body" -w '%{http_code}' -H 'Authorization: Bearer t0k3n-abc' "http://$A/v2/nothing")
[ "$code" = 404 ] && grep -q '"error":' "$T/body" || ae_fail "unknown path: $code"
code=$(curl -s --noproxy '*' -o "$T/body" -w '%{http_code}' -X PUT -H 'Authorization: Bearer t0k3n-abc' "http://$A/v1/domains")
[ "$code" = 405 ] || ae_fail "PUT /v1/domains: $code"
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -X DELETE -H 'Authorization: Bearer t0k3n-abc' \
  "http://$A/v1/domains/never.example.test")
[ "$code" = 404 ] || ae_fail "DELETE of an unknown name: $code"
acmedge_stop

# ---- unix socket listener
ae_config_write "$T/unix.json" "{\"listen\": {\"admin\": \"unix:$T/admin.sock\"}}"
acmedge_start "$T/unix.json"
ae_wait_for test -S "$T/admin.sock" || ae_fail "admin socket not created"
[ "$(stat -c %a "$T/admin.sock")" = 600 ] || ae_fail "admin socket mode $(stat -c %a "$T/admin.sock")"
[ "$(curl -s --unix-socket "$T/admin.sock" http://localhost/healthz)" = ok ] || ae_fail "healthz over the socket"
timeout 10 "$ACMEDGE_BIN" domains --admin "unix:$T/admin.sock" >/dev/null || ae_fail "CLI over the socket"
acmedge_stop
[ ! -e "$T/admin.sock" ] || ae_fail "admin socket left behind after exit"
echo "ok"
