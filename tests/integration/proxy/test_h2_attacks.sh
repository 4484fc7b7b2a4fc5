#!/usr/bin/env bash
# HTTP/2 abuse through the real binary (docs/http2.md, "Security"), each case on its own
# connection against a route whose upstream counts every request it parses: malformed fields
# (invalid-header callback), connection-specific fields, content-length vs DATA (H2.CL), 431 for
# oversize header blocks, Rapid Reset, CONTINUATION and empty-DATA floods, PING/SETTINGS floods.
# The counting upstream must see 0 smuggled or extra requests, and a legitimate request must
# still be served after every case.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
px_cert
COUNT_PORT=$(ae_free_port)
: >"$T/counted.log"
ae_bg counter "$AE_PY" "$PX_UP/counter.py" "$COUNT_PORT" "$T/counted.log"
ae_wait_for ae_port_open "$COUNT_PORT" || ae_fail "counting upstream did not start"
ae_config_write "$T/acmedge.json" "{
  \"on_demand\": {\"enabled\": false},
  \"log\": {\"level\": \"info\"},
  \"routes\": [{\"hosts\": [\"count.example.test\"], \"upstream\": \"127.0.0.1:$COUNT_PORT\"}]}"
acmedge_start "$T/acmedge.json"
H2C=(/usr/bin/python3 "$PX_UP/h2_client.py")
req() { "${H2C[@]}" request --port "$AE_HTTPS_PORT" --sni count.example.test --timeout 20 "$@"; }
field() { /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get(sys.argv[1], ""))' "$1"; }

# A legitimate request still works and is counted exactly once.
ok_after() {
  local out
  out=$(req --path "/ok-$1")
  [ "$(field status <<<"$out")" = 200 ] || ae_fail "legitimate request after $1 failed: $out"
  ae_wait_for grep -q "^GET /ok-$1 0$" "$T/counted.log" || ae_fail "/ok-$1 not counted"
  ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died during $1"
}

# ---- malformed or connection-specific fields: RST_STREAM PROTOCOL_ERROR (1) ------------------
i=0
for h in 'x-a:b\rc' 'x-a:b\nc' 'x-a:b\x00c' 'x-a: lead' 'x-a:trail ' 'X-Upper:v' 'x a:v' 'x(a:v' \
  'transfer-encoding:chunked' 'te:gzip' 'connection:x' 'upgrade:h2c' 'keep-alive:5' 'proxy-connection:x'; do
  i=$((i + 1))
  out=$(req --path "/bad-field-$i" --header "$h")
  [ "$(field reset <<<"$out")" = 1 ] || ae_fail "field '$h' not reset with PROTOCOL_ERROR: $out"
done
out=$(req --path /te-trailers --header 'te:trailers')
[ "$(field status <<<"$out")" = 200 ] || ae_fail "te: trailers refused: $out"
for p in '/sp ace' '/cr\rlf' 'nolead'; do
  out=$(req --path "$p")
  [ "$(field reset <<<"$out")" = 1 ] || ae_fail ":path '$p' not reset: $out"
done
out=$(req --method 'GE T' --path /badmethod)
[ "$(field reset <<<"$out")" = 1 ] || ae_fail "bad :method not reset: $out"
ok_after fields

# ---- content-length vs DATA (H2.CL / short body) --------------------------------------------------
smuggle='GET /smuggled HTTP/1.1\r\nHost: count.example.test\r\n\r\n'
out=$(req --method POST --path /h2cl --header 'content-length:0' --body 60)
[ "$(field reset <<<"$out")" = 1 ] || ae_fail "content-length 0 with DATA not reset: $out"
out=$(req --method POST --path /short --header 'content-length:100' --body 10)
[ "$(field reset <<<"$out")" = 1 ] || ae_fail "short body not reset: $out"
for cl in '+5' '0x5' '5, 5'; do
  out=$(req --method POST --path /badcl --header "content-length:$cl" --body 5)
  [ "$(field reset <<<"$out")" = 1 ] || ae_fail "content-length '$cl' not reset: $out"
done
out=$(req --method POST --path /twocl --header 'content-length:5' --header 'content-length:5' --body 5)
[ "$(field reset <<<"$out")" = 1 ] || ae_fail "two content-length fields not reset: $out"
ok_after cl

# ---- oversize header blocks: 431, nothing upstream ---------------------------------------------------
args=()
for n in $(seq 1 101); do args+=(--header "x-f$n:v"); done
out=$(req --path /many "${args[@]}")
[ "$(field status <<<"$out")" = 431 ] || ae_fail "101 fields not 431: $out"
big=$(head -c 15000 /dev/zero | tr '\0' a)
out=$(req --path /huge --header "x-1:$big" --header "x-2:$big" --header "x-3:$big" --header "x-4:$big" --header "x-5:$big")
[ "$(field status <<<"$out")" = 431 ] || ae_fail "75 KB of fields not 431: $out"
ok_after limits

# ---- floods --------------------------------------------------------------------------------------------
att() { "${H2C[@]}" attack --port "$AE_HTTPS_PORT" --sni count.example.test --timeout 30 "$@"; }
out=$(att --case rapid-reset --count 3000)
[ "$(field goaway <<<"$out")" != "" ] || [ "$(field closed <<<"$out")" = True ] || ae_fail "rapid reset not stopped: $out"
rr=$(grep -c '^GET /rr ' "$T/counted.log" || true)
[ "$rr" -le 1100 ] || ae_fail "rapid reset started $rr upstream requests"
ok_after rapid-reset
out=$(att --case continuation --count 10000)
[ "$(field closed <<<"$out")" = True ] || ae_fail "CONTINUATION flood not closed: $out"
# Loopback buffers absorb all the frames before the close, so the log tells why it closed.
ae_wait_for grep -qi 'too many continuation' "$T/acmedge.log" || ae_fail "CONTINUATION flood not closed by the limit: $out"
ok_after continuation
out=$(att --case empty-data --count 5000)
[ "$(field goaway <<<"$out")" = 11 ] || ae_fail "empty DATA flood not answered with ENHANCE_YOUR_CALM: $out"
ok_after empty-data
out=$(att --case ping-flood --count 300000)
[ "$(field closed <<<"$out")" = True ] || ae_fail "PING flood by a client that never reads not closed: $out"
ok_after ping-flood
out=$(att --case settings-flood --count 600000)
[ "$(field closed <<<"$out")" = True ] || ae_fail "SETTINGS flood by a client that never reads not closed: $out"
ok_after settings-flood

# ---- nothing refused, reset or flooded reached the upstream ---------------------------------------------
# The content-length: 0 request is complete as declared when its HEADERS arrive, so the upstream
# may see it with an empty body; its DATA (a whole request) must never follow.
allowed='^GET /ok-\|^GET /te-trailers 0$\|^GET /rr \|^POST /h2cl 0$'
if grep -v "$allowed" "$T/counted.log" | grep . >/dev/null; then
  ae_fail "requests reached the upstream that should not have: $(grep -v "$allowed" "$T/counted.log" | sed -n 1,10p)"
fi
grep -q smuggled "$T/counted.log" && ae_fail "smuggled request reached the upstream"
acmedge_stop
echo "ok"
