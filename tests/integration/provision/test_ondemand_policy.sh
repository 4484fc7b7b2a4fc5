#!/usr/bin/env bash
# A name outside on_demand.allow and a name the ask server denies get the default certificate,
# cause zero orders and a domain_denied event; a name the ask server approves is issued.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ask_port=$(ae_free_port)
cat >"$T/ask.py" <<'PY'
import http.server, sys, urllib.parse
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query)
        d = q.get("domain", [""])[0]
        with open(sys.argv[2], "a") as f:
            f.write(d + "\n")
        self.send_response(200 if d.startswith("ok") else 403)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *a):
        pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
ae_bg ask python3 "$T/ask.py" "$ask_port" "$T/ask-requests"
ae_wait_for ae_port_open "$ask_port" || ae_fail "ask server did not start"
ae_config_write "$T/acmedge.json" "{\"on_demand\": {\"ask\": \"http://127.0.0.1:$ask_port/check\"}}"
acmedge_start "$T/acmedge.json"

od_is_default outside.example.org || ae_fail "outside.example.org did not get the default certificate"
od_is_default nope.example.test || ae_fail "nope.example.test did not get the default certificate"
od_wait_event domain_denied nope.example.test 10
od_wait_event domain_denied outside.example.org 10
grep -F "[event] domain_denied " "$T/acmedge.log" | grep -F '"domain":"nope.example.test"' | grep 'ask_denied' >/dev/null ||
  ae_fail "ask denial reason missing"
od_is_default nope.example.test || ae_fail "denied name served something else later"
! grep -qx 'outside.example.org' "$T/ask-requests" 2>/dev/null || ae_fail "a name outside allow reached the ask URL"

# Port 80: the first request for a fresh name waits for ask, so a denied name gets 404, never 503,
# and an approved one gets 503 + Retry-After while its certificate is issued.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: nope2.example.test" "http://127.0.0.1:$AE_HTTP_PORT/")
[ "$code" = 404 ] || ae_fail "ask-denied name on port 80: expected 404 on the first request, got $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -H "Host: ok2.example.test" "http://127.0.0.1:$AE_HTTP_PORT/")
[ "$code" = 503 ] || ae_fail "ask-approved name on port 80: expected 503 on the first request, got $code"
od_wait_issued ok2.example.test 20

od_is_default ok1.example.test || true
od_wait_issued ok1.example.test 20
[ "$(pebble_count_orders)" -eq 2 ] || ae_fail "expected 2 orders (ok1, ok2), got $(pebble_count_orders)"
acmedge_stop
echo "ok"
