# Shared helpers for the integration tests (sourced by tests/integration/<subsystem>/test_*.sh).
#
# Everything runs on loopback. Every wait loop is bounded. Every process started through ae_bg is
# killed by the EXIT trap installed by ae_setup, and the temp dir $T is removed (kept with
# AE_KEEP=1). Safe under `set -euo pipefail`.

AE_PY=python3
if [ -x /usr/bin/python3 ]; then AE_PY=/usr/bin/python3; fi

# Prints MSG to stderr and exits 1 (the EXIT trap then prints the logs).
ae_fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# Retries CMD... up to 100 times, 0.1 s apart; returns its last status.
ae_wait_for() {
  local i
  for ((i = 0; i < 100; i++)); do
    if "$@" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

# 0 when pid is running (zombies count as gone).
ae_pid_alive() {
  local pid=$1 state
  kill -0 "$pid" 2>/dev/null || return 1
  # The process may exit (and be reaped) between the two checks: an unreadable stat means gone.
  state=$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)
  [ -n "$state" ] && [ "$state" != "Z" ]
}

# Sends SIGTERM to pid, waits up to $2 tenths of a second (default 50), then SIGKILL.
ae_kill_pid() {
  local pid=$1 tenths=${2:-50} i
  ae_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < tenths; i++)); do
    ae_pid_alive "$pid" || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 20; i++)); do
    ae_pid_alive "$pid" || return 0
    sleep 0.1
  done
  return 0
}

_ae_on_exit() {
  local rc=$?
  set +e
  trap - EXIT
  if [ -n "${AE_REAPER_PID:-}" ]; then
    kill "$AE_REAPER_PID" 2>/dev/null
  fi
  if [ -n "${T:-}" ] && [ -f "$T/.pids" ]; then
    local pid
    # Newest first: clients before the servers they talk to.
    for pid in $(tac "$T/.pids"); do
      ae_kill_pid "$pid" 20
    done
  fi
  if [ "$rc" -ne 0 ] && [ -n "${T:-}" ] && [ -d "$T" ]; then
    local f
    for f in "$T"/*.log; do
      [ -f "$f" ] || continue
      echo "===== $(basename "$f") (last 80 lines) =====" >&2
      tail -n 80 "$f" >&2
    done
  fi
  if [ -n "${T:-}" ] && [ -d "$T" ]; then
    if [ "${AE_KEEP:-0}" = "1" ]; then
      echo "test dir kept: $T" >&2
    else
      rm -rf "$T"
    fi
  fi
  exit "$rc"
}

# Watches the test shell; if it dies without running its EXIT trap (SIGKILL from a runner's
# timeout), kills what it started and removes its temp dir.
_ae_reaper() {
  set +e
  local parent=$1 dir=$2 pid
  while kill -0 "$parent" 2>/dev/null; do sleep 1; done
  [ -f "$dir/.pids" ] || exit 0
  for pid in $(tac "$dir/.pids"); do kill -KILL "$pid" 2>/dev/null; done
  [ "${AE_KEEP:-0}" = "1" ] || rm -rf "$dir"
}

# Creates $T, installs the cleanup trap. Requires ACMEDGE_BIN.
ae_setup() {
  : "${ACMEDGE_BIN:?ACMEDGE_BIN must be set (ctest sets it)}"
  T=$(mktemp -d "${TMPDIR:-/tmp}/acmedge-test.XXXXXX")
  export T
  : >"$T/.pids"
  : >"$T/.ports"
  trap _ae_on_exit EXIT
  trap 'exit 130' INT TERM
  _ae_reaper "$$" "$T" >/dev/null 2>&1 </dev/null &
  AE_REAPER_PID=$!
}

# Prints a free TCP port on 127.0.0.1 (below the ephemeral range, unused by any socket, and not
# handed out before in this test).
ae_free_port() {
  local i p
  for ((i = 0; i < 200; i++)); do
    p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
    if [ -n "${T:-}" ] && grep -qx "$p" "$T/.ports" 2>/dev/null; then
      continue
    fi
    if [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ]; then
      continue
    fi
    if (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      continue
    fi
    if [ -n "${T:-}" ]; then echo "$p" >>"$T/.ports"; fi
    echo "$p"
    return 0
  done
  echo "ae_free_port: no free port found" >&2
  return 1
}

# ae_bg NAME CMD... : starts CMD in the background, output appended to $T/NAME.log, PID in
# $T/NAME.pid and in the kill list.
ae_bg() {
  local name=$1
  shift
  "$@" >>"$T/$name.log" 2>&1 </dev/null &
  local pid=$!
  echo "$pid" >"$T/$name.pid"
  echo "$pid" >>"$T/.pids"
}

# 0 when something accepts TCP connections on 127.0.0.1:port.
ae_port_open() {
  (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Deep-merges JSON object text $2 into the JSON file $1 (objects merge, anything else replaces).
_ae_json_merge() {
  local file=$1 extra=$2
  "$AE_PY" - "$file" "$extra" <<'PY'
import json, sys
path, extra = sys.argv[1], sys.argv[2]
with open(path) as f:
    base = json.load(f)
def merge(a, b):
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(a.get(k), dict):
            merge(a[k], v)
        else:
            a[k] = v
merge(base, json.loads(extra))
with open(path, "w") as f:
    json.dump(base, f, indent=2)
PY
}

# Throwaway CA + localhost/127.0.0.1 certificate for Pebble's own HTTPS listener.
_pebble_gen_certs() {
  local d=$T/pebble-tls
  mkdir -p "$d"
  cat >"$d/ca.tmpl" <<'EOF'
cn = "acmedge test CA for pebble"
ca
cert_signing_key
crl_signing_key
expiration_days = 30
EOF
  cat >"$d/srv.tmpl" <<'EOF'
cn = "localhost"
dns_name = "localhost"
ip_address = "127.0.0.1"
ip_address = "::1"
tls_www_server
signing_key
encryption_key
expiration_days = 30
EOF
  certtool --generate-privkey --key-type=ecdsa --outfile "$d/ca.key" >/dev/null 2>&1
  certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" \
    --outfile "$d/ca.pem" >/dev/null 2>&1
  certtool --generate-privkey --key-type=ecdsa --outfile "$d/key.pem" >/dev/null 2>&1
  certtool --generate-certificate --load-privkey "$d/key.pem" --load-ca-certificate "$d/ca.pem" \
    --load-ca-privkey "$d/ca.key" --template "$d/srv.tmpl" --outfile "$d/cert.pem" >/dev/null 2>&1
  [ -s "$d/cert.pem" ] || ae_fail "could not generate Pebble's listener certificate"
  export PEBBLE_CA=$d/ca.pem
}

_pebble_launch() {
  local -a envs=(PEBBLE_VA_NOSLEEP=1)
  if [ -n "${PEBBLE_WFE_NONCEREJECT:-}" ]; then envs+=("PEBBLE_WFE_NONCEREJECT=$PEBBLE_WFE_NONCEREJECT"); fi
  if [ -n "${PEBBLE_AUTHZREUSE:-}" ]; then envs+=("PEBBLE_AUTHZREUSE=$PEBBLE_AUTHZREUSE"); fi
  echo "--- pebble start $(date +%T) ---" >>"$T/pebble.log"
  ae_bg pebble env "${envs[@]}" pebble -config "$T/pebble-config.json" \
    -dnsserver "127.0.0.1:$PEBBLE_DNS_PORT"
  local i
  for ((i = 0; i < 150; i++)); do
    if curl -sf --max-time 2 --cacert "$PEBBLE_CA" "$PEBBLE_DIR" >/dev/null 2>&1; then
      break
    fi
    ae_pid_alive "$(cat "$T/pebble.pid")" || ae_fail "pebble exited during start-up"
    sleep 0.1
  done
  ((i < 150)) || ae_fail "pebble directory did not answer at $PEBBLE_DIR"
  # The issuing hierarchy changes at every start.
  curl -sf --max-time 5 --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/roots/0" -o "$T/pebble-root.pem" ||
    ae_fail "could not fetch $PEBBLE_MGMT/roots/0"
  curl -sf --max-time 5 --cacert "$PEBBLE_CA" "$PEBBLE_MGMT/intermediates/0" \
    -o "$T/pebble-intermediate.pem" || ae_fail "could not fetch $PEBBLE_MGMT/intermediates/0"
}

# pebble_start [JSON_EXTRA] : Pebble + challtestsrv on loopback; JSON_EXTRA is merged into the
# "pebble" config object. Exports AE_HTTP_PORT/AE_HTTPS_PORT (unless set), PEBBLE_DIR, PEBBLE_CA,
# PEBBLE_MGMT, PEBBLE_LOG, PEBBLE_PORT; writes $T/pebble-root.pem and $T/pebble-intermediate.pem.
pebble_start() {
  local extra=${1:-}
  if [ -z "${AE_HTTP_PORT:-}" ]; then AE_HTTP_PORT=$(ae_free_port); fi
  if [ -z "${AE_HTTPS_PORT:-}" ]; then AE_HTTPS_PORT=$(ae_free_port); fi
  export AE_HTTP_PORT AE_HTTPS_PORT
  PEBBLE_PORT=$(ae_free_port)
  PEBBLE_MGMT_PORT=$(ae_free_port)
  PEBBLE_DNS_PORT=$(ae_free_port)
  local chall_mgmt
  chall_mgmt=$(ae_free_port)
  export PEBBLE_PORT PEBBLE_MGMT_PORT PEBBLE_DNS_PORT
  _pebble_gen_certs
  cat >"$T/pebble-config.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$PEBBLE_PORT",
    "managementListenAddress": "127.0.0.1:$PEBBLE_MGMT_PORT",
    "certificate": "$T/pebble-tls/cert.pem",
    "privateKey": "$T/pebble-tls/key.pem",
    "httpPort": $AE_HTTP_PORT,
    "tlsPort": $AE_HTTPS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
  if [ -n "$extra" ]; then
    _ae_json_merge "$T/pebble-config.json" "{\"pebble\": {$extra}}" ||
      ae_fail "pebble_start: bad JSON_EXTRA: $extra"
  fi
  ae_bg challtestsrv pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" \
    -http01 "" -https01 "" -tlsalpn01 "" -dns01 "127.0.0.1:$PEBBLE_DNS_PORT" \
    -management "127.0.0.1:$chall_mgmt"
  ae_wait_for ae_port_open "$chall_mgmt" || ae_fail "pebble-challtestsrv did not start"
  export PEBBLE_CHALL_MGMT="http://127.0.0.1:$chall_mgmt" # /add-a, /clear-a, /set-cname, ...
  export PEBBLE_DIR="https://127.0.0.1:$PEBBLE_PORT/dir"
  export PEBBLE_MGMT="https://127.0.0.1:$PEBBLE_MGMT_PORT"
  export PEBBLE_LOG="$T/pebble.log"
  _pebble_launch
}

# Stops Pebble (SIGTERM, then SIGKILL); the ports and config stay for pebble_restart.
pebble_stop() {
  if [ -f "$T/pebble.pid" ]; then
    ae_kill_pid "$(cat "$T/pebble.pid")" 50
  fi
}

# Restarts Pebble with the same ports and config (the log is appended to).
pebble_restart() {
  pebble_stop
  _pebble_launch
}

# Number of new orders Pebble logged so far (one "There are now N orders in the db" per order).
pebble_count_orders() {
  local n
  n=$(grep -c 'There are now [0-9]* orders in the db' "$T/pebble.log" 2>/dev/null || true)
  echo "${n:-0}"
}

# Number of new accounts Pebble logged so far ("There are now N accounts in memory").
pebble_count_accounts() {
  local n
  n=$(grep -c 'There are now [0-9]* accounts in memory' "$T/pebble.log" 2>/dev/null || true)
  echo "${n:-0}"
}

# ae_config_write FILE [JSON_OVERRIDES] : an acmedge config for this test.
ae_config_write() {
  local file=$1 overrides=${2:-}
  if [ -z "${AE_HTTP_PORT:-}" ]; then AE_HTTP_PORT=$(ae_free_port); fi
  if [ -z "${AE_HTTPS_PORT:-}" ]; then AE_HTTPS_PORT=$(ae_free_port); fi
  if [ -z "${AE_ADMIN_PORT:-}" ]; then AE_ADMIN_PORT=$(ae_free_port); fi
  export AE_HTTP_PORT AE_HTTPS_PORT AE_ADMIN_PORT
  local dir=${PEBBLE_DIR:-https://127.0.0.1:9/dir}
  local ca_json=null
  if [ -n "${PEBBLE_CA:-}" ]; then ca_json="\"$PEBBLE_CA\""; fi
  cat >"$file" <<EOF
{
  "listen": {
    "https": "127.0.0.1:$AE_HTTPS_PORT",
    "http": "127.0.0.1:$AE_HTTP_PORT",
    "admin": "127.0.0.1:$AE_ADMIN_PORT"
  },
  "storage": { "path": "$T/storage" },
  "default_cert": { "cert": "$T/default.crt", "key": "$T/default.key" },
  "acme": {
    "directory": "$dir",
    "ca_bundle": $ca_json,
    "email": "ops@example.test",
    "challenges": ["http-01", "tls-alpn-01"],
    "key_type": "ecdsa-p256"
  },
  "on_demand": {
    "enabled": true,
    "allow": ["*.example.test"],
    "backoff": { "initial_s": 2, "max_s": 3600 }
  },
  "log": { "level": "debug", "format": "text" }
}
EOF
  if [ -n "$overrides" ]; then
    _ae_json_merge "$file" "$overrides" || ae_fail "ae_config_write: bad JSON_OVERRIDES: $overrides"
  fi
}

# acmedge_start CONFIG : runs the binary, waits (<= 10 s) until its https port accepts.
acmedge_start() {
  local cfg=$1 i
  ae_bg acmedge "$ACMEDGE_BIN" run -c "$cfg"
  ACMEDGE_PID=$(cat "$T/acmedge.pid")
  export ACMEDGE_PID
  for ((i = 0; i < 100; i++)); do
    if ae_port_open "$AE_HTTPS_PORT"; then
      return 0
    fi
    ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge exited during start-up"
    sleep 0.1
  done
  ae_fail "acmedge did not listen on 127.0.0.1:$AE_HTTPS_PORT within 10 s"
}

# acmedge_stop : SIGTERM, then requires exit status 0 within 10 s.
acmedge_stop() {
  local pid=${ACMEDGE_PID:?acmedge not started} i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    ae_pid_alive "$pid" || break
    sleep 0.1
  done
  if ae_pid_alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    ae_fail "acmedge did not exit within 10 s of SIGTERM"
  fi
  wait "$pid" 2>/dev/null || rc=$?
  [ "$rc" -eq 0 ] || ae_fail "acmedge exited with status $rc"
}

# ae_sni_cert NAME [PORT] : handshake with SNI NAME (no verification); prints the served leaf's
# subject/issuer/SAN lines.
ae_sni_cert() {
  local name=$1 port=${2:-$AE_HTTPS_PORT} out
  out=$(timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$name" -p "$port" 127.0.0.1 \
    </dev/null 2>/dev/null || true)
  printf '%s\n' "$out" | awk 'd{next} /-----BEGIN CERTIFICATE-----/{p=1} p{print} /-----END CERTIFICATE-----/{if (p) d=1}' |
    certtool -i 2>/dev/null | grep -E 'Subject:|Issuer:|DNSname:' || true
}

# ae_verify_chain NAME [PORT] : 0 when the chain served for SNI NAME verifies against Pebble's root.
ae_verify_chain() {
  local name=$1 port=${2:-$AE_HTTPS_PORT}
  timeout 10 gnutls-cli --x509cafile="$T/pebble-root.pem" --sni-hostname="$name" \
    --verify-hostname="$name" -p "$port" 127.0.0.1 </dev/null >"$T/verify-$name.out" 2>&1
}

# redis_start [ARGS...] : a throwaway redis-server on 127.0.0.1 (no persistence, no eviction, no
# RDB compression so tests can grep a dump), port in $REDIS_PORT; waits (<= 10 s) for PING.
# ARGS are extra redis-server options, kept for redis_restart.
redis_start() {
  if [ -z "${REDIS_PORT:-}" ]; then REDIS_PORT=$(ae_free_port); fi
  export REDIS_PORT
  REDIS_ARGS=("$@")
  mkdir -p "$T/redis"
  echo "--- redis start $(date +%T) ---" >>"$T/redis.log"
  ae_bg redis redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --maxmemory-policy noeviction --rdbcompression no --dir "$T/redis" "${REDIS_ARGS[@]}"
  local i
  for ((i = 0; i < 100; i++)); do
    if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" PING 2>/dev/null)" = PONG ]; then
      return 0
    fi
    ae_pid_alive "$(cat "$T/redis.pid")" || ae_fail "redis-server exited during start-up"
    sleep 0.1
  done
  ae_fail "redis-server did not answer PING on 127.0.0.1:$REDIS_PORT within 10 s"
}

# redis_stop : stops the test's redis-server (its data is lost: no persistence).
redis_stop() {
  if [ -f "$T/redis.pid" ]; then
    ae_kill_pid "$(cat "$T/redis.pid")" 50
  fi
}

# ae_rcli ARGS... : redis-cli against the test's redis-server (raw output).
ae_rcli() {
  redis-cli --raw -h 127.0.0.1 -p "$REDIS_PORT" "$@"
}
