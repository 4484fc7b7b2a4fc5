#!/usr/bin/env bash
# Hostile SNI values with on_demand.fallback_cert "internal": every class the name check refuses
# (over 253 bytes, a 64-byte label, empty label, hyphen at a label edge, trailing dot, NUL,
# non-LDH bytes, a wildcard, UTF-8, IPv4 and IPv6 literals, a single label), sent as raw
# ClientHellos (clients refuse to send most of them), gets the default certificate and one
# domain_denied event with reason invalid_name; nothing is minted and nothing is written to
# storage. The same hostile name again within a minute adds no event. A valid allowed name still
# gets its minted leaf (the control), and with on_demand.deny "alert" a hostile name gets the
# unrecognized_name alert. ACME is unreachable throughout: no order is ever possible.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
R="$AE_SRC/tests/integration/helpers/rawtls.py"

ae_config_write "$T/acmedge.json" '{"internal_ca": {"enabled": true},
  "on_demand": {"fallback_cert": "internal", "backoff": {"initial_s": 60, "max_s": 3600}}}'
acmedge_start "$T/acmedge.json"

metric() {
  curl -sf --max-time 10 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" >"$T/metrics.txt" || ae_fail "GET /metrics failed"
  awk -v m="$1" '$1 == m {print $2; exit}' "$T/metrics.txt"
}
# served HEX : what a raw TLS 1.2 hello with host_name bytes HEX gets ("cert SUBJECT" / "alert NAME").
served() {
  "$AE_PY" "$R" sni --port "$AE_HTTPS_PORT" --timeout 30 --name-hex "$1"
}
# denied_events SHOWN : domain_denied events logged for the printable name SHOWN with reason
# invalid_name and source sni.
denied_events() {
  "$AE_PY" - "$T/acmedge.log" "$1" <<'PY'
import json, sys
n = 0
for line in open(sys.argv[1], errors="replace"):
    if "[event] domain_denied " not in line:
        continue
    ev = json.loads(line[line.index("{"):])
    det = ev.get("detail", ev)
    if ev.get("domain") == sys.argv[2] and det.get("reason") == "invalid_name" and det.get("source") == "sni":
        n += 1
print(n)
PY
}

# wait_until SECS CONDITION : polls the shell CONDITION every 0.2 s for at most SECS seconds.
wait_until() {
  local secs=$1 i
  for ((i = 0; i < secs * 5; i++)); do
    if eval "$2" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  return 1
}

wait_until 30 'curl -sf --max-time 5 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" | grep "^acmedge_internal_ca_mints_total " >/dev/null' ||
  ae_fail "no internal CA metrics"
[ "$(metric acmedge_internal_ca_mints_total)" = 0 ] || ae_fail "mints before any handshake"
find "$T/storage" -type f | sort >"$T/storage.before"

long_label=$(printf 'a%.0s' $(seq 64)).example.test
name254=$(printf 'a.%.0s' $(seq 126))ab
[ ${#name254} -eq 254 ] || ae_fail "test bug: name254 has ${#name254} bytes"
# rows: "hex of the raw name" "what it gets" "printable name in the event". Names of LDH bytes
# get the default certificate; other bytes are refused by GnuTLS too, so the hello is refused
# with illegal_parameter before GnuTLS sees it (docs/internal-ca.md, "Hostile names").
rows=()
row() { rows+=("$(printf '%s' "$1" | od -An -v -tx1 | tr -d ' \n') $2 $3"); }
DEF=default ILL=illegal_parameter
row "$name254" $DEF "$name254"
row "$long_label" $DEF "$long_label"
row "a..b.example.test" $DEF "a..b.example.test"
row "-a.example.test" $DEF "-a.example.test"
row "a-.example.test" $DEF "a-.example.test"
row "trail.example.test." $DEF "trail.example.test."
row "127.0.0.1" $DEF "127.0.0.1"
row "10.1" $DEF "10.1"
row "localhost" $DEF "localhost"
row "a_b.example.test" $ILL "a_b.example.test"
row "*.example.test" $ILL "*.example.test"
row "Sp ace.example.test" $ILL 'sp\x20ace.example.test'
row "$(printf 'caf\xc3\xa9.example.test')" $ILL 'caf\xc3\xa9.example.test'
row "::1" $ILL "::1"
row "[::1]" $ILL "[::1]"
# NUL cannot live in a shell string: hex by hand ("nul\0x.example.test").
rows+=("6e756c0078$(printf '.example.test' | od -An -v -tx1 | tr -d ' \n') $ILL nul\\x00x.example.test")

for r in "${rows[@]}"; do
  read -r hex want shown <<<"$r"
  got=$(served "$hex")
  echo "row '$shown': $got"
  case "$want:$got" in
    "default:cert "*"acmedge default"*) ;;
    "illegal_parameter:alert illegal_parameter") ;;
    *) ae_fail "hostile SNI '$shown' got '$got', want $want" ;;
  esac
  wait_until 30 '[ "$(denied_events "$shown")" -ge 1 ]' ||
    ae_fail "no domain_denied invalid_name event for '$shown': $(grep -F '[event] domain_denied' "$T/acmedge.log" | tail -3)"
done

# The same hostile names again: no new event (one per name per minute), still no mint.
for r in "${rows[@]:0:3}" "${rows[@]: -3}"; do
  read -r hex want shown <<<"$r"
  served "$hex" >/dev/null
done
for r in "${rows[@]}"; do
  read -r hex want shown <<<"$r"
  n=$(denied_events "$shown")
  [ "$n" -eq 1 ] || ae_fail "'$shown': $n domain_denied events, want exactly 1"
done
[ "$(metric acmedge_internal_ca_mints_total)" = 0 ] || ae_fail "a hostile name was minted for"
[ "$(metric acmedge_fallback_leaf_cache_entries)" = 0 ] || ae_fail "a hostile name reached the leaf cache"
find "$T/storage" -type f | sort >"$T/storage.after"
diff "$T/storage.before" "$T/storage.after" || ae_fail "hostile names wrote to storage"
[ "$(od_events domain_requested)" -eq 0 ] || ae_fail "a hostile name was requested: $(grep -F '[event] domain_requested' "$T/acmedge.log")"

# Control: an allowed DNS name while ACME is down gets a leaf minted for it.
ok_hex=$(printf 'ok.example.test' | od -An -v -tx1 | tr -d ' \n')
wait_until 60 '[ "$(served "$ok_hex")" = "cert CN=ok.example.test" ]' ||
  ae_fail "control name did not get its stand-in leaf: $(served "$ok_hex")"
[ "$(metric acmedge_internal_ca_mints_total)" = 1 ] || ae_fail "control: want 1 mint, got $(metric acmedge_internal_ca_mints_total)"
acmedge_stop

# on_demand.deny "alert": a hostile name gets unrecognized_name and still its event.
ae_config_write "$T/acmedge.json" '{"internal_ca": {"enabled": true},
  "on_demand": {"fallback_cert": "internal", "deny": "alert"}}'
acmedge_start "$T/acmedge.json"
hex=$(printf 'alert.example.test.' | od -An -v -tx1 | tr -d ' \n')
got=$(served "$hex")
[ "$got" = "alert unrecognized_name" ] || ae_fail "deny alert: trailing-dot SNI got '$got'"
wait_until 30 '[ "$(denied_events alert.example.test.)" -ge 1 ]' || ae_fail "deny alert: no invalid_name event"
acmedge_stop
echo "ok"
