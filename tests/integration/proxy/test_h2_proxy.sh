#!/usr/bin/env bash
# HTTP/2 to clients through the real binary (docs/http2.md): ALPN (h2 first, http/1.1 kept),
# curl --http2, nghttp and h2load against the Python upstreams; the HTTP/1.1 request an upstream
# sees for an h2 stream (request line, Host from :authority, one joined Cookie, no te,
# X-Forwarded-*), bodies with and without content-length (10 MiB byte-identical), response
# mapping (lowercase names, hop-by-hop removed, chunked → DATA, HEAD without DATA), 400/421/502,
# and a client reset mid-body that must never reach a counting upstream as a request.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
px_upstreams
COUNT_PORT=$(ae_free_port)
: >"$T/counted.log"
ae_bg counter "$AE_PY" "$PX_UP/counter.py" "$COUNT_PORT" "$T/counted.log"
ae_wait_for ae_port_open "$COUNT_PORT" || ae_fail "counting upstream did not start"
PX_HOSTS="$PX_HOSTS count.example.test team.example.test"
px_config "$T/acmedge.json" "{\"proxy\": {\"response_timeout_ms\": 20000}}"
"$AE_PY" - "$T/acmedge.json" "$COUNT_PORT" <<'PY' || ae_fail "config: adding the counting route"
import json, sys
path, port = sys.argv[1], sys.argv[2]
cfg = json.load(open(path))
cfg["routes"].append({"hosts": ["count.example.test"], "upstream": "127.0.0.1:" + port})
json.dump(cfg, open(path, "w"))
PY
acmedge_start "$T/acmedge.json"
H2C=(/usr/bin/python3 "$PX_UP/h2_client.py")
# nghttp has no --resolve: it connects to 127.0.0.1 (no SNI, default certificate) and sends
# :authority itself; its certificate warning goes to a file.
ng() { nghttp "$@" 2>>"$T/nghttp.err"; }

# ---- negotiation ---------------------------------------------------------------------------------
[ "$(px_curl --http2 -o /dev/null -w '%{http_version} %{http_code}' "$(px_url app.example.test /hdr)")" = "2 200" ] ||
  ae_fail "curl --http2 did not get h2 200"
[ "$(px_curl --http1.1 -o /dev/null -w '%{http_version} %{http_code}' "$(px_url app.example.test /hdr)")" = "1.1 200" ] ||
  ae_fail "curl --http1.1 did not get HTTP/1.1 200"
alpn() {
  openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername app.example.test -alpn "$1" </dev/null 2>/dev/null |
    sed -n 's/^ALPN protocol: //p'
}
[ "$(alpn h2,http/1.1)" = h2 ] || ae_fail "ALPN h2,http/1.1 did not select h2"
[ "$(alpn http/1.1,h2)" = h2 ] || ae_fail "server precedence: h2 must win over a client's http/1.1 preference"
[ "$(alpn http/1.1)" = http/1.1 ] || ae_fail "ALPN http/1.1 alone did not select http/1.1"
# The HTTP/2 preface on a connection that negotiated HTTP/1.1 is refused (505) as before.
out=$(px_raw app.example.test 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' 3)
[[ "$out" == "HTTP/1.1 505 "* ]] || ae_fail "h2 preface over http/1.1 not refused: ${out:0:100}"

# ---- the same body as over HTTP/1.1 ---------------------------------------------------------------
for q in 'size=100000' 'size=100000&chunked=1'; do
  a=$(px_curl --http1.1 "$(px_url app.example.test "/download?$q")" | sha256sum)
  b=$(px_curl --http2 "$(px_url app.example.test "/download?$q")" | sha256sum)
  [ "$a" = "$b" ] || ae_fail "h2 body differs from h1 for $q"
done

# ---- the HTTP/1.1 request the upstream sees ------------------------------------------------------
out=$(ng -H 'cookie: a=1' -H 'cookie: b=2' -H 'te: trailers' -H 'x-forwarded-for: 6.6.6.6' -H 'x-kept: yes' \
  "https://127.0.0.1:$AE_HTTPS_PORT/hdr?x=1" -H ":authority: app.example.test:$AE_HTTPS_PORT") ||
  ae_fail "nghttp request failed: $out"
[ "$(px_json_get target <<<"$out")" = "/hdr?x=1" ] || ae_fail "target: $out"
[ "$(px_json_get version <<<"$out")" = "HTTP/1.1" ] || ae_fail "upstream version: $out"
[ "$(px_header Host <<<"$out")" = "app.example.test:$AE_HTTPS_PORT" ] || ae_fail "Host from :authority: $out"
[ "$(px_header Cookie <<<"$out")" = "a=1; b=2" ] || ae_fail "cookies not joined into one field: $out"
[ "$(px_header Cookie <<<"$out" | wc -l)" = 1 ] || ae_fail "more than one Cookie line: $out"
[ -z "$(px_header TE <<<"$out")" ] || ae_fail "te reached the upstream: $out"
[ "$(px_header X-Forwarded-For <<<"$out")" = "127.0.0.1" ] || ae_fail "X-Forwarded-For: $out"
[ "$(px_header X-Forwarded-Proto <<<"$out")" = "https" ] || ae_fail "X-Forwarded-Proto: $out"
[ "$(px_header X-Kept <<<"$out")" = "yes" ] || ae_fail "end-to-end field lost: $out"
grep -q ':authority\|:path\|:method' <<<"$out" && ae_fail "pseudo-header reached the upstream: $out"

# ---- bodies ----------------------------------------------------------------------------------------
head -c 10485760 /dev/urandom >"$T/10m.bin"
sum10m=$(sha256sum "$T/10m.bin" | cut -d' ' -f1)
out=$(px_curl --http2 --data-binary @"$T/10m.bin" "$(px_url app.example.test /sink)")
[ "$(px_json_get body_sha256 <<<"$out")" = "$sum10m" ] || ae_fail "10 MiB h2 upload corrupted: ${out:0:300}"
[ "$(px_header Content-Length <<<"$out")" = 10485760 ] || ae_fail "content-length not kept upstream: ${out:0:300}"
px_curl --http2 --data-binary @"$T/10m.bin" "$(px_url app.example.test /echo)" -o "$T/10m.echo"
cmp -s "$T/10m.bin" "$T/10m.echo" || ae_fail "10 MiB h2 echo differs"
# No content-length: chunked upstream; END_STREAM on HEADERS: no body framing at all.
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni app.example.test --method POST --path /sink --body 70000)
body=$(/usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])' <<<"$out")
[ "$body" = 200 ] || ae_fail "POST without content-length: $out"
out=$(ng -d "$T/10m.bin" --no-content-length "https://127.0.0.1:$AE_HTTPS_PORT/sink" \
  -H ":authority: app.example.test") || ae_fail "nghttp upload failed: ${out:0:300}"
[ "$(px_header Transfer-Encoding <<<"$out")" = chunked ] || ae_fail "body without length not chunked upstream: ${out:0:300}"
[ "$(px_json_get body_sha256 <<<"$out")" = "$sum10m" ] || ae_fail "chunked 10 MiB upload corrupted"
out=$(ng "https://127.0.0.1:$AE_HTTPS_PORT/hdr" -H ":authority: app.example.test")
[ -z "$(px_header Transfer-Encoding <<<"$out")$(px_header Content-Length <<<"$out")" ] ||
  ae_fail "bodiless request got body framing upstream: $out"

# ---- responses ---------------------------------------------------------------------------------------
hdrs=$(px_curl --http2 -D - -o "$T/chunked.out" "$(px_url app.example.test '/download?size=200000&chunked=1')")
[ "$(wc -c <"$T/chunked.out")" -eq 200000 ] || ae_fail "chunked response → DATA length"
grep -qi '^transfer-encoding' <<<"$hdrs" && ae_fail "transfer-encoding in an h2 response: $hdrs"
grep -q '^content-type: application/octet-stream' <<<"$hdrs" || ae_fail "response names not lowercase: $hdrs"
out=$(nghttp -nv "https://127.0.0.1:$AE_HTTPS_PORT/download?size=5000" -H ":authority: app.example.test" -H ':method: HEAD' 2>&1)
grep -q 'recv HEADERS frame.*END_STREAM' <<<"$out" || grep 'END_STREAM' <<<"$(grep -A1 'recv HEADERS' <<<"$out")" >/dev/null ||
  ae_fail "HEAD response did not end on HEADERS: $out"
grep -q 'recv DATA' <<<"$out" && ae_fail "HEAD response carried DATA: $out"
grep -q 'content-length: 5000' <<<"$out" || ae_fail "HEAD response lost content-length: $out"
code() { px_curl --http2 -o /dev/null -w '%{http_code}' "$@" || true; }
[ "$(code "$(px_url bad.example.test /garbage)")" = 502 ] || ae_fail "bad upstream framing not 502 over h2"
[ "$(code "$(px_url dead.example.test /)")" = 502 ] || ae_fail "dead upstream not 502 over h2"
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --path /h400 --header host:other.example.test)
grep -q '"status": 400' <<<"$out" || ae_fail "host different from :authority not 400: $out"
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --authority other.example.test --path /m421)
grep -q '"status": 421' <<<"$out" || ae_fail ":authority not matching SNI not 421: $out"

# ---- concurrency ---------------------------------------------------------------------------------------
out=$(h2load -n 3000 -c 4 -m 100 --connect-to "127.0.0.1:$AE_HTTPS_PORT" "$(px_url app.example.test /hdr)" 2>&1)
grep -q 'requests: 3000 total, 3000 started, 3000 done, 3000 succeeded, 0 failed, 0 errored' <<<"$out" ||
  ae_fail "h2load -m 100 had failures: $out"

# ---- a client reset mid-body never becomes an upstream request ----------------------------------
"${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --method POST --path /partial \
  --header 'content-length:100000' --body 20000 --rst-after-body >/dev/null
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --path /after)
grep -q '"status": 200' <<<"$out" || ae_fail "request after a reset failed: $out"
ae_wait_for grep -q '^GET /after 0$' "$T/counted.log" || ae_fail "/after not counted"
grep -q 'partial\|h400\|m421' "$T/counted.log" && ae_fail "a refused or reset request reached the upstream: $(cat "$T/counted.log")"

# ---- access log and metrics by protocol ---------------------------------------------------------------
grep -q '"protocol":"HTTP/2"' "$T/acmedge.log" || ae_fail "no HTTP/2 access log line"
curl -sf --noproxy '*' "http://127.0.0.1:$AE_ADMIN_PORT/metrics" -o "$T/metrics.txt" || ae_fail "GET /metrics failed"
h2n=$(awk '$1 == "acmedge_proxy_requests_total{protocol=\"h2\"}" {print $2}' "$T/metrics.txt")
[ -n "$h2n" ] && [ "$h2n" -ge 3000 ] || ae_fail "acmedge_proxy_requests_total{protocol=\"h2\"} is '$h2n'"
grep -q 'acmedge_proxy_requests_total{protocol="h1"}' "$T/metrics.txt" || ae_fail "no h1 request count"
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died"
acmedge_stop

# ---- proxy.http2: false offers http/1.1 only ------------------------------------------------------
_ae_json_merge "$T/acmedge.json" '{"proxy": {"http2": false}}' || ae_fail "config: http2 off"
acmedge_start "$T/acmedge.json"
[ "$(alpn h2,http/1.1)" = http/1.1 ] || ae_fail "proxy.http2 false still negotiated h2"
[ "$(px_curl --http2 -o /dev/null -w '%{http_version} %{http_code}' "$(px_url app.example.test /hdr)")" = "1.1 200" ] ||
  ae_fail "curl --http2 with proxy.http2 false did not fall back to HTTP/1.1"
acmedge_stop

# ---- routes[].auth over h2: refusals never reach the upstream, a valid token does ----------------------
pub=$("$ACMEDGE_BIN" token keygen --out "$T/ops.key") || ae_fail "token keygen"
"$AE_PY" - "$T/acmedge.json" "$COUNT_PORT" "$pub" <<'PY' || ae_fail "config: adding the token route"
import json, sys
path, port, pub = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(open(path))
cfg["proxy"]["http2"] = True
cfg["routes"].append({"hosts": ["team.example.test"], "upstream": "127.0.0.1:" + port,
                      "auth": {"cap_tokens": {"groups": ["team-a"]}}})
cfg["cap_tokens"] = {"keys": {"ops": pub}, "audience": "edge-1", "leeway_s": 60, "max_ttl_s": 3600}
json.dump(cfg, open(path, "w"))
PY
acmedge_start "$T/acmedge.json"
mint() { "$ACMEDGE_BIN" token mint --key "$T/ops.key" --iss ops --ttl 10m --aud edge-1 "$@"; }
t_team=$(mint --sub alice --groups team-a)
t_other=$(mint --sub bob --groups team-b)
tcode() { px_curl --http2 -o /dev/null -w '%{http_version} %{http_code}' "$@" || true; }
[ "$(tcode "$(px_url team.example.test /tok-none)")" = "2 401" ] || ae_fail "no token over h2 not 401"
[ "$(tcode -H "Authorization: Bearer $t_other" "$(px_url team.example.test /tok-group)")" = "2 403" ] ||
  ae_fail "token of another group over h2 not 403"
[ "$(tcode -H "Authorization: Bearer $t_team" -H 'x-auth-sub: mallory' "$(px_url team.example.test /tok-ok)")" = "2 200" ] ||
  ae_fail "valid token over h2 not 200"
ae_wait_for grep -q '^GET /tok-ok 0$' "$T/counted.log" || ae_fail "/tok-ok not counted"
grep -q '/tok-none\|/tok-group' "$T/counted.log" && ae_fail "a request refused by routes[].auth reached the upstream over h2"

acmedge_stop
echo "ok"
