# Shared setup for tests/integration/test_proxy*.sh (sourced after tests/lib/common.sh and
# ae_setup): a wildcard certificate for *.example.test placed in the storage layout, the Python
# upstreams on loopback ports, and an acmedge config routing test hosts to them.

PX_UP="$AE_SRC/tests/integration/upstreams"
PX_CLIENT="$PX_UP/proxy_client.py"
PX_HOSTS="app.example.test stream.example.test ws.example.test bad.example.test dead.example.test plain.example.test"

# px_cert : CA + "*.example.test" leaf in storage/certs/<ca-host>/wildcard_.example.test/.
px_cert() {
  local ca_host=127.0.0.1_9 dir
  dir="$T/storage/certs/$ca_host/wildcard_.example.test"
  mkdir -p "$T/ca" "$dir"
  printf 'cn = "acmedge proxy test CA"\nca\ncert_signing_key\nexpiration_days = 30\n' >"$T/ca/ca.tmpl"
  certtool --generate-privkey --key-type=ecdsa --outfile "$T/ca/ca.key" >/dev/null 2>&1
  certtool --generate-self-signed --load-privkey "$T/ca/ca.key" --template "$T/ca/ca.tmpl" \
    --outfile "$T/ca/ca.pem" >/dev/null 2>&1
  printf 'cn = "*.example.test"\ndns_name = "*.example.test"\ntls_www_server\nsigning_key\nexpiration_days = 30\n' \
    >"$T/ca/leaf.tmpl"
  certtool --generate-privkey --key-type=ecdsa --outfile "$dir/key.pem" >/dev/null 2>&1
  certtool --generate-certificate --load-privkey "$dir/key.pem" --load-ca-certificate "$T/ca/ca.pem" \
    --load-ca-privkey "$T/ca/ca.key" --template "$T/ca/leaf.tmpl" --outfile "$T/ca/leaf.pem" >/dev/null 2>&1
  cat "$T/ca/leaf.pem" "$T/ca/ca.pem" >"$dir/cert.pem"
  chmod 600 "$dir/key.pem"
  [ -s "$dir/cert.pem" ] || ae_fail "certtool failed"
}

# px_upstreams : starts echo, streamer, ws_echo and garbage upstreams; DEAD_PORT has no listener.
px_upstreams() {
  ECHO_PORT=$(ae_free_port)
  STREAM_PORT=$(ae_free_port)
  WS_PORT=$(ae_free_port)
  GARBAGE_PORT=$(ae_free_port)
  DEAD_PORT=$(ae_free_port)
  export ECHO_PORT STREAM_PORT WS_PORT GARBAGE_PORT DEAD_PORT
  ae_bg echo "$AE_PY" "$PX_UP/echo.py" "$ECHO_PORT"
  ae_bg streamer "$AE_PY" "$PX_UP/streamer.py" "$STREAM_PORT"
  ae_bg ws "$AE_PY" "$PX_UP/ws_echo.py" "$WS_PORT"
  ae_bg garbage "$AE_PY" "$PX_UP/garbage.py" "$GARBAGE_PORT"
  local p
  for p in "$ECHO_PORT" "$STREAM_PORT" "$WS_PORT" "$GARBAGE_PORT"; do
    ae_wait_for ae_port_open "$p" || ae_fail "upstream on port $p did not start"
  done
}

# px_config FILE [JSON_OVERRIDES] : acmedge config with the proxy routes (on-demand off).
px_config() {
  local file=$1 extra=${2:-}
  ae_config_write "$file" "{
    \"on_demand\": {\"enabled\": false},
    \"log\": {\"level\": \"info\"},
    \"routes\": [
      {\"hosts\": [\"app.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\"},
      {\"hosts\": [\"stream.example.test\"], \"upstream\": \"localhost:$STREAM_PORT\"},
      {\"hosts\": [\"ws.example.test\"], \"upstream\": \"127.0.0.1:$WS_PORT\"},
      {\"hosts\": [\"bad.example.test\"], \"upstream\": \"127.0.0.1:$GARBAGE_PORT\"},
      {\"hosts\": [\"dead.example.test\"], \"upstream\": \"127.0.0.1:$DEAD_PORT\"},
      {\"hosts\": [\"plain.example.test\"], \"upstream\": \"127.0.0.1:$ECHO_PORT\", \"plain_http\": true}
    ]}"
  if [ -n "$extra" ]; then
    _ae_json_merge "$file" "$extra" || ae_fail "px_config: bad overrides"
  fi
}

# px_curl ARGS... : curl over TLS to acmedge, trusting the test CA, every test host on loopback.
px_curl() {
  local h res=()
  for h in $PX_HOSTS other.example.test; do
    res+=(--resolve "$h:$AE_HTTPS_PORT:127.0.0.1")
  done
  # HTTP/1.1 unless the caller asks for --http2 (a later flag wins): these tests check h1 framing.
  curl -sS --max-time 60 --http1.1 --cacert "$T/ca/ca.pem" "${res[@]}" "$@"
}

# px_url HOST PATH : https URL of a test host through acmedge.
px_url() { echo "https://$1:$AE_HTTPS_PORT$2"; }

# px_raw SNI DATA [TIMEOUT] : raw bytes over TLS, prints the reply.
px_raw() { "$AE_PY" "$PX_CLIENT" raw --port "$AE_HTTPS_PORT" --sni "$1" --data "$2" --timeout "${3:-3}"; }

# px_json_get FIELD : reads a field of the JSON object on stdin (dotted for nested: a.b).
px_json_get() {
  "$AE_PY" -c '
import json, sys
v = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    v = v[int(k)] if isinstance(v, list) else v[k]
print(v)' "$1"
}

# px_header NAME : value of request header NAME from the echo JSON on stdin ("" when absent).
px_header() {
  "$AE_PY" -c '
import json, sys
h = json.load(sys.stdin)["headers"]
print("\n".join(v for k, v in h if k.lower() == sys.argv[1].lower()))' "$1"
}

# px_rss_kb PID : VmRSS of PID in kB.
px_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
