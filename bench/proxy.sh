#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Reverse-proxy throughput: HTTPS keep-alive requests through acmedge, Caddy's reverse_proxy and
# nginx as a TLS reverse proxy, side by side in one run, same certificate, one worker each, all to
# the same fast upstream (nginx serving a small file on loopback, upstream keep-alive on).
#
# For each proxy: a warm-up, then wrk for BENCH_SECS; reports requests/s, p99 latency, and the
# proxy's CPU time per request (utime+stime of its processes from /proc, since wrk and the upstream
# share the cores), then the acmedge/caddy and acmedge/nginx ratios. Then RSS growth per 1000 idle
# keep-alive client connections (each has made one request) for each proxy.
#
# Usage: bench/proxy.sh
# Environment:
#   ACMEDGE_BIN   acmedge binary (default: build/acmedge)
#   CADDY_BIN     caddy binary (default: caddy)
#   NGINX_BIN     nginx binary (default: nginx)
#   BENCH_SECS    seconds of load per proxy (default 10)
#   BENCH_CONNS   wrk connections (default 32)
#   BENCH_IDLE    idle connections for the RSS measurement (default 1000; 0 = skip)
#   BENCH_SIDES   proxies to measure (default "acmedge caddy nginx")
#   BENCH_ROUNDS  rounds over all proxies; the best round per proxy is reported (default 1)
#   AE_KEEP=1     keep the work dir
# Everything listens on and talks to 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
BENCH_SECS=${BENCH_SECS:-10}
BENCH_CONNS=${BENCH_CONNS:-32}
BENCH_IDLE=${BENCH_IDLE:-1000}
BENCH_SIDES=${BENCH_SIDES:-"acmedge caddy nginx"}
BENCH_ROUNDS=${BENCH_ROUNDS:-1}
CLIENT="$SRC_DIR/tests/integration/upstreams/proxy_client.py"

bench_require_sides acmedge
bench_require_tools wrk certtool curl "$NGINX_BIN" "$CADDY_BIN"

ae_setup
chmod 755 "$T"
HOST=localhost   # resolves to loopback without touching /etc/hosts; wrk sends it as SNI and Host

# ---- certificate (CA + leaf for localhost), shared by the three proxies -------------------------
ca_host=127.0.0.1_9 # ae_config_write's dummy ACME directory https://127.0.0.1:9/dir
CERTDIR=$T/storage/certs/$ca_host/$HOST
mkdir -p "$CERTDIR"
bench_ca "$T/ca"
printf 'cn = "%s"\ndns_name = "%s"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' \
  "$HOST" "$HOST" >"$T/ca/leaf.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$CERTDIR/key.pem" >/dev/null 2>&1
certtool --generate-certificate --load-privkey "$CERTDIR/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
  --load-ca-privkey "$T/ca/ca.key" --template "$T/ca/leaf.tmpl" --outfile "$T/ca/leaf.pem" >/dev/null 2>&1
cat "$T/ca/leaf.pem" "$T/ca/ca.pem" >"$CERTDIR/cert.pem"
chmod 644 "$CERTDIR/key.pem"   # nginx workers and caddy read it too (throwaway key)
CERT=$CERTDIR/cert.pem
KEY=$CERTDIR/key.pem

# ---- the upstream: nginx serving a small file -----------------------------------------------------
UP_PORT=$(ae_free_port)
mkdir -p "$T/up/www" "$T/up/tmp" "$T/up/logs"
head -c 768 /dev/urandom | base64 -w 0 >"$T/up/www/small.txt"
chmod -R a+rX "$T/up"
cat >"$T/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/up/nginx.pid;
error_log $T/up/logs/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $T/up/tmp/body; proxy_temp_path $T/up/tmp/proxy; fastcgi_temp_path $T/up/tmp/fcgi;
  uwsgi_temp_path $T/up/tmp/uwsgi; scgi_temp_path $T/up/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  server {
    listen 127.0.0.1:$UP_PORT;
    root $T/up/www;
  }
}
EOF
ae_bg upstream "$NGINX_BIN" -p "$T/up" -c "$T/up/nginx.conf" -e "$T/up/logs/error.log"
ae_wait_for ae_port_open "$UP_PORT" || ae_fail "upstream nginx did not start"
curl -sf "http://127.0.0.1:$UP_PORT/small.txt" -o /dev/null || ae_fail "upstream does not serve the file"

# ---- helpers ----------------------------------------------------------------------------------------
# to_ms VALUE-WITH-UNIT : wrk latency ("812.00us", "1.20ms", "1.01s") in milliseconds.
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
    else printf "%s", v }'
}

# measure SIDE PORT MAINPID : warm-up, then one timed wrk run; appends a result line.
measure() {
  local side=$1 port=$2 pid=$3 out reqs rate p99 cpu_us per url
  url="https://$HOST:$port/small.txt"
  curl -sf --cacert "$T/ca/ca.pem" "$url" -o /dev/null || ae_fail "$side does not proxy $url"
  wrk -t 1 -c "$BENCH_CONNS" -d 2s "$url" >/dev/null 2>&1 || true
  cpu_sample_start "$pid"
  out=$(wrk -t 1 -c "$BENCH_CONNS" -d "${BENCH_SECS}s" --latency "$url" 2>&1)
  cpu_us=$(cpu_sample_end 1000000)
  echo "$out" >"$T/wrk-$side.out"
  if grep -q 'Non-2xx' <<<"$out"; then
    ae_fail "$side answered errors: $(grep 'Non-2xx' <<<"$out")"
  fi
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
  rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
  p99=$(to_ms "$(awk '$1 == "99%" { print $2 }' <<<"$out")")
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || ae_fail "$side: wrk made no requests: $out"
  per=$(awk -v c="$cpu_us" -v n="$reqs" 'BEGIN { printf "%.1f", c / n }')
  echo "$side $reqs $rate $p99 $per" >>"$T/results"
}

# idle_rss SIDE PORT MAINPID : RSS growth of the proxy per 1000 idle keep-alive connections.
idle_rss() {
  local side=$1 port=$2 pid=$3 pids before after cpid i
  [ "$BENCH_IDLE" -gt 0 ] || return 0
  mapfile -t pids < <(proc_family "$pid")
  sleep 0.5
  before=$(rss_kb "${pids[@]}")
  rm -f "$T/idle.ready"
  "$AE_PY" "$CLIENT" idle --port "$port" --sni "$HOST" --count "$BENCH_IDLE" --hold 60 \
    --ready "$T/idle.ready" >"$T/idle-$side.log" 2>&1 &
  cpid=$!
  for ((i = 0; i < 600; i++)); do
    [ -s "$T/idle.ready" ] && break
    kill -0 "$cpid" 2>/dev/null || ae_fail "$side: idle client failed: $(tail -3 "$T/idle-$side.log")"
    sleep 0.1
  done
  [ -s "$T/idle.ready" ] || ae_fail "$side: idle connections not established in 60 s"
  sleep 1
  after=$(rss_kb "${pids[@]}")
  kill "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  awk -v s="$side" -v b="$before" -v a="$after" -v n="$BENCH_IDLE" \
    'BEGIN { printf "%s %d %d %.0f\n", s, b, a, (a - b) * 1000 / n }' >>"$T/idle"
}

# ---- acmedge ----------------------------------------------------------------------------------------
run_acmedge() {
  ae_config_write "$T/acmedge.json" "{\"workers\": 1, \"on_demand\": {\"enabled\": false},
    \"routes\": [{\"hosts\": [\"$HOST\"], \"upstream\": \"127.0.0.1:$UP_PORT\"}],
    \"tls\": {\"max_connections\": 100000}, \"log\": {\"level\": \"warn\"}}"
  acmedge_start "$T/acmedge.json"
  "measure_$1" acmedge "$AE_HTTPS_PORT" "$ACMEDGE_PID"
  acmedge_stop
}

# ---- Caddy: reverse_proxy, JSON config, automatic HTTPS off, the same certificate ------------------
run_caddy() {
  local port d=$T/caddy pid
  port=$(ae_free_port)
  mkdir -p "$d"
  cat >"$d/caddy.json" <<EOF
{
  "admin": {"disabled": true},
  "logging": {"logs": {"default": {"level": "ERROR"}}},
  "storage": {"module": "file_system", "root": "$d/data"},
  "apps": {
    "tls": {"certificates": {"load_files": [{"certificate": "$CERT", "key": "$KEY"}]}},
    "http": {"servers": {"bench": {
      "listen": ["127.0.0.1:$port"],
      "automatic_https": {"disable": true},
      "tls_connection_policies": [{}],
      "routes": [{"handle": [{"handler": "reverse_proxy", "upstreams": [{"dial": "127.0.0.1:$UP_PORT"}]}]}]
    }}}
  }
}
EOF
  HOME=$d XDG_DATA_HOME=$d/data XDG_CONFIG_HOME=$d/config GOMAXPROCS=1 \
    ae_bg caddy "$CADDY_BIN" run --config "$d/caddy.json"
  pid=$(cat "$T/caddy.pid")
  ae_wait_for ae_port_open "$port" || ae_fail "caddy did not listen on $port"
  "measure_$1" caddy "$port" "$pid"
  ae_kill_pid "$pid" 50
}

# ---- nginx as TLS reverse proxy, upstream keep-alive ------------------------------------------------
run_nginx() {
  local port d=$T/px
  port=$(ae_free_port)
  mkdir -p "$d/tmp" "$d/logs"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $d/nginx.pid;
error_log $d/logs/error.log warn;
events { worker_connections 16384; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy; fastcgi_temp_path $d/tmp/fcgi;
  uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_prefer_server_ciphers on;
  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
  ssl_ecdh_curve X25519:prime256v1;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 32; }
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $CERT; ssl_certificate_key $KEY;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
    }
  }
}
EOF
  nginx_start "$d" "$port"
  "measure_$1" nginx "$port" "$NGINX_PID"
  ae_kill_pid "$NGINX_PID" 50
}

measure_load() { measure "$@"; }
measure_idle() { idle_rss "$@"; }

: >"$T/results"
: >"$T/idle"
for ((round = 1; round <= BENCH_ROUNDS; round++)); do
  for side in $BENCH_SIDES; do
    echo "round $round: $side (${BENCH_SECS}s, $BENCH_CONNS connections)..." >&2
    "run_$side" load
  done
done
if [ "$BENCH_IDLE" -gt 0 ]; then
  for side in $BENCH_SIDES; do
    echo "idle connections: $side ($BENCH_IDLE)..." >&2
    "run_$side" idle
  done
fi

# ---- report ----------------------------------------------------------------------------------------------
# Best round per proxy (highest requests/s).
sort -k1,1 -k3,3gr "$T/results" | awk '!seen[$1]++' >"$T/best"
echo
echo "HTTPS keep-alive GET of a 1 KiB file through the proxy, wrk -t1 -c$BENCH_CONNS, ${BENCH_SECS}s," \
  "1 worker each, $(nproc) cores shared with wrk and the upstream"
printf '%-8s %10s %10s %9s %16s\n' proxy requests "req/s" "p99 ms" "CPU us / req"
for side in $BENCH_SIDES; do
  awk -v s="$side" '$1 == s { printf "%-8s %10s %10.0f %9s %16s\n", $1, $2, $3, $4, $5 }' "$T/best"
done
ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "n/a" }'
}
get() { awk -v s="$1" -v f="$2" '$1 == s { print $f }' "$T/best"; }
if grep -q '^acmedge ' "$T/best"; then
  for other in caddy nginx; do
    grep -q "^$other " "$T/best" || continue
    echo "acmedge/$other: req/s $(ratio "$(get acmedge 3)" "$(get $other 3)")," \
      "p99 $(ratio "$(get acmedge 4)" "$(get $other 4)")," \
      "CPU per request $(ratio "$(get acmedge 5)" "$(get $other 5)")"
  done
fi
if [ -s "$T/idle" ]; then
  echo
  echo "RSS with $BENCH_IDLE idle keep-alive TLS connections (one request made on each)"
  printf '%-8s %12s %12s %18s\n' proxy "before kB" "after kB" "kB per 1000 conns"
  while read -r side before after per; do
    printf '%-8s %12s %12s %18s\n' "$side" "$before" "$after" "$per"
  done <"$T/idle"
fi
