#!/usr/bin/env bash
# storage.type "redis" with one instance: check's refusals, issuance stored as one hash with a
# sealed key, restart with an empty local directory serves it from Redis with no new order, keys
# at rest, a key hash copied onto another name, garbage and oversized values under the prefix, a
# wrong password, an unreachable Redis (no order), and no KEYS/SCAN ever.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
redis_start
pebble_start

head -c 32 /dev/urandom >"$T/storage.key"
chmod 600 "$T/storage.key"
redis_json() { # redis_json EXTRA_REDIS_MEMBERS
  echo "{\"storage\": {\"type\": \"redis\", \"path\": \"$T/storage\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", $1}}}"
}
ae_config_write "$T/acmedge.json" "$(redis_json "\"key_file\": \"$T/storage.key\"")"

# --- check refuses what cannot work, naming the field ---
ae_config_write "$T/nokey.json" "$(redis_json '"prefix": "acmedge"')"
if out=$("$ACMEDGE_BIN" check -c "$T/nokey.json" 2>&1); then ae_fail "check accepted redis without key_file"; fi
grep -q 'storage.redis.key_file' <<<"$out" || ae_fail "check error does not name storage.redis.key_file: $out"
ae_config_write "$T/plain.json" "$(redis_json '"encrypt_keys": false')"
"$ACMEDGE_BIN" check -c "$T/plain.json" >/dev/null 2>&1 || ae_fail "check refused an explicit encrypt_keys: false"
cp "$T/storage.key" "$T/open.key"
chmod 644 "$T/open.key"
ae_config_write "$T/openkey.json" "$(redis_json "\"key_file\": \"$T/open.key\"")"
if out=$("$ACMEDGE_BIN" check -c "$T/openkey.json" 2>&1); then ae_fail "check accepted a key_file readable by others"; fi
grep -q 'chmod 600' <<<"$out" || ae_fail "check error for a 0644 key file is unclear: $out"
ae_config_write "$T/host.json" "{\"storage\": {\"type\": \"redis\", \"redis\": {\"address\": \"localhost:1\", \"encrypt_keys\": false}}}"
if out=$("$ACMEDGE_BIN" check -c "$T/host.json" 2>&1); then ae_fail "check accepted a host name address"; fi
grep -q 'storage.redis.address' <<<"$out" || ae_fail "check error does not name storage.redis.address: $out"
ae_config_write "$T/type.json" '{"storage": {"type": "etcd"}}'
if out=$("$ACMEDGE_BIN" check -c "$T/type.json" 2>&1); then ae_fail "check accepted storage.type etcd"; fi
grep -q 'storage.type' <<<"$out" || ae_fail "check error does not name storage.type: $out"
"$ACMEDGE_BIN" check -c "$T/acmedge.json" >/dev/null || ae_fail "check refused the valid redis config"

# --- issuance lands in Redis as one hash ---
acmedge_start "$T/acmedge.json"
name=a.example.test
ca="127.0.0.1_$PEBBLE_PORT"
hk="acmedge{ns}:cert:$ca:$name"
od_is_default "$name" || true
od_wait_issued "$name" 60
ae_verify_chain "$name" || ae_fail "chain for $name does not verify: $(cat "$T/verify-$name.out")"
serial=$(od_serial "$name")
[ "$(ae_rcli HGET "$hk" ver)" = 1 ] || ae_fail "$hk: ver is '$(ae_rcli HGET "$hk" ver)', want 1"
ae_rcli HGET "$hk" chain | grep 'BEGIN CERTIFICATE' >/dev/null || ae_fail "$hk has no PEM chain"
ae_rcli HGET "$hk" key | grep '^aeenc1:' >/dev/null || ae_fail "$hk: key is not sealed"
[ "$(ae_rcli ZSCORE "acmedge{ns}:exp:$ca" "$name")" -gt "$(date +%s)" ] || ae_fail "no renew-at entry for $name"
[ "$(ae_rcli GET 'acmedge{ns}:gen')" -ge 1 ] || ae_fail "generation counter not bumped"
[ -n "$(ae_rcli HGET "acmedge{ns}:acct:$ca" account.json)" ] || ae_fail "account not stored in Redis"
ae_rcli HGET "acmedge{ns}:acct:$ca" account.key | grep '^aeenc1:' >/dev/null || ae_fail "account key is not sealed"
[ ! -e "$T/storage/certs" ] || ae_fail "redis backend wrote certificates to the filesystem"
acmedge_stop

# --- at rest: no private key text anywhere in the dataset ---
redis-cli -h 127.0.0.1 -p "$REDIS_PORT" --rdb "$T/dump.rdb" >/dev/null 2>&1 || ae_fail "cannot dump Redis"
[ -s "$T/dump.rdb" ] || ae_fail "empty Redis dump"
if grep -aq 'PRIVATE KEY' "$T/dump.rdb"; then ae_fail "PRIVATE KEY text found in Redis"; fi
grep -aq 'BEGIN CERTIFICATE' "$T/dump.rdb" || ae_fail "the dump holds no certificate: grep would prove nothing"

# --- restart with an empty local directory: served from Redis, no new order ---
rm -rf "$T/storage"
orders=$(pebble_count_orders)
acmedge_start "$T/acmedge.json"
[ "$(od_serial "$name")" = "$serial" ] || ae_fail "after restart $name is not served its stored certificate"
[ "$(pebble_count_orders)" -eq "$orders" ] || ae_fail "restart caused a new order"

# --- a sealed key copied onto another name does not open ---
moved=b.example.test
ae_rcli COPY "$hk" "acmedge{ns}:cert:$ca:$moved" >/dev/null
ae_sni_cert "$moved" >/dev/null
ae_wait_for grep -q "acmedge{ns}:cert:$ca:$moved|key|1: private key does not decrypt" "$T/acmedge.log" ||
  ae_fail "the copied key hash was not refused by name"
[ "$(od_serial "$moved")" != "$serial" ] || ae_fail "$moved is served $name's certificate"

# --- garbage and oversized values: clear errors naming the key, nothing overwritten ---
g=g.example.test
ae_rcli SET "acmedge{ns}:cert:$ca:$g" garbage >/dev/null
ae_sni_cert "$g" >/dev/null
ae_wait_for grep -q "acmedge{ns}:cert:$ca:$g.*WRONGTYPE" "$T/acmedge.log" || ae_fail "garbage under $g: no error naming the key"
sleep 1
[ "$(ae_rcli GET "acmedge{ns}:cert:$ca:$g")" = garbage ] || ae_fail "the garbage value of $g was overwritten"
big=big.example.test
head -c 1200000 /dev/zero | tr '\0' 'x' >"$T/big.txt"
ae_rcli -x HSET "acmedge{ns}:cert:$ca:$big" chain <"$T/big.txt" >/dev/null
ae_rcli HSET "acmedge{ns}:cert:$ca:$big" key x ver 1 >/dev/null
ae_sni_cert "$big" >/dev/null
ae_wait_for grep -q "acmedge{ns}:cert:$ca:$big field chain: value of [0-9]* bytes is over the size cap" "$T/acmedge.log" ||
  ae_fail "oversized value under $big: no error naming the key"
ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge died on bad values"
acmedge_stop

# --- wrong password: start-up fails with a clear error ---
echo wrong >"$T/redis.pw"
ae_config_write "$T/pw.json" "$(redis_json "\"key_file\": \"$T/storage.key\", \"password_file\": \"$T/redis.pw\"")"
if out=$(timeout 20 "$ACMEDGE_BIN" run -c "$T/pw.json" 2>&1); then ae_fail "acmedge ran with a wrong Redis password"; fi
grep -q 'AUTH refused' <<<"$out" || ae_fail "wrong password: unclear error: $out"

# --- Redis that does not answer: starts, serves the default certificate, orders nothing ---
dead=$(ae_free_port)
ae_config_write "$T/dead.json" "{\"storage\": {\"type\": \"redis\", \"path\": \"$T/storage\", \"redis\": {\"address\": \"127.0.0.1:$dead\", \"key_file\": \"$T/storage.key\"}}}"
orders=$(pebble_count_orders)
acmedge_start "$T/dead.json"
grep -q "storage unreachable at start-up (redis 127.0.0.1:$dead" "$T/acmedge.log" || ae_fail "no clear start-up error for an unreachable Redis"
od_is_default new.example.test || ae_fail "with Redis down a new name did not get the default certificate"
ae_wait_for grep -q "new.example.test: storage unreachable, not ordering" "$T/acmedge.log" || ae_fail "no 'not ordering' log"
sleep 2
[ "$(pebble_count_orders)" -eq "$orders" ] || ae_fail "an order was placed while Redis was unreachable"
acmedge_stop

# --- the whole test never listed keys ---
stats=$(ae_rcli INFO commandstats)
if grep -Eq '^cmdstat_(keys|scan):' <<<"$stats"; then ae_fail "KEYS or SCAN was used: $stats"; fi
echo "ok"
