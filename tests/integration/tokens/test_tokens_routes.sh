#!/usr/bin/env bash
# Protected proxy routes with the real binary, curl over TLS and a counting upstream: 401
# invalid_token / 403 insufficient_scope never reach the upstream (its request log proves it), a
# valid token reaches it with X-Auth-Sub/X-Auth-Groups set by acmedge (client copies stripped, the
# token not forwarded), bound tokens need the matching client certificate (also on a resumed
# session), and only hosts with bound routes send a CertificateRequest.
# Times: tokens live 10 minutes, the leeway is fixed in the config; nothing sleeps.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
ECHO_PORT=$(ae_free_port)
ae_bg echo "$AE_PY" "$PX_UP/echo.py" "$ECHO_PORT"
ae_wait_for ae_port_open "$ECHO_PORT" || ae_fail "echo upstream did not start"
PX_HOSTS="app.example.test team.example.test bound.example.test"

B=$ACMEDGE_BIN
pub=$("$B" token keygen --out "$T/ops.key")
for n in c1 c2; do
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$n" \
    -keyout "$T/$n.key" -out "$T/$n.pem" >/dev/null 2>&1 || ae_fail "client cert $n"
done

ae_config_write "$T/acmedge.json" "{
  \"on_demand\": {\"enabled\": false},
  \"cap_tokens\": {\"keys\": {\"ops\": \"$pub\"}, \"audience\": \"edge-1\", \"leeway_s\": 60, \"max_ttl_s\": 3600},
  \"routes\": [
    {\"hosts\": [\"app.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\"},
    {\"hosts\": [\"team.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\",
     \"auth\": {\"cap_tokens\": {\"groups\": [\"team-a\", \"ops\"]}}},
    {\"hosts\": [\"bound.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\",
     \"auth\": {\"cap_tokens\": {\"audience\": \"bound-svc\", \"bind\": true}}}
  ]}"
timeout 20 "$B" check -c "$T/acmedge.json" >/dev/null || ae_fail "check refused the route config"
acmedge_start "$T/acmedge.json"

mint() { "$B" token mint --key "$T/ops.key" --iss ops --ttl 10m "$@"; }
t_team=$(mint --sub alice --groups team-a --aud edge-1)
t_other=$(mint --sub bob --groups team-b --aud edge-1)
t_bound=$(mint --sub carol --aud bound-svc --bind "$T/c1.pem")
t_unbound=$(mint --sub dave --aud bound-svc)

# hits PATH : how many requests for PATH the upstream received
hits() { grep -c " $1\$" "$T/echo.log" || true; }
# call HOST PATH [curl args...] : prints the status, body in $T/body, headers in $T/h
call() {
  local host=$1 path=$2
  shift 2
  px_curl -o "$T/body" -D "$T/h" -w '%{http_code}' "$@" "$(px_url "$host" "$path")" || echo 000
}

# ---- open route: acmedge-owned fields are stripped there too
[ "$(call app.example.test /open -H 'X-Auth-Sub: mallory' -H 'X-Auth-Groups: admin')" = 200 ] || ae_fail "open route"
[ -z "$(px_header X-Auth-Sub <"$T/body")$(px_header X-Auth-Groups <"$T/body")" ] ||
  ae_fail "client X-Auth-* reached the upstream of an open route: $(cat "$T/body")"

# ---- refusals never reach the upstream
for i in 1 2 3; do
  [ "$(call team.example.test /no-token-$i)" = 401 ] || ae_fail "no token: $(cat "$T/h")"
  grep -qi 'WWW-Authenticate: Bearer.*error="invalid_token"' "$T/h" || ae_fail "401 without invalid_token"
done
[ "$(call team.example.test /bad -H 'Authorization: Bearer cap:abc')" = 401 ] || ae_fail "malformed token"
[ "$(call team.example.test /other -H "Authorization: Bearer $t_other")" = 403 ] || ae_fail "other group"
grep -qi 'WWW-Authenticate: Bearer.*error="insufficient_scope"' "$T/h" || ae_fail "403 without insufficient_scope"
[ "$(call team.example.test /post -H "Authorization: Bearer $t_other" --data-binary 'body')" = 403 ] ||
  ae_fail "403 with a body"
[ "$(call team.example.test /aud -H "Authorization: Bearer $t_unbound")" = 401 ] || ae_fail "wrong audience"
for p in /no-token-1 /no-token-2 /no-token-3 /bad /other /post /aud; do
  [ "$(hits "$p")" = 0 ] || ae_fail "refused request $p reached the upstream"
done

# ---- a valid token: identity set by acmedge, spoofed copies stripped, token not forwarded
[ "$(call team.example.test /ok -H "Authorization: Bearer $t_team" -H 'X-Auth-Sub: mallory' \
  -H 'x-auth-groups: ops')" = 200 ] || ae_fail "valid token: $(cat "$T/body")"
[ "$(px_header X-Auth-Sub <"$T/body")" = alice ] || ae_fail "X-Auth-Sub: $(cat "$T/body")"
[ "$(px_header X-Auth-Groups <"$T/body")" = team-a ] || ae_fail "X-Auth-Groups: $(cat "$T/body")"
[ -z "$(px_header Authorization <"$T/body")" ] || ae_fail "the token was forwarded"
[ "$(hits /ok)" = 1 ] || ae_fail "upstream count for /ok: $(hits /ok)"
# keep-alive: a refused and an accepted request on one connection
px_curl -o /dev/null -o /dev/null -w '%{http_code} ' "$(px_url team.example.test /ka-1)" \
  -H "Authorization: Bearer $t_team" "$(px_url team.example.test /ka-2)" >"$T/ka" || true
[ "$(hits /ka-1)" = 1 ] && [ "$(hits /ka-2)" = 1 ] || ae_fail "keep-alive requests: $(cat "$T/ka")"

# ---- bound tokens
[ "$(call bound.example.test /b-ok --cert "$T/c1.pem" --key "$T/c1.key" -H "Authorization: Bearer $t_bound")" = 200 ] ||
  ae_fail "bound token with its cert: $(cat "$T/body")"
[ "$(px_header X-Auth-Sub <"$T/body")" = carol ] || ae_fail "bound X-Auth-Sub"
[ "$(call bound.example.test /b-wrong --cert "$T/c2.pem" --key "$T/c2.key" -H "Authorization: Bearer $t_bound")" = 401 ] ||
  ae_fail "bound token with another cert"
[ "$(call bound.example.test /b-none -H "Authorization: Bearer $t_bound")" = 401 ] || ae_fail "bound token without cert"
[ "$(call bound.example.test /b-unbound --cert "$T/c1.pem" --key "$T/c1.key" -H "Authorization: Bearer $t_unbound")" = 401 ] ||
  ae_fail "unbound token on a bind route"
for p in /b-wrong /b-none /b-unbound; do
  [ "$(hits "$p")" = 0 ] || ae_fail "refused request $p reached the upstream"
done

# ---- CertificateRequest only where bound tokens are used
cr() { # SNI -> prints the number of CertificateRequest messages seen
  timeout 20 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername "$1" -msg </dev/null 2>&1 |
    grep -c 'CertificateRequest' || true
}
[ "$(cr app.example.test)" = 0 ] || ae_fail "open host sent a CertificateRequest"
[ "$(cr team.example.test)" = 0 ] || ae_fail "unbound token host sent a CertificateRequest"
[ "$(cr bound.example.test)" != 0 ] || ae_fail "bound host sent no CertificateRequest"

# ---- resumed session keeps the binding (openssl session file; TLS 1.2 so the ticket is reused)
req="GET /resumed HTTP/1.1\r\nHost: bound.example.test\r\nAuthorization: Bearer $t_bound\r\nConnection: close\r\n\r\n"
sc() {
  printf "$req" | timeout 20 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername bound.example.test \
    -tls1_2 -cert "$T/c1.pem" -key "$T/c1.key" -ign_eof "$@" 2>&1 || true
}
sc -sess_out "$T/sess.pem" >"$T/first.out"
grep -q '^HTTP/1.1 200' "$T/first.out" || ae_fail "first s_client request: $(head -c 3000 "$T/first.out")"
[ -s "$T/sess.pem" ] || ae_fail "no session saved"
sc -sess_in "$T/sess.pem" >"$T/second.out"
grep -q '^Reused' "$T/second.out" || ae_fail "session not resumed: $(grep -E 'New|Reused' "$T/second.out")"
grep -q '^HTTP/1.1 200' "$T/second.out" || ae_fail "resumed request refused: $(grep HTTP "$T/second.out")"
[ "$(hits /resumed)" = 2 ] || ae_fail "upstream count for /resumed: $(hits /resumed)"

# ---- revocation applies to routes at once
jti=$("$B" token inspect "$t_team" | "$AE_PY" -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[:t.rindex("}")+1])["jti"])')
admin_tok=$(mint --sub root --groups admin --aud edge-1)
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $admin_tok" \
  -H 'Content-Type: application/json' -d "{\"jti\":\"$jti\"}" "http://127.0.0.1:$AE_ADMIN_PORT/v1/tokens/revoke")
[ "$code" = 200 ] || ae_fail "revoke: $code"
[ "$(call team.example.test /after-revoke -H "Authorization: Bearer $t_team")" = 401 ] || ae_fail "revoked token still works"
[ "$(hits /after-revoke)" = 0 ] || ae_fail "revoked request reached the upstream"

# ---- keep-alive requests with a token seen before skip the signature (verified-token cache); the
# admin token of the metrics calls was verified above, so it is a cached verification too
verified() { # PATH -> acmedge_token_verified_total{path=PATH}
  curl -s --noproxy '*' --max-time 10 -H "Authorization: Bearer $admin_tok" "http://127.0.0.1:$AE_ADMIN_PORT/metrics" |
    sed -n "s/^acmedge_token_verified_total{path=\"$1\"} \([0-9]*\)$/\1/p"
}
t_ka=$(mint --sub erin --groups team-a --aud edge-1)
[ "$(call team.example.test /cache-first -H "Authorization: Bearer $t_ka")" = 200 ] || ae_fail "cache: first request"
full0=$(verified full)
cached0=$(verified cached)
px_curl -H "Authorization: Bearer $t_ka" -w '%{http_code} ' -o /dev/null -o /dev/null -o /dev/null -o /dev/null \
  -o /dev/null "$(px_url team.example.test /cache-1)" "$(px_url team.example.test /cache-2)" \
  "$(px_url team.example.test /cache-3)" "$(px_url team.example.test /cache-4)" \
  "$(px_url team.example.test /cache-5)" >"$T/cache" || true
[ "$(cat "$T/cache")" = "200 200 200 200 200 " ] || ae_fail "cache: keep-alive requests: $(cat "$T/cache")"
full1=$(verified full)
cached1=$(verified cached)
[ -n "$full0" ] && [ "$full1" = "$full0" ] || ae_fail "keep-alive requests verified signatures again: full $full0 -> $full1"
[ $((${cached1:-0} - ${cached0:-0})) -ge 5 ] || ae_fail "keep-alive requests missed the cache: cached $cached0 -> $cached1"

curl -s --noproxy '*' -H "Authorization: Bearer $admin_tok" "http://127.0.0.1:$AE_ADMIN_PORT/metrics" >"$T/metrics"
grep -q 'acmedge_token_rejected_total{reason="binding_mismatch"} [1-9]' "$T/metrics" || ae_fail "binding_mismatch not counted"
grep -q 'acmedge_token_rejected_total{reason="unbound"} [1-9]' "$T/metrics" || ae_fail "unbound not counted"
if grep -q "${t_team#cap:}" "$T/acmedge.log" "$T/echo.log"; then ae_fail "a token was logged"; fi
# token_rejected events from the proxy workers reach the bus (relayed to the control loop)
route_events() {
  curl -s --noproxy '*' -N --max-time 3 -H "Authorization: Bearer $admin_tok" \
    "http://127.0.0.1:$AE_ADMIN_PORT/v1/events?since=0" >"$T/events" || true
  grep '"type":"token_rejected"' "$T/events" | grep '"source":"route"' | grep '"reason":"binding_mismatch"' >/dev/null
}
ae_wait_for route_events || ae_fail "no route token_rejected event: $(grep token_rejected "$T/events" | sed -n 1,5p)"
grep '"type":"token_rejected"' "$T/events" | grep '"source":"route"' | grep '"domain":"bound.example.test"' >/dev/null ||
  ae_fail "route event without the host"
if grep -q 'cap:\|carol\|dave' "$T/events"; then ae_fail "a token or subject leaked into the events"; fi
acmedge_stop
echo "ok"
