#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Capability token cost: (1) CPU per verification, uncached (parse + JSON + one Ed25519 verify) and
# through the verified-token cache the proxy uses (signature skipped, revocation/time/audience
# still checked), from build/tok_bench; (2) requests/s of a protected route vs an open route of the
# same acmedge, same upstream (nginx serving a small file), HTTPS keep-alive with wrk, in one run.
#
# Usage: bench/tokens.sh
# Environment:
#   ACMEDGE_BIN     acmedge binary (default: build/acmedge)
#   TOK_BENCH_BIN   verification micro-benchmark (default: build/tok_bench, built with AE_TESTS)
#   NGINX_BIN       nginx binary (default: nginx)
#   BENCH_SECS      seconds of load per route (default 10)
#   BENCH_CONNS     wrk connections (default 32)
#   BENCH_ROUNDS    rounds (open, protected); the best of each is reported (default 2)
# Everything listens on and talks to 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
BENCH_SECS=${BENCH_SECS:-10}
BENCH_CONNS=${BENCH_CONNS:-32}
BENCH_ROUNDS=${BENCH_ROUNDS:-2}
: "${TOK_BENCH_BIN:=$SRC_DIR/build/tok_bench}"

bench_require_sides acmedge
bench_require_tools wrk curl certtool "$NGINX_BIN" "$TOK_BENCH_BIN"

echo "== verification cost"
"$TOK_BENCH_BIN" 20000

ae_setup
chmod 755 "$T"

# ---- upstream: nginx serving a small file
UP_PORT=$(ae_free_port)
mkdir -p "$T/up/www" "$T/up/tmp" "$T/up/logs"
head -c 768 /dev/urandom | base64 -w 0 >"$T/up/www/small.txt"
chmod -R a+rX "$T/up"
cat >"$T/up/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $T/up/nginx.pid;
error_log $T/up/logs/error.log warn;
events { worker_connections 4096; }
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

# ---- acmedge, one worker; the route for "localhost" is switched between open and protected by a
# SIGHUP reload of the same process (wrk sends the URL host as SNI, and only localhost resolves).
pub=$("$ACMEDGE_BIN" token keygen --out "$T/ops.key")
HOST=localhost
CERTDIR=$T/storage/certs/127.0.0.1_9/$HOST
mkdir -p "$CERTDIR"
bench_ca "$T/ca"
printf 'cn = "%s"\ndns_name = "%s"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' "$HOST" "$HOST" >"$T/ca/leaf.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$CERTDIR/key.pem" >/dev/null 2>&1
certtool --generate-certificate --load-privkey "$CERTDIR/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
  --load-ca-privkey "$T/ca/ca.key" --template "$T/ca/leaf.tmpl" --outfile "$T/ca/leaf.pem" >/dev/null 2>&1
cat "$T/ca/leaf.pem" "$T/ca/ca.pem" >"$CERTDIR/cert.pem"
write_config() { # AUTH_JSON ("" for an open route)
  local auth=""
  [ -n "$1" ] && auth=", \"auth\": $1"
  ae_config_write "$T/acmedge.json" "{
    \"workers\": 1, \"on_demand\": {\"enabled\": false}, \"log\": {\"level\": \"warn\"},
    \"cert_cache\": {\"preload\": true},
    \"cap_tokens\": {\"keys\": {\"ops\": \"$pub\"}, \"audience\": \"edge-1\"},
    \"routes\": [{\"hosts\": [\"$HOST\"], \"upstream\": \"127.0.0.1:$UP_PORT\"$auth}]}"
}
write_config ""
acmedge_start "$T/acmedge.json"
PID=$(cat "$T/acmedge.pid")
TOKEN=$("$ACMEDGE_BIN" token mint --key "$T/ops.key" --iss ops --sub bench --groups team-a --aud edge-1 --ttl 1h)
URL="https://$HOST:$AE_HTTPS_PORT/small.txt"
status() { curl -s --cacert "$T/ca/ca.pem" -o /dev/null -w '%{http_code}' "$@" "$URL" || true; }
# switch open|protected : rewrites the config, reloads, waits (<= 10 s) until the route behaves so
switch() {
  if [ "$1" = open ]; then write_config ""; else write_config '{"cap_tokens": {"groups": ["team-a"]}}'; fi
  kill -HUP "$PID"
  local want=200
  [ "$1" = open ] || want=401
  ae_wait_for test "$(status)" = "$want" || ae_fail "route did not become $1 after SIGHUP"
  [ "$(status -H "Authorization: Bearer $TOKEN")" = 200 ] || ae_fail "$1 route refused a valid token"
}

# run NAME ARGS... : one wrk run; prints "req/s cpu_us_per_req"
run() {
  local name=$1 out reqs rate cpu_us
  shift
  wrk -t 1 -c "$BENCH_CONNS" -d 2s "$@" "$URL" >/dev/null 2>&1 || true
  cpu_sample_start "$PID"
  out=$(wrk -t 1 -c "$BENCH_CONNS" -d "${BENCH_SECS}s" "$@" "$URL" 2>&1)
  cpu_us=$(cpu_sample_end 1000000)
  echo "$out" >"$T/wrk-$name.out"
  if grep -q 'Non-2xx' <<<"$out"; then ae_fail "$name: errors: $(grep 'Non-2xx' <<<"$out")"; fi
  reqs=$(sed -n 's/^ *\([0-9]*\) requests in .*/\1/p' <<<"$out")
  rate=$(sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' <<<"$out")
  [ -n "$reqs" ] && [ "$reqs" -gt 0 ] || ae_fail "$name: wrk made no requests"
  awk -v r="$rate" -v c="$cpu_us" -v n="$reqs" 'BEGIN { printf "%s %.1f\n", r, c / n }'
}

best_open=0 best_prot=0 cpu_open=0 cpu_prot=0
for ((i = 1; i <= BENCH_ROUNDS; i++)); do
  switch open
  read -r r c < <(run open)
  if awk -v a="$r" -v b="$best_open" 'BEGIN { exit !(a > b) }'; then best_open=$r cpu_open=$c; fi
  switch protected
  read -r r c < <(run prot -H "Authorization: Bearer $TOKEN")
  if awk -v a="$r" -v b="$best_prot" 'BEGIN { exit !(a > b) }'; then best_prot=$r cpu_prot=$c; fi
done
echo "== keep-alive HTTPS through acmedge (1 worker, $BENCH_CONNS connections, best of $BENCH_ROUNDS x ${BENCH_SECS}s)"
printf '%-10s %12s %16s\n' route 'req/s' 'cpu us/req'
printf '%-10s %12s %16s\n' open "$best_open" "$cpu_open"
printf '%-10s %12s %16s\n' protected "$best_prot" "$cpu_prot"
awk -v p="$best_prot" -v o="$best_open" 'BEGIN { printf "protected/open ratio: %.2f\n", p / o }'
