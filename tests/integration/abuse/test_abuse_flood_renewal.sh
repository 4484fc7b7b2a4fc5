#!/usr/bin/env bash
# A flood of random names under one allowed suffix, without dns_check, against the fair queue with
# its shares of the 3 h order cap (on_demand.rate.per_3h 10; one registrable domain may use 10 % of
# it, i.e. one order; 20 %, two orders, are kept for renewals):
#  - the flood gets exactly one order; the rest of it waits in the queue, and is dropped once
#    nobody asked for it again within fair_queue.unasked_ttl_s (domain_denied, reason unasked);
#  - a real name under another registrable domain is issued within seconds during the flood;
#  - a renewal (POST /v1/domains/{name}/renew) happens during the flood;
#  - once new names have used every order outside the renewal reserve, a new name waits (and, asked
#    for again by its client every second, stays queued past the unasked TTL), while a renewal
#    still gets an order from the reserve.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"on_demand": {"allow": ["*.flood-example.test", "*.real-example.test",
  "*.keep-example.test", "*.wait-example.test", "*.late1-example.test", "*.late2-example.test",
  "*.late3-example.test", "*.late4-example.test"],
  "max_concurrent": 1, "max_queue": 40, "rate": {"per_minute": 60, "burst": 1, "per_3h": 10},
  "fair_queue": {"max_share": 0.5, "rate_share": 0.1, "renewal_reserve": 0.2, "unasked_ttl_s": 10}}}'
acmedge_start "$T/acmedge.json"
ADMIN=http://127.0.0.1:$AE_ADMIN_PORT

# metric_denied REASON : acmedge_denied_total for REASON (0 when absent).
metric_denied() {
  local v
  v=$(curl -s --noproxy '*' --max-time 10 "$ADMIN/metrics" |
    awk -v r="reason=\"$1\"" 'index($0, "acmedge_denied_total{") == 1 && index($0, r) {print $2}')
  echo "${v:-0}"
}

# state NAME : the state /v1/domains reports for NAME (empty when not listed).
state() {
  curl -s --noproxy '*' --max-time 10 "$ADMIN/v1/domains" | python3 -c '
import json, sys
for d in json.load(sys.stdin):
    if d.get("domain", d.get("name")) == sys.argv[1]:
        print(d.get("state", ""))' "$1"
}

# renew NAME : asks for a renewal now and waits until a certificate with a new serial is served.
renew() {
  local name=$1 before after code i
  before=$(od_serial "$name")
  [ -n "$before" ] || ae_fail "no serial for $name"
  code=$(curl -s --noproxy '*' -o "$T/body" -w '%{http_code}' -X POST "$ADMIN/v1/domains/$name/renew" || true)
  [ "$code" = 202 ] || ae_fail "renew $name answered $code: $(cat "$T/body")"
  for ((i = 0; i < 300; i++)); do
    after=$(od_serial "$name")
    [ -n "$after" ] && [ "$after" != "$before" ] && return 0
    sleep 0.2
  done
  ae_fail "$name was not renewed within 60 s (serial still $before)"
}

od_wait_issued www.keep-example.test 60 # order 1 of 10

# The flood: 60 random names, each asked for once.
pids=()
for i in $(seq 1 60); do
  timeout 10 gnutls-cli --insecure --sni-hostname="f$i-$RANDOM.flood-example.test" -p "$AE_HTTPS_PORT" 127.0.0.1 \
    </dev/null >/dev/null 2>&1 &
  pids+=($!)
  if ((i % 20 == 0)); then
    wait "${pids[@]}" || true # only the clients: a bare wait would wait for acmedge and Pebble too
    pids=()
  fi
done
flood_end=$(date +%s)

start=$(date +%s)
od_wait_issued www.real-example.test 30 # order 3 (the flood's single order is 2)
echo "real name issued after $(($(date +%s) - start)) s during the flood"
renew www.keep-example.test # order 4
if (($(date +%s) - flood_end < 10)); then
  # Still within the unasked TTL: the flood is still queued, held back by its share.
  [ "$(state www.keep-example.test)" = valid ] || ae_fail "keep-example not valid after its renewal"
  curl -s --noproxy '*' --max-time 10 "$ADMIN/v1/domains" | grep 'flood-example.test' >/dev/null ||
    ae_fail "no flood name queued right after the flood"
fi

# New names of four more registrable domains use orders 5..8: the last ones outside the reserve.
for n in 1 2 3 4; do
  od_wait_issued "www.late$n-example.test" 60
done
# A ninth new name waits for the reserve to be left alone; its client asks again every second,
# so it stays queued well past the 10 s unasked TTL.
for ((i = 0; i < 25; i++)); do
  ae_sni_cert www.wait-example.test >/dev/null
  sleep 1
done
[ "$(state www.wait-example.test)" = pending ] ||
  ae_fail "www.wait-example.test is '$(state www.wait-example.test)', expected pending (queued)"
od_is_default www.wait-example.test || ae_fail "www.wait-example.test got a certificate beyond the cap"
grep -q 'www.wait-example.test: dropped from the order queue' "$T/acmedge.log" &&
  ae_fail "a name asked for every second was dropped as unasked"
# ... while a renewal still gets an order (9 of 10).
renew www.keep-example.test

# The flood: exactly one order, the rest dropped as unasked.
flood_orders=$(grep -F '[event] issuance_started ' "$T/acmedge.log" | grep -c 'flood-example.test' || true)
[ "$flood_orders" = 1 ] || ae_fail "the flood got $flood_orders orders, expected 1 (its share)"
for ((i = 0; i < 150; i++)); do
  [ "$(metric_denied unasked)" -ge 1 ] && break
  sleep 0.2
done
[ "$(metric_denied unasked)" -ge 1 ] || ae_fail "no queued flood name was dropped as unasked"
# The counter moves before the log lines reach the file: wait for them (bounded).
dropped_logged() {
  grep -q 'flood-example.test: dropped from the order queue, not asked for again' "$T/acmedge.log"
}
unasked_event_logged() {
  grep -F '[event] domain_denied ' "$T/acmedge.log" | grep 'flood-example.test' | grep '"reason":"unasked"' >/dev/null
}
ae_wait_for dropped_logged || ae_fail "no log line for a dropped flood name"
ae_wait_for unasked_event_logged || ae_fail "no domain_denied event with reason unasked"
acmedge_stop
echo "PASS"
