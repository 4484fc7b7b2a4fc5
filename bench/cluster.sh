#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Cluster on one Redis (issue 13 targets), side by side in one run, all on loopback:
#   1. propagation: 3 instances (A, B, C) on one redis-server started here; for each of
#      CLUSTER_NAMES names every instance caches the stored certificate, then a new one is
#      committed into Redis with `acmedge storage copy` (the commit script an issuing instance
#      runs: one bundle write, generation bump, PUBLISH) and each instance is polled with TLS
#      handshakes until it serves the new leaf. t0 = this script's own subscriber receiving the
#      PUBLISHed message. Target: p99 <= 1 s, 0 failed handshakes during the swaps.
#   2. delete propagation: DELETE /v1/domains/{name} on A; B and C polled until they no longer
#      serve the name. Same 1 s target.
#   3. handshake cost, Redis vs fs backend: one instance per backend on the same 1,000 stored
#      names (tree-1000 of bench/scale.sh, copied into Redis), CLUSTER_ROUNDS interleaved rounds of
#      a cached pass (CLUSTER_HS handshakes over 200 names in memory) and a cold pass (100 names
#      never asked for: read from storage, keys unsealed on Redis), server CPU from
#      /proc/PID/task/*/schedstat, ratio Redis/fs paired within each round. Target: cached <= 1.05.
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/cluster.sh
#
# Environment: CLUSTER_NAMES (50), CLUSTER_ROUNDS (7), CLUSTER_HS (3000), CLUSTER_COLD (100),
# TREE_DIR (/var/tmp/acmedge-bench, shared with bench/scale.sh), AE_KEEP=1 keeps the work dir.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/scale_trees.sh
source "$BENCH_DIR/lib/scale_trees.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${CLUSTER_NAMES:=50}"
: "${CLUSTER_ROUNDS:=7}"
: "${CLUSTER_HS:=3000}"
: "${CLUSTER_COLD:=100}"
HOT=200
bench_require_sides acmedge
bench_require_tools "$HSLOAD_BIN" redis-server redis-cli gnutls-cli python3
bench_base cluster
BENCH_T0=$(date +%s%N)
ca=127.0.0.1_9 # the CA host of the unreachable directory the configs name (no CA is contacted)
[ "$CLUSTER_NAMES" -le 50 ] || ae_fail "CLUSTER_NAMES is at most 50 (s0..s49 of tree-1000; the rest are the cached/cold sets)"
[ $((50 + HOT + CLUSTER_ROUNDS * CLUSTER_COLD)) -le 1000 ] || ae_fail "CLUSTER_ROUNDS x CLUSTER_COLD too large for 1,000 names"

cpu_ns() { # cpu_ns PID : CPU time of every thread of PID in ns
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}
# pass PID PORT FILE COUNT [EXTRA...] : prints "CPU_NS_PER_HANDSHAKE P50_MS REDIS_CPU_NS_PER_HANDSHAKE"
# (the redis-server's CPU over the same pass: what a cold read costs on the Redis side).
pass() {
  local pid=$1 port=$2 f=$3 n=$4 c0 c1 r0 r1 out
  shift 4
  c0=$(cpu_ns "$pid")
  r0=$(cpu_ns "$REDIS_PID")
  out=$("$HSLOAD_BIN" -c 1 -n "$n" --sni-file "$f" --latency "$@" 127.0.0.1 "$port" 2>&1 | tail -1)
  c1=$(cpu_ns "$pid")
  r1=$(cpu_ns "$REDIS_PID")
  [ "$(_field failed "$out")" = "0" ] || ae_fail "handshakes failed: $out"
  echo "$(((c1 - c0) / n)) $(_field p50_ms "$out") $(((r1 - r0) / n))"
}
# inst NAME STORAGE_JSON : starts an instance in $T; sets PID_NAME, PORT_NAME, ADMIN_NAME.
inst() {
  local n=$1
  AE_HTTPS_PORT=$(ae_free_port) AE_HTTP_PORT=$(ae_free_port) AE_ADMIN_PORT=$(ae_free_port)
  ae_config_write "$T/$n.json" "{\"on_demand\": {\"enabled\": false}, $2,
    \"log\": {\"level\": \"info\"}, \"cert_cache\": {\"max_entries\": 100000}}"
  ae_bg "$n" env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$ACMEDGE_BIN" run -c "$T/$n.json"
  printf -v "PID_$n" %s "$(cat "$T/$n.pid")"
  printf -v "PORT_$n" %s "$AE_HTTPS_PORT"
  printf -v "ADMIN_$n" %s "$AE_ADMIN_PORT"
  bench_wait_port "acmedge $n" "$(cat "$T/$n.pid")" "$AE_HTTPS_PORT" 30
  wait_log "$T/$n.log" "indexed .* stored certificate" 300 || ae_fail "$n: index scan did not finish"
}

uptime
tr=$(tree 1000)
run_dir "$BASE/run"
redis_start --loglevel warning
REDIS_PID=$(cat "$T/redis.pid")
head -c 32 /dev/urandom >"$T/storage.key"
chmod 600 "$T/storage.key"
rst() { # rst LOCAL_DIR : the "storage" member of a Redis-backed config
  echo "\"storage\": {\"type\": \"redis\", \"path\": \"$1\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", \"key_file\": \"$T/storage.key\"}}"
}
ae_config_write "$T/fs-src.json" "{\"storage\": {\"path\": \"$tr/storage\"}}"
ae_config_write "$T/redis.json" "{$(rst "$T/st-copy")}"
t0=$(now_ms)
out=$("$ACMEDGE_BIN" storage copy --from "$T/fs-src.json" --to "$T/redis.json" 2>&1) || ae_fail "copy into Redis failed: $out"
phase "storage copy of 1,000 names fs -> redis ($(tail -1 <<<"$out"))" "$t0"

# ---- 1 + 2: propagation between A, B and C ----
# s0..s49 are the propagation names (a second certificate each, generated here); the cached and
# cold sets come from the other 950.
for ((i = 0; i < CLUSTER_NAMES; i++)); do echo "s$i.bench.test"; done >"$T/prop.txt"
awk '{print $1}' "$tr/serials.txt" | grep -Ev '^s([0-9]|[1-4][0-9])\.bench\.test$' >"$T/names.txt"
python3 "$SRC_DIR/tests/integration/helpers/gen_stored_certs.py" --root "$T/v2" --ca-host "$ca" \
  --count "$CLUSTER_NAMES" --prefix s --domain bench.test >"$T/gen.log" 2>&1 ||
  ae_fail "generating new certificates failed: $(tail -3 "$T/gen.log")"
: >"$T/prop-rows.txt"
while read -r name; do
  d=$T/v2-one/$name
  mkdir -p "$d/certs/$ca"
  cp -r "$T/v2/certs/$ca/$name" "$d/certs/$ca/"
  ae_config_write "$d.json" "{\"storage\": {\"path\": \"$d\"}}"
  echo "$name $tr/storage/certs/$ca/$name/cert.pem $d/certs/$ca/$name/cert.pem $d.json" >>"$T/prop-rows.txt"
done <"$T/prop.txt"
for n in A B C; do
  inst "$n" "$(rst "$T/st-$n")"
done
t0=$(now_ms)
python3 "$BENCH_DIR/tools/cluster_prop.py" --redis-port "$REDIS_PORT" --names "$T/prop-rows.txt" \
  --to "$T/redis.json" --bin "$ACMEDGE_BIN" \
  --inst "A:$PORT_A:$ADMIN_A" --inst "B:$PORT_B:$ADMIN_B" --inst "C:$PORT_C:$ADMIN_C" >>"$RESULTS" ||
  ae_fail "propagation measurement failed"
phase "propagation: $CLUSTER_NAMES commits, $CLUSTER_NAMES deletes" "$t0"
for n in A B C; do
  p=PID_$n
  ae_pid_alive "${!p}" || ae_fail "instance $n died"
  ae_kill_pid "${!p}" 50
done

# ---- 3: handshake cost, Redis vs fs ----
head -n "$HOT" "$T/names.txt" >"$T/hot.txt"
for ((r = 0; r < CLUSTER_ROUNDS; r++)); do
  a=$((HOT + r * CLUSTER_COLD))
  sed -n "$((a + 1)),$((a + CLUSTER_COLD))p" "$T/names.txt" >"$T/cold-$r.txt"
done
inst fs "\"storage\": {\"path\": \"$tr/storage\"}"
inst redis "$(rst "$T/st-redis")"
SIDES=(fs redis)
for s in "${SIDES[@]}"; do
  p=PID_$s q=PORT_$s
  pass "${!p}" "${!q}" "$T/hot.txt" "$HOT" --in-order >/dev/null # load the hot set
  pass "${!p}" "${!q}" "$T/hot.txt" 500 >/dev/null                # and warm the caches
done
t0=$(now_ms)
for ((r = 0; r < CLUSTER_ROUNDS; r++)); do
  for ((j = 0; j < 2; j++)); do
    s=${SIDES[$(((j + r) % 2))]}
    p=PID_$s q=PORT_$s
    read -r hot_ns hot_p50 _ < <(pass "${!p}" "${!q}" "$T/hot.txt" "$CLUSTER_HS")
    read -r cold_ns cold_p50 cold_rns < <(pass "${!p}" "${!q}" "$T/cold-$r.txt" "$CLUSTER_COLD" --in-order)
    echo "kind=hs round=$r side=$s cached_ns=$hot_ns cached_p50_ms=$hot_p50 cold_ns=$cold_ns cold_p50_ms=$cold_p50 cold_redis_ns=$cold_rns" |
      tee -a "$RESULTS"
  done
done
phase "$CLUSTER_ROUNDS rounds of handshakes" "$t0"
for s in "${SIDES[@]}"; do
  p=PID_$s
  echo "$s: RSS $(rss_kib "${!p}") KiB"
done
stats=$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" INFO commandstats)
if grep -Eq '^cmdstat_(keys|scan):' <<<"$stats"; then ae_fail "KEYS or SCAN was used"; fi
uptime
echo "---- summary"
python3 - "$RESULTS" <<'PY'
import statistics as st, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1]) if l.startswith("kind=")]
ok = True
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]
def verdict(cond):
    global ok
    ok = ok and cond
    return "PASS" if cond else "FAIL"
for kind, label in (("commit", "commit -> served on A, B, C"), ("delete", "delete -> gone on B, C")):
    rs = [r for r in rows if r["kind"] == kind]
    lost = sum(1 for r in rs if r["ms"] == "never")
    got = [float(r["ms"]) for r in rs if r["ms"] != "never"]
    if not got:
        print(f"{label}: no samples  FAIL"); ok = False; continue
    by = {}
    for r in rs:
        if r["ms"] != "never":
            by.setdefault(r["inst"], []).append(float(r["ms"]))
    per = ", ".join(f"{i} p50 {st.median(v):.1f}" for i, v in sorted(by.items()))
    print(f"{label}: {len(rs)} samples, p50 {st.median(got):.1f} ms, p99 {pct(got, 99):.1f} ms, "
          f"min {min(got):.1f} max {max(got):.1f} ms, never {lost} ({per})  "
          f"target p99 <= 1000 ms: {verdict(pct(got, 99) <= 1000 and lost == 0)}")
    if kind == "delete":
        ans = [float(r["from_answer_ms"]) for r in rs if r["from_answer_ms"] != "never"]
        call = [float(r["delete_call_ms"]) for r in rs]
        print(f"  from the DELETE answer: p50 {st.median(ans):.1f} ms, p99 {pct(ans, 99):.1f} ms; "
              f"DELETE call on A p50 {st.median(call):.1f} ms")
fails = sum(int(r["n"]) for r in rows if r["kind"] == "failed")
print(f"failed handshakes during the swaps: {fails}  target 0: {verdict(fails == 0)}")
hs = [r for r in rows if r["kind"] == "hs"]
by = {}
for r in hs:
    by.setdefault(r["round"], {})[r["side"]] = r
rounds = [v for v in by.values() if "fs" in v and "redis" in v]
def ratio(key):
    return [int(v["redis"][key]) / int(v["fs"][key]) for v in rounds]
for side in ("fs", "redis"):
    s = [r for r in hs if r["side"] == side]
    print(f"{side:5}: CPU/handshake cached {st.median([int(r['cached_ns']) for r in s]) / 1e3:.1f} us, "
          f"cold {st.median([int(r['cold_ns']) for r in s]) / 1e3:.1f} us; p50 cached "
          f"{st.median([float(r['cached_p50_ms']) for r in s]):.3f} ms, cold {st.median([float(r['cold_p50_ms']) for r in s]):.3f} ms")
if rounds:
    c, k = ratio("cached_ns"), ratio("cold_ns")
    print(f"redis/fs cached CPU per handshake: median {st.median(c):.3f} ({min(c):.3f}-{max(c):.3f}, "
          f"{len(c)} paired rounds)  target <= 1.05: {verdict(st.median(c) <= 1.05)}")
    print(f"redis/fs cold-load CPU per handshake: median {st.median(k):.3f} ({min(k):.3f}-{max(k):.3f})  (no target)")
    rn = [int(v["redis"]["cold_redis_ns"]) for v in rounds]
    kr = [(int(v["redis"]["cold_ns"]) + int(v["redis"]["cold_redis_ns"])) / int(v["fs"]["cold_ns"]) for v in rounds]
    print(f"  plus redis-server CPU per cold load: median {st.median(rn) / 1e3:.1f} us; "
          f"(acmedge + redis-server) / fs: median {st.median(kr):.3f} ({min(kr):.3f}-{max(kr):.3f})")
print("overall:", "PASS" if ok else "FAIL")
PY
echo "total: $((($(date +%s%N) - BENCH_T0) / 1000000)) ms"
