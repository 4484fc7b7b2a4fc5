#!/usr/bin/env bash
# Many names: start-up to the first served handshake with N stored certificates, RSS per cached
# name, and server CPU per handshake for a cold (read from storage) and a cached name; nginx with
# the same certificates as N server blocks for reference. One run, side by side.
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/scale.sh
#
# Environment:
#   SCALE_NS      stored-name counts for acmedge (default "1000 100000")
#   NGINX_NS      server-block counts for nginx (default "1000 10000"; "" skips nginx)
#   SCALE_TOUCH   names touched for the RSS and CPU figures (default 20000, at most N)
#   SCALE_CACHE   cert_cache.max_entries (default 100000)
# Every phase prints how long it took; generating certificates dominates for large N (one CA and
# one shared leaf key, so a signature per name).
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
source "$BENCH_DIR/lib/common.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${SCALE_NS:=1000 100000}"
: "${NGINX_NS-1000 10000}"
NGINX_NS=${NGINX_NS-1000 10000}
: "${SCALE_TOUCH:=20000}"
: "${SCALE_CACHE:=100000}"
bench_require_sides acmedge
bench_require_tools "$HSLOAD_BIN" gnutls-cli python3
bench_base scale

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# run_dir DIR : DIR becomes the current run ($T) with fresh loopback ports (no CA needed here).
run_dir() {
  T=$1
  export T
  mkdir -p "$T"
  : >"$T/.pids"
  : >"$T/.ports"
  unset AE_ADMIN_PORT PEBBLE_DIR PEBBLE_CA
  AE_HTTP_PORT=$(ae_free_port)
  AE_HTTPS_PORT=$(ae_free_port)
  export AE_HTTP_PORT AE_HTTPS_PORT
}

# gen DIR N : N stored names under DIR/storage (ca host "bench"), serials in DIR/serials.txt.
gen() {
  local d=$1 n=$2 t0
  t0=$(now_ms)
  python3 "$SRC_DIR/tests/integration/helpers/gen_stored_certs.py" --root "$d/storage" --ca-host bench \
    --count "$n" --prefix s --domain bench.test --serials "$d/serials.txt" 2>/dev/null
  echo "  generated $n certificates in $((($(now_ms) - t0))) ms"
}

# first_hs NAME PORT DEADLINE_MS : waits for a handshake with SNI NAME to succeed; prints ms.
first_hs() {
  local name=$1 port=$2 t0=$3 i
  for ((i = 0; i < 6000; i++)); do
    if ae_port_open "$port" &&
      timeout 5 gnutls-cli --insecure --sni-hostname="$name" -p "$port" 127.0.0.1 </dev/null >/dev/null 2>&1; then
      echo $(($(now_ms) - t0))
      return 0
    fi
    sleep 0.01
  done
  ae_fail "no handshake for $name within 60 s"
}

hs_pass() { # FILE COUNT PORT : prints "ok failed"
  local out
  out=$("$HSLOAD_BIN" -c 2 -n "$2" --sni-file "$1" --in-order 127.0.0.1 "$3" 2>&1 | tail -1)
  echo "$(_field ok "$out") $(_field failed "$out")"
}

run_acmedge() {
  local n=$1 d touch t0 start_ms rss0 rss1 cpu0 cpu1 cpu2 cold cached res
  d=$BASE/acmedge-$n
  run_dir "$d"
  echo "acmedge, N=$n:"
  # The storage's CA host comes from the directory URL; no CA is contacted (on_demand off).
  gen "$d" "$n"
  mv "$d/storage/certs/bench" "$d/storage/certs/127.0.0.1_9"
  touch=$((n < SCALE_TOUCH ? n : SCALE_TOUCH))
  awk -v m="$touch" 'NR <= m {print $1}' "$d/serials.txt" >"$d/names.txt"
  ae_config_write "$d/acmedge.json" "{\"on_demand\": {\"enabled\": false},
    \"log\": {\"level\": \"info\"}, \"cert_cache\": {\"max_entries\": $SCALE_CACHE}}"
  t0=$(now_ms)
  ae_bg acmedge env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$ACMEDGE_BIN" run -c "$d/acmedge.json"
  ACMEDGE_PID=$(cat "$d/acmedge.pid")
  start_ms=$(first_hs "$(tail -1 "$d/names.txt")" "$AE_HTTPS_PORT" "$t0")
  rss0=$(rss_kib "$ACMEDGE_PID")
  cpu0=$(cpu_ms "$ACMEDGE_PID")
  res=$(hs_pass "$d/names.txt" "$touch" "$AE_HTTPS_PORT")
  cpu1=$(cpu_ms "$ACMEDGE_PID")
  rss1=$(rss_kib "$ACMEDGE_PID")
  res="$res / $(hs_pass "$d/names.txt" "$touch" "$AE_HTTPS_PORT")"
  cpu2=$(cpu_ms "$ACMEDGE_PID")
  cold=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$touch" 'BEGIN{printf "%.3f", (b-a)/n}')
  cached=$(awk -v a="$cpu1" -v b="$cpu2" -v n="$touch" 'BEGIN{printf "%.3f", (b-a)/n}')
  echo "  start -> first handshake ${start_ms} ms; RSS ${rss0} KiB at start, ${rss1} KiB with $touch cached" \
    "($(awk -v a="$rss0" -v b="$rss1" -v n="$touch" 'BEGIN{printf "%.2f", (b-a)/n}') KiB/name);" \
    "server CPU per handshake: cold ${cold} ms, cached ${cached} ms (ok/failed: $res)"
  echo "acmedge $n start_ms=$start_ms rss_start_kib=$rss0 rss_cached_kib=$rss1 touched=$touch cold_ms=$cold cached_ms=$cached" >>"$RESULTS"
  bench_run_stop
  rm -rf "$d/storage"
}

run_nginx() {
  local n=$1 d t0 start_ms i name
  d=$BASE/nginx-$n
  run_dir "$d"
  echo "nginx, $n server blocks:"
  gen "$d" "$n"
  mkdir -p "$d/logs"
  {
    echo "worker_processes 1; pid $d/nginx.pid.file; events { worker_connections 1024; }"
    echo "http { access_log off; error_log $d/logs/error.log;"
    awk '{print $1}' "$d/serials.txt" | while read -r name; do
      echo "server { listen 127.0.0.1:$AE_HTTPS_PORT ssl; server_name $name;" \
        "ssl_certificate $d/storage/certs/bench/$name/cert.pem; ssl_certificate_key $d/storage/certs/bench/$name/key.pem; return 204; }"
    done
    echo "}"
  } >"$d/nginx.conf"
  name=$(awk 'END{print $1}' "$d/serials.txt")
  t0=$(now_ms)
  ae_bg nginx "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g "daemon off;"
  start_ms=$(first_hs "$name" "$AE_HTTPS_PORT" "$t0")
  echo "  start -> first handshake ${start_ms} ms; RSS $(_proc_sum rss_kib $(proc_family "$(cat "$d/nginx.pid")") 2>/dev/null || echo '?') KiB"
  echo "nginx $n start_ms=$start_ms" >>"$RESULTS"
  bench_run_stop
  rm -rf "$d/storage"
}

for n in $SCALE_NS; do run_acmedge "$n"; done
if command -v "$NGINX_BIN" >/dev/null; then
  for n in $NGINX_NS; do run_nginx "$n"; done
fi
echo "---- results"
cat "$RESULTS"
