#!/usr/bin/env bash
# Capability tokens on the admin API with the real binary: keygen/mint/inspect, `check` refusals
# (small-order key, bad encodings, missing audience), group -> permission (read, domains:write,
# admin), 401 invalid_token / 403 insufficient_scope, tokens signed by openssl (second
# implementation), reason codes in events and metrics (never the token or its sub), revocation by
# jti and by iss+sub taking effect at once, idempotent, persisted across a restart, and undone.
# Times: every token lives minutes and the leeway is fixed in the config; nothing sleeps.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup

B=$ACMEDGE_BIN
b64url() { basenc --base64url | tr -d '=\n'; }

# ---- keygen: 0600 file, printed key equals what openssl derives from the file
pub_ops=$("$B" token keygen --out "$T/ops.key")
[ "$(stat -c %a "$T/ops.key")" = 600 ] || ae_fail "issuer key mode $(stat -c %a "$T/ops.key")"
want=$(openssl pkey -in "$T/ops.key" -pubout -outform DER | tail -c 32 | b64url)
[ "$pub_ops" = "$want" ] || ae_fail "keygen printed $pub_ops, openssl derives $want"
if "$B" token keygen --out "$T/ops.key" >/dev/null 2>&1; then ae_fail "keygen overwrote an existing key"; fi

# a second issuer whose tokens are signed by openssl only
openssl genpkey -algorithm ed25519 -out "$T/ci.key" 2>/dev/null
pub_ci=$(openssl pkey -in "$T/ci.key" -pubout -outform DER | tail -c 32 | b64url)

# mint_raw KEYFILE JSON : a token signed with openssl over "acmedge-cap-v1." || b64url(JSON)
mint_raw() {
  local p
  p=$(printf '%s' "$2" | b64url)
  printf 'acmedge-cap-v1.%s' "$p" >"$T/msg.txt"
  openssl pkeyutl -sign -rawin -inkey "$1" -in "$T/msg.txt" -out "$T/sig.bin"
  printf 'cap:%s.%s' "$p" "$(b64url <"$T/sig.bin")"
}

# ---- check refuses bad keyrings and names the field
check_fails() { # OVERRIDES FIELD
  ae_config_write "$T/bad.json" "$1"
  set +e
  out=$(timeout 20 "$B" check -c "$T/bad.json" 2>&1)
  rc=$?
  set -e
  [ "$rc" -eq 1 ] || ae_fail "check accepted $1 (exit $rc): $out"
  echo "$out" | grep -F "$2" >/dev/null || ae_fail "check message for $1 does not name $2: $out"
}
check_fails '{"cap_tokens": {"keys": {"ops": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}, "audience": "edge-1"}}' "cap_tokens.keys.ops"
check_fails '{"cap_tokens": {"keys": {"ops": "AAAA"}, "audience": "edge-1"}}' "cap_tokens.keys.ops"
check_fails "{\"cap_tokens\": {\"keys\": {\"ops\": \"$pub_ops=\"}, \"audience\": \"edge-1\"}}" "cap_tokens.keys.ops"
check_fails "{\"cap_tokens\": {\"keys\": {\"ops\": \"$pub_ops\"}}}" "cap_tokens.audience"
check_fails "{\"cap_tokens\": {\"keys\": {\"ops\": \"$pub_ops\"}, \"audience\": \"edge-1\", \"leeway_s\": -1}}" "cap_tokens"
check_fails '{"routes": [{"hosts": ["a.example.test"], "upstream": "127.0.0.1:9", "auth": {"cap_tokens": {}}}]}' "routes[0].auth.cap_tokens"
printf '{"listen": {}, "cap_tokens": {"keys": {"ops": "%s", "ops": "%s"}, "audience": "edge-1"}}' "$pub_ops" "$pub_ci" >"$T/dup.json"
if timeout 20 "$B" check -c "$T/dup.json" >/dev/null 2>&1; then ae_fail "check accepted a duplicate issuer"; fi

# ---- the running server
ae_config_write "$T/acmedge.json" "{\"admin\": {\"token\": \"static-t0ken\"},
  \"cap_tokens\": {\"keys\": {\"ops\": \"$pub_ops\", \"ci\": \"$pub_ci\"}, \"audience\": \"edge-1\",
                   \"leeway_s\": 60, \"max_ttl_s\": 3600}}"
timeout 20 "$B" check -c "$T/acmedge.json" >/dev/null || ae_fail "check refused the token config"
acmedge_start "$T/acmedge.json"
A=http://127.0.0.1:$AE_ADMIN_PORT
ae_wait_for ae_port_open "$AE_ADMIN_PORT" || ae_fail "admin port not open"

mint() { "$B" token mint --key "$T/ops.key" --iss ops --aud edge-1 --ttl 10m "$@"; }
t_read=$(mint --sub alice --groups read)
t_write=$(mint --sub deployer --groups domains:write)
t_admin=$(mint --sub root --groups admin)
t_other_aud=$("$B" token mint --key "$T/ops.key" --iss ops --aud edge-2 --sub alice --groups read --ttl 10m)
t_long=$(mint --sub alice --groups read --ttl 2h)
now=$(date +%s)
t_ci=$(mint_raw "$T/ci.key" "{\"v\":1,\"iss\":\"ci\",\"sub\":\"ci-bot\",\"aud\":\"edge-1\",\"groups\":[\"read\"],\"exp\":$((now + 600)),\"nbf\":$now,\"iat\":$now,\"jti\":\"ci-token-0000000000001\"}")
t_expired=$(mint_raw "$T/ops.key" "{\"v\":1,\"iss\":\"ops\",\"sub\":\"old\",\"aud\":\"edge-1\",\"groups\":[\"read\"],\"exp\":$((now - 600)),\"nbf\":$((now - 1200)),\"iat\":$((now - 1200)),\"jti\":\"expired-00000000000001\"}")
t_future=$(mint_raw "$T/ops.key" "{\"v\":1,\"iss\":\"ops\",\"sub\":\"later\",\"aud\":\"edge-1\",\"groups\":[\"read\"],\"exp\":$((now + 1800)),\"nbf\":$((now + 900)),\"iat\":$now,\"jti\":\"future-00000000000001\"}")

# req METHOD PATH TOKEN [BODY] : prints the status; headers in $T/h, body in $T/body
req() {
  local args=(-s --noproxy '*' --max-time 10 -o "$T/body" -D "$T/h" -w '%{http_code}' -X "$1")
  [ -n "${3:-}" ] && args+=(-H "Authorization: Bearer $3")
  [ -n "${4:-}" ] && args+=(-H 'Content-Type: application/json' -d "$4")
  curl "${args[@]}" "$A$2"
}
expect() { # WANT METHOD PATH TOKEN [BODY]
  local want=$1 got
  shift
  got=$(req "$@")
  [ "$got" = "$want" ] || ae_fail "$1 $2 with ${3:0:12}...: got $got, want $want: $(cat "$T/body")"
}

# no credential, static token
expect 401 GET /v1/domains ""
expect 200 GET /v1/domains static-t0ken
expect 401 GET /v1/domains wrong-static

# read
expect 200 GET /v1/domains "$t_read"
expect 200 GET /metrics "$t_read"
expect 403 DELETE /v1/domains/never.example.test "$t_read"
grep -qi 'WWW-Authenticate: Bearer.*error="insufficient_scope"' "$T/h" || ae_fail "403 without insufficient_scope: $(cat "$T/h")"
expect 403 POST /v1/tokens/revoke "$t_read" '{"jti":"x"}'
# domains:write: past authorisation (404 = the handler ran), but no reading
expect 404 DELETE /v1/domains/never.example.test "$t_write"
expect 403 GET /v1/domains "$t_write"
# admin: everything
expect 200 GET /v1/domains "$t_admin"
expect 404 DELETE /v1/domains/never.example.test "$t_admin"
# openssl-signed token of the second issuer
expect 200 GET /v1/domains "$t_ci"

# failures: 401 invalid_token with the reason
reject() { # TOKEN REASON
  expect 401 GET /v1/domains "$1"
  grep -qi 'WWW-Authenticate: Bearer.*error="invalid_token"' "$T/h" || ae_fail "401 without invalid_token: $(cat "$T/h")"
  grep -q "$2" "$T/body" || ae_fail "reason $2 not in $(cat "$T/body")"
}
reject "$t_other_aud" audience_mismatch
reject "$t_long" too_long_lived
reject "$t_expired" expired
reject "$t_future" not_yet_valid
reject "cap:abc" malformed
reject "${t_read}x" base64
reject "${t_read%.*}.$(printf '%s' "${t_admin#*.}")" bad_signature
unknown=$("$B" token mint --key "$T/ci.key" --iss nobody --sub x --aud edge-1 --ttl 10m)
reject "$unknown" unknown_issuer

# ---- revocation: by jti, at once, idempotent; by subject; persisted; undone
jti=$("$B" token inspect "$t_read" | "$AE_PY" -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[:t.rindex("}")+1])["jti"])')
expect 200 POST /v1/tokens/revoke "$t_admin" "{\"jti\":\"$jti\"}"
grep -q '"changed": *true' "$T/body" || ae_fail "first revoke not a change: $(cat "$T/body")"
reject "$t_read" revoked
expect 200 POST /v1/tokens/revoke "$t_admin" "{\"jti\":\"$jti\"}"
grep -q '"changed": *false' "$T/body" || ae_fail "second revoke not idempotent: $(cat "$T/body")"
expect 200 POST /v1/tokens/revoke static-t0ken '{"iss":"ops","sub":"deployer"}'
expect 401 DELETE /v1/domains/never.example.test "$t_write"
grep -q revoked "$T/body" || ae_fail "subject revocation: $(cat "$T/body")"
expect 400 POST /v1/tokens/revoke "$t_admin" '{"iss":"ops"}'
expect 400 POST /v1/tokens/revoke "$t_admin" 'not json'
expect 200 GET /v1/tokens/keys "$t_admin"
"$AE_PY" - "$T/body" "$pub_ops" "$pub_ci" <<'PY' || ae_fail "keyring export: $(cat "$T/body")"
import json, sys
keys = {k["iss"]: k["key"] for k in json.load(open(sys.argv[1]))}
assert keys == {"ops": sys.argv[2], "ci": sys.argv[3]}, keys
PY

# ---- events and metrics carry reasons, never tokens or unverified subjects
curl -s --noproxy '*' -N --max-time 5 -H 'Authorization: Bearer static-t0ken' "$A/v1/events?since=0" >"$T/events" || true
grep -q '"type":"token_rejected"' "$T/events" || ae_fail "no token_rejected event: $(head -c 2000 "$T/events")"
grep -q '"reason":"audience_mismatch"' "$T/events" || ae_fail "no audience_mismatch event"
grep -q '"source":"admin"' "$T/events" || ae_fail "token_rejected without source"
! grep -q 'cap:' "$T/events" || ae_fail "a token leaked into the events"
! grep -q '"later"\|"old"\|nobody' "$T/events" || ae_fail "an unverified subject leaked into the events"
curl -s --noproxy '*' --max-time 10 -H 'Authorization: Bearer static-t0ken' "$A/metrics" >"$T/metrics"
grep -q 'acmedge_token_rejected_total{reason="revoked"} [1-9]' "$T/metrics" || ae_fail "no revoked counter: $(grep token "$T/metrics")"
grep -q 'acmedge_token_rejected_total{reason="insufficient_scope"} [1-9]' "$T/metrics" || ae_fail "no insufficient_scope counter"
! grep -q "${t_read#cap:}" "$T/acmedge.log" || ae_fail "a token was written to the log"
acmedge_stop

# ---- persisted across a restart
[ "$(stat -c %a "$T/storage/tokens/revoked.json")" = 600 ] || ae_fail "revocation file mode"
acmedge_start "$T/acmedge.json"
ae_wait_for ae_port_open "$AE_ADMIN_PORT" || ae_fail "admin port not open after restart"
reject "$t_read" revoked
reject "$t_write" revoked
expect 200 GET /v1/domains "$t_ci"
expect 200 POST /v1/tokens/unrevoke "$t_admin" "{\"jti\":\"$jti\"}"
expect 200 GET /v1/domains "$t_read"
acmedge_stop
echo "ok"
