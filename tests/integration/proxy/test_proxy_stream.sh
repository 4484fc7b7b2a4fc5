#!/usr/bin/env bash
# Reverse proxy under volume through the real binary over TLS: 100 MiB uploads (Content-Length and
# chunked) and downloads (Content-Length and chunked) stream through while acmedge's RSS stays
# under a ceiling, and 1000 sequential keep-alive requests on one client connection reuse a
# handful of upstream connections.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/integration/upstreams/env.sh"
ae_setup
# An AddressSanitizer build keeps freed memory in quarantine (256 MB by default), which would
# measure the sanitizer rather than the proxy: keep it small.
case "$(ldd "$ACMEDGE_BIN" 2>/dev/null || true)" in
*libasan*) export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4" ;;
esac
px_cert
px_upstreams
px_config "$T/acmedge.json" '{"log": {"level": "warn"}}'
acmedge_start "$T/acmedge.json"

SIZE=$((100 * 1024 * 1024))
CEILING_KB=$((64 * 1024))

# run_sampled NAME CMD... : runs CMD in the background, samples acmedge's VmRSS until it ends,
# fails when the peak passes the ceiling or CMD fails.
run_sampled() {
  local name=$1 pid peak=0 r rc=0
  shift
  "$@" &
  pid=$!
  while kill -0 "$pid" 2>/dev/null; do
    r=$(px_rss_kb "$ACMEDGE_PID")
    [ "$r" -gt "$peak" ] && peak=$r
    sleep 0.05
  done
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || ae_fail "$name: transfer failed ($rc)"
  echo "$name: peak RSS ${peak} kB"
  [ "$peak" -lt "$CEILING_KB" ] || ae_fail "$name: acmedge RSS peaked at ${peak} kB (ceiling ${CEILING_KB} kB)"
}

head -c "$SIZE" /dev/urandom >"$T/big.bin"
sum=$(sha256sum "$T/big.bin" | cut -d' ' -f1)
echo "baseline RSS $(px_rss_kb "$ACMEDGE_PID") kB"

up_cl() { px_curl -X POST -T "$T/big.bin" "$(px_url app.example.test /sink)" >"$T/up1.json"; }
up_chunked() { px_curl -X POST -T - "$(px_url app.example.test /sink)" <"$T/big.bin" >"$T/up2.json"; }
down() { px_curl "$(px_url app.example.test "/download?$1")" | sha256sum | cut -d' ' -f1 >"$T/down.sum"; }
echo_both() { px_curl -X POST -T "$T/big.bin" "$(px_url app.example.test /echo)" | sha256sum | cut -d' ' -f1 >"$T/echo.sum"; }

run_sampled "upload (Content-Length)" up_cl
[ "$(px_json_get body_sha256 <"$T/up1.json")" = "$sum" ] || ae_fail "100 MiB upload corrupted: $(cat "$T/up1.json")"
[ "$(px_header Content-Length <"$T/up1.json")" = "$SIZE" ] || ae_fail "upload framing: $(cat "$T/up1.json")"

run_sampled "upload (chunked)" up_chunked
[ "$(px_json_get body_sha256 <"$T/up2.json")" = "$sum" ] || ae_fail "100 MiB chunked upload corrupted"
[ "$(px_header Transfer-Encoding <"$T/up2.json")" = "chunked" ] || ae_fail "chunked upload framing"

expect=$("$AE_PY" -c 'import hashlib,sys
p = bytes(range(256)) * 256
n = int(sys.argv[1]); h = hashlib.sha256()
while n: k = min(n, len(p)); h.update(p[:k]); n -= k
print(h.hexdigest())' "$SIZE")
for q in "size=$SIZE" "size=$SIZE&chunked=1"; do
  run_sampled "download ($q)" down "$q"
  [ "$(cat "$T/down.sum")" = "$expect" ] || ae_fail "100 MiB download ($q) corrupted"
done

run_sampled "echo (upload and download at once)" echo_both
[ "$(cat "$T/echo.sum")" = "$sum" ] || ae_fail "100 MiB echo corrupted"
rm -f "$T/big.bin"

# ---- 1000 sequential keep-alive requests on one client connection ------------------------------
before=$(px_curl "$(px_url app.example.test /stats)" | px_json_get conns)
{
  for i in $(seq 1 1000); do
    echo "url = \"$(px_url app.example.test "/ka/$i")\""
    echo 'output = "/dev/null"'
  done
} >"$T/ka.curl"
px_curl -K "$T/ka.curl" -w '%{num_connects} %{http_code}\n' >"$T/ka.out"
[ "$(wc -l <"$T/ka.out")" -eq 1000 ] || ae_fail "expected 1000 transfers, got $(wc -l <"$T/ka.out")"
[ "$(grep -vc ' 200$' "$T/ka.out")" -eq 0 ] || ae_fail "non-200 responses: $(grep -v ' 200$' "$T/ka.out" | sed -n 1,3p)"
connects=$(awk '{s += $1} END {print s}' "$T/ka.out")
[ "$connects" -eq 1 ] || ae_fail "the client opened $connects connections instead of 1"
after=$(px_curl "$(px_url app.example.test /stats)" | px_json_get conns)
used=$((after - before))
echo "1000 keep-alive requests used $used new upstream connection(s)"
[ "$used" -le 4 ] || ae_fail "1000 requests opened $used upstream connections"
[ "$(grep -c ' /ka/' "$T/echo.log")" -eq 1000 ] || ae_fail "upstream saw $(grep -c ' /ka/' "$T/echo.log") requests"

acmedge_stop
echo "proxy stream test passed"
