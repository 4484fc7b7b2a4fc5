#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Time to certificate: from the first ClientHello for a new name to the first handshake served with
# the certificate issued for it, for 1 and for 50 concurrent new names, acmedge side by side with
# Caddy's on-demand TLS. Each side gets its own Pebble (validating on that side's ports), started
# fresh for every phase; one side runs at a time. Also counts the orders each side caused at Pebble.
#
# Usage: bench/ttc.sh            (ACMEDGE_BIN defaults to build/acmedge in the source tree)
# Environment:
#   ACMEDGE_BIN        acmedge binary
#   CADDY_BIN          caddy binary (default: caddy)
#   TTC_NAMES          name counts to measure (default: "1 50")
#   TTC_SIDES          sides to measure (default: "acmedge caddy")
#   TTC_DEFAULTS       1 (default) = for N > 1 also measure acmedge with the shipped on_demand
#                      defaults (max_concurrent 8, rate 60/min burst 60): row "acmedge-defaults"
#   TTC_TIMEOUT        seconds after which a name counts as a failure (default 60)
#   TTC_NONCEREJECT    Pebble's PEBBLE_WFE_NONCEREJECT percentage (default 0)
#   TTC_VERBOSE        1 = print the per-name times
#   AE_KEEP            1 = keep the work dir (logs of every phase)
#
# Everything listens on and talks to 127.0.0.1 only. Every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
# shellcheck source=lib/ttc.sh
source "$BENCH_DIR/lib/ttc.sh"

TTC_NAMES=${TTC_NAMES:-"1 50"}
TTC_SIDES=${TTC_SIDES:-"acmedge caddy"}
TTC_DEFAULTS=${TTC_DEFAULTS:-1}
TTC_TIMEOUT=${TTC_TIMEOUT:-60}
TTC_VERBOSE=${TTC_VERBOSE:-0}
export PEBBLE_WFE_NONCEREJECT=${TTC_NONCEREJECT:-0}
# Every name must really be validated: no authorization reuse.
export PEBBLE_AUTHZREUSE=0

bench_require_sides "$TTC_SIDES"
bench_require_tools pebble pebble-challtestsrv certtool curl
bench_base ttc

# ttc_client TIMEOUT NAME... : runs the measuring client against the current side; output in
# $T/client.last (and appended to $T/client.out). Not to be called in a command substitution (the
# signal traps must stay able to interrupt the wait).
ttc_client() {
  local timeout=$1
  shift
  # In the background and waited for, so INT/TERM interrupt the wait and the trap stops it at once.
  "$AE_PY" "$BENCH_DIR/tools/ttc_client.py" --port "$AE_HTTPS_PORT" --ca "$T/pebble-root.pem" \
    --timeout "$timeout" "$@" >"$T/client.last" &
  local pid=$!
  echo "$pid" >>"$T/.pids"
  wait "$pid" || ae_fail "measuring client exited with an error"
  cat "$T/client.last" >>"$T/client.out"
}

# run_phase SIDE N [LABEL] [ACMEDGE_JSON_OVERRIDES] : fresh Pebble + fresh server, one warm-up
# name (registers the account, so the measured names see a steady server), then N new names at
# once. Appends "N LABEL median p90 max orders failures" to $RESULTS.
run_phase() {
  local side=$1 n=$2 label=${3:-$1} overrides=${4:-} warm summary base orders i
  bench_run_dir "$BASE/$label-$n"
  case $side in
  acmedge)
    ae_config_write "$T/acmedge.json" "$overrides"
    acmedge_start "$T/acmedge.json"
    ;;
  caddy)
    caddy_start ask_server.py
    ;;
  esac

  ttc_client 30 "warmup.example.test"
  warm=$(grep '^summary ' "$T/client.last")
  [ "$(_field ok "$warm")" = 1 ] || ae_fail "$label: warm-up name was not issued within 30 s ($warm)"
  base=$(pebble_count_orders)

  local -a names=()
  for ((i = 1; i <= n; i++)); do
    names+=("ttc$i-n$n.example.test")
  done
  echo "# $(date +%T) $label: $n new name(s)..." >&2
  ttc_client "$TTC_TIMEOUT" "${names[@]}"
  summary=$(grep '^summary ' "$T/client.last")
  # Orders a side would place after the names verified (duplicates) show up in a short settle time.
  sleep 1
  orders=$(($(pebble_count_orders) - base))
  if [ "$TTC_VERBOSE" = "1" ]; then
    grep -v '^summary ' "$T/client.last" | sed "s/^/  $label: /" >&2
  fi
  grep '^fail ' "$T/client.last" | sed -n 1,5p | sed "s/^/  $label: /" >&2 || true
  echo "$n $label $(_field median "$summary") $(_field p90 "$summary") $(_field max "$summary") $orders $(_field failures "$summary")" >>"$RESULTS"
  bench_run_stop
}

AE_OVERRIDES='{"on_demand": {"first_handshake": "default", "max_concurrent": 50,
  "rate": {"burst": 100, "per_minute": 600}}, "log": {"level": "info"}}'
AE_OVERRIDES_DEFAULTS='{"on_demand": {"first_handshake": "default"}, "log": {"level": "info"}}'

started=$(date +%s)
for n in $TTC_NAMES; do
  for side in $TTC_SIDES; do
    run_phase "$side" "$n" "$side" "$AE_OVERRIDES"
    if [ "$side" = acmedge ] && [ "$TTC_DEFAULTS" = 1 ] && [ "$n" -gt 1 ]; then
      run_phase acmedge "$n" acmedge-defaults "$AE_OVERRIDES_DEFAULTS"
    fi
  done
done

echo
echo "Time to certificate ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, Pebble with PEBBLE_AUTHZREUSE=0" \
  "PEBBLE_WFE_NONCEREJECT=$PEBBLE_WFE_NONCEREJECT PEBBLE_VA_NOSLEEP=1)"
echo "acmedge: first_handshake default, max_concurrent 50, rate burst 100 per_minute 600;" \
  "acmedge-defaults: shipped on_demand defaults; caddy: $("${CADDY_BIN:-caddy}" version 2>/dev/null | sed -n 1p | cut -d' ' -f1) on_demand_tls"
printf '%-6s %-17s %9s %7s %7s %7s %9s\n' names side median_s p90_s max_s orders failures
while read -r n label med p90 max orders fails; do
  printf '%-6s %-17s %9s %7s %7s %7s %9s\n' "$n" "$label" "$med" "$p90" "$max" "$orders/$n" "$fails"
done <"$RESULTS"
echo
for n in $TTC_NAMES; do
  c=$(awk -v n="$n" '$1 == n && $2 == "caddy" {print $3}' "$RESULTS")
  for label in acmedge acmedge-defaults; do
    a=$(awk -v n="$n" -v l="$label" '$1 == n && $2 == l {print $3}' "$RESULTS")
    if [ -n "$a" ] && [ -n "$c" ] && [ "$a" != "-" ] && [ "$c" != "-" ]; then
      awk -v n="$n" -v a="$a" -v c="$c" -v l="$label" 'BEGIN {
        if (c > 0) printf "ratio %s/caddy of medians, %s name(s): %.3f\n", l, n, a / c
        else printf "ratio %s/caddy of medians, %s name(s): n/a (caddy median 0)\n", l, n }'
    fi
  done
done
echo "total bench time: $(($(date +%s) - started)) s"
