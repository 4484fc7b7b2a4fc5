#!/usr/bin/env bash
# Intermediate rotation under load: with internal_ca.intermediate_lifetime_s at its 120 s minimum,
# a continuous handshake loop (Python ssl, chain verified against the exported root with a
# hostname check and X509_STRICT) runs across at least one rotation with 0 failed handshakes and
# sees leaves of both intermediates; `acmedge ca status` shows the new intermediate; `ca_rotated`
# arrives over SSE with the old and new fingerprints and the new notAfter; a leaf minted before
# the rotation still verifies (with its old intermediate) up to its expiry, and not after.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
HSLOOP="$AE_SRC/tests/integration/helpers/ca_hsloop.py"

# No Pebble: internal names never go to ACME.
ae_config_write "$T/acmedge.json" '{"internal_ca": {"enabled": true, "names": ["*.internal.test"],
    "intermediate_lifetime_s": 120},
  "on_demand": {"first_handshake": "wait", "wait_timeout_ms": 60000},
  "limits": {"per_ip_handshakes_per_s": 0, "per_ip_new_names_per_min": 0},
  "log": {"level": "info"}}'
acmedge_start "$T/acmedge.json"
ADMIN=127.0.0.1:$AE_ADMIN_PORT
ae_bg sse curl -sN --noproxy '*' -H 'Last-Event-ID: 0' "http://$ADMIN/v1/events"
"$ACMEDGE_BIN" ca root -c "$T/acmedge.json" >"$T/root.pem" || ae_fail "acmedge ca root failed"

# inter_fp FILE : SHA-256 fingerprint of the intermediate in `acmedge ca status` output FILE.
inter_fp() { awk '/^intermediate:/{p=1} p && /sha256:/{print $2; exit}' "$1"; }
"$ACMEDGE_BIN" ca status -c "$T/acmedge.json" >"$T/status0.txt" || ae_fail "acmedge ca status failed"
fp0=$(inter_fp "$T/status0.txt")
[ -n "$fp0" ] || ae_fail "no intermediate fingerprint in: $(cat "$T/status0.txt")"
openssl x509 -in "$T/storage/pki/local/intermediate.crt" -out "$T/inter0.pem"

names=(a.internal.test b.internal.test c.internal.test)
# A leaf minted before the rotation, with the chain it was served with.
ok=0
for ((i = 0; i < 300; i++)); do
  if timeout 30 gnutls-cli --x509cafile="$T/root.pem" --sni-hostname=a.internal.test \
    --verify-hostname=a.internal.test --print-cert -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >"$T/old.out" 2>&1; then
    ok=1
    break
  fi
  sleep 0.2
done
[ "$ok" = 1 ] || ae_fail "a.internal.test was not served a verifiable internal leaf: $(tail -5 "$T/old.out")"
awk '/-----BEGIN CERTIFICATE-----/{n++} n{print > (ENVIRON["T"] "/old" n ".pem")} /-----END CERTIFICATE-----/{if (n==2) exit}' "$T/old.out"
mv "$T/old1.pem" "$T/old-leaf.pem"
mv "$T/old2.pem" "$T/old-inter.pem"
cmp -s <(openssl x509 -in "$T/old-inter.pem") "$T/inter0.pem" || ae_fail "the served intermediate is not the stored one"

# The loop: 2 threads over 3 names until told to stop (or 500 s).
rm -f "$T/stop"
ae_bg hsloop env THREADS=2 DEADLINE_S=500 "$AE_PY" "$HSLOOP" "$AE_HTTPS_PORT" "$T/root.pem" "$T/stop" \
  "$T/loop.json" "${names[@]}"

# loop_get KEY : one field of the loop's latest summary.
loop_get() {
  [ -s "$T/loop.json" ] || { echo 0; return; }
  "$AE_PY" -c 'import json,sys; s=json.load(open(sys.argv[1])); k=sys.argv[2]; v=s[k]; print(len(v) if isinstance(v, dict) else v)' \
    "$T/loop.json" "$1"
}

# The intermediate (120 s of validity plus 60 s backdating) is renewed ~84 s after it was made,
# checked every 3 s. Bound: 360 s (sanitizer builds on a busy machine).
fp1=
for ((i = 0; i < 360; i++)); do
  "$ACMEDGE_BIN" ca status -c "$T/acmedge.json" >"$T/status1.txt" 2>&1 || true
  fp1=$(inter_fp "$T/status1.txt")
  if [ -n "$fp1" ] && [ "$fp1" != "$fp0" ]; then break; fi
  [ "$(loop_get failed)" = 0 ] || break
  sleep 1
done
[ "$(loop_get failed)" = 0 ] || ae_fail "handshakes failed before the rotation: $(cat "$T/loop.json")"
[ -n "$fp1" ] && [ "$fp1" != "$fp0" ] || ae_fail "the intermediate did not change within 360 s: $(cat "$T/status1.txt")"

# Keep the loop going until it has been served leaves of the new intermediate too (the stored
# leaves renew at two thirds of their life, from the new intermediate), then a little longer.
for ((i = 0; i < 240; i++)); do
  [ "$(loop_get akis)" -ge 2 ] && break
  [ "$(loop_get failed)" = 0 ] || break
  sleep 1
done
sleep 3
touch "$T/stop"
for ((i = 0; i < 150; i++)); do
  [ "$("$AE_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["done"])' "$T/loop.json")" = True ] && break
  sleep 0.5
done
echo "loop: $(cat "$T/loop.json")"
[ "$("$AE_PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["done"])' "$T/loop.json")" = True ] ||
  ae_fail "the handshake loop did not finish"
[ "$(loop_get failed)" = 0 ] || ae_fail "handshakes failed across the rotation: $(cat "$T/loop.json")"
[ "$(loop_get ok)" -ge 100 ] || ae_fail "too few handshakes to say anything: $(cat "$T/loop.json")"

# Both intermediates signed served leaves: their SKIs are the AKIs the loop saw.
ski() { openssl x509 -in "$1" -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :\n' | tr 'A-F' 'a-f'; }
openssl x509 -in "$T/storage/pki/local/intermediate.crt" -out "$T/inter1.pem"
"$AE_PY" - "$T/loop.json" "$(ski "$T/inter0.pem")" "$(ski "$T/inter1.pem")" <<'PY' || ae_fail "the loop did not see leaves of both intermediates"
import json, sys
akis = json.load(open(sys.argv[1]))["akis"]
assert sys.argv[2] != sys.argv[3], sys.argv
assert akis.get(sys.argv[2], 0) > 0 and akis.get(sys.argv[3], 0) > 0, (akis, sys.argv[2:])
PY

# ca_rotated over SSE: old -> new fingerprint, the new intermediate's notAfter.
ae_wait_for grep -q '"type":"ca_rotated"' "$T/sse.log" || ae_fail "no ca_rotated event over SSE"
inter1_na=$(date -u -d "$(openssl x509 -in "$T/inter1.pem" -noout -enddate | cut -d= -f2)" +%Y-%m-%dT%H:%M:%SZ)
"$AE_PY" - "$T/sse.log" "$fp0" "$fp1" "$inter1_na" <<'PY' || ae_fail "ca_rotated event wrong: $(grep ca_rotated "$T/sse.log")"
import json, sys
path, fp0, fp1, na = sys.argv[1:]
evs = [json.loads(l[6:]) for l in open(path).read().split("\n") if l.startswith("data: ")]
rot = [e for e in evs if e["type"] == "ca_rotated"]
assert rot, "no ca_rotated"
first = rot[0]
assert first["domain"] is None, first
assert first["old_sha256"] == fp0, (first, fp0)
assert first["new_sha256"] != fp0 and first["old_not_after"] < first["not_after"], first
last = rot[-1]
assert last["new_sha256"] == fp1 and last["not_after"] == na, (last, fp1, na)
for a, b in zip(rot, rot[1:]):
    assert a["new_sha256"] == b["old_sha256"], rot
PY

# The leaf minted before the rotation: after it (one second before the leaf expires) it still
# verifies with its old intermediate; after its expiry it does not.
leaf_na=$(date -u -d "$(openssl x509 -in "$T/old-leaf.pem" -noout -enddate | cut -d= -f2)" +%s)
rot_at=$(date -u -d "$(openssl x509 -in "$T/inter1.pem" -noout -startdate | cut -d= -f2)" +%s)
[ $((leaf_na - 1)) -gt $((rot_at + 60)) ] || ae_fail "the old leaf expired before the rotation; nothing to show"
out=$(openssl verify -x509_strict -attime $((leaf_na - 1)) -verify_hostname a.internal.test -CAfile "$T/root.pem" \
  -untrusted "$T/old-inter.pem" "$T/old-leaf.pem" 2>&1) || ae_fail "old leaf after the rotation: $out"
if openssl verify -attime $((leaf_na + 1)) -CAfile "$T/root.pem" -untrusted "$T/old-inter.pem" "$T/old-leaf.pem" \
  >/dev/null 2>&1; then
  ae_fail "the old leaf verified after its expiry"
fi
# And a leaf served now comes from the new intermediate, with the same checks.
timeout 30 gnutls-cli --x509cafile="$T/root.pem" --sni-hostname=d.internal.test --verify-hostname=d.internal.test \
  --print-cert -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null >"$T/new.out" 2>&1 || ae_fail "d.internal.test: $(tail -5 "$T/new.out")"
awk '/-----BEGIN CERTIFICATE-----/{n++} n{print > (ENVIRON["T"] "/new" n ".pem")} /-----END CERTIFICATE-----/{if (n==2) exit}' "$T/new.out"
[ "$(openssl x509 -in "$T/new1.pem" -noout -ext authorityKeyIdentifier | tail -1 | tr -d ' :\n' | tr 'A-F' 'a-f' |
  sed 's/^keyid//')" = "$(ski "$T/new2.pem")" ] || ae_fail "new leaf's AKI is not its intermediate's SKI"
acmedge_stop
echo "ok"
