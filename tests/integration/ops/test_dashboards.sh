#!/usr/bin/env bash
# contrib/prometheus/alerts.yml and contrib/grafana/acmedge.json query only what a running
# acmedge exports: metric names, the label names its samples carry (samples made to exist by a
# hand-placed certificate, a denied name and a failed issuance) and label values it emits.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
"$AE_PY" -c 'import yaml' 2>/dev/null || ae_fail "python3-yaml is not installed (scripts/setup.sh installs it)"
ae_setup
# No Pebble: the CA at 127.0.0.1:9 refuses connections. The placed certificate is read at start
# (cert_cache.preload) so that its expiry series exists.
ae_config_write "$T/acmedge.json" '{"cert_cache": {"preload": true}}'

# A certificate placed by hand in the storage layout is loaded and gets an expiry series.
d=$T/storage/certs/127.0.0.1_9/placed.example.test
mkdir -p "$d"
cat >"$T/placed.tmpl" <<'TPL'
cn = "placed.example.test"
dns_name = "placed.example.test"
expiration_days = 30
tls_www_server
TPL
certtool --generate-privkey --key-type=ecdsa --outfile "$d/key.pem" >/dev/null 2>&1
certtool --generate-self-signed --load-privkey "$d/key.pem" --template "$T/placed.tmpl" \
  --outfile "$d/cert.pem" >/dev/null 2>&1
chmod 600 "$d/key.pem"
acmedge_start "$T/acmedge.json"
ADMIN=http://127.0.0.1:$AE_ADMIN_PORT
curl -s --noproxy '*' -o /dev/null -d '{"domain":"nope.other.test"}' "$ADMIN/v1/domains"
curl -s --noproxy '*' -o /dev/null -d '{"domain":"fails.example.test"}' "$ADMIN/v1/domains"
for ((i = 0; i < 300; i++)); do
  curl -s --noproxy '*' "$ADMIN/metrics" >"$T/metrics.txt"
  if grep -q '^acmedge_issuance_failures_total{' "$T/metrics.txt" &&
    grep -q '^acmedge_denied_total{' "$T/metrics.txt" &&
    grep -q '^acmedge_certificate_expiration_timestamp_seconds{domain="placed.example.test"}' "$T/metrics.txt"; then
    break
  fi
  sleep 0.1
done
((i < 300)) || ae_fail "metrics never showed a failure, a denial and the placed certificate: $(grep -v '^#' "$T/metrics.txt")"
"$AE_PY" "$AE_SRC/tests/integration/helpers/prom_check.py" "$T/metrics.txt" || ae_fail "bad /metrics text"
"$AE_PY" "$AE_SRC/tests/integration/ops/check_queries.py" "$T/metrics.txt" "$AE_SRC/src" \
  "$AE_SRC/contrib/prometheus/alerts.yml" "$AE_SRC/contrib/grafana/acmedge.json" >"$T/check.log" 2>&1 ||
  ae_fail "dashboard/alerts query what acmedge does not export:
$(cat "$T/check.log")"
cat "$T/check.log"
# The checker itself must catch a wrong name (so this test can fail).
sed 's/acmedge_orders_in_flight/acmedge_orders_inflight/' "$AE_SRC/contrib/grafana/acmedge.json" >"$T/bad.json"
if "$AE_PY" "$AE_SRC/tests/integration/ops/check_queries.py" "$T/metrics.txt" "$AE_SRC/src" \
  "$AE_SRC/contrib/prometheus/alerts.yml" "$T/bad.json" >/dev/null 2>&1; then
  ae_fail "checker accepted a dashboard with an unknown metric"
fi
acmedge_stop
echo ok
