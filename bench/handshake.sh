#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# New-connection TLS handshakes: acmedge beside nginx, same 1,000 certificates, same run.
#
# Generates BENCH_NAMES names (ECDSA P-256 leaves from one CA, certtool) in acmedge's storage
# layout, starts acmedge (on-demand off, 1 worker) and nginx (1 worker, one server block per name,
# same protocols/ciphers), and drives each in turn with hsload: full handshakes (no resumption),
# random SNI from the list, a tiny HTTP GET each. Reports handshakes/s and the server's CPU time
# per handshake (utime+stime of the server's processes from /proc, since the load generator shares
# the cores), and the acmedge/nginx ratios.
#
# Usage: bench/handshake.sh
# Environment:
#   ACMEDGE_BIN   acmedge binary (default: build/acmedge)
#   HSLOAD_BIN    hsload binary (default: build/hsload)
#   NGINX_BIN     nginx binary (default: nginx)
#   BENCH_NAMES   number of names (default 1000)
#   BENCH_SECS    seconds of load per server (default 10)
#   BENCH_CONC    concurrent client connections (default 4)
#   BENCH_SIDES   servers to measure (default "acmedge nginx")
#   AE_KEEP=1     keep the work dir
# Everything listens on and talks to 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
BENCH_NAMES=${BENCH_NAMES:-1000}
BENCH_SECS=${BENCH_SECS:-10}
BENCH_CONC=${BENCH_CONC:-4}
BENCH_SIDES=${BENCH_SIDES:-"acmedge nginx"}

bench_require_sides acmedge
[ -x "$HSLOAD_BIN" ] || { echo "handshake.sh: no hsload binary at $HSLOAD_BIN" >&2; exit 2; }
bench_require_tools certtool gnutls-cli "$NGINX_BIN"

ae_setup

# ---- certificates ------------------------------------------------------------------------------
echo "generating $BENCH_NAMES certificates..." >&2
ca_host=127.0.0.1_9 # ae_config_write's dummy ACME directory https://127.0.0.1:9/dir
CERTS=$T/storage/certs/$ca_host
mkdir -p "$CERTS"
bench_ca "$T/ca"
: >"$T/names.txt"
for ((i = 1; i <= BENCH_NAMES; i++)); do
  printf 'bench-%04d.example.test\n' "$i" >>"$T/names.txt"
done
gen_one() {
  local name=$1 d=$CERTS/$1
  mkdir -p "$d"
  printf 'cn = "%s"\ndns_name = "%s"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' "$name" "$name" >"$d/t"
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/key.pem" >/dev/null 2>&1
  certtool --generate-certificate --load-privkey "$d/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
    --load-ca-privkey "$T/ca/ca.key" --template "$d/t" --outfile "$d/leaf.pem" >/dev/null 2>&1
  cat "$d/leaf.pem" "$T/ca/ca.pem" >"$d/cert.pem"
  rm -f "$d/t" "$d/leaf.pem"
  chmod 600 "$d/key.pem"
}
export -f gen_one
export CERTS T
xargs -P 2 -I{} bash -c 'gen_one "$@"' _ {} <"$T/names.txt"
n_ok=$(find "$CERTS" -name cert.pem -size +0 | wc -l)
[ "$n_ok" -eq "$BENCH_NAMES" ] || ae_fail "generated $n_ok certificates, wanted $BENCH_NAMES"

# The default certificate for both servers (unknown names never occur in the run).
printf 'cn = "acmedge default"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' >"$T/default.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$T/default.key" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$T/default.key" --template "$T/default.tmpl" \
  --outfile "$T/default.crt" >/dev/null 2>&1
chmod 600 "$T/default.key"

# ---- helpers -------------------------------------------------------------------------------------
# measure SIDE PORT MAINPID : warm-up, then one timed run; appends a result line.
measure() {
  local side=$1 port=$2 pid=$3 out ok secs rate cpu_ms per
  "$HSLOAD_BIN" -c "$BENCH_CONC" -t 1 --get --sni-file "$T/names.txt" 127.0.0.1 "$port" >/dev/null 2>&1 || true
  cpu_sample_start "$pid"
  out=$("$HSLOAD_BIN" -c "$BENCH_CONC" -t "$BENCH_SECS" --get --sni-file "$T/names.txt" 127.0.0.1 "$port" 2>"$T/hsload-$side.err")
  cpu_ms=$(cpu_sample_end 1000)
  echo "$out" >"$T/hsload-$side.out"
  ok=$(sed -n 's/^RESULT ok=\([0-9]*\) .*/\1/p' <<<"$out")
  secs=$(sed -n 's/^RESULT .* secs=\([0-9.]*\) .*/\1/p' <<<"$out")
  local failed
  failed=$(sed -n 's/^RESULT .*failed=\([0-9]*\) .*/\1/p' <<<"$out")
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || ae_fail "$side: no successful handshakes ($(cat "$T/hsload-$side.err"))"
  rate=$(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }')
  per=$(awk -v c="$cpu_ms" -v n="$ok" 'BEGIN { printf "%.3f", c / n }')
  echo "$side $ok $failed $secs $rate $cpu_ms $per" >>"$T/results"
}

# served_ok PORT : 0 when a stored name (the last one) gets its own certificate.
served_ok() {
  local port=$1 name
  name=$(tail -1 "$T/names.txt")
  ae_sni_cert "$name" "$port" | grep "CN=$name" >/dev/null
}

: >"$T/results"

# ---- acmedge -------------------------------------------------------------------------------------
run_acmedge() {
  ae_config_write "$T/acmedge.json" '{"workers": 1, "on_demand": {"enabled": false},
    "tls": {"max_connections": 100000}, "log": {"level": "error"}}'
  acmedge_start "$T/acmedge.json"
  # Start-up loads every stored certificate; wait until the last one is served.
  ae_wait_for served_ok "$AE_HTTPS_PORT" || ae_fail "acmedge does not serve the stored certificates"
  measure acmedge "$AE_HTTPS_PORT" "$ACMEDGE_PID"
  acmedge_stop
}

# ---- nginx ---------------------------------------------------------------------------------------
run_nginx() {
  local port d=$T/nginx
  port=$(ae_free_port)
  mkdir -p "$d/tmp" "$d/logs"
  {
    echo "worker_processes 1;"
    echo "daemon off;"
    echo "pid $d/nginx.pid;"
    echo "error_log $d/logs/error.log warn;"
    echo "events { worker_connections 8192; }"
    echo "http {"
    echo "  access_log off;"
    echo "  client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy; fastcgi_temp_path $d/tmp/fcgi;"
    echo "  uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;"
    echo "  server_names_hash_max_size 8192; server_names_hash_bucket_size 128;"
    echo "  ssl_protocols TLSv1.2 TLSv1.3;"
    echo "  ssl_prefer_server_ciphers on;"
    echo "  ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305;"
    echo "  ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;"
    echo "  ssl_ecdh_curve X25519:prime256v1:secp384r1;"
    echo "  ssl_session_cache off;"
    echo "  ssl_session_tickets on;"
    echo "  server {"
    echo "    listen 127.0.0.1:$port ssl default_server;"
    echo "    ssl_certificate $T/default.crt; ssl_certificate_key $T/default.key;"
    echo "    location / { return 200 \"hello\\n\"; }"
    echo "  }"
    while read -r name; do
      echo "  server {"
      echo "    listen 127.0.0.1:$port ssl; server_name $name;"
      echo "    ssl_certificate $CERTS/$name/cert.pem; ssl_certificate_key $CERTS/$name/key.pem;"
      echo "    location / { return 200 \"hello $name\\n\"; }"
      echo "  }"
    done <"$T/names.txt"
    echo "}"
  } >"$d/nginx.conf"
  nginx_start "$d" "$port"
  served_ok "$port" || ae_fail "nginx does not serve the stored certificates"
  measure nginx "$port" "$NGINX_PID"
  ae_kill_pid "$NGINX_PID" 50
}

for side in $BENCH_SIDES; do
  echo "measuring $side ($BENCH_SECS s, $BENCH_CONC connections)..." >&2
  "run_$side"
done

# ---- report --------------------------------------------------------------------------------------
echo
echo "TLS handshakes + tiny GET, $BENCH_NAMES names, random SNI, $BENCH_CONC connections, ${BENCH_SECS}s each"
printf '%-8s %9s %7s %9s %12s %14s\n' server handshakes failed "hs/s" "server CPU ms" "CPU ms / hs"
while read -r side ok failed secs rate cpu per; do
  printf '%-8s %9s %7s %9s %12s %14s\n' "$side" "$ok" "$failed" "$rate" "$cpu" "$per"
done <"$T/results"
if grep -q '^acmedge ' "$T/results" && grep -q '^nginx ' "$T/results"; then
  awk '$1 == "acmedge" { ar = $5; ac = $7 } $1 == "nginx" { nr = $5; nc = $7 }
       END { printf "acmedge/nginx: handshakes/s %.2f, CPU per handshake %.2f\n", ar / nr, ac / nc }' "$T/results"
fi
