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
#   0. start-up, Redis vs fs backend: CLUSTER_START stored names (tree-10000 of bench/scale.sh,
#      copied into Redis under its own prefix, keys sealed); from exec to the https port accepting
#      and to the first handshake serving a stored name its stored serial (target < 1 s), and to
#      every name of a sample spread over all of them (every CLUSTER_START/CLUSTER_SAMPLE-th name)
#      served its stored serial (target < 5 s; no order placed: no issuance_started). Then RSS per
#      cached certificate: CLUSTER_RSS_NAMES further names loaded into each, RSS delta / names
#      (target Redis/fs <= 1.1).
#   4. renewal propagation: instance A issues names from the internal CA; CLUSTER_RENEWALS
#      renewals forced through A's admin API (POST /v1/domains/{name}/renew: A mints, takes the
#      lock, commits with its fence, PUBLISHes); t0 = this script's subscriber receiving A's
#      message, t1 = B serving the new leaf. Median and p99, 0 failed handshakes.
#   3. handshake cost, Redis vs fs backend: one instance per backend on the same 1,000 stored
#      names (tree-1000 of bench/scale.sh, copied into Redis), CLUSTER_ROUNDS interleaved rounds of
#      a cached pass (CLUSTER_HS handshakes over 200 names in memory) and a cold pass (100 names
#      never asked for: read from storage, keys unsealed on Redis), server CPU from
#      /proc/PID/task/*/schedstat, ratio Redis/fs paired within each round. Target: cached <= 1.05.
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/cluster.sh    # ~3 min
#
# Environment: CLUSTER_NAMES (50), CLUSTER_ROUNDS (7), CLUSTER_HS (3000), CLUSTER_COLD (100),
# CLUSTER_START (10000: 1, 1000, 10000, ... a tree of bench/scale.sh), CLUSTER_SAMPLE (1000),
# CLUSTER_RSS_NAMES (2000), CLUSTER_RENEWALS (100: 20 names x 5 renewals),
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
: "${CLUSTER_START:=10000}"
: "${CLUSTER_SAMPLE:=1000}"
: "${CLUSTER_RSS_NAMES:=2000}"
: "${CLUSTER_RENEWALS:=100}"
HOT=200
bench_require_sides acmedge
bench_require_tools "$HSLOAD_BIN" redis-server redis-cli gnutls-cli python3
bench_base cluster
BENCH_T0=$(date +%s%N)
ca=127.0.0.1_9 # the CA host of the unreachable directory the configs name (no CA is contacted)
[ "$CLUSTER_NAMES" -le 50 ] || ae_fail "CLUSTER_NAMES is at most 50 (s0..s49 of tree-1000; the rest are the cached/cold sets)"
[ $((50 + HOT + CLUSTER_ROUNDS * CLUSTER_COLD)) -le 1000 ] || ae_fail "CLUSTER_ROUNDS x CLUSTER_COLD too large for 1,000 names"
[ $((CLUSTER_SAMPLE + CLUSTER_RSS_NAMES)) -le "$CLUSTER_START" ] || ae_fail "CLUSTER_SAMPLE + CLUSTER_RSS_NAMES exceed CLUSTER_START"
[ $((CLUSTER_RENEWALS % 5)) -eq 0 ] || ae_fail "CLUSTER_RENEWALS is a multiple of 5 (names x 5 renewals)"

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
# inst_conf NAME STORAGE_JSON [ON_DEMAND_JSON] : writes $T/NAME.json with fresh ports (on-demand
# off unless given).
inst_conf() {
  local od='{"enabled": false}'
  [ $# -lt 3 ] || od=$3
  AE_HTTPS_PORT=$(ae_free_port) AE_HTTP_PORT=$(ae_free_port) AE_ADMIN_PORT=$(ae_free_port)
  ae_config_write "$T/$1.json" "{\"on_demand\": $od, $2,
    \"log\": {\"level\": \"info\"}, \"cert_cache\": {\"max_entries\": 100000}}"
}
# inst_run NAME : starts the instance of $T/NAME.json; sets PID_NAME, PORT_NAME, ADMIN_NAME.
inst_run() {
  local n=$1
  ae_bg "$n" env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$ACMEDGE_BIN" run -c "$T/$n.json"
  printf -v "PID_$n" %s "$(cat "$T/$n.pid")"
  printf -v "PORT_$n" %s "$AE_HTTPS_PORT"
  printf -v "ADMIN_$n" %s "$AE_ADMIN_PORT"
}
# inst NAME STORAGE_JSON [ON_DEMAND_JSON] : starts an instance in $T, waits for its index scan.
inst() {
  inst_conf "$@"
  inst_run "$1"
  bench_wait_port "acmedge $1" "$(cat "$T/$1.pid")" "$AE_HTTPS_PORT" 30
  wait_log "$T/$1.log" "indexed .* stored certificate" 300 || ae_fail "$1: index scan did not finish"
}

uptime
tr=$(tree 1000)
run_dir "$BASE/run"
redis_start --loglevel warning
REDIS_PID=$(cat "$T/redis.pid")
head -c 32 /dev/urandom >"$T/storage.key"
chmod 600 "$T/storage.key"
rst() { # rst LOCAL_DIR [PREFIX] : the "storage" member of a Redis-backed config
  echo "\"storage\": {\"type\": \"redis\", \"path\": \"$1\", \"redis\": {\"address\": \"127.0.0.1:$REDIS_PORT\", \"key_file\": \"$T/storage.key\", \"prefix\": \"${2:-acmedge}\"}}"
}
ae_config_write "$T/fs-src.json" "{\"storage\": {\"path\": \"$tr/storage\"}}"
ae_config_write "$T/redis.json" "{$(rst "$T/st-copy")}"
t0=$(now_ms)
out=$("$ACMEDGE_BIN" storage copy --from "$T/fs-src.json" --to "$T/redis.json" 2>&1) || ae_fail "copy into Redis failed: $out"
phase "storage copy of 1,000 names fs -> redis ($(tail -1 <<<"$out"))" "$t0"

# ---- 0: start-up with CLUSTER_START stored names, fs vs Redis; RSS per cached certificate ----
tr10=$(tree "$CLUSTER_START")
ae_config_write "$T/fs10.json" "{\"storage\": {\"path\": \"$tr10/storage\"}}"
ae_config_write "$T/redis10.json" "{$(rst "$T/st-copy10" acm10k)}"
t0=$(now_ms)
out=$("$ACMEDGE_BIN" storage copy --from "$T/fs10.json" --to "$T/redis10.json" 2>&1) || ae_fail "copy of $CLUSTER_START names into Redis failed: $out"
phase "storage copy of $CLUSTER_START names fs -> redis, prefix acm10k ($(tail -1 <<<"$out"))" "$t0"
first=$(tail -1 "$tr10/serials.txt")
step=$((CLUSTER_START / CLUSTER_SAMPLE))
awk -v s="$step" 'NR % s == 0' "$tr10/serials.txt" >"$T/start-sample.txt"
awk -v s="$step" -v m="$CLUSTER_RSS_NAMES" 'NR % s != 0 && n < m {print $1; n++}' "$tr10/serials.txt" >"$T/rss-names.txt"
for s in fs redis; do
  if [ "$s" = fs ]; then inst_conf "start$s" "\"storage\": {\"path\": \"$tr10/storage\"}"; else inst_conf "start$s" "$(rst "$T/st-start" acm10k)"; fi
  python3 "$BENCH_DIR/tools/start_probe.py" --port "$AE_HTTPS_PORT" --first "${first/ /:}" \
    --sample "$T/start-sample.txt" --timeout 120 --ready "$T/start$s.ready" >"$T/start$s.probe" 2>&1 &
  probe=$!
  for ((i = 0; i < 300; i++)); do # the probe is polling before the exec
    [ -e "$T/start$s.ready" ] && break
    sleep 0.05
  done
  t0=$(now_ms)
  inst_run "start$s"
  wait "$probe" || ae_fail "start-up probe ($s): $(cat "$T/start$s.probe")"
  p=$(cat "$T/start$s.probe")
  orders=$(grep -c 'issuance_started' "$T/start$s.log" || true)
  echo "kind=start side=$s names=$CLUSTER_START t0=$t0 $p orders=$orders" | tee -a "$RESULTS"
  pid=$(cat "$T/start$s.pid")
  wait_log "$T/start$s.log" "indexed .* stored certificate" 300 || ae_fail "start$s: index scan did not finish"
  rss0=$(rss_kib "$pid")
  out=$("$HSLOAD_BIN" -c 2 -n "$CLUSTER_RSS_NAMES" --sni-file "$T/rss-names.txt" --in-order 127.0.0.1 "$AE_HTTPS_PORT" 2>&1 | tail -1)
  [ "$(_field failed "$out")" = "0" ] || ae_fail "handshakes failed: $out"
  rss1=$(rss_kib "$pid")
  echo "kind=rss side=$s names=$CLUSTER_RSS_NAMES rss0_kib=$rss0 rss1_kib=$rss1" | tee -a "$RESULTS"
  ae_kill_pid "$pid" 50
done

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

# ---- 4: renewals issued by A itself (internal CA), served on B ----
rn_names=$((CLUSTER_RENEWALS / 5))
for ((i = 0; i < rn_names; i++)); do echo "r$i.rn.test"; done >"$T/rn.txt"
# The order rate limit would space the renewals a second apart: lift it.
od='{"enabled": true, "allow": ["none.invalid"], "rate": {"per_minute": 60000, "burst": 100000, "per_3h": 1000000}},
  "internal_ca": {"enabled": true, "names": ["*.rn.test"]}'
inst RA "$(rst "$T/st-RA")" "$od" # first: it creates the internal CA in Redis
inst RB "$(rst "$T/st-RB")" "$od"
t0=$(now_ms)
python3 "$BENCH_DIR/tools/cluster_renew.py" --redis-port "$REDIS_PORT" --issuer "A:$PORT_RA:$ADMIN_RA" \
  --inst "B:$PORT_RB" --names "$T/rn.txt" --rounds 5 >>"$RESULTS" || ae_fail "renewal propagation failed"
phase "renewal propagation: $CLUSTER_RENEWALS renewals on A" "$t0"
for n in RA RB; do
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
st0 = {r["side"]: r for r in rows if r["kind"] == "start"}
for side in ("fs", "redis"):
    r = st0.get(side)
    if not r:
        print(f"start-up {side}: no sample  FAIL"); ok = False; continue
    t0 = int(r["t0"])
    lst, fst, allt = int(r["listen_ms"]) - t0, int(r["first_ms"]) - t0, int(r["all_ms"]) - t0
    good = int(r["missing"]) == 0 and int(r["orders"]) == 0
    print(f"start-up {side:5} ({r['names']} names): listening {lst} ms, first stored name served {fst} ms  "
          f"target < 1000 ms: {verdict(fst < 1000)}")
    print(f"  a sample of {r['sampled']} names spread over all {r['names']} served their stored serial "
          f"{allt} ms after exec (wrong {r['wrong']}, failed {r['failed']}, missing {r['missing']}, "
          f"orders {r['orders']})  target < 5000 ms, 0 orders: {verdict(allt < 5000 and good)}")
if "fs" in st0 and "redis" in st0:
    f, g = st0["fs"], st0["redis"]
    fr = (int(g["first_ms"]) - int(g["t0"])) / max(1, int(f["first_ms"]) - int(f["t0"]))
    ar = (int(g["all_ms"]) - int(g["t0"])) / max(1, int(f["all_ms"]) - int(f["t0"]))
    print(f"  redis/fs: first served {fr:.2f}, sample served {ar:.2f}")
rss = {r["side"]: r for r in rows if r["kind"] == "rss"}
per = {}
for side, r in sorted(rss.items()):
    per[side] = (int(r["rss1_kib"]) - int(r["rss0_kib"])) * 1024 / int(r["names"])
    print(f"RSS per cached certificate {side:5}: {per[side]:.0f} B ({r['rss0_kib']} -> {r['rss1_kib']} KiB over {r['names']} names)")
if "fs" in per and "redis" in per:
    q = per["redis"] / per["fs"] if per["fs"] > 0 else float("inf")
    print(f"  redis/fs RSS per cached certificate: {q:.3f}  target <= 1.1: {verdict(q <= 1.1)}")
rn = [r for r in rows if r["kind"] == "renew"]
if rn:
    lost = sum(1 for r in rn if r["ms"] == "never")
    got = [float(r["ms"]) for r in rn if r["ms"] != "never"]
    iss = [float(r["issue_ms"]) for r in rn]
    rf = sum(int(r["n"]) for r in rows if r["kind"] == "renewfail")
    print(f"renewal on A -> served on B: {len(rn)} renewals, p50 {st.median(got):.1f} ms, p99 {pct(got, 99):.1f} ms, "
          f"max {max(got):.1f} ms, never {lost}, failed handshakes {rf}  target p99 <= 1000 ms, 0 failed: "
          f"{verdict(pct(got, 99) <= 1000 and lost == 0 and rf == 0)}")
    print(f"  POST renew -> A's commit PUBLISHed (mint, lock, commit): p50 {st.median(iss):.1f} ms, p99 {pct(iss, 99):.1f} ms")
else:
    print("renewal propagation: no samples  FAIL"); ok = False
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
