#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Handshake CPU with OCSP stapling on vs off, same certificates, same run.
#
# Generates BENCH_NAMES ECDSA leaves (one CA, certtool) carrying an AIA OCSP URL, starts a real
# responder (openssl ocsp, every serial "good"), then runs acmedge twice (1 worker, on-demand off):
# with ocsp.enabled (after a warm-up until every name has its staple) and without. hsload drives
# full handshakes (GnuTLS clients send status_request) with random SNI and a tiny GET. Reports the
# server's CPU per handshake (utime+stime from /proc) and the on/off ratio, plus the RSS of the
# cached staples (RSS after warm-up minus RSS of the same run before any staple).
#
# Usage: bench/ocsp.sh     Environment: ACMEDGE_BIN, HSLOAD_BIN, BENCH_NAMES (200), BENCH_SECS (10),
# BENCH_CONC (4), AE_KEEP=1. Everything on 127.0.0.1; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
: "${HSLOAD_BIN:=$SRC_DIR/build/hsload}"
BENCH_NAMES=${BENCH_NAMES:-200}
BENCH_SECS=${BENCH_SECS:-10}
BENCH_CONC=${BENCH_CONC:-4}
bench_require_sides acmedge
[ -x "$HSLOAD_BIN" ] || { echo "ocsp.sh: no hsload binary at $HSLOAD_BIN" >&2; exit 2; }
bench_require_tools certtool openssl curl

ae_setup
OCSP_PORT=$(ae_free_port)
ca_host=127.0.0.1_9
CERTS=$T/storage/certs/$ca_host
mkdir -p "$CERTS" "$T/ocsp"
bench_ca "$T/ca"
: >"$T/names.txt"
: >"$T/ocsp/index.txt"
for ((i = 1; i <= BENCH_NAMES; i++)); do
  printf 'ocsp-%04d.example.test\n' "$i" >>"$T/names.txt"
done
echo "generating $BENCH_NAMES certificates..." >&2
gen_one() {
  local name=$1 d=$CERTS/$1
  mkdir -p "$d"
  printf 'cn = "%s"\ndns_name = "%s"\ntls_www_server\nsigning_key\nexpiration_days = 30\nocsp_uri = "http://127.0.0.1:%s/"\n' \
    "$name" "$name" "$OCSP_PORT" >"$d/t"
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/key.pem" >/dev/null 2>&1
  certtool --generate-certificate --load-privkey "$d/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
    --load-ca-privkey "$T/ca/ca.key" --template "$d/t" --outfile "$d/leaf.pem" >/dev/null 2>&1
  cat "$d/leaf.pem" "$T/ca/ca.pem" >"$d/cert.pem"
  rm -f "$d/t" "$d/leaf.pem"
  chmod 600 "$d/key.pem"
}
export -f gen_one
export CERTS T OCSP_PORT
xargs -P 2 -I{} bash -c 'gen_one "$@"' _ {} <"$T/names.txt"
exp=$(date -u -d '+30 days' +%y%m%d%H%M%SZ)
while read -r name; do
  serial=$(openssl x509 -noout -serial -in "$CERTS/$name/cert.pem" | sed 's/^serial=//')
  printf 'V\t%s\t\t%s\tunknown\t/CN=%s\n' "$exp" "$serial" "$name" >>"$T/ocsp/index.txt"
done <"$T/names.txt"
printf 'cn = "acmedge default"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' >"$T/default.tmpl"
certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$T/default.key" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$T/default.key" --template "$T/default.tmpl" \
  --outfile "$T/default.crt" >/dev/null 2>&1
chmod 600 "$T/default.key"

ae_bg ocsp-responder openssl ocsp -index "$T/ocsp/index.txt" -CA "$T/ca/ca.pem" -rsigner "$T/ca/ca.pem" \
  -rkey "$T/ca/ca.key" -port "$OCSP_PORT" -ndays 1 -ignore_err
responder_up() {
  timeout 5 openssl ocsp -issuer "$T/ca/ca.pem" -serial 0x1 -url "http://127.0.0.1:$OCSP_PORT/" \
    -no_nonce -noverify -timeout 3 2>&1 | grep '^0x1: ' >/dev/null
}
ae_wait_for responder_up || ae_fail "openssl ocsp did not answer"

staples() {
  curl -s "http://127.0.0.1:$AE_ADMIN_PORT/metrics" | awk '$1 == "acmedge_ocsp_staples" { print $2 }'
}

: >"$T/results"
run() { # run on|off
  local mode=$1 enabled=false out ok secs cpu per rss0 rss1
  [ "$mode" = on ] && enabled=true
  ae_config_write "$T/acmedge.json" "{\"workers\": 1, \"on_demand\": {\"enabled\": false},
    \"tls\": {\"max_connections\": 100000}, \"log\": {\"level\": \"error\"}, \"ocsp\": {\"enabled\": $enabled}}"
  acmedge_start "$T/acmedge.json"
  rss0=$(rss_kib "$ACMEDGE_PID")
  "$HSLOAD_BIN" -c "$BENCH_CONC" -t 2 --get --sni-file "$T/names.txt" 127.0.0.1 "$AE_HTTPS_PORT" >/dev/null 2>&1 || true
  if [ "$mode" = on ]; then
    local i
    for ((i = 0; i < 600; i++)); do
      [ "$(staples)" = "$BENCH_NAMES" ] && break
      "$HSLOAD_BIN" -c 2 -n 200 --sni-file "$T/names.txt" 127.0.0.1 "$AE_HTTPS_PORT" >/dev/null 2>&1 || true
      sleep 0.1
    done
    [ "$(staples)" = "$BENCH_NAMES" ] || ae_fail "only $(staples) of $BENCH_NAMES names got a staple"
  fi
  rss1=$(rss_kib "$ACMEDGE_PID")
  cpu_sample_start "$ACMEDGE_PID"
  out=$("$HSLOAD_BIN" -c "$BENCH_CONC" -t "$BENCH_SECS" --get --sni-file "$T/names.txt" 127.0.0.1 "$AE_HTTPS_PORT" 2>"$T/hsload-$mode.err")
  cpu=$(cpu_sample_end 1000)
  ok=$(sed -n 's/^RESULT ok=\([0-9]*\) .*/\1/p' <<<"$out")
  secs=$(sed -n 's/^RESULT .* secs=\([0-9.]*\) .*/\1/p' <<<"$out")
  [ -n "$ok" ] && [ "$ok" -gt 0 ] || ae_fail "$mode: no successful handshakes ($(cat "$T/hsload-$mode.err"))"
  per=$(awk -v c="$cpu" -v n="$ok" 'BEGIN { printf "%.4f", c / n }')
  echo "$mode $ok $(awk -v n="$ok" -v s="$secs" 'BEGIN { printf "%.0f", n / s }') $cpu $per $((rss1 - rss0))" >>"$T/results"
  acmedge_stop
}
echo "measuring stapling on, then off ($BENCH_SECS s each, $BENCH_CONC connections)..." >&2
run on
run off

echo
echo "OCSP stapling on vs off: $BENCH_NAMES names, random SNI, $BENCH_CONC connections, ${BENCH_SECS}s each"
printf '%-9s %10s %8s %14s %12s %16s\n' stapling handshakes "hs/s" "server CPU ms" "CPU ms / hs" "RSS warm-up KiB"
while read -r mode ok rate cpu per rss; do
  printf '%-9s %10s %8s %14s %12s %16s\n' "$mode" "$ok" "$rate" "$cpu" "$per" "$rss"
done <"$T/results"
awk '$1 == "on" { on = $5; rss = $6 } $1 == "off" { off = $5; roff = $6 }
     END { printf "CPU per handshake on/off: %.3f; RSS per cached staple ~%.2f KiB\n", on / off, (rss - roff) / '"$BENCH_NAMES"' }' "$T/results"
