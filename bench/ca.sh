#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Internal CA: CPU cost of one minted leaf, and handshakes/s for new names with
# on_demand.fallback_cert "internal" beside "default", same run.
#
# 1. ca_mint_bench mints BENCH_MINTS leaves: CPU time per leaf (keygen + sign + PEM; target
#    <= 0.3 ms) and per leaf parsed into a served certificate; then heap bytes per minted leaf
#    held in the fallback leaf cache beside the same certificate held in the certificate store
#    (target: leaf cache <= certificate store).
# 2. acmedge (1 worker, ACME directory unreachable so every new name stays "failing" and, with
#    fallback "internal", is served a minted leaf) is driven by hsload over BENCH_NAMES fresh
#    names in order, one handshake each (every one the first for its name), then BENCH_SECS
#    seconds over the same names (every name known: cached leaf or default cert).
#    Ratios: cost of a first handshake relative to a cached one (known hs/s / new hs/s; target
#    <= 2 for "internal"), and "internal" relative to "default" for each pass.
#
# Usage: bench/ca.sh
# Environment: ACMEDGE_BIN, HSLOAD_BIN, MINTBENCH_BIN (default build/ca_mint_bench),
#   BENCH_MINTS (2000), BENCH_NAMES (10000), BENCH_SECS (5), BENCH_CONC (4), AE_KEEP=1.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${MINTBENCH_BIN:=$SRC_DIR/build/ca_mint_bench}"
BENCH_MINTS=${BENCH_MINTS:-2000}
BENCH_NAMES=${BENCH_NAMES:-10000}
BENCH_SECS=${BENCH_SECS:-5}
BENCH_CONC=${BENCH_CONC:-4}

bench_require_sides acmedge
[ -x "$HSLOAD_BIN" ] || { echo "ca.sh: no hsload binary at $HSLOAD_BIN" >&2; exit 2; }
[ -x "$MINTBENCH_BIN" ] || { echo "ca.sh: no ca_mint_bench binary at $MINTBENCH_BIN" >&2; exit 2; }
ae_setup

mint=$("$MINTBENCH_BIN" -n "$BENCH_MINTS" "$T/mintca" | tail -1)
echo "mint: $mint"

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

field() { sed -n "s/.* $1=\\([0-9.]*\\).*/\\1/p" <<<"$mint"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
printf '\n%-44s %12s %10s\n' "" value target
printf '%-44s %9s us %10s\n' "mint CPU per leaf (keygen + sign + PEM)" "$(field mint_us)" "<= 300"
printf '%-44s %9s us\n' "mint parsed into a served certificate" "$(field mint_cert_us)"
printf '%-44s %9s B\n' "heap per minted leaf in the leaf cache" "$(field leafcache_bytes)"
printf '%-44s %9s B\n' "heap per certificate in the certificate store" "$(field certstore_bytes)"
printf '%-44s %12s %10s\n' "leaf cache / certificate store" "$(ratio "$(field leafcache_bytes)" "$(field certstore_bytes)")" "<= 1"

printf '\n%-10s %16s %18s %26s\n' fallback "new names hs/s" "known names hs/s" "first/cached handshake cost"
for side in internal default; do
  printf '%-10s %16s %18s %26s\n' "$side" "${first[$side]}" "${cached[$side]}" "$(ratio "${cached[$side]}" "${first[$side]}")"
done
printf '%-10s %16s %18s\n' "int/def" "$(ratio "${first[internal]}" "${first[default]}")" \
  "$(ratio "${cached[internal]}" "${cached[default]}")"
echo "(first/cached handshake cost for \"internal\": target <= 2)"
