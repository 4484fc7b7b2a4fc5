#!/usr/bin/env bash
# A new name seen over the admin API: an SSE client (curl -N) sees domain_requested ->
# issuance_started -> challenge_ready -> challenge_valid -> cert_issued -> cert_installed in order
# with increasing ids; reconnecting with Last-Event-ID replays only what came after; `acmedge events
# --json` prints the same events; `acmedge domains` lists the name as valid with its expiry;
# /metrics passes a strict parser (promtool when installed) and counts one issuance; POST
# /v1/domains pre-provisions a name through the same path.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
PROM_CHECK="$AE_SRC/tests/integration/helpers/prom_check.py"

pebble_start
ae_config_write "$T/acmedge.json"
acmedge_start "$T/acmedge.json"
ADMIN=127.0.0.1:$AE_ADMIN_PORT
ae_wait_for curl -sf --noproxy '*' "http://$ADMIN/healthz" || ae_fail "admin API not answering on $ADMIN"
[ "$(curl -s --noproxy '*' "http://$ADMIN/healthz")" = ok ] || ae_fail "healthz body is not ok"

# Followers from the very first event, so that nothing is racing their connection.
ae_bg sse curl -sN --noproxy '*' -H 'Last-Event-ID: 0' "http://$ADMIN/v1/events"
ae_bg cli "$ACMEDGE_BIN" events --admin "$ADMIN" --json --since 0

name=sse.example.test
od_is_default "$name" || ae_fail "first handshake for $name did not get the default certificate"
od_wait_issued "$name" 30
ae_wait_for grep -q "\"type\":\"cert_installed\",\"domain\":\"$name\"" "$T/sse.log" ||
  ae_fail "SSE stream did not show cert_installed for $name"
ae_wait_for grep -q "\"type\":\"cert_installed\",\"domain\":\"$name\"" "$T/cli.log" ||
  ae_fail "acmedge events --json did not show cert_installed for $name"
sleep 0.5

# Order, ids, framing; then pick the challenge_ready id for the replay check.
MID=$("$AE_PY" - "$T/sse.log" "$name" <<'PY'
import json, sys
path, name = sys.argv[1], sys.argv[2]
blocks = open(path).read().split("\n\n")
events = []
for b in blocks:
    lines = [l for l in b.split("\n") if l and not l.startswith(":")]
    if not lines:
        continue
    assert lines[0].startswith("id: ") and lines[1].startswith("data: ") and len(lines) == 2, b
    i = int(lines[0][4:])
    e = json.loads(lines[1][6:])
    assert e["id"] == i, (i, e)
    assert list(e)[:4] == ["id", "time", "type", "domain"], e
    events.append(e)
ids = [e["id"] for e in events]
assert ids == list(range(1, len(ids) + 1)), ids
mine = [e for e in events if e["domain"] == name]
want = ["domain_requested", "issuance_started", "challenge_ready", "challenge_valid", "cert_issued",
        "cert_installed"]
pos, found = 0, {}
for e in mine:
    if pos < len(want) and e["type"] == want[pos]:
        found[want[pos]] = e
        pos += 1
assert pos == len(want), [e["type"] for e in mine]
assert found["domain_requested"].get("source") == "sni", found["domain_requested"]
assert found["challenge_ready"].get("challenge") in ("http-01", "tls-alpn-01"), found["challenge_ready"]
assert found["cert_issued"].get("serial") and found["cert_issued"].get("not_after"), found["cert_issued"]
print(found["challenge_ready"]["id"])
PY
) || ae_fail "event stream wrong: $(cat "$T/sse.log")"

# Reconnect after challenge_ready: exactly the later events come back, identical.
curl -sN --noproxy '*' --max-time 2 -H "Last-Event-ID: $MID" "http://$ADMIN/v1/events" >"$T/replay.txt" || true
"$AE_PY" - "$T/sse.log" "$T/replay.txt" "$MID" <<'PY' || ae_fail "Last-Event-ID replay wrong: $(cat "$T/replay.txt")"
import sys
def data(path):
    out = {}
    for b in open(path).read().split("\n\n"):
        lines = [l for l in b.split("\n") if l and not l.startswith(":")]
        if len(lines) == 2:
            out[int(lines[0][4:])] = lines[1][6:]
    return out
full, rep, mid = data(sys.argv[1]), data(sys.argv[2]), int(sys.argv[3])
assert rep, "nothing replayed"
assert min(rep) == mid + 1, sorted(rep)
assert sorted(rep) == list(range(mid + 1, max(rep) + 1)), sorted(rep)
for i in full:
    if i > mid:
        assert rep.get(i) == full[i], (i, rep.get(i), full[i])
PY

# `acmedge events --json` printed the same events as the SSE stream.
"$AE_PY" - "$T/sse.log" "$T/cli.log" <<'PY' || ae_fail "acmedge events --json differs from the SSE stream"
import json, sys
sse = {}
for b in open(sys.argv[1]).read().split("\n\n"):
    lines = [l for l in b.split("\n") if l and not l.startswith(":")]
    if len(lines) == 2:
        sse[int(lines[0][4:])] = lines[1][6:]
cli = {}
for l in open(sys.argv[2]):
    if l.startswith("{"):
        cli[json.loads(l)["id"]] = l.rstrip("\n")
common = sorted(set(sse) & set(cli))
assert len(common) >= 6 and common == sorted(sse)[:len(common)], (sorted(sse), sorted(cli))
for i in common:
    assert sse[i] == cli[i], (i, sse[i], cli[i])
PY

# `acmedge domains`: valid with its expiry and issuer.
timeout 20 "$ACMEDGE_BIN" domains --admin "$ADMIN" >"$T/domains.txt" || ae_fail "acmedge domains failed"
head -1 "$T/domains.txt" | grep -E '^DOMAIN +STATE +EXPIRES-IN +ISSUER +LAST-ERROR +RETRY-AT +OCSP$' >/dev/null ||
  ae_fail "domains header: $(head -1 "$T/domains.txt")"
grep -Eq "^sse\\.example\\.test +valid +[0-9]+d [0-9]+h +acme " "$T/domains.txt" ||
  ae_fail "domains row for $name: $(cat "$T/domains.txt")"

# /metrics: strict parse, one issuance.
curl -sf --noproxy '*' "http://$ADMIN/metrics" -o "$T/metrics.txt" || ae_fail "GET /metrics failed"
if command -v promtool >/dev/null 2>&1; then
  promtool check metrics <"$T/metrics.txt" || ae_fail "promtool check metrics failed"
fi
"$AE_PY" "$PROM_CHECK" "$T/metrics.txt" >/dev/null || ae_fail "/metrics is not valid exposition text"
[ "$("$AE_PY" "$PROM_CHECK" "$T/metrics.txt" --value acmedge_issuance_successes_total)" = 1 ] ||
  ae_fail "acmedge_issuance_successes_total is not 1"
[ "$("$AE_PY" "$PROM_CHECK" "$T/metrics.txt" --value acmedge_issuance_attempts_total)" = 1 ] ||
  ae_fail "acmedge_issuance_attempts_total is not 1"
[ "$("$AE_PY" "$PROM_CHECK" "$T/metrics.txt" --value acmedge_time_to_certificate_seconds_count)" = 1 ] ||
  ae_fail "time-to-certificate histogram did not count one issuance"
[ "$("$AE_PY" "$PROM_CHECK" "$T/metrics.txt" --value 'acmedge_handshakes_total{outcome="default"}')" -ge 1 ] ||
  ae_fail "no default-certificate handshake counted"
exp=$("$AE_PY" "$PROM_CHECK" "$T/metrics.txt" --value "acmedge_certificate_expiration_timestamp_seconds{domain=\"$name\"}") ||
  ae_fail "no expiry series for $name"
[ "$exp" -gt "$(date +%s)" ] || ae_fail "expiry $exp is in the past"

# POST /v1/domains pre-provisions a name; a name outside the allow list is refused with 403.
code=$(curl -s --noproxy '*' -o "$T/post.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"domain":"api.example.test"}' "http://$ADMIN/v1/domains")
[ "$code" = 202 ] || ae_fail "POST /v1/domains: $code $(cat "$T/post.json")"
grep -q '"domain":"api.example.test"' "$T/post.json" || ae_fail "POST body: $(cat "$T/post.json")"
od_wait_event cert_installed api.example.test 30
ae_wait_for grep -q '"type":"cert_installed","domain":"api.example.test"' "$T/sse.log" || ae_fail "api.example.test not issued"
grep -q '"type":"domain_requested","domain":"api.example.test","source":"api"' "$T/sse.log" ||
  ae_fail "domain_requested for the API name lacks source api"
code=$(curl -s --noproxy '*' -o "$T/post2.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  -d '{"domain":"nope.other.test"}' "http://$ADMIN/v1/domains")
[ "$code" = 403 ] || ae_fail "POST of a name outside allow: $code $(cat "$T/post2.json")"
grep -q '"error":' "$T/post2.json" || ae_fail "403 without a JSON error"

acmedge_stop
echo "ok"
