#!/usr/bin/env bash
# CLI polish: `acmedge domains` colours states on a terminal (a pty via script(1)), prints plain
# text when piped or with NO_COLOR; `--watch N` redraws every N seconds and exits 0 on SIGINT;
# a bad interval is a usage error. `acmedge events` on a terminal prints one line per event.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
command -v script >/dev/null || ae_fail "script(1) (util-linux) is needed for the pty"
ae_setup
# The placed certificate is read at start (cert_cache.preload), so cert_loaded and its row exist at once.
ae_config_write "$T/acmedge.json" '{"cert_cache": {"preload": true}}'
d=$T/storage/certs/127.0.0.1_9/placed.example.test
mkdir -p "$d"
printf 'cn = "placed.example.test"\ndns_name = "placed.example.test"\nexpiration_days = 30\ntls_www_server\n' >"$T/t.tmpl"
certtool --generate-privkey --key-type=ecdsa --outfile "$d/key.pem" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$d/key.pem" --template "$T/t.tmpl" --outfile "$d/cert.pem" >/dev/null 2>&1
chmod 600 "$d/key.pem"
acmedge_start "$T/acmedge.json"
export ACMEDGE_ADMIN=127.0.0.1:$AE_ADMIN_PORT
ESC=$'\033'

# Piped: plain.
out=$("$ACMEDGE_BIN" domains)
grep -q '^placed.example.test  *valid' <<<"$out" || ae_fail "domains table lacks the valid name: $out"
grep -q "$ESC" <<<"$out" && ae_fail "escape codes in piped output"

# On a terminal: the state is green.
script -qfec "$ACMEDGE_BIN domains" /dev/null </dev/null >"$T/tty.out" 2>&1 || ae_fail "domains on a pty failed: $(cat "$T/tty.out")"
grep -q "${ESC}\[32mvalid" "$T/tty.out" || ae_fail "no green 'valid' on a terminal: $(cat -v "$T/tty.out")"
NO_COLOR=1 script -qfec "$ACMEDGE_BIN domains" /dev/null </dev/null >"$T/nocolor.out" 2>&1 || true
grep -q 'placed.example.test' "$T/nocolor.out" || ae_fail "NO_COLOR run printed no table"
grep -q "${ESC}\[3" "$T/nocolor.out" && ae_fail "colours despite NO_COLOR: $(cat -v "$T/nocolor.out")"

# --watch 1: at least two redraws, then SIGINT ends it with status 0.
"$ACMEDGE_BIN" domains --watch 1 >"$T/watch.out" 2>&1 &
wpid=$!
echo "$wpid" >>"$T/.pids"
for ((i = 0; i < 150; i++)); do
  [ "$(grep -c '^Every 1s: acmedge domains' "$T/watch.out" || true)" -ge 2 ] && break
  sleep 0.1
done
[ "$(grep -c '^Every 1s: acmedge domains' "$T/watch.out" || true)" -ge 2 ] || ae_fail "--watch did not redraw: $(cat "$T/watch.out")"
[ "$(grep -c '^placed.example.test' "$T/watch.out")" -ge 2 ] || ae_fail "--watch redraws lack the table"
kill -INT "$wpid"
rc=0
wait "$wpid" || rc=$?
[ "$rc" -eq 0 ] || ae_fail "--watch exited $rc on SIGINT"
set +e
"$ACMEDGE_BIN" domains --watch 0 >/dev/null 2>"$T/bad.err"
rc=$?
set -e
[ "$rc" -eq 2 ] || ae_fail "--watch 0: exit $rc, expected 2"
grep -q -- '--watch takes' "$T/bad.err" || ae_fail "--watch 0: unclear error: $(cat "$T/bad.err")"

# events on a terminal: one line per event, type coloured.
ae_bg evpty script -qfec "$ACMEDGE_BIN events --since 0" /dev/null
for ((i = 0; i < 300; i++)); do
  grep -q 'cert_loaded' "$T/evpty.log" 2>/dev/null && break
  sleep 0.1
done
cp "$T/evpty.log" "$T/ev.out"
grep -q "cert_loaded" "$T/ev.out" || ae_fail "events on a pty: no cert_loaded line: $(cat -v "$T/ev.out")"
line=$(grep 'cert_loaded' "$T/ev.out" | sed -n 1p)
grep -q "${ESC}\[32mcert_loaded" <<<"$line" || ae_fail "event type not coloured: $(cat -v <<<"$line")"
grep -q 'placed.example.test' <<<"$line" || ae_fail "event line lacks the domain"
acmedge_stop
echo ok
