#!/usr/bin/env bash
# on_demand.dns_check against pebble-challtestsrv's DNS: with the default answer pointing
# elsewhere, a random allowed name is denied (dns_mismatch, no order, negative-cached); a name
# pointed at us is issued; a CNAME chain to a name pointed at us is issued; a flood of random
# allowed names causes no order; with the resolver down a name is denied (dns_failed, fail closed)
# with a log line saying so.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
chall() { # chall PATH JSON : one management call to challtestsrv
  curl -sf --max-time 10 -X POST -d "$2" "$PEBBLE_CHALL_MGMT$1" >/dev/null || ae_fail "challtestsrv $1 $2 failed"
}
# Every name not set explicitly now points at a documentation address, not at acmedge.
chall /set-default-ipv4 '{"ip": "192.0.2.55"}'

ae_config_write "$T/acmedge.json" "{\"on_demand\": {\"dns_check\": {\"expect\": [\"127.0.0.1\", \"2001:db8::7\"],
  \"resolver\": \"127.0.0.1:$PEBBLE_DNS_PORT\", \"timeout_ms\": 2000}}}"
acmedge_start "$T/acmedge.json"

# Pointing elsewhere: denied, no order.
od_is_default elsewhere.example.test || ae_fail "elsewhere.example.test did not get the default certificate"
od_wait_event domain_denied elsewhere.example.test 15
grep -F "[event] domain_denied " "$T/acmedge.log" | grep -F '"domain":"elsewhere.example.test"' |
  grep -q 'dns_mismatch' || ae_fail "denial reason dns_mismatch missing"
# Negative-cached: asked again, answered from the cache.
od_is_default elsewhere.example.test || ae_fail "elsewhere.example.test served something else later"
ae_wait_for grep -q 'elsewhere.example.test denied: dns_mismatch (cached answer)' "$T/acmedge.log" ||
  ae_fail "second request for elsewhere.example.test not answered from the cache"

# Pointing at us: issued.
chall /add-a '{"host": "ours.example.test", "addresses": ["127.0.0.1"]}'
ae_sni_cert ours.example.test >/dev/null
od_wait_issued ours.example.test 60

# CNAME chain: alias -> target, target -> 127.0.0.1.
chall /add-a '{"host": "target.example.test", "addresses": ["127.0.0.1"]}'
chall /set-cname '{"host": "alias.example.test", "target": "target.example.test"}'
ae_sni_cert alias.example.test >/dev/null
od_wait_issued alias.example.test 60

# A flood of random allowed names: none points at us, so no order.
orders_before=$(pebble_count_orders)
pids=()
for i in $(seq 1 60); do
  timeout 10 gnutls-cli --insecure --sni-hostname="r$i-$RANDOM.example.test" -p "$AE_HTTPS_PORT" 127.0.0.1 \
    </dev/null >/dev/null 2>&1 &
  pids+=($!)
  if ((i % 20 == 0)); then
    wait "${pids[@]}" || true # only the clients: a bare wait would wait for acmedge and Pebble too
    pids=()
  fi
done
for ((i = 0; i < 100; i++)); do
  # The policy's decision lines: the domain_denied event log line is rate-capped during floods.
  n=$(grep -cE '\[policy\] r[0-9]+-[0-9]+\.example\.test denied: dns_mismatch' "$T/acmedge.log" || true)
  [ "${n:-0}" -ge 60 ] && break
  sleep 0.2
done
[ "${n:-0}" -ge 60 ] || ae_fail "flood names not all denied with dns_mismatch ($n of 60)"
[ "$(pebble_count_orders)" = "$orders_before" ] || ae_fail "the flood caused orders"
acmedge_stop

# Resolver down: fail closed.
dead=$(ae_free_port)
ae_config_write "$T/acmedge2.json" "{\"on_demand\": {\"dns_check\": {\"expect\": [\"127.0.0.1\"],
  \"resolver\": \"127.0.0.1:$dead\", \"timeout_ms\": 500}}}"
mv "$T/acmedge.log" "$T/acmedge-1.log"
acmedge_start "$T/acmedge2.json"
chall /add-a '{"host": "down.example.test", "addresses": ["127.0.0.1"]}'
od_is_default down.example.test || ae_fail "down.example.test did not get the default certificate"
od_wait_event domain_denied down.example.test 20
grep -F "[event] domain_denied " "$T/acmedge.log" | grep -F '"domain":"down.example.test"' |
  grep -q 'dns_failed' || ae_fail "denial reason dns_failed missing"
grep -q 'DNS check for down.example.test failed, denying (fail closed)' "$T/acmedge.log" ||
  ae_fail "no log line saying the check failed closed"
[ "$(pebble_count_orders)" = "$orders_before" ] || ae_fail "resolver down still caused an order"
acmedge_stop
echo "PASS"
