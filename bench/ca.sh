#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Internal CA: CPU cost of one minted leaf, and handshakes/s for new names with
# on_demand.fallback_cert "internal" beside "default", same run.
#
# 1. ca_mint_bench, run BENCH_MINT_RUNS times, mints BENCH_MINTS leaves straight into served
#    certificates (the fallback path: fresh P-256 key + sign + build, no PEM) and as many as PEM
#    (internal names, written to storage), timing each mint on the thread CPU clock. Reported: the
#    p50 (and p90) of the served mint per run, their median, and PASS/FAIL of that median against
#    the 0.3 ms target; then heap bytes per minted leaf held in the fallback leaf cache beside the
#    same certificate held in the certificate store (target: leaf cache <= certificate store).
# 2. acmedge (1 worker, ACME directory unreachable so every new name stays "failing" and, with
#    fallback "internal", is served a minted leaf) is driven by hsload over BENCH_NAMES fresh
#    names in order, one handshake each (every one the first for its name), then BENCH_SECS
#    seconds over the same names (every name known: cached leaf or default cert).
#    Ratios: cost of a first handshake relative to a cached one (known hs/s / new hs/s; target
#    <= 2 for "internal"), and "internal" relative to "default" for each pass.
#    BENCH_MINT_ONLY=1 skips this part.
#
# Usage: bench/ca.sh
# Environment: ACMEDGE_BIN, HSLOAD_BIN, MINTBENCH_BIN (default build/ca_mint_bench),
#   BENCH_MINTS (2000), BENCH_MINT_RUNS (3), BENCH_MINT_ONLY (0), BENCH_NAMES (10000),
#   BENCH_SECS (5), BENCH_CONC (4), AE_KEEP=1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${MINTBENCH_BIN:=$SRC_DIR/build/ca_mint_bench}"
BENCH_MINTS=${BENCH_MINTS:-2000}
BENCH_MINT_RUNS=${BENCH_MINT_RUNS:-3}
BENCH_MINT_ONLY=${BENCH_MINT_ONLY:-0}
MINT_TARGET_US=300
BENCH_NAMES=${BENCH_NAMES:-10000}
BENCH_SECS=${BENCH_SECS:-5}
BENCH_CONC=${BENCH_CONC:-4}

bench_require_sides acmedge
[ -x "$HSLOAD_BIN" ] || { echo "ca.sh: no hsload binary at $HSLOAD_BIN" >&2; exit 2; }
[ -x "$MINTBENCH_BIN" ] || { echo "ca.sh: no ca_mint_bench binary at $MINTBENCH_BIN" >&2; exit 2; }
ae_setup

field() { sed -n "s/.* $1=\\([0-9.]*\\).*/\\1/p" <<<"$2"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

mints=()
p50s=""
for ((r = 1; r <= BENCH_MINT_RUNS; r++)); do
  rm -rf "$T/mintca"
  mints[r]=$("$MINTBENCH_BIN" -n "$BENCH_MINTS" "$T/mintca" 2>"$T/mint-$r.err" | tail -1)
  case ${mints[r]} in RESULT*) ;; *) echo "ca.sh: ca_mint_bench failed: $(cat "$T/mint-$r.err")" >&2; exit 1 ;; esac
  echo "mint run $r: ${mints[r]}"
  p50s+=" $(field mint_p50_us "${mints[r]}")"
done
mint_p50=$(median <<<"$p50s")
mint_verdict=$(awk -v v="$mint_p50" -v t="$MINT_TARGET_US" 'BEGIN { print (v <= t) ? "PASS" : "FAIL" }')
last=${mints[BENCH_MINT_RUNS]}

printf '\n%-52s %12s %10s\n' "mint, CPU per leaf ($BENCH_MINTS leaves per run)" value target
for ((r = 1; r <= BENCH_MINT_RUNS; r++)); do
  printf '%-52s %12s us\n' "  run $r: served certificate p50 / p90" \
    "$(field mint_p50_us "${mints[r]}") / $(field mint_p90_us "${mints[r]}")"
  printf '%-52s %12s us\n' "  run $r: PEM (internal names) p50" "$(field pem_p50_us "${mints[r]}")"
done
printf '%-52s %12s us %7s us  %s\n' "mint p50, served certificate (median of runs)" "$mint_p50" "<= $MINT_TARGET_US" \
  "$mint_verdict"
printf '%-52s %12s B\n' "heap per minted leaf in the leaf cache" "$(field leafcache_bytes "$last")"
printf '%-52s %12s B\n' "heap per certificate in the certificate store" "$(field certstore_bytes "$last")"
printf '%-52s %12s %10s\n' "leaf cache / certificate store" \
  "$(ratio "$(field leafcache_bytes "$last")" "$(field certstore_bytes "$last")")" "<= 1"
echo "MINT p50_us=$mint_p50 target_us=$MINT_TARGET_US $mint_verdict"
[ "$BENCH_MINT_ONLY" = 1 ] && exit 0

for ((i = 0; i < BENCH_NAMES; i++)); do echo "n$i.bench.test"; done >"$T/names.txt"

hs() { # hs SIDE LABEL ARGS... -> "hs_per_s"
  local side=$1 label=$2 out
  shift 2
  out=$("$HSLOAD_BIN" -c "$BENCH_CONC" "$@" --sni-file "$T/names.txt" 127.0.0.1 "$AE_HTTPS_PORT" 2>"$T/hs-$side-$label.err" | tail -1)
  echo "$out" >"$T/hs-$side-$label.out"
  sed -n 's/^RESULT .*hs_per_s=\([0-9.]*\).*/\1/p' <<<"$out"
}

declare -A first cached
for side in internal default; do
  rm -rf "$T/storage"
  unset AE_HTTPS_PORT AE_HTTP_PORT AE_ADMIN_PORT
  # Per-client limits off: one client stands for 10,000 different visitors here.
  ae_config_write "$T/acmedge-$side.json" "{\"workers\": 1, \"log\": {\"level\": \"warn\"},
    \"limits\": {\"per_ip_handshakes_per_s\": 0, \"per_ip_new_names_per_min\": 0},
    \"internal_ca\": {\"enabled\": true},
    \"on_demand\": {\"allow\": [\"*.bench.test\"], \"fallback_cert\": \"$side\", \"max_queue\": 1000000,
                    \"max_concurrent\": 64, \"rate\": {\"per_minute\": 1000000, \"burst\": 1000000, \"per_3h\": 10000000},
                    \"backoff\": {\"initial_s\": 3600, \"max_s\": 86400}}}"
  acmedge_start "$T/acmedge-$side.json"
  first[$side]=$(hs "$side" first -n "$BENCH_NAMES" --in-order)
  cached[$side]=$(hs "$side" cached -t "$BENCH_SECS" --in-order)
  curl -sf "http://127.0.0.1:$AE_ADMIN_PORT/metrics" | grep -E '^acmedge_(internal_ca_mints_total|fallback_leaf_cache_entries) ' |
    sed "s/^/$side: /" || true
  acmedge_stop
done

printf '\n%-10s %16s %18s %26s\n' fallback "new names hs/s" "known names hs/s" "first/cached handshake cost"
for side in internal default; do
  printf '%-10s %16s %18s %26s\n' "$side" "${first[$side]}" "${cached[$side]}" "$(ratio "${cached[$side]}" "${first[$side]}")"
done
printf '%-10s %16s %18s\n' "int/def" "$(ratio "${first[internal]}" "${first[default]}")" \
  "$(ratio "${cached[internal]}" "${cached[default]}")"
echo "(first/cached handshake cost for \"internal\": target <= 2)"
