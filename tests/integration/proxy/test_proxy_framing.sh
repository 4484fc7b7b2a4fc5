#!/usr/bin/env bash
# HTTP/1.1 framing exactness through the real binary over TLS (docs/http-framing.md): a python3
# raw-socket client sends one annotated case per rule (chunk framing and the smuggling desync,
# chunk extensions, Transfer-Encoding, request line, header limits, WebSocket handshake, field
# rules) to a route whose upstream counts every request it parses. Each refusal must get its
# status with Connection: close at once, and the upstream must see exactly the accepted requests
# (0 smuggled). Then /metrics must count the refusals by reason and the log name each one once.
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
  \"proxy\": {\"header_timeout_ms\": 60000},
  \"routes\": [{\"hosts\": [\"framing.example.test\"], \"upstream\": \"127.0.0.1:$COUNT_PORT\"}]}"
acmedge_start "$T/acmedge.json"

"$AE_PY" "$PX_UP/framing_client.py" "$AE_HTTPS_PORT" framing.example.test "$T/counted.log" >"$T/framing.out" 2>&1 ||
  ae_fail "framing cases failed:
$(grep -v '^ok' "$T/framing.out")"
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died during the framing cases"

# Refusals are counted by reason (the case list refuses at least these many of each).
curl -sf --noproxy '*' "http://127.0.0.1:$AE_ADMIN_PORT/metrics" -o "$T/metrics.txt" || ae_fail "GET /metrics failed"
metric() {
  awk -v k="acmedge_http_rejected_total{reason=\"$1\"}" '$1 == k {print $2}' "$T/metrics.txt"
}
for pair in chunk_framing:6 chunk_ext:2 transfer_encoding:4 request_line:5 version:2 uri_too_long:1 \
  header_too_large:2 too_many_headers:1 websocket:3 header_syntax:3 content_length:2 host:2; do
  reason=${pair%%:*} want=${pair##*:}
  got=$(metric "$reason")
  [ -n "$got" ] && [ "$got" -ge "$want" ] || ae_fail "acmedge_http_rejected_total{reason=\"$reason\"} is '${got}', want >= $want"
done
# Each refusal is logged once, naming its reason.
n=$(grep -c 'refused (chunk_framing)' "$T/acmedge.log" || true)
[ "$n" -eq "$(metric chunk_framing)" ] || ae_fail "chunk_framing refusals logged $n times, counted $(metric chunk_framing)"

acmedge_stop
echo "proxy framing integration test passed"
