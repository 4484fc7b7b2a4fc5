#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# HTTP/2 reverse proxy, side by side in one run: h2load -c 50 -m 10 over TLS through acmedge,
# nginx (http2 listener, upstream keep-alive, 1 worker) and Caddy (reverse_proxy, GOMAXPROCS=1),
# all to the same upstream (nginx serving a 1 KiB file, 1 worker), plus acmedge over HTTP/1.1
# (h2load --h1 -c 50) for its own h1 figure. Then RSS of acmedge and nginx with 1,000 idle h2
# connections, and with 100 connections x 100 open streams to an upstream that never answers.
#
# Reports, per proxy: req/s, p99 latency (from h2load's per-request log), the proxy's CPU time per
# request (utime+stime of its processes from /proc, since the client and the upstream share the
# cores), and a table of ratios against the targets of docs/http2.md.
#
# Usage: bench/h2.sh
# Environment:
#   ACMEDGE_BIN / NGINX_BIN / CADDY_BIN   binaries (defaults: build/acmedge, nginx, caddy)
#   BENCH_SECS     seconds of measured load per proxy (default 10, after a 2 s warm-up)
#   BENCH_IDLE     idle h2 connections for the RSS figure (default 1000; 0 = skip)
#   BENCH_STREAMS  "CONNS STREAMS" for the open-streams RSS figure (default "100 100"; "" = skip)
#   AE_KEEP=1      keep the work dir
# Everything listens on and talks to 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
BENCH_SECS=${BENCH_SECS:-10}
BENCH_IDLE=${BENCH_IDLE:-1000}
BENCH_STREAMS=${BENCH_STREAMS-"100 100"}
HOLD="$BENCH_DIR/tools/h2_hold.py"

bench_require_sides acmedge
bench_require_tools h2load certtool curl "$NGINX_BIN" "$CADDY_BIN"

ae_setup
chmod 755 "$T"
HOST=localhost # resolves to loopback; h2load sends it as SNI and :authority

# ---- certificate shared by the three proxies --------------------------------------------------------
CERTDIR=$T/storage/certs/127.0.0.1_9/$HOST
mkdir -p "$CERTDIR"
bench_ca "$T/ca"
printf 'cn = "%s"\ndns_name = "%s"\nip_address = "127.0.0.1"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' \
  "$HOST" "$HOST" >"$T/ca/leaf.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$CERTDIR/key.pem" >/dev/null 2>&1
certtool --generate-certificate --load-privkey "$CERTDIR/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
  --load-ca-privkey "$T/ca/ca.key" --template "$T/ca/leaf.tmpl" --outfile "$T/ca/leaf.pem" >/dev/null 2>&1
cat "$T/ca/leaf.pem" "$T/ca/ca.pem" >"$CERTDIR/cert.pem"
chmod 644 "$CERTDIR/key.pem" # nginx workers and caddy read it too (throwaway key)
CERT=$CERTDIR/cert.pem
KEY=$CERTDIR/key.pem

# ---- upstreams: nginx serving a small file; a Python upstream that holds every request ------------
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
  server { listen 127.0.0.1:$UP_PORT; root $T/up/www; }
}
EOF
ae_bg upstream "$NGINX_BIN" -p "$T/up" -c "$T/up/nginx.conf" -e "$T/up/logs/error.log"
ae_wait_for ae_port_open "$UP_PORT" || ae_fail "upstream nginx did not start"
curl -sf "http://127.0.0.1:$UP_PORT/small.txt" -o /dev/null || ae_fail "upstream does not serve the file"

# Each side sends its open streams to a fresh holding upstream (started in the open-streams phase).

# ---- one load run ------------------------------------------------------------------------------------
# measure LABEL PORT MAINPID ALPN CONNS STREAMS : warm-up, then h2load for BENCH_SECS; appends
# "LABEL req/s p99_ms cpu_us_per_req succeeded" to $T/results.
measure() {
  local label=$1 port=$2 pid=$3 alpn=$4 c=$5 m=$6 out ok rate p99 cpu_us per url
  url="https://$HOST:$port/small.txt"
  curl -sf -k "$url" -o /dev/null || ae_fail "$label does not proxy $url"
  h2load --npn-list="$alpn" -c "$c" -m "$m" -D 2 "$url" >/dev/null 2>&1 || true
  rm -f "$T/lat-$label.log"
  cpu_sample_start "$pid"
  out=$(timeout $((BENCH_SECS + 60)) h2load --npn-list="$alpn" -c "$c" -m "$m" -D "$BENCH_SECS" \
    --log-file="$T/lat-$label.log" "$url" 2>&1) || true
  cpu_us=$(cpu_sample_end 1000000)
  echo "$out" >"$T/h2load-$label.out"
  ok=$(sed -n 's/^requests: .* \([0-9]*\) succeeded.*/\1/p' <<<"$out")
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || ae_fail "$label: h2load made no successful request: $out"
  grep -q ' 0 failed, 0 errored' <<<"$out" || echo "$label: h2load reported failures: $(grep '^requests:' <<<"$out")" >&2
  grep -q '^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx' <<<"$out" ||
    echo "$label: non-2xx answers: $(grep '^status codes' <<<"$out")" >&2
  rate=$(awk -v n="$ok" -v s="$BENCH_SECS" 'BEGIN { printf "%.0f", n / s }')
  # --log-file: "start-µs<TAB>status<TAB>duration-µs" per request.
  p99=$(awk -F'\t' '{ print $3 }' "$T/lat-$label.log" | sort -n |
    awk '{ v[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.2f", v[i] / 1000 }')
  per=$(awk -v c="$cpu_us" -v n="$ok" 'BEGIN { printf "%.1f", c / n }')
  echo "$label $rate $p99 $per $ok" >>"$T/results"
}

# rss_phase SIDE PORT MAINPID KIND : RSS of the proxy (all its processes) before and while holding
# the idle connections (KIND idle) or the open streams (KIND streams); appends to $T/rss.
rss_phase() {
  local side=$1 port=$2 pid=$3 kind=$4 pids before after cpid i args want seen=-
  mapfile -t pids < <(proc_family "$pid")
  sleep 0.5
  before=$(rss_kb "${pids[@]}")
  rm -f "$T/hold.ready"
  if [ "$kind" = idle ]; then
    args=(idle --count "$BENCH_IDLE" --path /small.txt)
  else
    # shellcheck disable=SC2086 # two numbers
    set -- $BENCH_STREAMS
    args=(streams --conns "$1" --streams "$2" --path /hold)
    want=$(($1 * $2))
  fi
  "$AE_PY" "$HOLD" "${args[@]}" --port "$port" --sni "$HOST" --hold 120 --ready "$T/hold.ready" \
    >"$T/hold-$side-$kind.log" 2>&1 &
  cpid=$!
  for ((i = 0; i < 1200; i++)); do
    [ -s "$T/hold.ready" ] && break
    if ! kill -0 "$cpid" 2>/dev/null; then
      echo "$side: $kind client failed: $(tail -3 "$T/hold-$side-$kind.log")" >&2
      echo "$side $kind $before failed -" >>"$T/rss"
      return 0
    fi
    sleep 0.1
  done
  [ -s "$T/hold.ready" ] || ae_fail "$side: $kind connections not established in 120 s"
  if [ "$kind" = streams ]; then
    # Every stream has reached the upstream (bounded: 60 s), so the proxy holds all of them.
    seen=0
    for ((i = 0; i < 600; i++)); do
      seen=$(cat "$T/held.count" 2>/dev/null || echo 0)
      [ "$seen" -ge "$want" ] && break
      sleep 0.1
    done
    [ "$seen" -ge "$want" ] || echo "$side: only $seen of $want streams reached the upstream" >&2
  fi
  sleep 1
  after=$(rss_kb "${pids[@]}")
  kill "$cpid" 2>/dev/null || true
  wait "$cpid" 2>/dev/null || true
  echo "$side $kind $before $after $seen" >>"$T/rss"
}

# hold_upstream_start : a fresh holding upstream on HOLD_PORT (count in $T/held.count).
hold_upstream_start() {
  [ -n "${HOLD_PID:-}" ] && ae_kill_pid "$HOLD_PID" 20
  rm -f "$T/held.count"
  HOLD_PORT=$(ae_free_port)
  ae_bg holdup "$AE_PY" "$HOLD" upstream --port "$HOLD_PORT" --count-file "$T/held.count"
  HOLD_PID=$(cat "$T/holdup.pid")
  ae_wait_for ae_port_open "$HOLD_PORT" || ae_fail "holding upstream did not start"
}

phase() {
  local side=$1 port=$2 pid=$3
  case $PHASE in
  load)
    measure "$side" "$port" "$pid" h2 50 10
    if [ "$side" = acmedge ]; then measure acmedge-h1 "$port" "$pid" http/1.1 50 1; fi
    ;;
  idle) [ "$BENCH_IDLE" -gt 0 ] && rss_phase "$side" "$port" "$pid" idle ;;
  streams) [ -n "$BENCH_STREAMS" ] && rss_phase "$side" "$port" "$pid" streams ;;
  esac
  return 0
}

# ---- acmedge: 1 worker, upstream pool large enough for 500 concurrent streams -----------------------
run_acmedge() {
  local up=$UP_PORT
  [ "$PHASE" = streams ] && up=$HOLD_PORT
  ae_config_write "$T/acmedge.json" "{\"workers\": 1, \"on_demand\": {\"enabled\": false},
    \"routes\": [{\"hosts\": [\"$HOST\"], \"upstream\": \"127.0.0.1:$up\"}],
    \"proxy\": {\"pool_idle_max\": 1000, \"response_timeout_ms\": 120000},
    \"tls\": {\"max_connections\": 100000}, \"log\": {\"level\": \"warn\"}}"
  acmedge_start "$T/acmedge.json"
  phase acmedge "$AE_HTTPS_PORT" "$ACMEDGE_PID"
  acmedge_stop
}

# ---- nginx: http2 listener, upstream keep-alive, 1 worker ------------------------------------------------
run_nginx() {
  local port d=$T/px up=$UP_PORT
  [ "$PHASE" = streams ] && up=$HOLD_PORT
  port=$(ae_free_port)
  mkdir -p "$d/tmp" "$d/logs"
  cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile 30000;
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
  http2_max_concurrent_streams 100;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_ecdh_curve X25519:prime256v1;
  upstream up { server 127.0.0.1:$up; keepalive 1000; }
  server {
    listen 127.0.0.1:$port ssl http2;
    ssl_certificate $CERT; ssl_certificate_key $KEY;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$remote_addr;
      proxy_set_header X-Forwarded-Proto https;
      proxy_read_timeout 120s;
    }
  }
}
EOF
  nginx_start "$d" "$port"
  phase nginx "$port" "$NGINX_PID"
  ae_kill_pid "$NGINX_PID" 50
}

# ---- Caddy: reverse_proxy, GOMAXPROCS=1, the same certificate (req/s only) ---------------------------
run_caddy() {
  local port d=$T/caddy pid
  [ "$PHASE" = load ] || return 0
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
      "routes": [{"handle": [{"handler": "reverse_proxy",
        "transport": {"protocol": "http", "keep_alive": {"max_idle_conns_per_host": 1000}},
        "upstreams": [{"dial": "127.0.0.1:$UP_PORT"}]}]}]
    }}}
  }
}
EOF
  HOME=$d XDG_DATA_HOME=$d/data XDG_CONFIG_HOME=$d/config GOMAXPROCS=1 \
    ae_bg caddy "$CADDY_BIN" run --config "$d/caddy.json"
  pid=$(cat "$T/caddy.pid")
  ae_wait_for ae_port_open "$port" || ae_fail "caddy did not listen on $port"
  phase caddy "$port" "$pid"
  ae_kill_pid "$pid" 50
}

: >"$T/results"
: >"$T/rss"
for PHASE in load idle streams; do
  for side in acmedge nginx caddy; do
    [ "$PHASE" = streams ] && hold_upstream_start
    echo "$PHASE: $side..." >&2
    "run_$side"
  done
done

# ---- report ----------------------------------------------------------------------------------------------
get() { awk -v s="$1" -v f="$2" '$1 == s { print $f }' "$T/results"; }
rss() { awk -v s="$1" -v k="$2" -v f="$3" '$1 == s && $2 == k { print $f }' "$T/rss"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b; else printf "n/a" }'; }
verdict() { # verdict RATIO OP TARGET
  awk -v r="$1" -v op="$2" -v t="$3" 'BEGIN { if (r == "n/a") print "n/a";
    else if ((op == "<=" && r <= t) || (op == ">=" && r >= t)) print "met"; else print "MISSED" }'
}
echo
echo "HTTPS h2load -c 50 -m 10 (h1: -c 50 -m 1), GET of a 1 KiB file, ${BENCH_SECS}s after a 2 s warm-up;"
echo "1 worker / GOMAXPROCS=1 each; $(nproc) cores shared with h2load and the upstream nginx"
printf '%-11s %9s %9s %14s %11s\n' proxy "req/s" "p99 ms" "CPU us / req" requests
while read -r l r p c n; do
  printf '%-11s %9s %9s %14s %11s\n' "$l" "$r" "$p" "$c" "$n"
done <"$T/results"
echo
echo "RSS of the proxy's processes before and while holding $BENCH_IDLE idle h2 connections (one GET made on each)"
echo "and ${BENCH_STREAMS/ / connections x } streams the upstream never answers (streams: how many reached it)"
printf '%-8s %-8s %10s %10s %9s\n' proxy held "before kB" "while kB" streams
while read -r s k b a n; do printf '%-8s %-8s %10s %10s %9s\n' "$s" "$k" "$b" "$a" "$n"; done <"$T/rss"
echo
printf '%-40s %7s %9s %7s\n' "ratio" value target result
row() { printf '%-40s %7s %9s %7s\n' "$1" "$2" "$3 $4" "$(verdict "$2" "$3" "$4")"; }
row "CPU/request acmedge h2 / nginx h2" "$(ratio "$(get acmedge 4)" "$(get nginx 4)")" "<=" 1.0
row "CPU/request acmedge h2 / acmedge h1" "$(ratio "$(get acmedge 4)" "$(get acmedge-h1 4)")" "<=" 1.0
row "req/s acmedge / nginx" "$(ratio "$(get acmedge 2)" "$(get nginx 2)")" ">=" 0.9
row "req/s acmedge / caddy" "$(ratio "$(get acmedge 2)" "$(get caddy 2)")" ">=" 2.0
row "p99 acmedge / nginx" "$(ratio "$(get acmedge 3)" "$(get nginx 3)")" "<=" 1.2
row "RSS $BENCH_IDLE idle h2 conns acmedge / nginx" "$(ratio "$(rss acmedge idle 4)" "$(rss nginx idle 4)")" "<=" 1.0
row "RSS ${BENCH_STREAMS/ /x} open streams acmedge / nginx" "$(ratio "$(rss acmedge streams 4)" "$(rss nginx streams 4)")" "<=" 1.0
