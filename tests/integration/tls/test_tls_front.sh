#!/usr/bin/env bash
# TLS front end of the real binary. Without a CA: unknown SNI -> default certificate; certificates
# placed by hand in the storage layout (exact and wildcard) are served; a ClientHello sent one
# byte at a time completes; garbage and a stalled ClientHello are closed while a parallel handshake
# succeeds; SIGTERM exits 0. With Pebble: a certificate renewed (swapped) while a connection stays
# open -- the old connection keeps working, new handshakes get the new certificate.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
H="$AE_SRC/tests/integration/helpers/tlsclient.py"

# ---- certificates placed by hand -------------------------------------------------------------
ca_host=127.0.0.1_9 # host of the dummy directory URL ae_config_write uses without Pebble
mkdir -p "$T/ca"
cat >"$T/ca/ca.tmpl" <<'EOF'
cn = "acmedge tls_front test CA"
ca
cert_signing_key
expiration_days = 30
EOF
certtool --generate-privkey --key-type=ecdsa --outfile "$T/ca/ca.key" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$T/ca/ca.key" --template "$T/ca/ca.tmpl" \
  --outfile "$T/ca/ca.pem" >/dev/null 2>&1

# place_cert NAME DIRNAME : leaf for NAME (+CA) into storage/certs/<ca-host>/DIRNAME/
place_cert() {
  local name=$1 dir="$T/storage/certs/$ca_host/$2"
  mkdir -p "$dir"
  printf 'cn = "%s"\ndns_name = "%s"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' \
    "$name" "$name" >"$dir/leaf.tmpl"
  certtool --generate-privkey --key-type=ecdsa --outfile "$dir/key.pem" >/dev/null 2>&1
  certtool --generate-certificate --load-privkey "$dir/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
    --load-ca-privkey "$T/ca/ca.key" --template "$dir/leaf.tmpl" --outfile "$dir/leaf.pem" >/dev/null 2>&1
  cat "$dir/leaf.pem" "$T/ca/ca.pem" >"$dir/cert.pem"
  rm -f "$dir/leaf.tmpl" "$dir/leaf.pem"
  chmod 600 "$dir/key.pem"
  [ -s "$dir/cert.pem" ] || ae_fail "certtool failed for $name"
}
place_cert byhand.example.test byhand.example.test
place_cert '*.wild.example.test' wildcard_.wild.example.test

ae_config_write "$T/acmedge.json" '{"on_demand": {"enabled": false}, "tls": {"handshake_timeout_ms": 2000}}'
acmedge_start "$T/acmedge.json"

subject() { ae_sni_cert "$1" | grep 'Subject:' | sed -n 1p; }

subject unknown.example.test | grep 'CN=acmedge default' >/dev/null ||
  ae_fail "unknown SNI did not get the default certificate: $(subject unknown.example.test)"
subject byhand.example.test | grep 'CN=byhand.example.test' >/dev/null ||
  ae_fail "stored certificate not served: $(subject byhand.example.test)"
subject a.wild.example.test | grep -F 'CN=*.wild.example.test' >/dev/null ||
  ae_fail "wildcard certificate not served: $(subject a.wild.example.test)"
subject b.a.wild.example.test | grep 'CN=acmedge default' >/dev/null ||
  ae_fail "a wildcard must cover exactly one label"

# A ClientHello one byte per segment, then the whole handshake.
"$AE_PY" "$H" slowhello --port "$AE_HTTPS_PORT" --sni byhand.example.test \
  --expect-cert "$T/storage/certs/$ca_host/byhand.example.test/cert.pem" >"$T/slow.out" 2>&1 ||
  ae_fail "one-byte-at-a-time ClientHello failed: $(cat "$T/slow.out")"

# Garbage and a stalled ClientHello, while a normal handshake goes through.
ae_bg garbage "$AE_PY" "$H" garbage --port "$AE_HTTPS_PORT" --wait 5
garbage_pid=$(cat "$T/garbage.pid")
ae_bg stall "$AE_PY" "$H" stall --port "$AE_HTTPS_PORT" --min 1.5 --max 6
stall_pid=$(cat "$T/stall.pid")
sleep 0.3
subject byhand.example.test | grep 'CN=byhand.example.test' >/dev/null ||
  ae_fail "handshake beside garbage/stalled connections failed"
wait "$garbage_pid" || ae_fail "garbage connection not closed: $(cat "$T/garbage.log")"
wait "$stall_pid" || ae_fail "stalled ClientHello not cut at the handshake timeout: $(cat "$T/stall.log")"
grep -q 'first record is not a handshake record (unexpected_message)' "$T/acmedge.log" || ae_fail "no log line for the garbage connection"
grep -q 'ClientHello timeout' "$T/acmedge.log" || ae_fail "no log line for the stalled connection"

acmedge_stop

# ---- swap while a connection is open (Pebble, short-lived certificates) -----------------------
pebble_start '"certificateValidityPeriod": 15'
ae_config_write "$T/acmedge2.json" '{"proxy": {"header_timeout_ms": 60000}}'
acmedge_start "$T/acmedge2.json"
name=swap.example.test
od_is_default "$name" || true
od_wait_issued "$name" 20

ae_bg hold "$AE_PY" "$H" hold --port "$AE_HTTPS_PORT" --sni "$name" --go-file "$T/go" \
  --cert-out "$T/held.pem" --wait 60
hold_pid=$(cat "$T/hold.pid")
ae_wait_for test -s "$T/held.pem" || ae_fail "held connection did not complete its handshake"
serial1=$(certtool -i <"$T/held.pem" 2>/dev/null | awk '!n && /Serial Number/{print $NF; n=1}')
[ -n "$serial1" ] || ae_fail "no serial in the held connection's certificate"

od_wait_event cert_renewed "$name" 40
serial2=$(od_serial "$name")
[ -n "$serial2" ] && [ "$serial1" != "$serial2" ] ||
  ae_fail "new handshakes still get the old certificate ($serial1 / $serial2)"
ae_verify_chain "$name" || ae_fail "renewed chain does not verify: $(cat "$T/verify-$name.out")"

touch "$T/go"
wait "$hold_pid" || ae_fail "the connection opened before the swap stopped working: $(cat "$T/hold.log")"
grep -q '^HTTP/1.1 ' "$T/hold.log" || ae_fail "no HTTP response on the held connection"
if grep -q '^HTTP/1.1 408' "$T/hold.log"; then ae_fail "held connection timed out instead"; fi

acmedge_stop
echo "ok"
