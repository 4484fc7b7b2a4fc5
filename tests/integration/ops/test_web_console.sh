#!/usr/bin/env bash
# The web console in a real browser (headless Chromium over the DevTools protocol) against a live
# acmedge + Pebble, with an admin token: a name added in the console goes pending -> valid without
# a reload, a denial is shown, the detail view lists the name's events, filter/sort work, a dropped
# event stream resumes without missing or repeating events, delete works, no console errors.
# Screenshots go to the build directory (ui-console.png, ui-console-phone.png).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  echo "SKIP: Chromium is not installed ($CHROMIUM); scripts/setup.sh installs the chromium package"
  exit 0
fi
ae_setup
BUILD=$(cd "$(dirname "$ACMEDGE_BIN")" && pwd)
TOKEN=console-test-token-$RANDOM$RANDOM
pebble_start
# One order at once and a bucket of one refilled every 10 s: the second name waits in the queue
# (state pending) long enough for the console to show it.
ae_config_write "$T/acmedge.json" "{\"admin\": {\"token\": \"$TOKEN\"},
  \"on_demand\": {\"max_concurrent\": 1, \"rate\": {\"burst\": 1, \"per_minute\": 6}}}"
acmedge_start "$T/acmedge.json"
ADMIN=http://127.0.0.1:$AE_ADMIN_PORT

# /ui is served (public shell, security headers); the API behind it still needs the token.
curl -s --noproxy '*' -D "$T/ui.h" -o "$T/ui.html" "$ADMIN/ui"
grep -q '^HTTP/1.1 200' "$T/ui.h" || ae_fail "/ui: $(head -1 "$T/ui.h")"
grep -qi '^Content-Security-Policy: .*script-src .self.' "$T/ui.h" || ae_fail "/ui lacks a CSP"
grep -qi '^X-Frame-Options: DENY' "$T/ui.h" || ae_fail "/ui lacks X-Frame-Options"
grep -q '<script src="/ui/app.js"' "$T/ui.html" || ae_fail "/ui is not the console page"
cmp -s "$T/ui.html" "$AE_SRC/ui/index.html" || ae_fail "/ui differs from ui/index.html"
curl -s --noproxy '*' -o "$T/app.js" "$ADMIN/ui/app.js"
cmp -s "$T/app.js" "$AE_SRC/ui/app.js" || ae_fail "/ui/app.js differs from ui/app.js"
[ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$ADMIN/ui/nope.js")" = 404 ] || ae_fail "/ui/nope.js not 404"
[ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$ADMIN/v1/domains")" = 401 ] || ae_fail "API without token not 401"
# A cross-site page is still refused; the console's own origin is not.
[ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H 'Origin: http://evil.example' "$ADMIN/v1/domains")" = 403 ] || ae_fail "cross-site Origin not refused"
[ "$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -H "Origin: http://127.0.0.1:$AE_ADMIN_PORT" "$ADMIN/v1/domains")" = 200 ] || ae_fail "same-origin request refused"

# A first name, issued before the browser opens (it also spends the only rate token).
code=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $TOKEN" \
  -d '{"domain":"first.example.test"}' "$ADMIN/v1/domains")
[ "$code" = 202 ] || ae_fail "POST first.example.test: $code"

mkdir -p "$T/profile"
rc=0
UI_URL="$ADMIN/ui" UI_TOKEN="$TOKEN" UI_OUT="$BUILD" UI_PROFILE="$T/profile" CHROMIUM="$CHROMIUM" \
  UI_TIMEOUT=90 timeout 500 "$AE_PY" "$AE_SRC/tests/integration/ops/ui_driver.py" >"$T/driver.log" 2>&1 || rc=$?
cat "$T/driver.log"
[ "$rc" -eq 0 ] || ae_fail "browser test failed (exit $rc); screenshot in $BUILD/ui-console-failure.png"
[ -s "$BUILD/ui-console.png" ] || ae_fail "no screenshot saved"
acmedge_stop
echo ok
