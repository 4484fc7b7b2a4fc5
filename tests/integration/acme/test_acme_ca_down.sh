#!/usr/bin/env bash
# Pebble stopped mid-issuance (after the challenge is published, before it is answered): the job
# fails cleanly with a retryable problem. The same process then issues the next name once Pebble
# is back (restarted: it forgot the account, which is registered again within that job).
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
pebble_start
ae_config_write "$T/acmedge.json"

: >"$T/issue.out"
mkfifo "$T/ctl"
exec 7<>"$T/ctl"
timeout 90 "$AE_TOOL_acme_issue" --config "$T/acmedge.json" --timeout 80 --pause-at challenge_ready \
  --pause-between down.example.test up.example.test <"$T/ctl" >"$T/issue.out" 2>"$T/issue.log" &
pid=$!
echo "$pid" >>"$T/.pids"

wait_line() { # PATTERN: waits up to 30 s for a line in the tool's output
  local i
  for ((i = 0; i < 300; i++)); do
    grep -q "$1" "$T/issue.out" && return 0
    ae_pid_alive "$pid" || break
    sleep 0.1
  done
  cat "$T/issue.out"
  ae_fail "no line matching '$1'"
}

wait_line '^paused down.example.test challenge_ready'
pebble_stop
echo go >&7
wait_line '^fail down.example.test '
line=$(grep '^fail down.example.test ' "$T/issue.out")
echo "$line"
case "$line" in
  *" retryable=1") ;;
  *) ae_fail "failure is not retryable: $line" ;;
esac
echo "$line" | grep 'acmedge:ca-unreachable' >/dev/null || ae_fail "expected acmedge:ca-unreachable: $line"

wait_line '^waiting up.example.test'
pebble_restart
echo go >&7
rc=0
for ((i = 0; i < 400; i++)); do
  ae_pid_alive "$pid" || break
  sleep 0.1
done
ae_pid_alive "$pid" && ae_fail "the tool hangs"
wait "$pid" || rc=$?
cat "$T/issue.out"
[ "$rc" = 1 ] || ae_fail "exit status $rc, want 1 (one failed name, clean shutdown)"
grep -q '^ok up.example.test ' "$T/issue.out" || ae_fail "the next name was not issued after the CA came back"
grep -q 'does not know account' "$T/issue.log" || ae_fail "expected the account to be registered again"
echo PASS
