#!/usr/bin/env bash
# Many names, side by side in one run: for N stored certificates, acmedge's start-up to the first
# served handshake, the background index scan, RSS with a cache of 100,000 hot names, server CPU
# per handshake for a cached name (ratio to N = 1) and the first handshake of a cold stored name
# (read from storage; p50 latency against a cached one); nginx with 1,000 and 10,000 server
# blocks and Caddy on-demand with 10,000 stored certificates for reference.
#
#   ACMEDGE_BIN=build/acmedge HSLOAD_BIN=build/hsload bench/scale.sh
#
# Environment:
#   SCALE_NS      stored-name counts for acmedge (default "1 1000 100000 1000000")
#   NGINX_NS      server-block counts for nginx (default "1000 10000"; "" skips nginx)
#   CADDY_NS      stored names for Caddy on-demand (default "10000"; "" skips Caddy)
#   SCALE_CACHE   cert_cache.max_entries (default 100000)
#   SCALE_TOUCH   names touched once, cold, for RSS and the cold figures (default 100000, <= N)
#   SCALE_HOT     cached names the CPU figure cycles over (default 1000, <= N)
#   SCALE_HS      handshakes for the cached CPU figure (default 20000)
#   TREE_DIR      where generated storage trees are kept between runs (/var/tmp/acmedge-bench)
# Generating certificates: one CA signs every leaf and all leaves share one key, hard-linked
# (key.pem per name is a link; ext4 allows 65,000 links, so one key file per 50,000 names), so a
# name costs one signature; a tree is generated once per N (nice -n 10, two processes) and reused
# by later runs (tree-N/.complete). Every phase prints how long it took.
set -euo pipefail
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
source "$BENCH_DIR/lib/common.sh"
source "$BENCH_DIR/lib/scale_trees.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
: "${SCALE_NS:=1 1000 100000 1000000}"
NGINX_NS=${NGINX_NS-1000 10000}
CADDY_NS=${CADDY_NS-10000}
: "${SCALE_CACHE:=100000}"
: "${SCALE_TOUCH:=100000}"
: "${SCALE_HOT:=1000}"
: "${SCALE_HS:=20000}"
: "${TREE_DIR:=/var/tmp/acmedge-bench}"
: "${CADDY_BIN:=caddy}"
bench_require_sides acmedge
bench_require_tools "$HSLOAD_BIN" gnutls-cli python3
bench_base scale
BENCH_T0=$(date +%s%N)

min() { echo $(($1 < $2 ? $1 : $2)); }

# first_hs NAME PORT T0_MS [soft] : waits for a handshake with SNI NAME to succeed; prints the ms
# since T0_MS. With "soft", prints "-" after 120 s instead of failing.
first_hs() {
  local name=$1 port=$2 t0=$3 soft=${4:-} i
  for ((i = 0; i < 12000; i++)); do
    if ae_port_open "$port" &&
      timeout 5 gnutls-cli --insecure --sni-hostname="$name" -p "$port" 127.0.0.1 </dev/null >/dev/null 2>&1; then
      echo $(($(now_ms) - t0))
      return 0
    fi
    sleep 0.01
  done
  [ -n "$soft" ] && echo - && return 0
  ae_fail "no handshake for $name within 120 s"
}

# hs_pass FILE COUNT PORT [EXTRA...] : hsload over FILE; prints its RESULT line.
hs_pass() {
  local f=$1 n=$2 port=$3 out
  shift 3
  out=$("$HSLOAD_BIN" -c 2 -n "$n" --sni-file "$f" --latency "$@" 127.0.0.1 "$port" 2>&1 | tail -1)
  [ "$(_field failed "$out")" = "0" ] || ae_fail "handshakes failed: $out"
  echo "$out"
}

run_acmedge() {
  local n=$1 d tr touch hot t0 start_ms scan_ms rss0 rss1 cpu0 cpu1 cpu1b cpu2 out cold_p50 cached_p50 cold cached name
  tr=$(tree "$n")
  d=$BASE/acmedge-$n
  run_dir "$d"
  echo "acmedge, N=$n stored names (cache $SCALE_CACHE):"
  touch=$(min "$n" "$SCALE_TOUCH")
  hot=$(min "$n" "$SCALE_HOT")
  awk -v m="$touch" 'NR <= m {print $1}' "$tr/serials.txt" >"$d/touch.txt"
  tail -n "$hot" "$d/touch.txt" >"$d/hot.txt"
  ae_config_write "$d/acmedge.json" "{\"on_demand\": {\"enabled\": false}, \"storage\": {\"path\": \"$tr/storage\"},
    \"log\": {\"level\": \"info\"}, \"cert_cache\": {\"max_entries\": $SCALE_CACHE}}"
  name=$(tail -1 "$tr/serials.txt" | awk '{print $1}')
  t0=$(now_ms)
  ae_bg acmedge env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$ACMEDGE_BIN" run -c "$d/acmedge.json"
  ACMEDGE_PID=$(cat "$d/acmedge.pid")
  start_ms=$(first_hs "$name" "$AE_HTTPS_PORT" "$t0")
  echo "  [phase] start -> first handshake (a stored name, read from storage): $start_ms ms"
  # The renewal index scan runs in the background; CPU figures wait for it.
  wait_log "$d/acmedge.log" "indexed .* stored certificate" 1800 || ae_fail "index scan did not finish"
  scan_ms=$(($(now_ms) - t0))
  echo "  [phase] start -> renewal index built: $scan_ms ms"
  rss0=$(rss_kib "$ACMEDGE_PID")
  cpu0=$(cpu_ms "$ACMEDGE_PID")
  t0=$(now_ms)
  out=$(hs_pass "$d/touch.txt" "$touch" "$AE_HTTPS_PORT" --in-order)
  cpu1=$(cpu_ms "$ACMEDGE_PID")
  rss1=$(rss_kib "$ACMEDGE_PID")
  cold_p50=$(_field p50_ms "$out")
  phase "touch $touch names once (cold: read from storage)" "$t0"
  hs_pass "$d/hot.txt" "$hot" "$AE_HTTPS_PORT" --in-order >/dev/null # the hot set is cached
  cpu1b=$(cpu_ms "$ACMEDGE_PID")
  t0=$(now_ms)
  out=$(hs_pass "$d/hot.txt" "$SCALE_HS" "$AE_HTTPS_PORT")
  cpu2=$(cpu_ms "$ACMEDGE_PID")
  cached_p50=$(_field p50_ms "$out")
  phase "$SCALE_HS handshakes over $hot cached names" "$t0"
  cold=$(awk -v a="$cpu0" -v b="$cpu1" -v n="$touch" 'BEGIN{printf "%.3f", (b-a)/n}')
  cached=$(awk -v a="$cpu1b" -v b="$cpu2" -v n="$SCALE_HS" 'BEGIN{printf "%.3f", (b-a)/n}')
  echo "  RSS ${rss0} KiB after the scan, ${rss1} KiB with $touch touched" \
    "($(awk -v a="$rss0" -v b="$rss1" -v n="$touch" 'BEGIN{printf "%.2f", (b-a)/n}') KiB/name);" \
    "server CPU/handshake cold ${cold} ms, cached ${cached} ms; p50 latency cold ${cold_p50} ms, cached ${cached_p50} ms"
  echo "acmedge $n start_ms=$start_ms scan_ms=$scan_ms rss_scan_kib=$rss0 rss_touched_kib=$rss1 touched=$touch" \
    "cold_cpu_ms=$cold cached_cpu_ms=$cached cold_p50_ms=$cold_p50 cached_p50_ms=$cached_p50" >>"$RESULTS"
  bench_run_stop
}

run_nginx() {
  local n=$1 d tr t0 start_ms name rss
  tr=$(tree "$(echo "$SCALE_NS" | tr ' ' '\n' | sort -n | tail -1)")
  [ "$(wc -l <"$tr/serials.txt")" -ge "$n" ] || tr=$(tree "$n")
  d=$BASE/nginx-$n
  run_dir "$d"
  echo "nginx, $n server blocks:"
  mkdir -p "$d/logs"
  head -n "$n" "$tr/serials.txt" | awk -v p="$AE_HTTPS_PORT" -v s="$tr/storage/certs/127.0.0.1_9" -v d="$d" '
    BEGIN { print "worker_processes 1; pid " d "/nginx.pid.file; events { worker_connections 1024; }"
            print "http { access_log off; error_log " d "/logs/error.log;" }
    { print "server { listen 127.0.0.1:" p " ssl; server_name " $1 "; ssl_certificate " s "/" $1 "/cert.pem;" \
            " ssl_certificate_key " s "/" $1 "/key.pem; return 204; }" }
    END { print "}" }' >"$d/nginx.conf"
  name=$(head -n "$n" "$tr/serials.txt" | tail -1 | awk '{print $1}')
  t0=$(now_ms)
  ae_bg nginx "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" -g "daemon off;"
  start_ms=$(first_hs "$name" "$AE_HTTPS_PORT" "$t0")
  rss=$(_proc_sum rss_kib $(proc_family "$(cat "$d/nginx.pid")"))
  echo "  [phase] start -> first handshake: $start_ms ms; RSS (master + worker) $rss KiB"
  echo "nginx $n start_ms=$start_ms rss_kib=$rss" >>"$RESULTS"
  bench_run_stop
}

# Caddy reads on-demand certificates from its storage (certmagic layout) at the first handshake
# for a name: the same certificates, linked into certificates/<issuer>/<name>/.
run_caddy() {
  local n=$1 d tr t0 start_ms name ask_port rss st
  tr=$(tree "$(echo "$SCALE_NS" | tr ' ' '\n' | sort -n | tail -1)")
  [ "$(wc -l <"$tr/serials.txt")" -ge "$n" ] || tr=$(tree "$n")
  d=$BASE/caddy-$n
  run_dir "$d"
  echo "Caddy on-demand, $n stored names:"
  t0=$(now_ms)
  st=$d/caddy-storage/certificates/127.0.0.1-9-dir
  head -n "$n" "$tr/serials.txt" | python3 -c '
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
for line in sys.stdin:
    name = line.split()[0]
    os.makedirs(os.path.join(dst, name))
    os.link(os.path.join(src, name, "cert.pem"), os.path.join(dst, name, name + ".crt"))
    os.link(os.path.join(src, name, "key.pem"), os.path.join(dst, name, name + ".key"))
    with open(os.path.join(dst, name, name + ".json"), "w") as f:
        json.dump({"sans": [name], "issuer_data": {}}, f)
' "$tr/storage/certs/127.0.0.1_9" "$st"
  phase "lay out $n certificates for Caddy (links)" "$t0"
  ask_port=$(ae_free_port)
  ae_bg ask python3 "$BENCH_DIR/tools/ask_server.py" "$ask_port"
  ae_wait_for ae_port_open "$ask_port" || ae_fail "ask server did not start"
  cat >"$d/caddy.json" <<EOF
{ "admin": { "disabled": true },
  "storage": { "module": "file_system", "root": "$d/caddy-storage" },
  "apps": {
    "http": { "http_port": $AE_HTTP_PORT, "https_port": $AE_HTTPS_PORT,
      "servers": { "srv0": { "listen": ["127.0.0.1:$AE_HTTPS_PORT"],
        "routes": [ { "handle": [ { "handler": "static_response", "body": "ok" } ] } ],
        "tls_connection_policies": [ {} ] } } },
    "tls": { "automation": {
        "policies": [ { "issuers": [ { "module": "acme", "ca": "https://127.0.0.1:9/dir" } ],
                        "on_demand": true, "disable_ocsp_stapling": true } ],
        "on_demand": { "ask": "http://127.0.0.1:$ask_port/ok" } },
      "disable_ocsp_stapling": true } } }
EOF
  name=$(head -n "$n" "$tr/serials.txt" | tail -1 | awk '{print $1}')
  t0=$(now_ms)
  caddy_run "$d/caddy.json"
  start_ms=$(first_hs "$name" "$AE_HTTPS_PORT" "$t0" soft)
  rss=$(rss_kib "$CADDY_PID")
  echo "  [phase] start -> first handshake (stored name): $start_ms ms; RSS $rss KiB"
  echo "caddy $n start_ms=$start_ms rss_kib=$rss" >>"$RESULTS"
  bench_run_stop
}

uptime
for n in $SCALE_NS; do run_acmedge "$n"; done
if command -v "$NGINX_BIN" >/dev/null; then
  for n in $NGINX_NS; do run_nginx "$n"; done
fi
if command -v "$CADDY_BIN" >/dev/null; then
  for n in $CADDY_NS; do run_caddy "$n"; done
fi
uptime
echo "---- results"
cat "$RESULTS"
echo "---- ratios"
awk '$1 == "acmedge" { for (i = 3; i <= NF; i++) { split($i, kv, "="); v[$2, kv[1]] = kv[2] } ns[++k] = $2 }
  END {
    base = ns[1]
    for (j = 1; j <= k; j++) {
      n = ns[j]
      printf "acmedge N=%s: cached CPU/handshake ratio to N=%s %.3f; cold/cached p50 latency %.2f; start %s ms\n",
        n, base, v[n, "cached_cpu_ms"] / v[base, "cached_cpu_ms"], v[n, "cold_p50_ms"] / v[n, "cached_p50_ms"], v[n, "start_ms"]
    } }' "$RESULTS"
echo "total: $((($(date +%s%N) - BENCH_T0) / 1000000)) ms"
