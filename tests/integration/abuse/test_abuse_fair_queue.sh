#!/usr/bin/env bash
# Fair order queue: while a flood of random names under one registrable domain fills the queue
# (orders limited to one every 2 s), a real name under another registrable domain is issued within
# seconds (round robin by registrable domain), and the flood holds at most its share of the queue
# (the rest is denied with queue_full). Without round robin the real name would wait
# behind 30 queued flood names, 60 s at this rate..
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json" '{"on_demand": {"allow": ["*.flood-example.test", "*.real-example.test"],
  "max_concurrent": 1, "max_queue": 40, "rate": {"per_minute": 30, "burst": 1},
  "fair_queue": {"max_share": 0.75}}}'
acmedge_start "$T/acmedge.json"

# 60 random names under flood-example.test: with one order every 2 s in FIFO order the last
# would wait two minutes.
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
# The flood holds at most 3/4 of max_queue (30); the others were denied.
for ((i = 0; i < 100; i++)); do
  # The metric, not the event log lines: those are rate-capped during floods.
  denied=$(curl -s --max-time 10 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" |
    awk 'index($0, "acmedge_denied_total{") == 1 && index($0, "reason=\"queue_full\"") {print $2}')
  [ "${denied:-0}" -ge 20 ] && break
  sleep 0.2
done
[ "${denied:-0}" -ge 20 ] || ae_fail "flood not capped at its share of the queue ($denied denied with queue_full)"
grep -q 'flood-example.test already holds 30 queued name(s)' "$T/acmedge.log" ||
  ae_fail "no log line for the fair_queue cap"

start=$(date +%s)
ae_sni_cert www.real-example.test >/dev/null
# Round robin: at most one flood order (2 s of rate) goes first. 30 s leaves room for a slow
# (sanitizer) build and still fails a FIFO queue, which needs 60 s here.
issued=0
while (($(date +%s) - start < 30)); do
  if od_is_pebble www.real-example.test; then
    issued=1
    break
  fi
  sleep 0.2
done
took=$(($(date +%s) - start))
[ "$issued" = 1 ] || ae_fail "www.real-example.test not issued within 30 s during the flood"
echo "real name issued after ${took}s during the flood"
# Still flooded: names of the flood remain queued behind it.
grep -q 'order rate limit reached' "$T/acmedge.log" || ae_fail "the flood never hit the order rate limit"
acmedge_stop
echo "PASS"
