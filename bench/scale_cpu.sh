#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Handshake cost against the number of stored names, measured so that machine noise hits every
# figure alike: one acmedge per N runs at the same time, and each round measures every N in turn
# (order rotated per round), each with a cached pass and a cold pass back to back.
#   cached: handshakes over a hot set of names already in memory;
#   cold:   the first handshake of names never asked for (read from storage and parsed).
# Reports per N the medians over rounds of the server's CPU per handshake (all its threads, from
# /proc/PID/task/*/schedstat, ns) and the p50 latency of each pass (hsload -c 1), then
#   cold/cached: p50 latency ratio and CPU ratio (target: p50 <= 2x), and
#   cached CPU at N / cached CPU at the smallest N, paired within each round (target <= 1.05).
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/scale_cpu.sh
#
# Environment:
#   SCALE_CPU_NS      stored-name counts (default "10000 100000 1000000")
#   SCALE_CPU_ROUNDS  rounds (default 7)
#   SCALE_CPU_HOT     names in the hot set (default 200)
#   SCALE_CPU_HS      handshakes per cached pass (default 3000)
#   SCALE_CPU_COLD    cold names per cold pass (default 300; ROUNDS x COLD + HOT <= smallest N)
#   TREE_DIR          generated storage trees, shared with bench/scale.sh (/var/tmp/acmedge-bench)
#   ACMEDGE_BASE_BIN  another acmedge build (e.g. before a change): measured in the same rounds on
#                     its own copy of each tree's names, reported as "N/base"
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/scale_trees.sh
source "$BENCH_DIR/lib/scale_trees.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${SCALE_CPU_NS:=10000 100000 1000000}"
: "${SCALE_CPU_ROUNDS:=7}"
: "${SCALE_CPU_HOT:=200}"
: "${SCALE_CPU_HS:=3000}"
: "${SCALE_CPU_COLD:=300}"
bench_require_sides acmedge
bench_require_tools "$HSLOAD_BIN" gnutls-cli python3
bench_base scale_cpu
BENCH_T0=$(date +%s%N)
read -r -a NS <<<"$SCALE_CPU_NS"

# cpu_ns PID : CPU time of every thread of PID, in ns (schedstat: finer than the 10 ms ticks).
cpu_ns() {
  cat /proc/"$1"/task/*/schedstat 2>/dev/null | awk '{ s += $1 } END { printf "%.0f", s }'
}

# pass PID PORT FILE COUNT [EXTRA...] : one hsload pass (one connection at a time); prints
# "CPU_NS_PER_HANDSHAKE P50_MS".
pass() {
  local pid=$1 port=$2 f=$3 n=$4 c0 c1 out
  shift 4
  c0=$(cpu_ns "$pid")
  out=$("$HSLOAD_BIN" -c 1 -n "$n" --sni-file "$f" --latency "$@" 127.0.0.1 "$port" 2>&1 | tail -1)
  c1=$(cpu_ns "$pid")
  [ "$(_field failed "$out")" = "0" ] || ae_fail "handshakes failed: $out"
  echo "$(((c1 - c0) / n)) $(_field p50_ms "$out")"
}

declare -A PID PORT DIR
INST=()
uptime
need=$((SCALE_CPU_HOT + SCALE_CPU_ROUNDS * SCALE_CPU_COLD))
for n in "${NS[@]}"; do
  [ "$n" -ge $((2 * need)) ] || ae_fail "N=$n is below 2 x (hot + rounds x cold) = $((2 * need)) names"
  tr=$(tree "$n")
  sides="new"
  [ -n "${ACMEDGE_BASE_BIN:-}" ] && sides="new base"
  off=0
  for side in $sides; do
    i=$n
    bin=$ACMEDGE_BIN
    if [ "$side" = base ]; then
      i=$n/base
      bin=$ACMEDGE_BASE_BIN
    fi
    d=$BASE/acmedge-${i/\//-}
    run_dir "$d"
    # Hot set first, then one slice of never-touched names per round; the base side has its own.
    awk -v a="$off" -v m="$need" 'NR > a && NR <= a + m {print $1}' "$tr/serials.txt" >"$d/names.txt"
    off=$((off + need))
    head -n "$SCALE_CPU_HOT" "$d/names.txt" >"$d/hot.txt"
    for ((r = 0; r < SCALE_CPU_ROUNDS; r++)); do
      sed -n "$((SCALE_CPU_HOT + r * SCALE_CPU_COLD + 1)),$((SCALE_CPU_HOT + (r + 1) * SCALE_CPU_COLD))p" \
        "$d/names.txt" >"$d/cold-$r.txt"
    done
    ae_config_write "$d/acmedge.json" "{\"on_demand\": {\"enabled\": false}, \"storage\": {\"path\": \"$tr/storage\"},
      \"log\": {\"level\": \"info\"}, \"cert_cache\": {\"max_entries\": 100000}}"
    ae_bg acmedge env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$bin" run -c "$d/acmedge.json"
    PID[$i]=$(cat "$d/acmedge.pid")
    PORT[$i]=$AE_HTTPS_PORT
    DIR[$i]=$d
    INST+=("$i")
  done
done
t0=$(now_ms)
for i in "${INST[@]}"; do
  bench_wait_port "acmedge $i" "${PID[$i]}" "${PORT[$i]}" 30
  # The renewal index scan runs in the background and would be counted as handshake CPU.
  wait_log "${DIR[$i]}/acmedge.log" "indexed .* stored certificate" 1800 || ae_fail "$i: index scan did not finish"
done
phase "start -> every renewal index built" "$t0"
for i in "${INST[@]}"; do
  pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/hot.txt" "$SCALE_CPU_HOT" --in-order >/dev/null # warm the hot set
  pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/hot.txt" 500 >/dev/null                           # and the caches
done

t0=$(now_ms)
k=${#INST[@]}
for ((r = 0; r < SCALE_CPU_ROUNDS; r++)); do
  for ((j = 0; j < k; j++)); do
    i=${INST[$(((j + r) % k))]}
    read -r hot_ns hot_p50 < <(pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/hot.txt" "$SCALE_CPU_HS")
    read -r cold_ns cold_p50 < <(pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/cold-$r.txt" "$SCALE_CPU_COLD" --in-order)
    echo "round=$r n=$i cached_ns=$hot_ns cached_p50_ms=$hot_p50 cold_ns=$cold_ns cold_p50_ms=$cold_p50" |
      tee -a "$RESULTS"
  done
done
phase "$SCALE_CPU_ROUNDS rounds" "$t0"
for i in "${INST[@]}"; do
  echo "acmedge N=$i: RSS $(rss_kib "${PID[$i]}") KiB"
done
uptime
echo "---- summary (medians over rounds; ratio to N=${NS[0]} paired within each round)"
python3 - "$RESULTS" "${NS[0]}" <<'PY'
import statistics as st, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1]) if l.startswith("round=")]
base = sys.argv[2]
by = {}
for r in rows:
    by.setdefault(r["n"], {})[r["round"]] = r
def med(v): return st.median(v)
for n in sorted(by, key=lambda x: (int(x.split("/")[0]), x)):
    rs = by[n].values()
    cached = [int(r["cached_ns"]) / 1e6 for r in rs]
    cold = [int(r["cold_ns"]) / 1e6 for r in rs]
    lat = [float(r["cold_p50_ms"]) / float(r["cached_p50_ms"]) for r in rs]
    cpu = [int(r["cold_ns"]) / int(r["cached_ns"]) for r in rs]
    b = base + "/base" if n.endswith("/base") else base
    pair = [int(by[n][k]["cached_ns"]) / int(by[b][k]["cached_ns"]) for k in by[n] if k in by[b]]
    print(f"N={n}: CPU/handshake cached {med(cached):.3f} ms, cold {med(cold):.3f} ms; "
          f"p50 cached {med([float(r['cached_p50_ms']) for r in rs]):.3f} ms, "
          f"cold {med([float(r['cold_p50_ms']) for r in rs]):.3f} ms; "
          f"cold/cached p50 {med(lat):.2f}x ({min(lat):.2f}-{max(lat):.2f}), CPU {med(cpu):.2f}x; "
          f"cached CPU ratio to N={b} {med(pair):.3f} ({min(pair):.3f}-{max(pair):.3f})")
PY
echo "total: $((($(date +%s%N) - BENCH_T0) / 1000000)) ms"
