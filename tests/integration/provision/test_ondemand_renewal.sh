#!/usr/bin/env bash
# Short-lived certificates are renewed at 2/3 of their lifetime and swapped while a client keeps
# handshaking: no failed handshake, the serial changes, cert_renewed is emitted.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start '"certificateValidityPeriod": 15'
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"

name=renew.example.test
od_is_default "$name" || true
od_wait_issued "$name" 20
serial1=$(od_serial "$name")
[ -n "$serial1" ] || ae_fail "could not read the first serial"

fails=0
for i in $(seq 1 60); do
  if ! timeout 10 gnutls-cli --x509cafile="$T/pebble-root.pem" --sni-hostname="$name" --verify-hostname="$name" \
      -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >/dev/null 2>&1; then
    fails=$((fails + 1))
  fi
  if [ "$(od_events cert_renewed "$name")" -ge 1 ] && [ "$i" -gt 5 ]; then
    break
  fi
  sleep 0.5
done
[ "$(od_events cert_renewed "$name")" -ge 1 ] || ae_fail "no cert_renewed event"
[ "$fails" -eq 0 ] || ae_fail "$fails handshakes failed during renewal"
serial2=$(od_serial "$name")
[ "$serial1" != "$serial2" ] || ae_fail "serial did not change after renewal"
acmedge_stop
echo "ok"
