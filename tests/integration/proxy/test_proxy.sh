#!/usr/bin/env bash
# Reverse proxy through the real binary over TLS (curl and a raw TLS client) against Python
# upstreams on loopback: forwarding headers and hop-by-hop removal, bodies of 0 B and 1 MiB both
# ways (Content-Length and chunked), a slow chunked stream, 421/502/431/504/408, misbehaving
# upstreams, every request-smuggling case (400, never reaching the upstream), WebSocket echo,
# a plain-HTTP route on port 80 and the access log.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
px_upstreams
PX_HOSTS="$PX_HOSTS nosuch.example.test"
px_config "$T/acmedge.json" '{"proxy": {"header_timeout_ms": 1000, "response_timeout_ms": 1500}}'
acmedge_start "$T/acmedge.json"

code() { px_curl -o /dev/null -w '%{http_code}' "$@" || true; }

# ---- forwarding fields, hop-by-hop removal -----------------------------------------------------
out=$(px_curl -H 'X-Forwarded-For: 6.6.6.6' -H 'X-Forwarded-Host: evil.test' -H 'X-Forwarded-Proto: http' \
  -H 'Connection: keep-alive, X-Private' -H 'X-Private: secret' -H 'Keep-Alive: 300' -H 'TE: trailers' \
  -H 'Proxy-Authorization: Basic eA==' -H 'Upgrade: h2c' -H 'X-Kept: yes' "$(px_url app.example.test '/hdr?x=1')")
[ "$(px_json_get target <<<"$out")" = "/hdr?x=1" ] || ae_fail "target not forwarded: $out"
[ "$(px_header X-Forwarded-For <<<"$out")" = "127.0.0.1" ] || ae_fail "X-Forwarded-For: $out"
[ "$(px_header X-Forwarded-Proto <<<"$out")" = "https" ] || ae_fail "X-Forwarded-Proto: $out"
[ "$(px_header X-Forwarded-Host <<<"$out")" = "app.example.test:$AE_HTTPS_PORT" ] || ae_fail "X-Forwarded-Host: $out"
[ "$(px_header Host <<<"$out")" = "app.example.test:$AE_HTTPS_PORT" ] || ae_fail "Host: $out"
[ "$(px_header Via <<<"$out")" = "1.1 acmedge" ] || ae_fail "Via: $out"
[ "$(px_header X-Kept <<<"$out")" = "yes" ] || ae_fail "end-to-end field lost: $out"
for h in X-Private Keep-Alive TE Proxy-Authorization Upgrade Connection; do
  [ -z "$(px_header "$h" <<<"$out")" ] || ae_fail "hop-by-hop field $h reached the upstream: $out"
done
if grep -q '6.6.6.6\|evil.test' <<<"$out"; then ae_fail "client forwarding claims passed through: $out"; fi

# ---- bodies ----------------------------------------------------------------------------------------
head -c 1048576 /dev/urandom >"$T/1m.bin"
sum1m=$(sha256sum "$T/1m.bin" | cut -d' ' -f1)
px_curl --data-binary @"$T/1m.bin" -H 'Content-Type: application/octet-stream' "$(px_url app.example.test /echo)" \
  -o "$T/1m.echo"
cmp -s "$T/1m.bin" "$T/1m.echo" || ae_fail "1 MiB POST echo differs"
[ "$(code --data-binary '' "$(px_url app.example.test /echo)")" = 200 ] || ae_fail "0 B POST failed"
[ "$(px_curl --data-binary '' "$(px_url app.example.test /echo)" | wc -c)" -eq 0 ] || ae_fail "0 B echo not empty"
out=$(px_curl -H 'Transfer-Encoding: chunked' --data-binary @"$T/1m.bin" "$(px_url app.example.test /sink)")
[ "$(px_json_get body_sha256 <<<"$out")" = "$sum1m" ] || ae_fail "chunked 1 MiB upload corrupted: $out"
[ "$(px_header Transfer-Encoding <<<"$out")" = "chunked" ] || ae_fail "chunked upload not re-chunked: $out"
out=$(px_curl --data-binary @"$T/1m.bin" "$(px_url app.example.test /sink)")
[ "$(px_json_get body_len <<<"$out")" = 1048576 ] || ae_fail "1 MiB upload length: $out"
[ "$(px_header Content-Length <<<"$out")" = 1048576 ] || ae_fail "Content-Length not kept: $out"
expect=$("$AE_PY" -c 'import hashlib,sys
p = bytes(range(256)) * 256
n = int(sys.argv[1]); h = hashlib.sha256()
while n: k = min(n, len(p)); h.update(p[:k]); n -= k
print(h.hexdigest())' 1048576)
for q in 'size=1048576' 'size=1048576&chunked=1'; do
  got=$(px_curl "$(px_url app.example.test "/download?$q")" | sha256sum | cut -d' ' -f1)
  [ "$got" = "$expect" ] || ae_fail "1 MiB download ($q) corrupted"
done
[ "$(px_curl "$(px_url app.example.test '/download?size=0')" | wc -c)" -eq 0 ] || ae_fail "0 B download not empty"
hdrs=$(px_curl -D - -o /dev/null "$(px_url app.example.test '/download?size=10&chunked=1')")
grep -qi '^transfer-encoding: chunked' <<<"$hdrs" || ae_fail "chunked response not chunked: $hdrs"
grep -qi '^via: 1.1 acmedge' <<<"$hdrs" || ae_fail "response Via missing: $hdrs"

# ---- a slow chunked stream arrives piece by piece ----------------------------------------------------
t=$(px_curl -o "$T/stream.out" -w '%{time_starttransfer} %{time_total}' \
  "$(px_url stream.example.test '/stream?chunks=10&size=1000&delay=0.2')")
[ "$(wc -c <"$T/stream.out")" -eq 10000 ] || ae_fail "stream truncated: $(wc -c <"$T/stream.out")"
"$AE_PY" -c 'import sys; s, t = map(float, sys.argv[1:3]); sys.exit(0 if s < 1.0 and t >= 1.8 else 1)' $t ||
  ae_fail "stream was buffered, not streamed (start/total: $t)"

# ---- routing errors --------------------------------------------------------------------------------
[ "$(code -H 'Host: other.example.test' "$(px_url app.example.test /)")" = 421 ] || ae_fail "Host/SNI mismatch not 421"
[ "$(code "$(px_url dead.example.test /)")" = 502 ] || ae_fail "closed upstream port not 502"
grep -q "upstream 127.0.0.1:$DEAD_PORT" "$T/acmedge.log" || ae_fail "no log line naming the dead upstream"
[ "$(code "$(px_url nosuch.example.test /)")" = 502 ] || ae_fail "host without route not 502"
big=$(head -c 20000 /dev/zero | tr '\0' a)
[ "$(code -H "X-Big: $big" "$(px_url app.example.test /)")" = 431 ] || ae_fail "oversize head not 431"

# ---- misbehaving upstreams ---------------------------------------------------------------------------
for p in /garbage /close /bighead /clte; do
  [ "$(code "$(px_url bad.example.test "$p")")" = 502 ] || ae_fail "upstream $p not turned into 502"
done
if px_curl -o /dev/null "$(px_url bad.example.test /truncated)" 2>/dev/null; then
  ae_fail "a truncated upstream body must not look complete"
fi
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died on a misbehaving upstream"

# ---- timeouts ------------------------------------------------------------------------------------------
start=$(date +%s%N)
[ "$(code "$(px_url app.example.test '/slow?delay=4')")" = 504 ] || ae_fail "slow upstream not 504"
ms=$((($(date +%s%N) - start) / 1000000))
[ "$ms" -lt 3500 ] || ae_fail "504 took ${ms} ms (response timeout is 1500 ms)"
out=$(px_raw app.example.test 'GET / HTTP/1.1\r\nHost: app.exa' 4)
[[ "$out" == "HTTP/1.1 408 "* ]] || ae_fail "slow client did not get 408: $out"
grep -q '408' "$T/acmedge.log" || ae_fail "no log line for the 408"

# ---- request smuggling: 400 (501 for an unknown coding), never reaching the upstream -------------
cases=(
  'POST /smuggle-1 HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'
  'POST /smuggle-2 HTTP/1.1\r\nHost: app.example.test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!'
  'POST /smuggle-3 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n'
  'GET /smuggle-4 HTTP/1.1\r\nHost: app.example.test\r\nX-A: b\r\n c\r\n\r\n'
  'GET /smuggle-5 HTTP/1.1\nHost: app.example.test\n\n'
  'GET /smuggle-6 HTTP/1.1\r\nHost : app.example.test\r\n\r\n'
  'POST /smuggle-7 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'
  'POST /smuggle-8 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: gzip\r\n\r\nabc'
  'GET /smuggle-9 HTTP/1.1\r\nHost: app.example.test\r\nX-A: b\rc\r\n\r\n'
  'GET /smuggle-10 HTTP/1.1\r\nHost: app.example.test\r\nX-A: b\x00c\r\n\r\n'
  'GET /smuggle-11 HTTP/1.1\r\n\r\n'
  'POST /smuggle-12 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n'
  'POST /smuggle-13 HTTP/1.1\r\nHost: app.example.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n'
)
for i in "${!cases[@]}"; do
  out=$(px_raw app.example.test "${cases[$i]}" 3)
  want=400
  [ "$i" -eq 12 ] && want=501
  [[ "$out" == "HTTP/1.1 $want "* ]] || ae_fail "smuggling case $((i + 1)) not answered $want: ${out:0:200}"
  grep -qi 'connection: close' <<<"$out" || ae_fail "smuggling case $((i + 1)) kept the connection"
done
sleep 0.2
if grep -q 'smuggle-' "$T/echo.log"; then
  ae_fail "a rejected request reached the upstream: $(grep smuggle- "$T/echo.log")"
fi

# ---- WebSocket ----------------------------------------------------------------------------------------------
"$AE_PY" "$PX_CLIENT" ws --port "$AE_HTTPS_PORT" --sni ws.example.test --path /chat >"$T/ws.out" 2>&1 ||
  ae_fail "WebSocket round trip failed: $(cat "$T/ws.out")"

# ---- plain HTTP on port 80 only for routes that ask for it --------------------------------------------------
out=$(curl -sS --max-time 10 --resolve "plain.example.test:$AE_HTTP_PORT:127.0.0.1" \
  "http://plain.example.test:$AE_HTTP_PORT/plain")
[ "$(px_header X-Forwarded-Proto <<<"$out")" = "http" ] || ae_fail "plain_http route not proxied on port 80: $out"
out=$(curl -sS --max-time 10 --resolve "app.example.test:$AE_HTTP_PORT:127.0.0.1" \
  "http://app.example.test:$AE_HTTP_PORT/" 2>/dev/null || true)
if grep -q '"target"' <<<"$out"; then
  ae_fail "a TLS-only route was proxied on port 80"
fi

# ---- access log -------------------------------------------------------------------------------------------------
line=$(grep '\[access\]' "$T/acmedge.log" | grep -F 'app.example.test/hdr?x=1 200' || true)
[ -n "$line" ] || ae_fail "no access log line"
grep -q '"upstream_ms":[0-9]' <<<"$line" || ae_fail "access log line lacks upstream time: $line"
grep -q '"client":"127.0.0.1"' <<<"$line" || ae_fail "access log line lacks the client: $line"

acmedge_stop
echo "proxy integration test passed"
