#!/usr/bin/env bash
# Three instances (127.0.0.2/.3/.4, the same ports) on one Redis and one Pebble whose validation
# always lands on instance C (challtestsrv answers every name of the test with C's address):
# - three instances started at once on an empty Redis and one config directory: one default
#   certificate;
# - three first handshakes at once (one per instance, three names): one account at Pebble, and
#   A's and B's challenges are answered by C (shared through Redis);
# - 30 concurrent handshakes (10 per instance) for one new name: exactly one order, one
#   cert_installed cluster-wide, all three serve the same serial;
# - the lock holder killed with SIGKILL mid-order: another instance takes over after the lease;
# - the lock holder stopped (SIGSTOP) past its lease while another instance completes: after
#   SIGCONT it fences itself, writes nothing, and serves the winner's certificate.
# The lock lease is 3 s (storage.redis.lock_lease_ms).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/cluster.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
redis_start
cl_ports     # A, B, C on 127.0.0.2/.3/.4, the same ports; Pebble validates against these ports
pebble_start # at the address challtestsrv gives each name: C's (cl_point)
export ACMEDGE_RECONCILE_MS=1000
LEASE_MS=3000 # renewals run on their own threads, so queued storage work cannot delay them
ca="127.0.0.1_$PEBBLE_PORT"

inst_config() { # inst_config NAME
  cl_config "$1" \
    "{\"storage\": {\"type\": \"redis\", \"path\": \"$T/st-$1\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", \"encrypt_keys\": false, \"lock_lease_ms\": $LEASE_MS}}, \"on_demand\": {\"enabled\": true}}"
}
is_pebble_at() { # is_pebble_at INSTANCE NAME
  issuer_at "$1" "$2" | grep Pebble >/dev/null
}
wait_pebble_at() { # wait_pebble_at INSTANCE NAME SECONDS
  local i
  for ((i = 0; i < $3 * 5; i++)); do
    is_pebble_at "$1" "$2" && return 0
    sleep 0.2
  done
  return 1
}
events() { # events INSTANCE TYPE NAME
  local c
  c=$(grep -F "[event] $2 " "$T/$1.log" | grep -cF "\"domain\":\"$3\"" || true)
  echo "${c:-0}"
}
wait_log() { # wait_log INSTANCE FIXED_TEXT SECONDS (polls every 20 ms)
  local i
  for ((i = 0; i < $3 * 50; i++)); do
    grep -qF "$2" "$T/$1.log" && return 0
    sleep 0.02
  done
  return 1
}

# Every name of this test resolves to C: whichever instance orders it, the CA validates against C.
for d in first-a first-b first-c one kill stop; do cl_point "$d.example.test" c; done
for n in a b c; do inst_config "$n"; done
# All three at once on an empty Redis (and one config directory: the default certificate is
# created by exactly one of them, the others use it).
for n in a b c; do ae_bg "$n" "$ACMEDGE_BIN" run -c "$T/$n.json"; done
for n in a b c; do inst_wait_listen "$n" 150; done
dfp=$(openssl x509 -in "$T/default.crt" -noout -fingerprint -sha256) || ae_fail "no default certificate"
for n in a b c; do
  [ "$(timeout 10 openssl s_client -connect "$(cl_addr "$n"):$CL_HTTPS" </dev/null 2>/dev/null |
    openssl x509 -noout -fingerprint -sha256)" = "$dfp" ] || ae_fail "instance $n does not serve the one default certificate"
done
[ "$(openssl pkey -in "$T/default.key" -pubout)" = "$(openssl x509 -in "$T/default.crt" -noout -pubkey)" ] ||
  ae_fail "the default key does not match the default certificate"

# --- one account for three instances whose first orders start together; C answers all ---
pids=()
for n in a b c; do
  (serial_at "$n" "first-$n.example.test" >/dev/null) &
  pids+=($!)
done
wait "${pids[@]}" || true
for n in a b c; do
  wait_pebble_at "$n" "first-$n.example.test" 90 || ae_fail "instance $n got no certificate for first-$n.example.test"
done
[ "$(pebble_count_accounts)" -eq 1 ] || ae_fail "$(pebble_count_accounts) accounts registered at Pebble, expected 1"
[ "$(events a cert_installed first-a.example.test)" -eq 1 ] || ae_fail "A did not install its own first certificate"
grep -qF "challenge published" "$T/a.log" || ae_fail "A published no challenge"
# The CA validates against C while A placed the order: C answered A's token (A never listens on
# C's address, so the validation could not have reached A).
grep -qF "answered for host first-a.example.test" "$T/c.log" || ae_fail "C did not answer the validation of A's order"
if grep -qF "answered for host first-a.example.test" "$T/a.log"; then ae_fail "A's own port 80 answered the CA"; fi
echo "accounts: $(pebble_count_accounts); A's and B's challenges validated against C"

# --- 30 concurrent handshakes for one new name: exactly one order ---
name=one.example.test
before=$(pebble_count_orders)
pids=()
for n in a b c; do
  for ((i = 0; i < 10; i++)); do
    (serial_at "$n" "$name" >/dev/null) &
    pids+=($!)
  done
done
wait "${pids[@]}" || true
for n in a b c; do
  wait_pebble_at "$n" "$name" 90 || ae_fail "instance $n does not serve a Pebble certificate for $name"
done
s=$(serial_at a "$name")
for n in b c; do
  [ "$(serial_at "$n" "$name")" = "$s" ] || ae_fail "instance $n serves another serial than A for $name"
done
orders=$(($(pebble_count_orders) - before))
[ "$orders" -eq 1 ] || ae_fail "$orders orders for $name, expected exactly 1"
installs=0
for n in a b c; do installs=$((installs + $(events "$n" cert_installed "$name"))); done
[ "$installs" -eq 1 ] || ae_fail "$installs instances installed an issued certificate for $name, expected 1"
echo "30 handshakes over 3 instances: $orders order"

# --- SIGKILL of the lock holder after its order was created: another instance resumes it ---
kname=kill.example.test
okey="acmedge{ns}:order:$ca:$kname"
before_k=$(pebble_count_orders)
# C answers every validation: stopped, it holds A's order at its authorization (Pebble waits up to
# 15 s for an answer) so A can be killed after saving the order and before finishing it.
kill -STOP "$(cat "$T/c.pid")"
kfail() { kill -CONT "$(cat "$T/c.pid")"; ae_fail "$@"; }
(serial_at a "$kname" >/dev/null) &
bgk=$!
# A's log line "<name>: order <url> saved for resume": kill it only once the order is saved.
for ((i = 0; i < 60 * 50; i++)); do
  grep -F "$kname: order " "$T/a.log" | grep -F "saved for resume" >/dev/null && break
  sleep 0.02
done
grep -F "$kname: order " "$T/a.log" | grep -F "saved for resume" >/dev/null || kfail "A did not save an order for $kname"
kill -STOP "$(cat "$T/a.pid")"
[ "$(events a cert_installed "$kname")" -eq 0 ] || kfail "A finished $kname before it could be killed; nothing was tested"
[ "$(ae_rcli EXISTS "$okey")" = 1 ] || kfail "no saved order for $kname in Redis while A holds it"
saved_url=$(ae_rcli GET "$okey" | sed -n 's/.*"url":"\([^"]*\)".*/\1/p')
[ -n "$saved_url" ] || kfail "the saved order of $kname has no URL"
kill -KILL "$(cat "$T/a.pid")"
kill -CONT "$(cat "$T/c.pid")"
t0=$(date +%s%3N)
(serial_at b "$kname" >/dev/null) &
bgk2=$!
wait_pebble_at b "$kname" 90 || ae_fail "no instance took over $kname after A was killed"
korders=$(($(pebble_count_orders) - before_k))
echo "takeover after SIGKILL: $(($(date +%s%3N) - t0)) ms (lease $LEASE_MS ms), $korders order(s) for $kname"
grep -qF "$kname: resuming order $saved_url" "$T/b.log" || ae_fail "B did not resume A's order $saved_url"
grep -F '[event] order_resumed ' "$T/b.log" | grep -F "\"domain\":\"$kname\"" | grep -F "\"order\":\"$saved_url\"" >/dev/null ||
  ae_fail "no order_resumed event on B naming $saved_url"
[ "$korders" -eq 1 ] || ae_fail "$korders orders for $kname around the takeover, expected exactly 1 (resumed)"
[ "$(events b cert_installed "$kname")" -eq 1 ] || ae_fail "B did not install $kname itself"
[ "$(ae_rcli EXISTS "$okey")" = 0 ] || ae_fail "the saved order of $kname was not deleted by the commit"
wait_pebble_at c "$kname" 30 || ae_fail "C does not serve $kname"
# Cert and key never mismatch: the stored key is the served certificate's (the handshakes above
# also prove the key each instance serves with signs for that certificate).
kpub=$(ae_rcli HGET "acmedge{ns}:cert:$ca:$kname" key | openssl pkey -pubout 2>/dev/null)
cpub=$(ae_rcli HGET "acmedge{ns}:cert:$ca:$kname" chain | openssl x509 -pubkey -noout 2>/dev/null)
[ -n "$kpub" ] && [ "$kpub" = "$cpub" ] || ae_fail "the stored key of $kname does not match its certificate"
sk=$(serial_at b "$kname")
[ -n "$sk" ] || ae_fail "B serves no certificate for $kname"
[ "$(serial_at c "$kname")" = "$sk" ] || ae_fail "C serves another serial than B for $kname"
stored=$(ae_rcli HGET "acmedge{ns}:cert:$ca:$kname" chain | openssl x509 -noout -serial 2>/dev/null | sed 's/^serial=//')
[ "$(tr 'A-F' 'a-f' <<<"$stored" | sed 's/^0*//')" = "$(tr 'A-F' 'a-f' <<<"$sk" | tr -d ':' | sed 's/^0*//')" ] ||
  ae_fail "B serves serial $sk for $kname, Redis holds $stored"
wait "$bgk" "$bgk2" || true
inst_run a

# --- SIGSTOP of the holder past its lease: after SIGCONT it does not write ---
sname=stop.example.test
(serial_at a "$sname" >/dev/null) &
wait_log a "$sname: issuance lock taken" 60 || ae_fail "A did not take the lock for $sname"
kill -STOP "$(cat "$T/a.pid")"
t_stop=$(date +%s%3N)
[ "$(events a cert_installed "$sname")" -eq 0 ] || {
  kill -CONT "$(cat "$T/a.pid")"
  ae_fail "A finished $sname before it could be stopped; nothing was tested"
}
(serial_at b "$sname" >/dev/null) &
if ! wait_pebble_at b "$sname" 90; then
  kill -CONT "$(cat "$T/a.pid")"
  ae_fail "B did not take over $sname while A was stopped"
fi
sb=$(serial_at b "$sname")
by=$(ae_rcli HGET "acmedge{ns}:cert:$ca:$sname" by)
fence=$(ae_rcli HGET "acmedge{ns}:cert:$ca:$sname" fence)
# Stopped for at least twice the lease in all.
while (($(date +%s%3N) - t_stop < 2 * LEASE_MS)); do sleep 0.1; done
kill -CONT "$(cat "$T/a.pid")"
t_cont=$(date +%s%3N)
wait_log a "$sname: issuance lock lost" 30 || grep -F "lapsed or was taken over" "$T/a.log" >/dev/null ||
  ae_fail "A did not notice it lost the lock for $sname"
for ((i = 0; i < 100; i++)); do
  [ "$(serial_at a "$sname")" = "$sb" ] && break
  sleep 0.1
done
[ "$(serial_at a "$sname")" = "$sb" ] || ae_fail "A does not serve the winner's certificate for $sname after SIGCONT"
echo "SIGCONT -> A serves the winner's certificate: $(($(date +%s%3N) - t_cont)) ms"
[ "$(events a cert_installed "$sname")" -eq 0 ] || ae_fail "A installed its own certificate for $sname after losing the lock"
[ "$(ae_rcli HGET "acmedge{ns}:cert:$ca:$sname" by)" = "$by" ] || ae_fail "the stored $sname was overwritten by the fenced instance"
[ "$(ae_rcli HGET "acmedge{ns}:cert:$ca:$sname" fence)" = "$fence" ] || ae_fail "the stored fence of $sname changed"
echo "SIGSTOP holder: fenced, winner (fence $fence) kept"
for n in a b c; do
  ae_pid_alive "$(cat "$T/$n.pid")" || ae_fail "instance $n died"
done
stats=$(ae_rcli INFO commandstats)
if grep -Eq '^cmdstat_(keys|scan):' <<<"$stats"; then ae_fail "KEYS or SCAN was used"; fi
echo "ok"
