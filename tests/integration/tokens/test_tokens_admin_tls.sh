#!/usr/bin/env bash
# The HTTPS admin listener (admin.tls {cert, key, client_ca}) with the real binary and real clients:
# `check` names a bad key pair; group permissions over TLS (curl --cacert); a token bound to a client
# certificate (cnf) is accepted with that certificate only — not with another certificate of the
# same CA, not without one — and a certificate from another CA fails the handshake; the binding
# holds on resumed sessions (TLS 1.3 tickets through python ssl, TLS 1.2 through openssl s_client
# -sess_out/-sess_in), and a resumed session whose first handshake had no certificate carries no
# binding; /v1/events (SSE), /ui and the CLI (`domains`, `events`) work over TLS; plain HTTP on the
# TLS port gets a clean 400 and the connection is closed.
# Times: tokens live 10 minutes; every network call is bounded by --max-time/timeout; nothing sleeps.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup

B=$ACMEDGE_BIN

# ---- certificates: a server CA for the listener, a client CA, and a rogue CA
mkca() { # NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj "/CN=$1 test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -keyout "$T/$1.key" -out "$T/$1.pem" >/dev/null 2>&1 || ae_fail "CA $1"
}
mkleaf() { # NAME CA EXT
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj "/CN=$1" \
    -keyout "$T/$1.key" -out "$T/$1.csr" >/dev/null 2>&1 || ae_fail "CSR $1"
  printf '%s\n' "$3" >"$T/$1.ext"
  openssl x509 -req -in "$T/$1.csr" -CA "$T/$2.pem" -CAkey "$T/$2.key" -CAcreateserial -days 2 \
    -extfile "$T/$1.ext" -out "$T/$1.pem" >/dev/null 2>&1 || ae_fail "certificate $1"
}
mkca srvca
mkca clica
mkca rogue
mkleaf server srvca "subjectAltName=DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth"
for n in c1 c2; do mkleaf "$n" clica "extendedKeyUsage=clientAuth"; done
mkleaf r1 rogue "extendedKeyUsage=clientAuth"

pub=$("$B" token keygen --out "$T/ops.key")
CAP="\"cap_tokens\": {\"keys\": {\"ops\": \"$pub\"}, \"audience\": \"edge-1\", \"leeway_s\": 60, \"max_ttl_s\": 3600}"

# ---- check: the key pair and CA file are loaded and named on error
ae_config_write "$T/bad.json" "{$CAP, \"admin\": {\"tls\": {\"cert\": \"$T/server.pem\", \"key\": \"$T/c1.key\"}}}"
set +e
out=$(timeout 20 "$B" check -c "$T/bad.json" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] || ae_fail "check accepted a certificate with another key (exit $rc): $out"
echo "$out" | grep -F "admin.tls" >/dev/null || ae_fail "check message does not name admin.tls: $out"
ae_config_write "$T/bad.json" "{$CAP, \"admin\": {\"tls\": {\"cert\": \"$T/server.pem\", \"key\": \"$T/server.key\", \"client_ca\": \"$T/c1.ext\"}}}"
if timeout 20 "$B" check -c "$T/bad.json" >/dev/null 2>&1; then ae_fail "check accepted a client_ca without certificates"; fi

ae_config_write "$T/acmedge.json" "{$CAP, \"admin\": {\"token\": \"static-t0ken\",
  \"tls\": {\"cert\": \"$T/server.pem\", \"key\": \"$T/server.key\", \"client_ca\": \"$T/clica.pem\"}}}"
timeout 20 "$B" check -c "$T/acmedge.json" >/dev/null || ae_fail "check refused the admin.tls config"
acmedge_start "$T/acmedge.json"
ae_wait_for ae_port_open "$AE_ADMIN_PORT" || ae_fail "admin port not open"
A=https://127.0.0.1:$AE_ADMIN_PORT

mint() { "$B" token mint --key "$T/ops.key" --iss ops --aud edge-1 --ttl 10m "$@"; }
t_read=$(mint --sub alice --groups read)
t_write=$(mint --sub deployer --groups domains:write)
t_admin=$(mint --sub root --groups admin)
t_bound=$(mint --sub carol --groups read --bind "$T/c1.pem")

# req METHOD PATH TOKEN [curl args...] : prints the status (000: no HTTP answer); body in $T/body
req() {
  local m=$1 p=$2 tok=$3 args
  shift 3
  args=(-s --noproxy '*' --max-time 10 --cacert "$T/srvca.pem" -o "$T/body" -D "$T/h" -w '%{http_code}' -X "$m")
  [ -n "$tok" ] && args+=(-H "Authorization: Bearer $tok")
  curl "${args[@]}" "$@" "$A$p" || true
}
expect() { # WANT METHOD PATH TOKEN [curl args...]
  local want=$1 got
  shift
  got=$(req "$@")
  [ "$got" = "$want" ] || ae_fail "$1 $2 over TLS with ${3:0:12}...: got $got, want $want: $(cat "$T/body" 2>/dev/null)"
}

# ---- permissions per group over TLS (no client certificate)
expect 401 GET /v1/domains ""
expect 200 GET /v1/domains static-t0ken
expect 200 GET /v1/domains "$t_read"
expect 403 DELETE /v1/domains/never.example.test "$t_read"
expect 404 DELETE /v1/domains/never.example.test "$t_write"
expect 403 GET /v1/domains "$t_write"
expect 200 GET /v1/domains "$t_admin"
expect 403 POST /v1/tokens/revoke "$t_read" -H 'Content-Type: application/json' -d '{"jti":"x"}'

# ---- bound token: only with the certificate it names
C1=(--cert "$T/c1.pem" --key "$T/c1.key")
expect 200 GET /v1/domains "$t_bound" "${C1[@]}"
expect 401 GET /v1/domains "$t_bound" --cert "$T/c2.pem" --key "$T/c2.key"
grep -q binding_mismatch "$T/body" || ae_fail "wrong certificate: $(cat "$T/body")"
expect 401 GET /v1/domains "$t_bound"
grep -q binding_mismatch "$T/body" || ae_fail "no certificate: $(cat "$T/body")"
# unbound tokens keep working when a certificate is presented
expect 200 GET /v1/domains "$t_read" "${C1[@]}"
# a certificate from a CA other than client_ca ends the handshake
expect 000 GET /v1/domains "$t_read" --cert "$T/r1.pem" --key "$T/r1.key"
grep -q 'admin.*TLS handshake' "$T/acmedge.log" || ae_fail "the refused handshake was not logged"

# ---- resumed sessions keep the binding: TLS 1.3 tickets (python ssl)
"$AE_PY" - "$AE_ADMIN_PORT" "$T" "$t_bound" <<'PY' || ae_fail "TLS 1.3 resumption"
import socket, ssl, sys
port, tdir, tok = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def ctx(with_cert):
    c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    c.minimum_version = ssl.TLSVersion.TLSv1_3
    c.load_verify_locations(tdir + "/srvca.pem")
    if with_cert:
        c.load_cert_chain(tdir + "/c1.pem", tdir + "/c1.key")
    return c

def get(c, session=None):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with c.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(("GET /v1/domains HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer %s\r\n"
                       "Connection: close\r\n\r\n" % tok).encode())
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except ssl.SSLError:
                    break
                if not chunk:
                    break
                data += chunk
            status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
            return status, s.session, s.session_reused, data

with_cert = ctx(True)
st, sess, reused, data = get(with_cert)
assert st == 200 and not reused, ("first", st, reused, data[:300])
assert sess is not None and sess.has_ticket, "no session ticket received"
for i in range(2):
    st, _, reused, data = get(with_cert, sess)
    assert reused, "session %d not resumed" % i
    assert st == 200, ("resumed", i, st, data[:300])

# the same token on a resumed session whose full handshake had no certificate: no binding
no_cert = ctx(False)
st, sess, reused, data = get(no_cert)
assert st == 401 and b"binding_mismatch" in data, ("no cert", st, data[:300])
st, _, reused, data = get(no_cert, sess)
assert reused, "no-certificate session not resumed"
assert st == 401 and b"binding_mismatch" in data, ("resumed without cert", st, data[:300])
print("ok")
PY

# ---- and on TLS 1.2 session resumption (openssl s_client)
sreq="GET /v1/domains HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer $t_bound\r\nConnection: close\r\n\r\n"
sc() {
  printf "$sreq" | timeout 20 openssl s_client -connect "127.0.0.1:$AE_ADMIN_PORT" -servername localhost \
    -tls1_2 -CAfile "$T/srvca.pem" -cert "$T/c1.pem" -key "$T/c1.key" -ign_eof "$@" 2>&1 || true
}
sc -sess_out "$T/sess.pem" >"$T/first.out"
grep -q '^HTTP/1.1 200' "$T/first.out" || ae_fail "first s_client request: $(head -c 3000 "$T/first.out")"
[ -s "$T/sess.pem" ] || ae_fail "no TLS 1.2 session saved"
sc -sess_in "$T/sess.pem" >"$T/second.out"
grep -q '^Reused' "$T/second.out" || ae_fail "TLS 1.2 session not resumed: $(grep -E 'New|Reused' "$T/second.out")"
grep -q '^HTTP/1.1 200' "$T/second.out" || ae_fail "resumed TLS 1.2 request refused: $(grep HTTP "$T/second.out")"

# ---- the event stream and the console over TLS
curl -s --noproxy '*' -N --max-time 5 --cacert "$T/srvca.pem" -H "Authorization: Bearer $t_read" \
  "$A/v1/events?since=0" >"$T/events" || true
grep -q '"type":"token_rejected"' "$T/events" || ae_fail "no event over TLS: $(head -c 2000 "$T/events")"
grep -q '"reason":"binding_mismatch"' "$T/events" || ae_fail "no binding_mismatch event"
expect 200 GET /ui ""
grep -qi '<html' "$T/body" || ae_fail "/ui over TLS: $(head -c 300 "$T/body")"

# ---- the CLI over TLS: CA, and a client certificate for a bound token, from the environment
out=$(ACMEDGE_ADMIN_CACERT=$T/srvca.pem ACMEDGE_ADMIN_TOKEN=$t_read timeout 20 "$B" domains --admin "$A" --json) ||
  ae_fail "acmedge domains over TLS: $out"
[ "$(echo "$out" | "$AE_PY" -c 'import json,sys; print(type(json.load(sys.stdin)).__name__)')" = list ] ||
  ae_fail "acmedge domains over TLS printed: $out"
out=$(ACMEDGE_ADMIN_CACERT=$T/srvca.pem ACMEDGE_ADMIN_CERT=$T/c1.pem ACMEDGE_ADMIN_KEY=$T/c1.key \
  ACMEDGE_ADMIN_TOKEN=$t_bound timeout 20 "$B" domains --admin "$A" --json) || ae_fail "bound token through the CLI: $out"
if ACMEDGE_ADMIN_CACERT=$T/srvca.pem ACMEDGE_ADMIN_TOKEN=$t_bound timeout 20 "$B" domains --admin "$A" --json \
  >"$T/cli.out" 2>&1; then
  ae_fail "the CLI's bound token worked without the client certificate"
fi
if ACMEDGE_ADMIN_TOKEN=$t_read timeout 20 "$B" domains --admin "$A" --json >"$T/cli.out" 2>&1; then
  ae_fail "the CLI trusted the admin certificate without ACMEDGE_ADMIN_CACERT"
fi
set +e
ACMEDGE_ADMIN_CACERT=$T/srvca.pem ACMEDGE_ADMIN_TOKEN=$t_read timeout 10 "$B" events --admin "$A" --json --since 0 \
  >"$T/cli-events" 2>"$T/cli-events.err"
set -e
grep -q '"type":"token_rejected"' "$T/cli-events" ||
  ae_fail "acmedge events over TLS: $(head -c 1000 "$T/cli-events") $(head -c 500 "$T/cli-events.err")"

# ---- plain HTTP on the TLS port: a clean 400, then the connection is closed
code=$(curl -s --noproxy '*' --max-time 10 -o "$T/body" -w '%{http_code}' "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains" || true)
[ "$code" = 400 ] || ae_fail "plain HTTP on the TLS port: $code $(cat "$T/body")"
grep -q 'HTTPS' "$T/body" || ae_fail "plain HTTP answer does not say HTTPS: $(cat "$T/body")"
"$AE_PY" - "$AE_ADMIN_PORT" <<'PY' || ae_fail "plain HTTP connection not closed"
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
data = b""
while True:
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
assert data.startswith(b"HTTP/1.1 400 ") and data.count(b"HTTP/1.1") == 1, data
PY
# the server is still healthy afterwards
expect 200 GET /healthz static-t0ken
acmedge_stop
echo "ok"
