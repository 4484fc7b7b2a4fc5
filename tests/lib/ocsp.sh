# Helpers for the OCSP integration tests (sourced after tests/lib/common.sh and ondemand.sh).
#
# A real responder (openssl ocsp) answers for Pebble's intermediate from $T/ocsp/index.txt; a
# small front (tests/lib/ocsp_front.py) sits between acmedge and it, counts requests and can
# misbehave on demand (ocsp_mode). Pebble writes the front's URL into every certificate.

# ocsp_pebble_start [JSON_EXTRA] : the front's port, Pebble with ocspResponderURL, then the
# responder with Pebble's intermediate and key (they change at every Pebble start).
ocsp_pebble_start() {
  local extra=${1:-}
  OCSP_PORT=$(ae_free_port)
  OCSP_BACKEND_PORT=$(ae_free_port)
  export OCSP_PORT OCSP_BACKEND_PORT
  mkdir -p "$T/ocsp"
  : >"$T/ocsp/index.txt"
  : >"$T/ocsp-front.log"
  echo pass >"$T/ocsp/mode"
  pebble_start "\"ocspResponderURL\": \"http://127.0.0.1:$OCSP_PORT/\"${extra:+, $extra}"
  curl -sf --max-time 5 --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/intermediate-keys/0" -o "$T/ocsp/inter.key" ||
    ae_fail "could not fetch $PEBBLE_MGMT/intermediate-keys/0"
  ocsp_responder_start
  ae_bg ocsp-front "$AE_PY" "$AE_SRC/tests/lib/ocsp_front.py" --port "$OCSP_PORT" \
    --backend "$OCSP_BACKEND_PORT" --mode-file "$T/ocsp/mode" --log "$T/ocsp-front.log"
  ae_wait_for ae_port_open "$OCSP_PORT" || ae_fail "OCSP front did not start"
}

# Starts (or restarts) openssl ocsp on OCSP_BACKEND_PORT; nextUpdate 2 minutes after thisUpdate.
ocsp_responder_start() {
  ae_bg ocsp-responder openssl ocsp -index "$T/ocsp/index.txt" -CA "$T/pebble-intermediate.pem" \
    -rsigner "$T/pebble-intermediate.pem" -rkey "$T/ocsp/inter.key" -port "$OCSP_BACKEND_PORT" \
    -nmin "${OCSP_NMIN:-2}" -ignore_err
  # Probed with real queries: openssl ocsp 3.0 spins forever on a connection closed without a
  # request, which is what a bare port probe is.
  ae_wait_for ocsp_query_backend || ae_fail "openssl ocsp did not answer on port $OCSP_BACKEND_PORT"
}

# One query straight to the responder; 0 when it answered.
ocsp_query_backend() {
  timeout 5 openssl ocsp -issuer "$T/pebble-intermediate.pem" -serial 0x1 \
    -url "http://127.0.0.1:$OCSP_BACKEND_PORT/" -no_nonce -noverify -timeout 3 2>&1 | grep '^0x1: ' >/dev/null
}

# ocsp_mode MODE [ARG] : how the front answers from now on (see ocsp_front.py).
ocsp_mode() {
  echo "$*" >"$T/ocsp/mode"
}

# Number of OCSP requests acmedge sent so far (the front sees only acmedge's).
ocsp_requests() {
  local n
  n=$(grep -c '^REQ ' "$T/ocsp-front.log" 2>/dev/null || true)
  echo "${n:-0}"
}

# ocsp_cert_file NAME : the stored certificate of NAME (leaf first).
ocsp_cert_file() {
  local host=${PEBBLE_DIR#https://}
  host=${host%%/*}
  echo "$T/storage/certs/${host/:/_}/$1/cert.pem"
}

# ocsp_serial NAME : uppercase hex serial of NAME's stored certificate, as openssl prints it.
ocsp_serial() {
  openssl x509 -noout -serial -in "$(ocsp_cert_file "$1")" | sed 's/^serial=//'
}

# ocsp_issue NAME : asks the admin API for NAME and waits for its certificate (no handshake, so
# no staple is asked for yet).
ocsp_issue() {
  local name=$1 code
  code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d "{\"domain\":\"$name\"}" \
    "http://127.0.0.1:$AE_ADMIN_PORT/v1/domains")
  [ "$code" = 202 ] || [ "$code" = 200 ] || ae_fail "POST /v1/domains $name: HTTP $code"
  od_wait_event cert_installed "$name" 60
}

# Sends one query straight to the responder, so that it reloads an edited index (it answers
# the first request after an edit from the old one).
ocsp_nudge() {
  ocsp_query_backend || true
}

# ocsp_index_set NAME V|R [REASON] : the responder's status for NAME's certificate (replaces an
# earlier line for the same serial).
ocsp_index_set() {
  local name=$1 st=$2 reason=${3:-keyCompromise} serial exp rev
  serial=$(ocsp_serial "$name")
  exp=$(date -u -d '+30 days' +%y%m%d%H%M%SZ)
  rev=$(date -u +%y%m%d%H%M%SZ)
  grep -v "	$serial	" "$T/ocsp/index.txt" >"$T/ocsp/index.new" || true
  if [ "$st" = V ]; then
    printf 'V\t%s\t\t%s\tunknown\t/CN=%s\n' "$exp" "$serial" "$name" >>"$T/ocsp/index.new"
  else
    printf 'R\t%s\t%s,%s\t%s\tunknown\t/CN=%s\n' "$exp" "$rev" "$reason" "$serial" "$name" >>"$T/ocsp/index.new"
  fi
  mv "$T/ocsp/index.new" "$T/ocsp/index.txt"
  ocsp_nudge
}

# ocsp_handshake NAME tls1_2|tls1_3 : one `openssl s_client -status` handshake; prints "good",
# "revoked", "unknown" (a staple with that status), "none" (handshake done, no staple) or
# "incomplete" (the handshake did not finish). The transcript is in $T/sclient-NAME.out.
ocsp_handshake() {
  local name=$1 ver=${2:-tls1_3} out=$T/sclient-$1.out
  timeout 20 openssl s_client -connect "127.0.0.1:$AE_HTTPS_PORT" -servername "$name" -status "-$ver" \
    </dev/null >"$out" 2>&1 || true
  if ! grep -q '^New, ' "$out"; then
    echo incomplete
  elif grep -q 'OCSP response: no response sent' "$out"; then
    echo none
  elif grep -q 'Cert Status: good' "$out"; then
    echo good
  elif grep -q 'Cert Status: revoked' "$out"; then
    echo revoked
  elif grep -q 'Cert Status: unknown' "$out"; then
    echo unknown
  else
    echo incomplete
  fi
}

# ocsp_expect NAME VERSION WANT [SECONDS] : handshakes until one completes and shows WANT
# ("good" or "none"); handshakes that complete with something else count too unless
# WANT never shows within SECONDS (default 30). Fails naming what it saw last.
ocsp_expect() {
  local name=$1 ver=$2 want=$3 secs=${4:-30} got=incomplete i
  for ((i = 0; i < secs * 4; i++)); do
    got=$(ocsp_handshake "$name" "$ver")
    [ "$got" = "$want" ] && return 0
    sleep 0.25
  done
  ae_fail "$name over $ver: wanted staple '$want' within $secs s, last handshake showed '$got'"
}

# ocsp_expect_now NAME VERSION WANT : the first handshake that completes must show WANT (only
# handshakes that did not complete are retried, up to 5).
ocsp_expect_now() {
  local name=$1 ver=$2 want=$3 got=incomplete i
  for ((i = 0; i < 5; i++)); do
    got=$(ocsp_handshake "$name" "$ver")
    [ "$got" = incomplete ] || break
    sleep 0.5
  done
  [ "$got" = "$want" ] || ae_fail "$name over $ver: expected staple '$want', the handshake showed '$got'"
}
