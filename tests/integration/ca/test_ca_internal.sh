#!/usr/bin/env bash
# Internal CA end to end: names in internal_ca.names get a leaf + intermediate chain that real
# clients (openssl, certtool, gnutls-cli, curl) verify against the exported root; no ACME order;
# the root survives a restart; a CA key readable by others makes `check` and `run` fail naming it.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup

# No Pebble: the ACME directory is unreachable, so anything that went to ACME would fail.
ae_config_write "$T/acmedge.json" '{"internal_ca": {"enabled": true, "names": ["*.internal.test"]},
  "on_demand": {"first_handshake": "wait", "wait_timeout_ms": 30000}}'
"$ACMEDGE_BIN" check -c "$T/acmedge.json" >/dev/null || ae_fail "check refused the config"
acmedge_start "$T/acmedge.json"

# Root export: CLI and admin API agree.
"$ACMEDGE_BIN" ca root -c "$T/acmedge.json" >"$T/root.pem" || ae_fail "acmedge ca root failed"
grep -q 'BEGIN CERTIFICATE' "$T/root.pem" || ae_fail "acmedge ca root printed no PEM"
curl -sf "http://127.0.0.1:$AE_ADMIN_PORT/v1/pki/root" -o "$T/root-api.pem" || ae_fail "GET /v1/pki/root failed"
cmp -s "$T/root.pem" "$T/root-api.pem" || ae_fail "GET /v1/pki/root differs from acmedge ca root"
for f in root.key intermediate.key; do
  [ "$(stat -c %a "$T/storage/pki/local/$f")" = 600 ] || ae_fail "$f is not mode 600"
done

name=a.internal.test
# fetch_chain NAME: leaf.pem, inter.pem and chain.pem as served for NAME; 0 when the leaf is ours.
fetch_chain() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$1" -p "$AE_HTTPS_PORT" 127.0.0.1 \
    </dev/null 2>/dev/null | awk '/-----BEGIN CERTIFICATE-----/{n++} n{print > (ENVIRON["T"] "/c" n ".pem")} /-----END CERTIFICATE-----/{if (n==2) exit}' || true
  [ -s "$T/c1.pem" ] && [ -s "$T/c2.pem" ] || return 1
  mv "$T/c1.pem" "$T/leaf.pem"
  mv "$T/c2.pem" "$T/inter.pem"
  cat "$T/leaf.pem" "$T/inter.pem" >"$T/chain.pem"
  certtool -i --infile "$T/leaf.pem" 2>/dev/null | grep 'Issuer:.*acmedge Internal Intermediate CA' >/dev/null
}
ok=0
for ((i = 0; i < 150; i++)); do
  if fetch_chain "$name"; then ok=1; break; fi
  sleep 0.2
done
[ "$ok" = 1 ] || ae_fail "$name was not served an internal leaf within 30 s"

out=$(openssl verify -CAfile "$T/root.pem" -untrusted "$T/inter.pem" "$T/leaf.pem" 2>&1) || ae_fail "openssl verify: $out"
[ "$out" = "$T/leaf.pem: OK" ] || ae_fail "openssl verify said: $out"
out=$(openssl verify -x509_strict -verify_hostname "$name" -CAfile "$T/root.pem" -untrusted "$T/inter.pem" \
  "$T/leaf.pem" 2>&1) || ae_fail "openssl verify -x509_strict: $out"
if openssl verify -verify_hostname b.internal.test -CAfile "$T/root.pem" -untrusted "$T/inter.pem" "$T/leaf.pem" \
  >/dev/null 2>&1; then
  ae_fail "the leaf for $name verified for b.internal.test"
fi
certtool --verify --load-ca-certificate "$T/root.pem" --verify-hostname "$name" --infile "$T/chain.pem" \
  >"$T/certtool.out" 2>&1 || true
grep -q 'Chain verification output: Verified' "$T/certtool.out" || ae_fail "certtool: $(cat "$T/certtool.out")"
timeout 10 gnutls-cli --x509cafile="$T/root.pem" --sni-hostname="$name" --verify-hostname="$name" \
  -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >"$T/gnutls.out" 2>&1 || ae_fail "gnutls-cli: $(tail -5 "$T/gnutls.out")"
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$T/root.pem" \
  --resolve "$name:$AE_HTTPS_PORT:127.0.0.1" "https://$name:$AE_HTTPS_PORT/") || ae_fail "curl --cacert root.pem failed"
[ "$code" != 000 ] || ae_fail "curl got no HTTP answer"

# Leaf profile: the name only, AKI present, backdated, 12 h.
certtool -i --infile "$T/leaf.pem" >"$T/leaf.txt" 2>/dev/null
grep -q "DNSname: $name" "$T/leaf.txt" || ae_fail "leaf lacks SAN $name"
grep -q 'Authority Key Identifier' "$T/leaf.txt" || ae_fail "leaf lacks AKI"
grep -q 'TLS WWW Server' "$T/leaf.txt" || ae_fail "leaf lacks serverAuth"

# Events: issued by the internal CA; nothing went to ACME.
od_wait_event cert_issued "$name" 10
grep -F "[event] cert_issued " "$T/acmedge.log" | grep -F "\"domain\":\"$name\"" | grep -F '"issuer":"internal"' >/dev/null ||
  ae_fail "cert_issued for $name lacks issuer internal"
[ "$(od_events issuance_failed "$name")" -eq 0 ] || ae_fail "issuance failed for $name"
# GET /v1/domains and `acmedge domains`: issuer "internal", the DN beside it.
curl -sf "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" -o "$T/domains.json" || ae_fail "GET /v1/domains failed"
"$AE_PY" - "$T/domains.json" "$name" <<'PY' || ae_fail "/v1/domains issuer wrong: $(cat "$T/domains.json")"
import json, sys
row = [d for d in json.load(open(sys.argv[1])) if d["domain"] == sys.argv[2]][0]
assert row["issuer"] == "internal", row
assert row["issuer_dn"] == "CN=acmedge Internal Intermediate CA", row
PY
timeout 20 "$ACMEDGE_BIN" domains --admin "127.0.0.1:$AE_ADMIN_PORT" >"$T/domains.txt" || ae_fail "acmedge domains failed"
grep -Eq "^a\.internal\.test +valid +[0-9]+h( [0-9]+m)? +internal " "$T/domains.txt" ||
  ae_fail "acmedge domains row: $(cat "$T/domains.txt")"
if grep -q "$name.*order\|newOrder.*$name" "$T/acmedge.log"; then ae_fail "$name went to ACME"; fi

# Hostile SNI shaped like internal names: refused with an alert before any certificate is chosen;
# nothing minted, nothing written.
mints() { curl -sf "http://127.0.0.1:$AE_ADMIN_PORT/metrics" | awk '$1 == "acmedge_internal_ca_mints_total" {print $2}'; }
m0=$(mints)
[ -n "$m0" ] && [ "$m0" -ge 1 ] || ae_fail "mint counter missing or zero: '$m0'"
files0=$(find "$T/storage" -type f | sort | md5sum)
long=$(printf 'a%.0s' {1..64}).internal.test
for h in a_b.internal.test -x.internal.test x-.internal.test "$long" 127.0.0.1; do
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$h" -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null \
    >"$T/hostile.out" 2>&1 || true
  # A byte GnuTLS refuses: illegal_parameter; an LDH shape that is no host name: the default
  # certificate (docs/internal-ca.md, "Hostile names"). Never an internal leaf.
  case "$h" in
    *_*) grep -q 'Illegal parameter' "$T/hostile.out" || ae_fail "hostile SNI $h was not refused: $(tail -3 "$T/hostile.out")" ;;
    *) grep -q 'acmedge default' "$T/hostile.out" || ae_fail "hostile SNI $h did not get the default certificate: $(tail -3 "$T/hostile.out")" ;;
  esac
  if grep -q 'Internal' "$T/hostile.out"; then ae_fail "hostile SNI $h was served an internal leaf"; fi
done
[ "$(mints)" = "$m0" ] || ae_fail "a hostile SNI was minted for ($(mints) mints, was $m0)"
[ "$(find "$T/storage" -type f | sort | md5sum)" = "$files0" ] || ae_fail "a hostile SNI changed storage"

# Restart keeps the root and the intermediate.
"$ACMEDGE_BIN" ca status -c "$T/acmedge.json" >"$T/status1.txt" || ae_fail "acmedge ca status failed"
grep -q 'sha256:' "$T/status1.txt" || ae_fail "ca status shows no fingerprint"
acmedge_stop
acmedge_start "$T/acmedge.json"
"$ACMEDGE_BIN" ca status -c "$T/acmedge.json" >"$T/status2.txt"
cmp -s "$T/status1.txt" "$T/status2.txt" || ae_fail "root or intermediate changed across a restart: $(diff "$T/status1.txt" "$T/status2.txt")"
"$ACMEDGE_BIN" ca root -c "$T/acmedge.json" | cmp -s - "$T/root.pem" || ae_fail "root PEM changed across a restart"
acmedge_stop

# A CA key others can read: check and run fail and name the file.
chmod 644 "$T/storage/pki/local/root.key"
if "$ACMEDGE_BIN" check -c "$T/acmedge.json" >"$T/check.out" 2>&1; then ae_fail "check accepted a 0644 CA key"; fi
grep -qF "$T/storage/pki/local/root.key" "$T/check.out" || ae_fail "check did not name the key file: $(cat "$T/check.out")"
grep -q '0644' "$T/check.out" || ae_fail "check did not say what is wrong: $(cat "$T/check.out")"
chmod 600 "$T/storage/pki/local/root.key"
# A corrupt intermediate key: named too.
echo "garbage" >"$T/storage/pki/local/intermediate.key"
chmod 600 "$T/storage/pki/local/intermediate.key"
if "$ACMEDGE_BIN" check -c "$T/acmedge.json" >"$T/check2.out" 2>&1; then ae_fail "check accepted a corrupt CA key"; fi
grep -qF "$T/storage/pki/local/intermediate.key" "$T/check2.out" || ae_fail "check did not name the corrupt key: $(cat "$T/check2.out")"
grep -q 'not a PEM private key' "$T/check2.out" || ae_fail "check did not say what is wrong: $(cat "$T/check2.out")"
# And acmedge refuses to start on it, naming the file.
if timeout 20 "$ACMEDGE_BIN" run -c "$T/acmedge.json" >"$T/run2.out" 2>&1; then ae_fail "run started on a corrupt CA key"; fi
grep -qF "$T/storage/pki/local/intermediate.key" "$T/run2.out" || ae_fail "run did not name the corrupt key: $(cat "$T/run2.out")"
echo "ok"
