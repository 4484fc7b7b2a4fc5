#!/usr/bin/env bash
# Cluster operations on one Redis:
# - `acmedge storage copy`: fs -> redis -> fs gives the same tree byte for byte (keys 0600), keys
#   sealed in Redis, a re-run changes nothing, a broken object is named and the rest still copied,
#   an unreachable Redis is a clear error; the copied certificates are served without new orders.
# - DELETE /v1/domains/{name} on one instance: the other stops serving it (within 1 s is the
#   target; printed, asserted with room for ASan) and emits domain_deleted with source "cluster";
#   a name B knows only from its start-up renewal index leaves that index too.
# - Shared failure backoff: a name the CA refused on A is not ordered by B before the retry time.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/cluster.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
redis_start
cl_ports # the fs instance below listens on 127.0.0.1 with these ports, A and B on 127.0.0.2/.3
export PEBBLE_WFE_NONCEREJECT=0 # every newOrder request counted below is a distinct attempt
pebble_start '"domainBlocklist": ["blocked.example.test"]'
export ACMEDGE_RECONCILE_MS=1000
ca="127.0.0.1_$PEBBLE_PORT"
head -c 32 /dev/urandom >"$T/storage.key"
chmod 600 "$T/storage.key"
redis_st() { # redis_st LOCAL_DIR [PORT] -> the "storage" member
  echo "\"storage\": {\"type\": \"redis\", \"path\": \"$1\", \"redis\": {\"address\": \"127.0.0.1:${2:-$REDIS_PORT}\", \"key_file\": \"$T/storage.key\"}}"
}
orders() { grep -c 'POST /order-plz' "$PEBBLE_LOG" || true; }

# --- an fs storage with accounts, certificates, the internal CA and a hand-placed wildcard ---
ae_config_write "$T/fs1.json" "{\"storage\": {\"path\": \"$T/fs1\"}, \"internal_ca\": {\"enabled\": true, \"names\": [\"*.internal.test\"]}}"
acmedge_start "$T/fs1.json"
od_wait_issued a.example.test 60
od_wait_issued b.example.test 60
serial_a=$(od_serial a.example.test)
acmedge_stop
[ -n "$(find "$T/fs1/pki" -name '*.key' 2>/dev/null)" ] || ae_fail "the internal CA left no key in $T/fs1/pki"
wdir="$T/fs1/certs/$ca/wildcard_.w.example.test"
mkdir -p "$wdir"
printf 'cn = "*.w.example.test"\ndns_name = "*.w.example.test"\nexpiration_days = 30\ntls_www_server\n' >"$T/w.tmpl"
certtool --generate-privkey --key-type=ecdsa --outfile "$wdir/key.pem" >/dev/null 2>&1
chmod 600 "$wdir/key.pem"
certtool --generate-self-signed --load-privkey "$wdir/key.pem" --template "$T/w.tmpl" --outfile "$wdir/cert.pem" >/dev/null 2>&1

ae_config_write "$T/r.json" "{$(redis_st "$T/r-local")}"
ae_config_write "$T/fs2.json" "{\"storage\": {\"path\": \"$T/fs2\"}}"
tree() { (cd "$1" && find . -type f ! -name '*.tmp.*' -printf '%m %P\n' | sort); }

# --- fs -> redis ---
out=$("$ACMEDGE_BIN" storage copy --from "$T/fs1.json" --to "$T/r.json" 2>&1) || ae_fail "copy fs -> redis failed: $out"
echo "$out"
grep -q ', unchanged 0, failed 0 ' <<<"$out" || ae_fail "first copy did not copy everything: $out"
for d in a.example.test b.example.test '*.w.example.test'; do
  hk="acmedge{ns}:cert:$ca:$d"
  ae_rcli HGET "$hk" chain | grep 'BEGIN CERTIFICATE' >/dev/null || ae_fail "$hk has no chain after the copy"
  ae_rcli HGET "$hk" key | grep '^aeenc1:' >/dev/null || ae_fail "$hk: key not sealed after the copy"
  [ -n "$(ae_rcli ZSCORE "acmedge{ns}:exp:$ca" "$d")" ] || ae_fail "$d missing from the renew-at set"
done
ae_rcli HGET "acmedge{ns}:acct:$ca" account.key | grep '^aeenc1:' >/dev/null || ae_fail "account key not sealed after the copy"
[ -z "$(ae_rcli HGET "acmedge{ns}:cert:$ca:*.w.example.test" meta)" ] || ae_fail "a meta was invented for the wildcard"
gen=$(ae_rcli GET 'acmedge{ns}:gen')

# --- a re-run changes nothing ---
out=$("$ACMEDGE_BIN" storage copy --from "$T/fs1.json" --to "$T/r.json" 2>&1) || ae_fail "second copy failed: $out"
grep -q '^copied 0, unchanged [1-9][0-9]*, failed 0 ' <<<"$out" || ae_fail "re-run was not a no-op: $out"
[ "$(ae_rcli GET 'acmedge{ns}:gen')" = "$gen" ] || ae_fail "re-run bumped the generation"

# --- redis -> fs: the same tree, byte for byte and mode for mode ---
out=$("$ACMEDGE_BIN" storage copy --from "$T/r.json" --to "$T/fs2.json" 2>&1) || ae_fail "copy redis -> fs failed: $out"
echo "$out"
# (Files are the objects: an empty directory such as tokens/ is not one.)
diff <(tree "$T/fs1") <(tree "$T/fs2") || ae_fail "files or modes differ after the round trip"
while read -r _ f; do
  cmp -s "$T/fs1/$f" "$T/fs2/$f" || ae_fail "$f differs after fs -> redis -> fs"
done < <(tree "$T/fs1")
[ "$(tree "$T/fs1" | wc -l)" -ge 9 ] || ae_fail "the source tree is smaller than expected: $(tree "$T/fs1")"
[ "$(stat -c %a "$T/fs2/certs/$ca/a.example.test/key.pem")" = 600 ] || ae_fail "key.pem is not 0600 on the fs copy"
out=$("$ACMEDGE_BIN" storage copy --from "$T/r.json" --to "$T/fs2.json" 2>&1) || ae_fail "second redis -> fs copy failed: $out"
grep -q '^copied 0, ' <<<"$out" || ae_fail "redis -> fs re-run was not a no-op: $out"

# --- clear errors: a broken object is named, the rest is copied; unreachable Redis ---
bad="acmedge{ns}:cert:$ca:bad.example.test"
ae_rcli HSET "$bad" chain garbage key garbage ver 1 >/dev/null
ae_rcli ZADD "acmedge{ns}:exp:$ca" 1 bad.example.test >/dev/null
ae_config_write "$T/fs3.json" "{\"storage\": {\"path\": \"$T/fs3\"}}"
if out=$("$ACMEDGE_BIN" storage copy --from "$T/r.json" --to "$T/fs3.json" 2>&1); then ae_fail "a broken object was copied without an error"; fi
grep -q "certs/$ca/bad.example.test" <<<"$out" || ae_fail "the error does not name the broken object: $out"
grep -q ', failed 1 ' <<<"$out" || ae_fail "summary does not count one failure: $out"
[ -s "$T/fs3/certs/$ca/a.example.test/cert.pem" ] || ae_fail "one broken object stopped the whole copy"
ae_rcli DEL "$bad" >/dev/null
ae_rcli ZREM "acmedge{ns}:exp:$ca" bad.example.test >/dev/null
ae_config_write "$T/down.json" "{$(redis_st "$T/down-local" "$(ae_free_port)")}"
if out=$("$ACMEDGE_BIN" storage copy --from "$T/fs1.json" --to "$T/down.json" 2>&1); then ae_fail "copy to an unreachable Redis succeeded"; fi
grep -q -- '--to.*127.0.0.1:' <<<"$out" || ae_fail "unreachable Redis error is unclear: $out"

# --- two instances on the copied Redis: the copies serve, no new order. On-demand allows only the
# names of the view and backoff checks, so a handshake after the delete cannot order the deleted
# name again. ---
inst_start() { # inst_start NAME
  cl_config "$1" \
    "{$(redis_st "$T/st-$1"), \"on_demand\": {\"allow\": [\"blocked.example.test\", \"c.example.test\"], \"backoff\": {\"initial_s\": 60, \"max_s\": 3600}}}"
  inst_run "$1"
}
inst_start a
inst_start b
o0=$(orders)
for n in a b; do
  for ((i = 0; i < 100; i++)); do
    [ "$(serial_at "$n" a.example.test)" = "$serial_a" ] && break
    sleep 0.1
  done
  [ "$(serial_at "$n" a.example.test)" = "$serial_a" ] || ae_fail "instance $n does not serve the copied certificate"
done
[ "$(orders)" -eq "$o0" ] || ae_fail "serving copied certificates placed an order"

# --- cluster view: B lists what A issued (never asked of B), with version and instance ---
cl_point c.example.test a # the CA validates against A, which orders it
for ((i = 0; i < 300; i++)); do
  issuer_at a c.example.test | grep Pebble >/dev/null && break
  sleep 0.2
done
issuer_at a c.example.test | grep Pebble >/dev/null || ae_fail "A was not served a Pebble certificate for c.example.test within 60 s"
inst_a=$(grep -o '"instance":"[^"]*"' "$T/a.log" | sed -n 1p | cut -d'"' -f4)
[ -n "$inst_a" ] || ae_fail "A's events carry no instance"
view() { # view INSTANCE NAME -> "stored version issued_by state"
  curl -s "$(cl_admin "$1")/v1/domains" | python3 -c "
import json,sys
for d in json.load(sys.stdin):
    if d['domain'] == '$2': print(d.get('stored'), d.get('version'), d.get('issued_by'), d['state'])"
}
for ((i = 0; i < 50; i++)); do
  [ "$(view b c.example.test)" = "True 1 $inst_a valid" ] && break
  sleep 0.1
done
[ "$(view b c.example.test)" = "True 1 $inst_a valid" ] ||
  ae_fail "B's view of c.example.test is '$(view b c.example.test)', want 'True 1 $inst_a valid'"
[ "$(view b '*.w.example.test' | cut -d' ' -f1,2)" = "True 1" ] || ae_fail "B does not list the stored wildcard"
# Paged (what `acmedge domains` uses): every stored name exactly once.
names=$(a=''; for ((i = 0; i < 20; i++)); do
  pg=$(curl -s "$(cl_admin b)/v1/domains?limit=1${a:+&after=$a}")
  python3 -c "import json,sys; [print(d['domain']) for d in json.loads(sys.argv[1])['domains']]" "$pg"
  a=$(python3 -c "import json,sys; n=json.loads(sys.argv[1])['next']; print(n or '')" "$pg")
  [ -n "$a" ] || break
done | sort | tr '\n' ' ')
[ "$names" = "*.w.example.test a.example.test b.example.test c.example.test " ] || ae_fail "paged view lists '$names'"
# The page is read from the lexical name index (ZRANGEBYLEX), kept by the commit and delete
# scripts next to the renew-at set; a store without it (written by an older version) gets it
# rebuilt by the first page read.
pnames() { # pnames QUERY -> "name name ... | next"
  curl -s "$(cl_admin b)/v1/domains?$1" | python3 -c "
import json,sys
p=json.load(sys.stdin); print(' '.join(d['domain'] for d in p['domains']), '|', p['next'])"
}
[ "$(ae_rcli ZCARD "acmedge{ns}:name:$ca")" = "$(ae_rcli ZCARD "acmedge{ns}:exp:$ca")" ] ||
  ae_fail "the name index holds $(ae_rcli ZCARD "acmedge{ns}:name:$ca") names, the renew-at set $(ae_rcli ZCARD "acmedge{ns}:exp:$ca")"
[ "$(pnames 'limit=1&after=a.example.test')" = "b.example.test | b.example.test" ] ||
  ae_fail "page after a.example.test is '$(pnames 'limit=1&after=a.example.test')'"
ae_rcli DEL "acmedge{ns}:name:$ca" >/dev/null
[ "$(pnames 'limit=3')" = "*.w.example.test a.example.test b.example.test | b.example.test" ] ||
  ae_fail "first page without the name index is '$(pnames 'limit=3')'"
[ "$(ae_rcli ZCARD "acmedge{ns}:name:$ca")" = 4 ] || ae_fail "the name index was not rebuilt"
[ "$(pnames 'limit=5&after=b.example.test')" = "c.example.test | None" ] ||
  ae_fail "last page is '$(pnames 'limit=5&after=b.example.test')'"
out=$("$ACMEDGE_BIN" domains --admin "$(cl_addr b):$CL_ADMIN") || ae_fail "acmedge domains failed: $out"
echo "$out"
grep -q 'ISSUED-BY' <<<"$out" || ae_fail "acmedge domains has no ISSUED-BY column"
grep -q "^c.example.test .*$inst_a  *1 *$" <<<"$out" || ae_fail "acmedge domains does not show c.example.test issued by $inst_a, version 1"
o0=$(orders)

# --- delete on A: B drops it ---
code=$(curl -s -o "$T/del.out" -w '%{http_code}' -X DELETE "$(cl_admin a)/v1/domains/a.example.test")
[ "$code" = 200 ] || ae_fail "DELETE answered $code: $(cat "$T/del.out")"
t0=$(date +%s%3N)
gone=0
for ((i = 0; i < 100; i++)); do
  s=$(serial_at b a.example.test)
  if [ -n "$s" ] && [ "$s" != "$serial_a" ]; then gone=1; break; fi
  sleep 0.05
done
ms=$(($(date +%s%3N) - t0))
[ "$gone" = 1 ] || ae_fail "instance B still serves a.example.test after the delete on A"
echo "delete propagated to B in ${ms} ms"
[ "$ms" -le 3000 ] || ae_fail "delete took ${ms} ms to reach B"
ae_wait_for grep -q 'domain_deleted.*a.example.test.*"source":"cluster"' "$T/b.log" ||
  ae_fail "no domain_deleted event with source cluster on B"
[ -z "$(ae_rcli HGET "acmedge{ns}:cert:$ca:a.example.test" chain)" ] || ae_fail "the hash is still in Redis"
curl -s "$(cl_admin b)/v1/domains" | grep '"a.example.test"' >/dev/null && ae_fail "B still lists a.example.test"

# --- a name B knows only from its start-up renewal index (never asked of B) leaves that index
# when A deletes it, instead of waiting there for its renewal ---
ri_entries() { curl -s "$(cl_admin b)/metrics" | awk '/^acmedge_renewal_index_entries /{print $2}'; }
grep -q 'b\.example\.test' "$T/b.log" && ae_fail "B handled b.example.test before the test: it is not index-only"
ri0=$(ri_entries)
[ "${ri0:-0}" -ge 1 ] || ae_fail "B's renewal index is empty ('$ri0'): b.example.test should be in it"
curl -sf -X DELETE "$(cl_admin a)/v1/domains/b.example.test" >/dev/null || ae_fail "DELETE b.example.test refused"
t0=$(date +%s%3N)
for ((i = 0; i < 100; i++)); do
  [ "$(ri_entries)" = $((ri0 - 1)) ] && break
  sleep 0.05
done
ms=$(($(date +%s%3N) - t0))
[ "$(ri_entries)" = $((ri0 - 1)) ] || ae_fail "B's renewal index still has $(ri_entries) entries (had $ri0) after the delete of b.example.test"
echo "index-only name left B's renewal index ${ms} ms after the delete on A"
[ "$ms" -le 3000 ] || ae_fail "the delete took ${ms} ms to leave B's renewal index"
ae_wait_for grep -q 'domain_deleted.*b.example.test.*"source":"cluster"' "$T/b.log" ||
  ae_fail "no domain_deleted event for the index-only b.example.test on B"
[ "$(serial_at b c.example.test)" != "" ] || ae_fail "B stopped serving c.example.test"
[ "$(orders)" -eq "$o0" ] || ae_fail "an order was placed after the deletes"

# --- shared failure backoff: A's refusal holds B back ---
blk=blocked.example.test
o1=$(orders)
issuer_at a "$blk" >/dev/null
for ((i = 0; i < 200; i++)); do
  grep -q "issuance_failed.*$blk" "$T/a.log" && [ -n "$(ae_rcli HGET "acmedge{ns}:fail:$ca:$blk" retry_at)" ] && break
  sleep 0.1
done
grep -q "issuance_failed.*$blk" "$T/a.log" || ae_fail "A did not fail $blk"
retry_at=$(ae_rcli HGET "acmedge{ns}:fail:$ca:$blk" retry_at)
[ -n "$retry_at" ] || ae_fail "A's failure was not recorded in Redis"
[ "$(ae_rcli PTTL "acmedge{ns}:fail:$ca:$blk")" -gt 0 ] || ae_fail "the failure record has no TTL"
o2=$(orders)
[ "$o2" -gt "$o1" ] || ae_fail "A placed no order for $blk: the test proves nothing"
issuer_at b "$blk" >/dev/null
ae_wait_for grep -q "issuance_failed.*$blk.*\"shared\":true" "$T/b.log" || ae_fail "B did not take A's backoff for $blk"
[ "$(orders)" -eq "$o2" ] || ae_fail "B ordered $blk during A's backoff"
st=$(curl -s "$(cl_admin b)/v1/domains" | python3 -c "
import json,sys
for d in json.load(sys.stdin):
    if d['domain'] == '$blk': print(d['state'], d['retry_at'])")
want=$(date -u -d "@$retry_at" +%Y-%m-%dT%H:%M:%SZ)
[ "$st" = "failed $want" ] || ae_fail "B shows '$st' for $blk, want 'failed $want'"
# DELETE forgets the shared failure too.
curl -sf -X DELETE "$(cl_admin b)/v1/domains/$blk" >/dev/null || ae_fail "DELETE $blk refused"
[ -z "$(ae_rcli HGET "acmedge{ns}:fail:$ca:$blk" retry_at)" ] || ae_fail "DELETE left the shared failure record"
for n in a b; do
  ae_pid_alive "$(cat "$T/$n.pid")" || ae_fail "instance $n died"
done
stats=$(ae_rcli INFO commandstats)
if grep -Eq '^cmdstat_(keys|scan):' <<<"$stats"; then ae_fail "KEYS or SCAN was used"; fi
echo "ok"
