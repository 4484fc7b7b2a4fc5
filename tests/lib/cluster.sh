# shellcheck shell=bash
# Helpers shared by the tests that run several acmedge instances on one Redis.
# Source after common.sh.

# serial_at PORT NAME: the serial of the certificate served for NAME on PORT ("" when none).
serial_at() {
  timeout 10 gnutls-cli --insecure --print-cert --sni-hostname="$2" -p "$1" 127.0.0.1 </dev/null 2>/dev/null |
    awk '/BEGIN CERT/{p=1} p{print} /END CERT/{exit}' | certtool -i 2>/dev/null | awk '/Serial Number/{print $NF; exit}' || true
}

# inst_wait_listen NAME PORT TRIES: returns once instance NAME listens on PORT, checked every
# 0.1 s TRIES times; fails the test otherwise.
inst_wait_listen() {
  local i
  for ((i = 0; i < $3; i++)); do
    ae_port_open "$2" && return 0
    sleep 0.1
  done
  ae_fail "instance $1 did not listen"
}
