# shellcheck shell=bash
# Helpers shared by the tests that run several acmedge instances on one Redis. Source after
# common.sh.
#
# Instances a, b and c listen on 127.0.0.2, 127.0.0.3 and 127.0.0.4 with the same https, http and
# admin ports (CL_HTTPS, CL_HTTP, CL_ADMIN), as machines behind DNS round-robin would. Redis stays
# on 127.0.0.1. Pebble validates against CL_HTTP / CL_HTTPS at whatever address challtestsrv
# answers for the name: cl_point chooses the instance per name (a name never pointed resolves to
# 127.0.0.1, where no instance listens, so its validation fails).

# cl_addr INSTANCE : the instance's address.
cl_addr() {
  case "$1" in
  a) echo 127.0.0.2 ;;
  b) echo 127.0.0.3 ;;
  c) echo 127.0.0.4 ;;
  *) ae_fail "cl_addr: unknown instance '$1'" ;;
  esac
}

# 0 when something accepts TCP connections on ADDR:PORT.
cl_port_open() {
  (: <"/dev/tcp/$1/$2") 2>/dev/null
}

# Prints a port free on 127.0.0.1 and on every instance address (ae_free_port checks 127.0.0.1 and
# any listening socket; a connect to each instance address catches the rest).
cl_free_port() {
  local i p a ok
  for ((i = 0; i < 50; i++)); do
    p=$(ae_free_port) || return 1
    ok=1
    for a in 127.0.0.2 127.0.0.3 127.0.0.4; do
      if cl_port_open "$a" "$p"; then ok=0; break; fi
    done
    if [ "$ok" = 1 ]; then echo "$p"; return 0; fi
  done
  echo "cl_free_port: no port free on all instance addresses" >&2
  return 1
}

# cl_ports : picks CL_HTTPS, CL_HTTP and CL_ADMIN (shared by every instance) and exports them as
# AE_HTTPS_PORT / AE_HTTP_PORT, the ports pebble_start makes Pebble validate against. Call before
# pebble_start.
cl_ports() {
  CL_HTTPS=$(cl_free_port)
  CL_HTTP=$(cl_free_port)
  CL_ADMIN=$(cl_free_port)
  export CL_HTTPS CL_HTTP CL_ADMIN AE_HTTPS_PORT=$CL_HTTPS AE_HTTP_PORT=$CL_HTTP AE_ADMIN_PORT=$CL_ADMIN
}

# cl_config INSTANCE JSON_OVERRIDES : writes $T/INSTANCE.json listening on the instance's address
# with the shared ports.
cl_config() {
  local a
  a=$(cl_addr "$1")
  ae_config_write "$T/$1.json" "$2"
  _ae_json_merge "$T/$1.json" "{\"listen\": {\"https\": \"$a:$CL_HTTPS\", \"http\": \"$a:$CL_HTTP\", \"admin\": \"$a:$CL_ADMIN\"}}" ||
    ae_fail "cl_config: cannot set the listen addresses of $1"
}

# cl_admin INSTANCE : base URL of the instance's admin API.
cl_admin() {
  echo "http://$(cl_addr "$1"):$CL_ADMIN"
}

# cl_point NAME INSTANCE : challtestsrv answers NAME with the instance's address from now on, so
# the CA validates NAME against that instance (replaces an earlier answer).
cl_point() {
  local a
  a=$(cl_addr "$2")
  curl -sf --max-time 10 -X POST -d "{\"host\": \"$1\"}" "$PEBBLE_CHALL_MGMT/clear-a" >/dev/null ||
    ae_fail "challtestsrv /clear-a $1 failed"
  curl -sf --max-time 10 -X POST -d "{\"host\": \"$1\", \"addresses\": [\"$a\"]}" "$PEBBLE_CHALL_MGMT/add-a" >/dev/null ||
    ae_fail "challtestsrv /add-a $1 -> $a failed"
}

# serial_at INSTANCE NAME: the serial of the certificate the instance serves for NAME ("" when none).
serial_at() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$2" -p "$CL_HTTPS" "$(cl_addr "$1")" </dev/null 2>/dev/null |
    awk 'd{next} /BEGIN CERT/{p=1} p{print} /END CERT/{if (p) d=1}' | certtool -i 2>/dev/null | awk '!n && /Serial Number/{print $NF; n=1}' || true
}

# issuer_at INSTANCE NAME: the issuer line of the certificate the instance serves for NAME.
issuer_at() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$2" -p "$CL_HTTPS" "$(cl_addr "$1")" </dev/null 2>/dev/null |
    awk 'd{next} /BEGIN CERT/{p=1} p{print} /END CERT/{if (p) d=1}' | certtool -i 2>/dev/null | grep 'Issuer:' | sed -n 1p || true
}

# inst_wait_listen INSTANCE TRIES: returns once the instance listens on its https port, checked
# every 0.1 s TRIES times; fails the test otherwise (or when its process exited).
inst_wait_listen() {
  local i a pid
  a=$(cl_addr "$1")
  pid=$(cat "$T/$1.pid" 2>/dev/null || true)
  for ((i = 0; i < $2; i++)); do
    cl_port_open "$a" "$CL_HTTPS" && return 0
    if [ -n "$pid" ] && ! ae_pid_alive "$pid"; then ae_fail "instance $1 exited during start-up"; fi
    sleep 0.1
  done
  ae_fail "instance $1 did not listen on $a:$CL_HTTPS"
}

# inst_run INSTANCE : starts (or restarts) the instance from $T/INSTANCE.json, waits until it listens.
inst_run() {
  ae_bg "$1" "$ACMEDGE_BIN" run -c "$T/$1.json"
  inst_wait_listen "$1" 150
}
