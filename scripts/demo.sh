#!/usr/bin/env bash
# The whole story on a local Pebble CA, offline: installs what is missing, builds, starts Pebble +
# challtestsrv, a demo upstream and acmedge with config/acmedge.json, then shows a first request
# answered with the default certificate, on-demand issuance as live events, and the second request
# served with the Pebble-issued certificate. Interactive: keeps running until Ctrl-C.
# Non-interactive (no TTY) or --once: stops everything after the story.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
once=0
[[ "${1:-}" == "--once" ]] && once=1
[[ -t 0 ]] || once=1

scripts/setup.sh
cmake -S "$root" -B "$root/build-demo" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAE_TESTS=OFF >/dev/null
cmake --build "$root/build-demo" -j"$(nproc)" >/dev/null
ACMEDGE_BIN=$root/build-demo/acmedge
export ACMEDGE_BIN

# Ports of config/acmedge.json: https 8443, http 8080, admin 2020, upstream 8081; Pebble 14000/15000.
HTTPS=8443 HTTP=8080 ADMIN=2020 UPSTREAM=8081 PEBBLE_PORT=14000 PEBBLE_MGMT_PORT=15000
DNS_PORT=8053 CHALL_MGMT=8055
for p in $HTTPS $HTTP $ADMIN $UPSTREAM $PEBBLE_PORT $PEBBLE_MGMT_PORT $DNS_PORT $CHALL_MGMT; do
  if (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "demo: port $p on 127.0.0.1 is in use; stop what uses it and retry" >&2
    exit 1
  fi
done

source "$root/tests/lib/common.sh"
T=$root/var/demo
# Pebble makes a new CA at every start, so certificates stored by an earlier demo run would not
# verify against this run's root: start the demo from empty state.
rm -rf "$T" "$root/var/storage"
mkdir -p "$T" "$root/var/pebble"
: >"$T/.pids"
: >"$T/.ports"
cleanup() {
  local pid
  for pid in $(tac "$T/.pids" 2>/dev/null); do ae_kill_pid "$pid" 30; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "starting Pebble (ACME CA) on 127.0.0.1:$PEBBLE_PORT and its DNS helper"
_pebble_gen_certs
cp "$PEBBLE_CA" "$root/var/pebble/ca.pem"
cat >"$T/pebble-config.json" <<JSON
{"pebble": {"listenAddress": "127.0.0.1:$PEBBLE_PORT", "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
 "certificate": "$T/pebble-tls/cert.pem", "privateKey": "$T/pebble-tls/key.pem",
 "httpPort": $HTTP, "tlsPort": $HTTPS, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
ae_bg challtestsrv pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -http01 "" -https01 "" \
  -tlsalpn01 "" -dns01 "127.0.0.1:$DNS_PORT" -management "127.0.0.1:$CHALL_MGMT"
ae_wait_for ae_port_open $CHALL_MGMT || ae_fail "pebble-challtestsrv did not start"
ae_bg pebble env PEBBLE_VA_NOSLEEP=1 pebble -config "$T/pebble-config.json" -dnsserver "127.0.0.1:$DNS_PORT"
ae_wait_for curl -sf --cacert "$PEBBLE_CA" "https://127.0.0.1:$PEBBLE_PORT/dir" || ae_fail "Pebble did not start"
curl -sf --cacert "$PEBBLE_CA" "https://127.0.0.1:$PEBBLE_MGMT_PORT/roots/0" -o "$T/pebble-root.pem"

step "starting a demo upstream on 127.0.0.1:$UPSTREAM"
mkdir -p "$T/www"
echo "hello from the upstream behind acmedge" >"$T/www/index.html"
ae_bg upstream python3 -m http.server "$UPSTREAM" --bind 127.0.0.1 --directory "$T/www"
ae_wait_for ae_port_open $UPSTREAM || ae_fail "upstream did not start"

step "starting acmedge with config/acmedge.json"
"$ACMEDGE_BIN" check -c config/acmedge.json
ae_bg acmedge "$ACMEDGE_BIN" run -c config/acmedge.json
ae_wait_for ae_port_open $HTTPS || ae_fail "acmedge did not start (see $T/acmedge.log)"
ae_wait_for ae_port_open $ADMIN || ae_fail "acmedge admin API did not start"

step "live events (acmedge events)"
"$ACMEDGE_BIN" events --admin 127.0.0.1:$ADMIN &
echo $! >>"$T/.pids"
sleep 0.5

name=demo.example.test
issuer() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$name" -p $HTTPS 127.0.0.1 </dev/null 2>/dev/null |
    awk 'd{next} /BEGIN CERT/{p=1} p{print} /END CERT/{if (p) d=1}' | certtool -i 2>/dev/null | awk -F': ' '!n && /Issuer:/{print $2; n=1}'
}
step "first request to https://$name:$HTTPS/ (unknown name: default certificate, issuance starts)"
echo "served certificate issuer: $(issuer)"
curl -sk --resolve "$name:$HTTPS:127.0.0.1" "https://$name:$HTTPS/" || true

step "waiting for the certificate"
for i in $(seq 1 100); do
  if issuer | grep Pebble >/dev/null; then break; fi
  sleep 0.2
done
issuer | grep Pebble >/dev/null || ae_fail "no certificate issued for $name (see $T/acmedge.log)"

step "second request, verified against Pebble's root"
echo "served certificate issuer: $(issuer)"
curl -sS --cacert "$T/pebble-root.pem" --resolve "$name:$HTTPS:127.0.0.1" "https://$name:$HTTPS/"

step "managed domains (acmedge domains)"
"$ACMEDGE_BIN" domains --admin 127.0.0.1:$ADMIN

if ((once)); then
  step "demo complete"
  exit 0
fi
step "acmedge keeps running: try another name, e.g."
echo "  curl -k --resolve other.example.test:$HTTPS:127.0.0.1 https://other.example.test:$HTTPS/"
echo "  curl -s http://127.0.0.1:$ADMIN/v1/domains ; curl -s http://127.0.0.1:$ADMIN/metrics"
echo "Ctrl-C stops everything."
wait "$(cat "$T/acmedge.pid")"
