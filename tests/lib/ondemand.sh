# Helpers for the on-demand integration tests (sourced after tests/lib/common.sh).

# Prints the issuer line of the certificate served for SNI NAME.
od_issuer() {
  ae_sni_cert "$1" | grep 'Issuer:' | sed -n 1p
}

# 0 when the certificate served for NAME was issued by Pebble.
od_is_pebble() {
  od_issuer "$1" | grep 'Pebble' >/dev/null
}

# 0 when the certificate served for NAME is acmedge's default certificate.
od_is_default() {
  ae_sni_cert "$1" | grep 'Subject:' | grep 'acmedge default' >/dev/null
}

# od_wait_issued NAME [SECONDS] : waits until NAME is served with a Pebble certificate.
od_wait_issued() {
  local name=$1 secs=${2:-30} i
  for ((i = 0; i < secs * 5; i++)); do
    if od_is_pebble "$name"; then
      return 0
    fi
    sleep 0.2
  done
  ae_fail "$name was not served a Pebble certificate within $secs s"
}

# od_events TYPE [DOMAIN] : number of events of TYPE (for DOMAIN) in acmedge's log.
od_events() {
  local type=$1 domain=${2:-} n
  if [ -n "$domain" ]; then
    n=$(grep -F "[event] $type " "$T/acmedge.log" | grep -cF "\"domain\":\"$domain\"" || true)
  else
    n=$(grep -cF "[event] $type " "$T/acmedge.log" || true)
  fi
  echo "${n:-0}"
}

# od_wait_event TYPE DOMAIN [SECONDS] : waits until at least one such event was logged.
od_wait_event() {
  local type=$1 domain=$2 secs=${3:-30} i
  for ((i = 0; i < secs * 10; i++)); do
    if [ "$(od_events "$type" "$domain")" -gt 0 ]; then
      return 0
    fi
    sleep 0.1
  done
  ae_fail "no $type event for $domain within $secs s"
}

# od_serial NAME : serial number (hex) of the certificate served for NAME.
od_serial() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$1" -p "$AE_HTTPS_PORT" 127.0.0.1 </dev/null 2>/dev/null |
    awk 'd{next} /BEGIN CERT/{p=1} p{print} /END CERT/{if (p) d=1}' | certtool -i 2>/dev/null | awk '!n && /Serial Number/{print $NF; n=1}'
}

# pebble_count_order_requests : newOrder requests Pebble received (accepted or refused). Run Pebble
# with PEBBLE_WFE_NONCEREJECT=0 when counting, since a badNonce retry repeats the request.
pebble_count_order_requests() {
  local n
  n=$(grep -c 'POST /order-plz' "$T/pebble.log" 2>/dev/null || true)
  echo "${n:-0}"
}
