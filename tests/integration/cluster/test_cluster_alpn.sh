#!/usr/bin/env bash
# tls-alpn-01 answers an instance missed (its subscriber was away when the `chal alpn` message
# went out) are read from Redis while the acme-tls/1 handshake is held:
# - a key authorization stored by hand, never PUBLISHed: every instance answers acme-tls/1 with
#   the certificate for it (acmeIdentifier = SHA-256 of the key authorization);
# - a name with no answer anywhere: refused (no_application_protocol), one Redis read however
#   often asked; a flood of random names is bounded (at most 20 reads a second);
# - a full Pebble tls-alpn-01 order placed by A and validated against C while C's subscriber was
#   gone (C stopped, its subscription killed, resumed once A announced the challenge): C reads the
#   answer from Redis, the order succeeds, all three serve the certificate.
# Instances a, b, c on 127.0.0.2/.3/.4 with the same ports (tests/lib/cluster.sh).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/cluster.sh"
ae_setup
redis_start
cl_ports
pebble_start
export ACMEDGE_RECONCILE_MS=1000
ca="127.0.0.1_$PEBBLE_PORT"
for n in a b c; do
  cl_config "$n" \
    "{\"storage\": {\"type\": \"redis\", \"path\": \"$T/st-$n\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", \"encrypt_keys\": false}}, \"acme\": {\"challenges\": [\"tls-alpn-01\"]}}"
done
for n in a b c; do inst_run "$n"; done
subscribers() { ae_rcli CLIENT LIST TYPE pubsub | grep -c 'cmd=subscribe' || true; }
for ((i = 0; i < 150; i++)); do
  [ "$(subscribers)" -ge 3 ] && break
  sleep 0.1
done
[ "$(subscribers)" -ge 3 ] || ae_fail "the three instances did not subscribe"

# alpn_probe INSTANCE NAME -> "ok HEX" (the acmeIdentifier of the acme-tls/1 certificate served)
# or "refused REASON".
alpn_probe() {
  "$AE_PY" - "$(cl_addr "$1")" "$CL_HTTPS" "$2" <<'PY'
import socket, ssl, sys
addr, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["acme-tls/1"])
try:
    with socket.create_connection((addr, port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=name) as s:
            if s.selected_alpn_protocol() != "acme-tls/1":
                print("refused alpn", s.selected_alpn_protocol())
                sys.exit(0)
            der = s.getpeercert(binary_form=True)
except (ssl.SSLError, OSError) as e:
    print("refused", type(e).__name__)
    sys.exit(0)
oid = bytes.fromhex("06082b0601050507011f")  # 1.3.6.1.5.5.7.1.31 (id-pe-acmeIdentifier)
i = der.find(oid)
j = der.find(b"\x04\x20", i) if i >= 0 else -1
print("ok", der[j + 2:j + 34].hex() if j >= 0 else "no-acmeIdentifier")
PY
}
want() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }

ae_bg monitor redis-cli -h 127.0.0.1 -p "$REDIS_PORT" MONITOR
MON=$(cat "$T/monitor.pid")
for ((i = 0; i < 50; i++)); do [ -s "$T/monitor.log" ] && break; sleep 0.1; done
reads() { grep -cF "\"GET\" \"acmedge{ns}:chal:alpn:$1" "$T/monitor.log" || true; }

# --- an answer stored while nobody listened (no PUBLISH): every instance finds it in Redis ---
late=late.example.test
ka="LateAlpnTok_0123456789abcdefghij.thumbprintABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
ae_rcli SET "acmedge{ns}:chal:alpn:$late" "$ka" PX 60000 >/dev/null
for n in a b c; do
  got=$(alpn_probe "$n" "$late")
  [ "$got" = "ok $(want "$ka")" ] || ae_fail "instance $n: acme-tls/1 for $late answered '$got', want 'ok $(want "$ka")'"
done
# Mirrored now: answered from memory.
got=$(alpn_probe a "$late")
[ "$got" = "ok $(want "$ka")" ] || ae_fail "second acme-tls/1 for $late on A: '$got'"
grep -qF "$late: tls-alpn-01 answer read from redis" "$T/a.log" || ae_fail "A did not log the Redis read for $late"
echo "missed tls-alpn-01 answer read from Redis on all three: ok"

# --- no answer anywhere: refused; one read however often asked ---
miss=miss.example.test
t0=$(date +%s%3N)
for ((i = 0; i < 10; i++)); do
  got=$(alpn_probe a "$miss")
  case "$got" in refused*) ;; *) ae_fail "acme-tls/1 for $miss (no answer anywhere) was answered: '$got'" ;; esac
done
echo "10 refused acme-tls/1 handshakes for an unknown name in $(($(date +%s%3N) - t0)) ms"
# A plain handshake for a name is never a challenge look-up.
timeout 10 gnutls-cli --insecure --sni-hostname=plain.other.test -p "$CL_HTTPS" "$(cl_addr a)" </dev/null >/dev/null 2>&1 || true

# --- a flood of random names (16 at a time): bounded reads ---
t0=$(date +%s%3N)
"$AE_PY" - "$(cl_addr a)" "$CL_HTTPS" <<'PY'
import random, socket, ssl, sys
from concurrent.futures import ThreadPoolExecutor
addr, port = sys.argv[1], int(sys.argv[2])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
ctx.set_alpn_protocols(["acme-tls/1"])
def one(i):
    try:
        with socket.create_connection((addr, port), timeout=15) as raw:
            ctx.wrap_socket(raw, server_hostname="flood%d-%d.example.test" % (i, random.randrange(1 << 30))).close()
    except (ssl.SSLError, OSError):
        pass
with ThreadPoolExecutor(16) as ex:
    list(ex.map(one, range(200)))
PY
el=$(($(date +%s%3N) - t0))
got=$(alpn_probe a "$late")
[ "$got" = "ok $(want "$ka")" ] || ae_fail "the found answer is gone after the flood: '$got'"
sleep 0.5 # MONITOR output is written as Redis runs the commands; let the last lines arrive
kill "$MON" 2>/dev/null || true
wait "$MON" 2>/dev/null || true
[ "$(reads "$miss")" -eq 1 ] || ae_fail "$(reads "$miss") Redis reads for $miss, expected 1"
[ "$(reads "$late")" -eq 3 ] || ae_fail "$(reads "$late") Redis reads for $late, expected 3 (one per instance)"
[ "$(reads plain.other.test)" -eq 0 ] || ae_fail "a plain handshake looked up a challenge answer"
flood=$(reads flood)
max=$((20 * (el / 1000 + 2)))
echo "flood: 200 random acme-tls/1 names in $el ms -> $flood Redis reads (bound $max)"
[ "$flood" -le "$max" ] || ae_fail "$flood Redis reads for 200 random names in $el ms, bound $max"
[ "$flood" -ge 1 ] || ae_fail "no Redis read at all for the flood: the look-up is not exercised"

# --- a full tls-alpn-01 order placed by A, validated against C, whose subscriber missed it ---
name=alpn.example.test
cl_point "$name" c
CPID=$(cat "$T/c.pid")
kill -STOP "$CPID"
ae_rcli CLIENT KILL TYPE pubsub >/dev/null
# A and B subscribe again; C, stopped, cannot until it is resumed.
for ((i = 0; i < 150; i++)); do
  [ "$(subscribers)" -ge 2 ] && break
  sleep 0.1
done
if [ "$(subscribers)" -lt 2 ]; then
  kill -CONT "$CPID"
  ae_fail "A and B did not subscribe again after CLIENT KILL TYPE pubsub"
fi
(issuer_at a "$name" >/dev/null) &
bg=$!
for ((i = 0; i < 3000; i++)); do
  grep -qF "$name: tls-alpn-01 challenge published" "$T/a.log" && break
  grep -F "[event] issuance_failed" "$T/a.log" | grep -F "\"domain\":\"$name\"" >/dev/null && break
  sleep 0.02
done
kill -CONT "$CPID"
grep -qF "$name: tls-alpn-01 challenge published" "$T/a.log" || ae_fail "A did not publish a tls-alpn-01 challenge for $name"
for ((i = 0; i < 450; i++)); do
  issuer_at a "$name" | grep Pebble >/dev/null && break
  sleep 0.2
done
issuer_at a "$name" | grep Pebble >/dev/null || ae_fail "the order for $name validated against C did not succeed"
wait "$bg" || true
grep -qF "$name: tls-alpn-01 answer read from redis" "$T/c.log" ||
  ae_fail "C did not read the answer for $name from Redis: the missed-message path was not taken"
grep -qF "tls-alpn-01 handshake for $name done" "$T/c.log" || ae_fail "C did not answer the CA's acme-tls/1 handshake for $name"
if grep -qF "tls-alpn-01 handshake for $name done" "$T/a.log"; then ae_fail "A answered the validation itself"; fi
s=$(serial_at a "$name")
inst_a=$(grep -o '"instance":"[^"]*"' "$T/a.log" | sed -n 1p | cut -d'"' -f4)
[ -n "$inst_a" ] && [ "$(ae_rcli HGET "acmedge{ns}:cert:$ca:$name" by)" = "$inst_a" ] ||
  ae_fail "the stored $name was not committed by A ($inst_a)"
for n in b c; do
  for ((i = 0; i < 100; i++)); do
    [ "$(serial_at "$n" "$name")" = "$s" ] && break
    sleep 0.1
  done
  [ "$(serial_at "$n" "$name")" = "$s" ] || ae_fail "instance $n does not serve A's certificate for $name"
done
echo "tls-alpn-01 order placed by A, validated against C after C missed the announcement: ok"
for n in a b c; do
  ae_pid_alive "$(cat "$T/$n.pid")" || ae_fail "instance $n died"
done
stats=$(ae_rcli INFO commandstats)
if grep -Eq '^cmdstat_(keys|scan):' <<<"$stats"; then ae_fail "KEYS or SCAN was used"; fi
echo ok
