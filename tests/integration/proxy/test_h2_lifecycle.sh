#!/usr/bin/env bash
# HTTP/2 connection lifecycle and the bounds that need their own timing (docs/http2.md):
# MadeYouReset (resets the client provokes the server into sending) → GOAWAY ENHANCE_YOUR_CALM;
# proxy.h2_max_requests → final GOAWAY; header-block completion, preface/SETTINGS-ACK, idle and
# write timeouts; response and request trailers, 1xx and 100-continue, 204; and the SIGTERM drain
# (GOAWAY notice, final GOAWAY, in-flight stream completes, later stream refused). Upstreams count
# what reaches them, so nothing refused may show up there.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
COUNT_PORT=$(ae_free_port)
SPECIAL_PORT=$(ae_free_port)
: >"$T/counted.log"
: >"$T/special.log"
ae_bg counter "$AE_PY" "$PX_UP/counter.py" "$COUNT_PORT" "$T/counted.log"
ae_bg special "$AE_PY" "$PX_UP/special.py" "$SPECIAL_PORT" "$T/special.log"
ae_wait_for ae_port_open "$COUNT_PORT" || ae_fail "counting upstream did not start"
ae_wait_for ae_port_open "$SPECIAL_PORT" || ae_fail "special upstream did not start"
HDR_MS=2000
IDLE_MS=3000
ae_config_write "$T/acmedge.json" "{
  \"on_demand\": {\"enabled\": false},
  \"log\": {\"level\": \"info\"},
  \"proxy\": {\"header_timeout_ms\": $HDR_MS, \"idle_timeout_ms\": $IDLE_MS, \"h2_max_requests\": 20},
  \"routes\": [{\"hosts\": [\"count.example.test\"], \"upstream\": \"127.0.0.1:$COUNT_PORT\"},
               {\"hosts\": [\"special.example.test\"], \"upstream\": \"127.0.0.1:$SPECIAL_PORT\"}]}"
acmedge_start "$T/acmedge.json"
FR=(/usr/bin/python3 "$PX_UP/h2_frames.py")
H2C=(/usr/bin/python3 "$PX_UP/h2_client.py")
fr() { "${FR[@]}" "$1" --port "$AE_HTTPS_PORT" "${@:2}"; }
field() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }
# Seconds bound for a timeout of MS milliseconds to fire: generous for sanitizer builds.
late() { echo $(($1 / 1000 * 5 + 10)); }
ok_after() {
  local out
  out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --path "/ok-$1" --timeout 20)
  [ "$(field status <<<"$out")" = 200 ] || ae_fail "legitimate request after $1 failed: $out"
  ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died during $1"
}

# ---- proxy.h2_max_requests: the final GOAWAY after 20 streams ------------------------------------------
out=$(h2load -n 60 -c 1 -m 1 --connect-to "127.0.0.1:$AE_HTTPS_PORT" "https://count.example.test:$AE_HTTPS_PORT/maxreq" 2>&1) || true
# h2load does not reconnect after a GOAWAY: the 20 admitted requests succeed, the rest fail.
grep -q 'requests: 60 total, .* 20 succeeded' <<<"$out" || ae_fail "h2_max_requests 20 did not serve exactly 20: $out"
grep -q 'final GOAWAY' "$T/acmedge.log" || ae_fail "h2_max_requests GOAWAY not logged"
[ "$(grep -c '^GET /maxreq ' "$T/counted.log")" = 20 ] || ae_fail "upstream did not see exactly 20 /maxreq"
acmedge_stop
_ae_json_merge "$T/acmedge.json" '{"proxy": {"h2_max_requests": 1000000}}' || ae_fail "config: h2_max_requests"
acmedge_start "$T/acmedge.json"

# ---- MadeYouReset: server resets the client provokes are bounded ---------------------------------
# nghttp2 1.52 answers WINDOW_UPDATE 0 on a stream and DATA after END_STREAM with a connection
# error at the first one (GOAWAY PROTOCOL_ERROR / STREAM_CLOSED); a stream window overflow and a
# bad field value are stream resets, which the bucket counts.
for v in wu0 data-closed; do
  out=$(fr made-you-reset --sni count.example.test --path "/myr-$v" --count 3000 --variant "$v" --timeout 30)
  [ -n "$(field goaway <<<"$out")" ] || ae_fail "$v on a stream not answered with GOAWAY: $out"
  [ "$(field closed <<<"$out")" = True ] || ae_fail "$v: connection not closed: $out"
  [ "$(grep -c "^GET /myr-$v " "$T/counted.log" || true)" -le 1 ] || ae_fail "$v case started more than one request"
done
for v in wu-overflow bad-field; do
  out=$(fr made-you-reset --sni count.example.test --path "/myr-$v" --count 3000 --variant "$v" --timeout 30)
  [ "$(field goaway <<<"$out")" = 11 ] || ae_fail "MadeYouReset ($v) not answered with GOAWAY ENHANCE_YOUR_CALM: $out"
  rst=$(field rst <<<"$out")
  [ -n "$rst" ] && [ "$rst" -le 300 ] || ae_fail "MadeYouReset ($v): $rst resets before the GOAWAY: $out"
  [ "$(field closed <<<"$out")" = True ] || ae_fail "MadeYouReset ($v): connection not closed: $out"
  # Each provoking stream is a complete GET; at most the bucket plus one batch of streams (MCS)
  # may have reached the upstream before the GOAWAY.
  n=$(grep -c "^GET /myr-$v " "$T/counted.log" || true)
  [ "$n" -le 300 ] || ae_fail "MadeYouReset ($v) started $n upstream requests"
  ok_after "myr-$v"
done
grep -q 'too many stream resets' "$T/acmedge.log" || ae_fail "MadeYouReset close not logged"
grep -q '/myr-bad-field' "$T/counted.log" && ae_fail "a request with a bad field reached the upstream"

# ---- header block never completed: closed after proxy.header_timeout_ms -------------------------------
out=$(fr hblock-stall --sni count.example.test --path /hblock --count 0 --timeout "$(late $HDR_MS)")
[ "$(field closed <<<"$out")" = True ] || ae_fail "open header block not closed: $out"
sec=$(field seconds <<<"$out")
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$sec') >= $HDR_MS / 1000 * 0.9 else 1)" ||
  ae_fail "open header block closed before the header timeout: $out"
# A CONTINUATION drip that stays under nghttp2's 8-frame limit is closed by the same bound.
out=$(fr hblock-stall --sni count.example.test --path /hdrip --count 6 --drip 0.5 --timeout "$(late $HDR_MS)")
[ "$(field closed <<<"$out")" = True ] || ae_fail "CONTINUATION drip not closed: $out"
grep -q 'header block not completed in time' "$T/acmedge.log" || ae_fail "header-block timeout not logged"
grep -q '/hblock\|/hdrip' "$T/counted.log" && ae_fail "an incomplete header block reached the upstream"
ok_after hblock

# ---- preface / SETTINGS ACK and idle timeouts -----------------------------------------------------------
# Nothing after the TLS handshake, or a preface whose SETTINGS are never acknowledged: closed after
# proxy.header_timeout_ms. A wrong preface: closed at once.
for c in silent no-ack; do
  out=$(fr "$c" --sni count.example.test --timeout "$(late $HDR_MS)")
  [ "$(field closed <<<"$out")" = True ] || ae_fail "$c connection not closed: $out"
done
ae_wait_for grep -q 'no preface or SETTINGS ACK in time' "$T/acmedge.log" || ae_fail "preface timeout not logged"
out=$(fr garbage --sni count.example.test --timeout "$(late $HDR_MS)")
[ "$(field closed <<<"$out")" = True ] || ae_fail "garbage preface not closed: $out"
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$(field seconds <<<"$out")') < $HDR_MS / 1000 else 1)" ||
  ae_fail "garbage preface waited for a timeout instead of an immediate close: $out"
# A complete handshake, then nothing: GOAWAY and close after proxy.idle_timeout_ms.
out=$(fr idle --sni count.example.test --timeout "$(late $IDLE_MS)")
[ "$(field closed <<<"$out")" = True ] || ae_fail "idle connection not closed: $out"
[ "$(field goaway <<<"$out")" = 0 ] || ae_fail "idle close without GOAWAY NO_ERROR: $out"
/usr/bin/python3 -c "import sys; sys.exit(0 if float('$(field seconds <<<"$out")') >= $IDLE_MS / 1000 * 0.9 else 1)" ||
  ae_fail "idle connection closed before proxy.idle_timeout_ms: $out"
ae_wait_for grep -q 'h2: idle, closing' "$T/acmedge.log" || ae_fail "idle close not logged"
ok_after timeouts

# ---- write timeout: a client that never reads a large response ----------------------------------------
rss0=$(px_rss_kb "$ACMEDGE_PID")
rm -f "$T/go"
"${FR[@]}" no-read --port "$AE_HTTPS_PORT" --sni special.example.test --path /big --go "$T/go" \
  --timeout "$(late $IDLE_MS)" >"$T/noread.out" &
nr=$!
ok=0
for ((i = 0; i < $(late $IDLE_MS) * 10; i++)); do
  grep -q 'h2: client stopped reading, closing' "$T/acmedge.log" && { ok=1; break; }
  sleep 0.1
done
rss1=$(px_rss_kb "$ACMEDGE_PID")
touch "$T/go"
wait "$nr" || ae_fail "no-read client failed"
[ "$ok" = 1 ] || ae_fail "client that never reads not closed by the write timeout: $(cat "$T/noread.out")"
out=$(cat "$T/noread.out")
got=$(field data_bytes <<<"$out")
[ "$got" -lt 10000000 ] || ae_fail "the never-reading client got the whole 64 MiB body ($got bytes)"
# Held back at most by the windows and caps: far below the 64 MiB the upstream offered.
[ $((rss1 - rss0)) -lt 16384 ] || ae_fail "RSS grew by $((rss1 - rss0)) kB for one client that never reads"
ok_after no-read

# ---- trailers, 1xx, 100-continue, 204 -----------------------------------------------------------------
jq_py() { /usr/bin/python3 -c "import json,sys; r=json.load(sys.stdin); sys.exit(0 if ($1) else 1)"; }
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni special.example.test --path /trailers --timeout 20)
jq_py 'r.get("status") == 200 and r.get("body_len") == 12 and sorted(r.get("trailers", [])) == [["x-checksum", "abc123"], ["x-count", "2"]]' <<<"$out" ||
  ae_fail "chunked response trailers not relayed as a trailing HEADERS: $out"
# Request trailers: forwarded in the chunked body's trailer section, minus fields acmedge owns or
# that would change routing (x-auth-sub, host); dropped when the body has a content-length.
out=$(fr trailers --sni special.example.test --path /reqtr)
jq_py 'r.get("status") == 200' <<<"$out" || ae_fail "request with trailers failed: $out"
grep -qx 'DONE POST /reqtr 11 x-req-sum=42' "$T/special.log" || ae_fail "request trailers not forwarded as chunked trailers: $(cat "$T/special.log")"
out=$(fr trailers --sni special.example.test --path /reqtr-cl --variant cl)
jq_py 'r.get("status") == 200' <<<"$out" || ae_fail "request with content-length and trailers failed: $out"
grep -qx 'DONE POST /reqtr-cl 11 -' "$T/special.log" || ae_fail "trailers of a content-length body not dropped: $(cat "$T/special.log")"
out=$(fr hints --sni special.example.test --path /hints)
jq_py 'r.get("status") == 200 and [i[0] for i in r["interim"]] == [103] and ["link", "</style.css>; rel=preload"] in r["interim"][0][1] and r["body"] == "hinted\n"' <<<"$out" ||
  ae_fail "103 Early Hints not relayed: $out"
out=$(fr expect --sni special.example.test --path /continue)
jq_py 'r.get("status") == 200 and [i[0] for i in r["interim"]] == [100] and r["body_sent"]' <<<"$out" ||
  ae_fail "Expect: 100-continue did not get the upstream's 100: $out"
grep -qx 'DONE POST /continue 10 -' "$T/special.log" || ae_fail "body after 100-continue did not reach the upstream"
out=$("${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni special.example.test --path /nocontent --timeout 20)
jq_py 'r.get("status") == 204 and r.get("ended") and "data_frames" not in r and ["x-empty", "yes"] in r["headers"]' <<<"$out" ||
  ae_fail "204 over h2: $out"

# ---- SIGTERM: GOAWAY notice, final GOAWAY, in-flight stream finishes, later stream refused -------------
rm -f "$T/ready"
"${FR[@]}" drain --port "$AE_HTTPS_PORT" --sni special.example.test --path '/slow?delay=3' --ready "$T/ready" \
  --timeout 30 >"$T/drain.out" &
dr=$!
ae_wait_for test -e "$T/ready" || ae_fail "drain client did not start"
ae_wait_for grep -q '^START GET /slow?delay=3$' "$T/special.log" || ae_fail "slow request did not reach the upstream"
acmedge_stop
wait "$dr" || ae_fail "drain client failed"
out=$(cat "$T/drain.out")
/usr/bin/python3 - "$out" <<'PY' || ae_fail "SIGTERM drain: $out"
import json, sys
r = json.loads(sys.argv[1])
g = r.get("goaways", [])
assert len(g) >= 2, "expected a GOAWAY notice and a final GOAWAY"
assert g[0] == [2**31 - 1, 0], "first GOAWAY is not the notice: %r" % g[0]
assert g[-1] == [1, 0], "final GOAWAY does not name stream 1: %r" % g[-1]
s1 = r["streams"].get("1", {})
assert s1.get("status") == 200 and s1.get("ended") and s1.get("body") == "slow done\n", "in-flight stream: %r" % s1
assert "status" not in r["streams"].get("3", {}), "stream after the final GOAWAY was answered"
assert r["closed"], "connection not closed after the drain"
PY
grep -q 'after-goaway' "$T/special.log" && ae_fail "a stream after the final GOAWAY reached the upstream"
echo "ok"
