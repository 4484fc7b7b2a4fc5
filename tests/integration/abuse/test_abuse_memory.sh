#!/usr/bin/env bash
# Memory under a random-SNI flood outside the allow list: after a warm-up of 1,500 random names
# (thread arenas, TLS state and the event ring reach their working size), 12,000 more random names grow acmedge's RSS by at most 1 MiB. Every name is
# refused (domain_denied counted in the metric), no order is placed and no file is written. (A map
# of the denied names, even one bounded at 10,000 entries, grew RSS by 1.3 MiB here.)
# Under AddressSanitizer RSS says nothing about the program (quarantine, shadow memory): the flood
# still runs and everything else is checked, the growth is only printed.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
: "${AE_TOOL_hsload:?AE_TOOL_hsload must be set (ctest sets it)}"
ae_setup
ae_config_write "$T/acmedge.json" '{"log": {"level": "info"}}'
acmedge_start "$T/acmedge.json"
pid=$ACMEDGE_PID

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status"; }

# names FILE N : N random names outside the allow list (*.example.test), one a line.
names() {
  python3 -c '
import random, string, sys
rnd = random.SystemRandom()
a = string.ascii_lowercase + string.digits
for _ in range(int(sys.argv[1])):
    print("".join(rnd.choice(a) for _ in range(12)) + ".example.org")' "$2" >"$1"
}

# flood FILE N : one handshake for each name of FILE, 4 at a time; all must complete (with the
# default certificate).
flood() {
  local out
  out=$("$AE_TOOL_hsload" -c 4 -n "$2" --sni-file "$1" --in-order 127.0.0.1 "$AE_HTTPS_PORT" 2>&1 | tail -1)
  case "$out" in
  "RESULT ok=$2 failed=0 "*) ;;
  *) ae_fail "flood of $2 names: $out" ;;
  esac
}

# denied : acmedge_denied_total{reason="not_allowed"}.
denied() {
  local v
  v=$(curl -s --noproxy '*' --max-time 10 "http://127.0.0.1:$AE_ADMIN_PORT/metrics" |
    awk 'index($0, "acmedge_denied_total{") == 1 && index($0, "reason=\"not_allowed\"") {print $2}')
  echo "${v:-0}"
}

names "$T/warm.txt" 1500
names "$T/flood.txt" 12000
flood "$T/warm.txt" 1500
sleep 1
r0=$(rss_kib)
flood "$T/flood.txt" 12000
# Denials are counted on the control loop after the handshakes: wait for the last of them.
for ((i = 0; i < 300; i++)); do
  [ "$(denied)" -ge 13500 ] && break
  sleep 0.1
done
[ "$(denied)" -ge 13500 ] || ae_fail "only $(denied) of 13500 names counted as denied"
r1=$(rss_kib)
growth=$((r1 - r0))
echo "RSS after warm-up ${r0} KiB, after 12,000 more names ${r1} KiB: growth ${growth} KiB"
! grep -q 'issuance_started' "$T/acmedge.log" || ae_fail "the flood caused an order"
[ -z "$(ls -A "$T/storage/certs" 2>/dev/null || true)" ] || ae_fail "the flood left files in storage"
if grep -q '__asan_init' "$ACMEDGE_BIN"; then
  echo "sanitizer build: RSS growth not asserted"
else
  ((growth <= 1024)) || ae_fail "RSS grew by ${growth} KiB under a 12,000-name flood (bound: 1024 KiB)"
fi
ae_pid_alive "$pid" || ae_fail "acmedge exited during the flood"
acmedge_stop
echo "PASS"
