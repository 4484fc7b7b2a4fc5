#!/usr/bin/env bash
# SIGHUP reload: an added allow pattern lets a previously denied name issue without a restart
# (same process, open connections kept); a broken file is refused with the error logged and the
# old config keeps serving.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"
ADMIN=127.0.0.1:$AE_ADMIN_PORT
ae_bg sse curl -sN --noproxy '*' -H 'Last-Event-ID: 0' "http://$ADMIN/v1/events"

name=late.other.test
od_is_default "$name" || ae_fail "$name should get the default certificate"
od_wait_event domain_denied "$name" 10
sleep 1
od_is_default "$name" || ae_fail "$name was issued although not allowed"
[ "$(od_events issuance_started "$name")" -eq 0 ] || ae_fail "issuance started for a denied name"

# Allow it and reload.
ae_config_write "$T/acmedge.json" '{"on_demand": {"allow": ["*.example.test", "*.other.test"]}}'
kill -HUP "$ACMEDGE_PID"
ae_wait_for grep -q 'config_reloaded' "$T/sse.log" || ae_fail "no config_reloaded event after SIGHUP"
od_wait_issued "$name" 30
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died"
# The event stream opened before the reload is still the same connection and saw the issuance.
ae_wait_for grep -q "\"type\":\"cert_installed\",\"domain\":\"$name\"" "$T/sse.log" ||
  ae_fail "SSE connection from before the reload did not see the issuance"
ae_pid_alive "$(cat "$T/sse.pid")" || ae_fail "SSE client connection was dropped by the reload"

# A broken file: refused, logged, old config kept.
cp "$T/acmedge.json" "$T/acmedge.good.json"
printf '{ "listen": { "https": ' >"$T/acmedge.json"
kill -HUP "$ACMEDGE_PID"
for ((i = 0; i < 50; i++)); do
  if grep -q 'reload refused' "$T/acmedge.log" >/dev/null; then break; fi
  sleep 0.1
done
grep -q 'reload refused' "$T/acmedge.log" >/dev/null ||
  ae_fail "broken config on SIGHUP was not reported in the log"
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died on a broken config"
od_is_pebble "$name" || ae_fail "$name no longer served after a refused reload"
[ "$(curl -s --noproxy '*' "http://$ADMIN/healthz")" = ok ] || ae_fail "admin API gone after a refused reload"
# The old allow list still applies: another *.other.test name issues.
od_wait_issued second.other.test 30

cp "$T/acmedge.good.json" "$T/acmedge.json"
acmedge_stop
echo "ok"
