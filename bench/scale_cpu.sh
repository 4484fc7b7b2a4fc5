#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Handshake cost against the number of stored names, measured so that machine noise hits every
# figure alike: one acmedge per N runs at the same time (N = 1 is the reference, and a second
# N = 1 instance, "1/ctl", measures the instrument's own floor), and each of many short rounds
# measures every instance in turn (order rotated per round):
#   cached: a short block of handshakes for one name in memory (the same count of hot names at
#           every N, since N = 1 has only one), with the cache filled beforehand;
#   cold:   the first handshake of names never asked for (read from storage and parsed), N > 1.
# Server CPU per handshake comes from every thread's /proc/PID/task/*/schedstat (ns), latency from
# hsload -c 1. Reported per N, over rounds:
#   cached CPU at N / mean cached CPU of the two N = 1 instances, paired within each round:
#     median, its 95 % interval, quartiles, range (target: median <= 1.05);
#   cold / cached p50 latency, paired within each round (target: median <= 2).
# and a PASS/FAIL line per target and N.
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/scale_cpu.sh
#
# Environment:
#   SCALE_CPU_NS      stored-name counts (default "1 100000 1000000"; 1 is the reference)
#   SCALE_CPU_ROUNDS  rounds (default 40)
#   SCALE_CPU_HS      handshakes per cached block (default 400)
#   SCALE_CPU_COLD    cold names per cold block (default 60)
#   SCALE_CPU_FILL    names loaded into the cache of each N > 1 before the rounds (default 20000,
#                     at most N / 2)
#   SCALE_CPU_CONTROL 1 (default): also run the second N = 1 instance, "1/ctl"
#   TREE_DIR          generated storage trees, shared with bench/scale.sh (/var/tmp/acmedge-bench)
#   ACMEDGE_BASE_BIN  another acmedge build (e.g. before a change): measured in the same rounds on
#                     its own names of each tree with N > 1, reported as "N/base"
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/scale_trees.sh
source "$BENCH_DIR/lib/scale_trees.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${SCALE_CPU_NS:=1 100000 1000000}"
: "${SCALE_CPU_ROUNDS:=40}"
: "${SCALE_CPU_HS:=400}"
: "${SCALE_CPU_COLD:=60}"
: "${SCALE_CPU_FILL:=20000}"
: "${SCALE_CPU_CONTROL:=1}"
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

declare -A PID PORT DIR NCOLD
INST=()
uptime
for n in "${NS[@]}"; do
  tr=$(tree "$n")
  sides="new"
  [ "$n" = 1 ] && [ "$SCALE_CPU_CONTROL" = 1 ] && sides="new ctl"
  [ "$n" != 1 ] && [ -n "${ACMEDGE_BASE_BIN:-}" ] && sides="new base"
  fill=$((SCALE_CPU_FILL < n / 2 ? SCALE_CPU_FILL : n / 2))
  need=$((1 + SCALE_CPU_ROUNDS * SCALE_CPU_COLD))
  [ "$n" = 1 ] || [ "$n" -ge $((2 * (need + fill))) ] ||
    ae_fail "N=$n is below 2 x (1 + rounds x cold + fill) = $((2 * (need + fill))) names"
  off=0
  for side in $sides; do
    i=$n
    bin=$ACMEDGE_BIN
    [ "$side" = new ] || i=$n/$side
    [ "$side" = base ] && bin=$ACMEDGE_BASE_BIN
    d=$BASE/acmedge-${i/\//-}
    run_dir "$d"
    # The hot name, then one slice of never-touched names per round, then the fill; a base side
    # has its own names (the control instance of N = 1 shares the one name).
    [ "$side" = ctl ] && off=0
    awk -v a="$off" -v m="$((need + fill))" 'NR > a && NR <= a + m {print $1}' "$tr/serials.txt" >"$d/names.txt"
    off=$((off + need + fill))
    head -n 1 "$d/names.txt" >"$d/hot.txt"
    NCOLD[$i]=0
    if [ "$n" != 1 ]; then
      NCOLD[$i]=$SCALE_CPU_COLD
      for ((r = 0; r < SCALE_CPU_ROUNDS; r++)); do
        sed -n "$((2 + r * SCALE_CPU_COLD)),$((1 + (r + 1) * SCALE_CPU_COLD))p" "$d/names.txt" >"$d/cold-$r.txt"
      done
      tail -n "$fill" "$d/names.txt" >"$d/fill.txt"
    fi
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
t0=$(now_ms)
for i in "${INST[@]}"; do
  if [ -f "${DIR[$i]}/fill.txt" ]; then
    "$HSLOAD_BIN" -c 4 -n "$(wc -l <"${DIR[$i]}/fill.txt")" --sni-file "${DIR[$i]}/fill.txt" --in-order \
      127.0.0.1 "${PORT[$i]}" >/dev/null 2>&1 || ae_fail "$i: filling the cache failed"
  fi
  pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/hot.txt" 500 >/dev/null # warm the hot name and the caches
done
phase "fill the caches" "$t0"

t0=$(now_ms)
k=${#INST[@]}
for ((r = 0; r < SCALE_CPU_ROUNDS; r++)); do
  for ((j = 0; j < k; j++)); do
    i=${INST[$(((j + r) % k))]}
    read -r hot_ns hot_p50 < <(pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/hot.txt" "$SCALE_CPU_HS")
    cold_ns=0 cold_p50=0
    if [ "${NCOLD[$i]}" -gt 0 ]; then
      read -r cold_ns cold_p50 < <(pass "${PID[$i]}" "${PORT[$i]}" "${DIR[$i]}/cold-$r.txt" "${NCOLD[$i]}" --in-order)
    fi
    echo "round=$r n=$i cached_ns=$hot_ns cached_p50_ms=$hot_p50 cold_ns=$cold_ns cold_p50_ms=$cold_p50" >>"$RESULTS"
  done
  if [ $((r % 10)) = 9 ]; then
    echo "  round $((r + 1)) of $SCALE_CPU_ROUNDS done (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  fi
done
phase "$SCALE_CPU_ROUNDS rounds" "$t0"
for i in "${INST[@]}"; do
  echo "acmedge N=$i: RSS $(rss_kib "${PID[$i]}") KiB"
done
uptime
echo "---- summary (over rounds; ratios paired within each round)"
python3 - "$RESULTS" <<'PY'
import statistics as st, sys
rows = [dict(kv.split("=", 1) for kv in l.split()) for l in open(sys.argv[1]) if l.startswith("round=")]
by = {}
for r in rows:
    by.setdefault(r["n"], {})[r["round"]] = r
def ci(v):
    # Distribution-free 95 % interval of the median: order statistics n/2 -+ 0.98 sqrt(n).
    v = sorted(v)
    n = len(v)
    d = int(0.98 * n ** 0.5 + 0.5)
    return v[max(0, (n - 1) // 2 - d)], v[min(n - 1, n // 2 + d)]
def q(v):
    v = sorted(v)
    if len(v) < 4:
        return f"{st.median(v):.3f} ({v[0]:.3f}-{v[-1]:.3f})"
    qs = st.quantiles(v, n=4)
    lo, hi = ci(v)
    return (f"{st.median(v):.3f} (95% CI of the median {lo:.3f}-{hi:.3f}; quartiles {qs[0]:.3f}-{qs[2]:.3f}; "
            f"range {v[0]:.3f}-{v[-1]:.3f})")
verdicts = []
for n in sorted(by, key=lambda x: (int(x.split("/")[0]), x)):
    rs = list(by[n].values())
    cached = [int(r["cached_ns"]) / 1e6 for r in rs]
    line = f"N={n}: cached CPU/handshake {st.median(cached):.3f} ms, p50 {st.median([float(r['cached_p50_ms']) for r in rs]):.3f} ms"
    if n != "1" and "1" in by:
        # The reference is the mean of the N = 1 instances in the same round (the control one
        # included, so one lucky reference pass moves it half as much); the control instance
        # itself is compared with the other N = 1 alone: the instrument's floor.
        refs = ["1"] if n == "1/ctl" else [x for x in ("1", "1/ctl") if x in by]
        ks = [k for k in by[n] if all(k in by[x] for x in refs)]
        pair = [int(by[n][k]["cached_ns"]) / st.mean(int(by[x][k]["cached_ns"]) for x in refs) for k in ks]
        line += f"; cached CPU / N=1{' (both N=1 instances)' if len(refs) > 1 else ''}: {q(pair)}"
        if "/" not in n:
            verdicts.append((f"cached CPU ratio N={n} / N=1 <= 1.05", st.median(pair), 1.05))
    if int(rs[0]["cold_ns"]) > 0:
        cold = [int(r["cold_ns"]) / 1e6 for r in rs]
        lat = [float(r["cold_p50_ms"]) / float(r["cached_p50_ms"]) for r in rs]
        cpu = [int(r["cold_ns"]) / int(r["cached_ns"]) for r in rs]
        line += (f"; cold CPU/handshake {st.median(cold):.3f} ms ({st.median(cpu):.2f}x), "
                 f"p50 {st.median([float(r['cold_p50_ms']) for r in rs]):.3f} ms; cold/cached p50: {q(lat)}")
        if "/" not in n:
            verdicts.append((f"cold/cached p50 N={n} <= 2", st.median(lat), 2.0))
    print(line)
for what, v, bound in verdicts:
    print(f"{'PASS' if v <= bound else 'FAIL'} {what}: median {v:.3f}")
PY
echo "total: $((($(date +%s%N) - BENCH_T0) / 1000000)) ms"
