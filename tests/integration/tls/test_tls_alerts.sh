#!/usr/bin/env bash
# TLS front exactness against the real binary: every refused ClientHello row gets its fatal alert
# on the wire (raw records from helpers/rawtls.py), from the peek or, for hellos only GnuTLS
# refuses (no common suite, TLS 1.0 only, malformed key_share), from GnuTLS; unusual but valid hellos (1-byte records over
# many segments, 60 KiB, unknown SNI name types, unknown groups, a host_name of LDH bytes that
# is not a host name such as a trailing dot or an IPv4 literal) get a ServerHello; TLS 1.2
# client renegotiation is refused with a no_renegotiation warning, never a second handshake (s_client then gives up);
# TLS 1.3 KeyUpdate (update_requested) works; every orderly close carries close_notify; a key
# share in an unsupported group gets a HelloRetryRequest, no common group handshake_failure.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
R="$AE_SRC/tests/integration/helpers/rawtls.py"

ae_config_write "$T/acmedge.json" '{"on_demand": {"enabled": false}, "tls": {"handshake_timeout_ms": 20000}}'
acmedge_start "$T/acmedge.json"

# ---- alert rows and accepted shapes ----------------------------------------------------------
while read -r name want; do
  echo "t=${SECONDS}s row $name"
  if [ "$want" = accept ]; then
    "$AE_PY" "$R" accept --port "$AE_HTTPS_PORT" --case "$name" >>"$T/raw.log" 2>&1 ||
      ae_fail "valid ClientHello '$name' not answered with a ServerHello: $(tail -1 "$T/raw.log")"
  else
    "$AE_PY" "$R" alert --port "$AE_HTTPS_PORT" --case "$name" >>"$T/raw.log" 2>&1 ||
      ae_fail "row '$name': $(tail -1 "$T/raw.log")"
  fi
done < <("$AE_PY" "$R" list)
n=$(grep -c ': ok (' "$T/raw.log")
[ "$n" -ge 28 ] || ae_fail "only $n raw rows passed: $(cat "$T/raw.log")"
grep -q 'server_name: host_name is not a DNS name (illegal_parameter)' "$T/acmedge.log" ||
  ae_fail "refusal not logged with its reason"

# s_client in interactive mode (no -ign_eof): a line 'R' renegotiates, 'K' sends a KeyUpdate with
# update_requested. The feeder waits (bounded) for the server's answer before sending a request,
# then for the response before closing stdin.
# sclient OUT VERSION CMD WAIT_FOR: runs s_client with CMD, then a request once WAIT_FOR shows up.
sclient() {
  local out=$1 ver=$2 cmd=$3 wait_for=$4
  : >"$out"
  {
    printf '%s\n' "$cmd"
    for _ in $(seq 1 300); do grep -q "$wait_for" "$out" 2>/dev/null && break; sleep 0.1; done
    printf 'GET / HTTP/1.1\r\nHost: a.example.test\r\nConnection: close\r\n\r\n'
    for _ in $(seq 1 300); do grep -q 'close_notify\|fatal' "$out" 2>/dev/null && break; sleep 0.1; done
  } | timeout 90 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername a.example.test \
    "$ver" -msg >"$out" 2>&1 || true
}

echo "t=${SECONDS}s renegotiation"
# ---- renegotiation (TLS 1.2, secure) refused ---------------------------------------------------
sclient "$T/reneg.out" -tls1_2 R 'no_renegotiation'
grep -q 'RENEGOTIATING' "$T/reneg.out" || ae_fail "s_client did not renegotiate: $(tail -30 "$T/reneg.out")"
grep -q '<<< .*Alert.*warning no_renegotiation' "$T/reneg.out" ||
  ae_fail "renegotiation not refused with a no_renegotiation warning: $(tail -30 "$T/reneg.out")"
[ "$(grep -c "<<< .*ServerHello$" "$T/reneg.out")" -eq 1 ] || ae_fail "server performed a second handshake: $(grep -n "ServerHello\|RENEG\|Alert\|^HTTP" "$T/reneg.out")"

echo "t=${SECONDS}s TLS 1.3 KeyUp"
# ---- TLS 1.3 KeyUpdate with update_requested, then a request on the new keys -----------------
# The server's own KeyUpdate is due before its next application data (RFC 8446 §4.6.3), so the
# request goes out once s_client has sent its KeyUpdate.
sclient "$T/ku.out" -tls1_3 K 'KEYUPDATE'
grep -q 'KEYUPDATE' "$T/ku.out" || ae_fail "s_client sent no KeyUpdate: $(tail -20 "$T/ku.out")"
grep -q '<<< .*KeyUpdate' "$T/ku.out" ||
  ae_fail "no KeyUpdate answered to update_requested: $(tail -30 "$T/ku.out")"
grep -q '^HTTP/1.1 ' "$T/ku.out" || ae_fail "no response after KeyUpdate: $(tail -20 "$T/ku.out")"
grep -q '<<< .*Alert.*warning close_notify' "$T/ku.out" ||
  ae_fail "orderly close without close_notify: $(tail -20 "$T/ku.out")"

echo "t=${SECONDS}s groups:"
# ---- groups: HelloRetryRequest when a supported group is only listed, else handshake_failure ---
echo Q | timeout 60 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername a.example.test \
  -tls1_3 -groups P-521:X25519 -msg >"$T/hrr.out" 2>&1 || true
[ "$(grep -c '>>> .*ClientHello' "$T/hrr.out")" -eq 2 ] ||
  ae_fail "no HelloRetryRequest for a P-521 key share: $(grep -n 'Hello\|Alert\|Temp Key' "$T/hrr.out")"
grep -q 'Server Temp Key: X25519' "$T/hrr.out" || ae_fail "HelloRetryRequest did not end in X25519"
echo Q | timeout 60 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername a.example.test \
  -tls1_3 -groups P-521 -msg >"$T/nogroup.out" 2>&1 || true
grep -q '<<< .*Alert.*fatal handshake_failure' "$T/nogroup.out" ||
  ae_fail "no handshake_failure for a client without a common group: $(grep -n 'Alert' "$T/nogroup.out")"

acmedge_stop
echo "PASS"
