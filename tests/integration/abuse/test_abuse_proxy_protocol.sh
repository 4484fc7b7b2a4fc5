#!/usr/bin/env bash
# PROXY protocol v2 on the TLS listener (listen.proxy_protocol): a valid header (with a TLV) then
# TLS is served and the client address comes from the header (per-client limits count the claimed
# address, not the balancer's); LOCAL is served; a plain ClientHello (wrong signature) and a
# truncated header are closed; a header from a peer outside trusted_proxies is refused; on a
# listener without proxy_protocol the header is not honoured.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
P="$AE_SRC/tests/integration/abuse/pp_client.py"

ae_config_write "$T/acmedge.json" '{"listen": {"proxy_protocol": true}, "tls": {"handshake_timeout_ms": 3000},
  "limits": {"per_ip_connections": 1, "per_ip_handshakes_per_s": 1000, "per_ip_new_names_per_min": 1000}}'
acmedge_start "$T/acmedge.json"

"$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --claim 198.51.100.9 || ae_fail "valid PROXY v2 header + TLS not served"
ae_wait_for grep -q '198.51.100.9' "$T/acmedge.log" || ae_fail "client address from the header not used"
"$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --claim 2001:db8::9 || ae_fail "IPv6 PROXY v2 header not served"
"$AE_PY" "$P" "$AE_HTTPS_PORT" local || ae_fail "LOCAL header + TLS not served"

# One connection per client: a held connection claiming 198.51.100.20 blocks a second one with
# the same claim, while another claimed client (over the same balancer address) is served.
ae_bg hold "$AE_PY" "$P" "$AE_HTTPS_PORT" hold --claim 198.51.100.20 --hold 120
ae_wait_for grep -q 'handshake ok' "$T/hold.log" || ae_wait_for grep -q 'handshake ok' "$T/hold.log" ||
  ae_fail "held PROXY connection did not complete: $(cat "$T/hold.log")"
if "$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --claim 198.51.100.20; then
  ae_fail "second connection for the same claimed client passed per_ip_connections=1"
fi
grep -q '198.51.100.20: closing: per_ip_connections exceeded' "$T/acmedge.log" ||
  ae_fail "limit not applied to the address from the header"
"$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --claim 198.51.100.21 || ae_fail "another claimed client not served"
ae_kill_pid "$(cat "$T/hold.pid")"

if "$AE_PY" "$P" "$AE_HTTPS_PORT" plain; then ae_fail "TLS without a PROXY header was served"; fi
ae_wait_for grep -q 'no valid PROXY protocol v2 header' "$T/acmedge.log" ||
  ae_fail "no log line for the missing header"
"$AE_PY" "$P" "$AE_HTTPS_PORT" trunc >"$T/trunc.out" || ae_fail "truncated header not closed: $(cat "$T/trunc.out")"
acmedge_stop

# Only listed balancers may send the header.
ae_config_write "$T/acmedge2.json" '{"listen": {"proxy_protocol": true}, "trusted_proxies": ["127.0.0.5"]}'
acmedge_start "$T/acmedge2.json"
if "$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --src 127.0.0.1; then ae_fail "header from an untrusted peer honoured"; fi
ae_wait_for grep -q 'not in trusted_proxies' "$T/acmedge.log" || ae_fail "no log line for the untrusted peer"
"$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --src 127.0.0.5 --claim 198.51.100.30 || ae_fail "trusted balancer not served"
acmedge_stop

# A listener without proxy_protocol does not honour a header.
ae_config_write "$T/acmedge3.json" '{}'
acmedge_start "$T/acmedge3.json"
if "$AE_PY" "$P" "$AE_HTTPS_PORT" proxy --claim 198.51.100.40; then ae_fail "header honoured on a plain listener"; fi
ae_wait_for grep -Eq 'closing: .* \((unexpected_message|protocol_version|decode_error)\)' "$T/acmedge.log" ||
  ae_fail "header not refused as a ClientHello (with its alert)"
! grep -q '198.51.100.40' "$T/acmedge.log" || ae_fail "address from a header used on a plain listener"
"$AE_PY" "$P" "$AE_HTTPS_PORT" plain || ae_fail "plain TLS not served on a plain listener"
acmedge_stop
echo "PASS"
