#!/usr/bin/env bash
# log.file and SIGUSR1: after the file is moved away (as logrotate does), SIGUSR1 makes acmedge
# create a new file at the configured path and write the following lines there; the moved file
# keeps the older lines.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
ae_config_write "$T/acmedge.json" "{\"log\": {\"file\": \"$T/logs/acmedge.out\"}}"
mkdir -p "$T/logs"
acmedge_start "$T/acmedge.json"
LOG=$T/logs/acmedge.out
ae_wait_for grep -q 'running (pid' "$LOG" || ae_fail "start-up lines not written to log.file"
[ "$(stat -c %a "$LOG")" = 640 ] || ae_fail "log file mode is $(stat -c %a "$LOG"), expected 640"

mv "$LOG" "$LOG.1"
curl -s --noproxy '*' "http://127.0.0.1:$AE_ADMIN_PORT/healthz" >/dev/null
kill -USR1 "$ACMEDGE_PID"
ae_wait_for test -s "$LOG" || ae_fail "no new log file after SIGUSR1"
ae_wait_for grep -q 'log file reopened' "$LOG" || ae_fail "new file lacks the reopen line"
# New activity goes to the new file, not to the moved one.
kill -HUP "$ACMEDGE_PID"
ae_wait_for grep -q 'configuration reloaded' "$LOG" || ae_fail "lines after SIGUSR1 did not reach the new file"
grep -q 'configuration reloaded' "$LOG.1" && ae_fail "the moved file still receives lines"
grep -q 'running (pid' "$LOG.1" || ae_fail "the moved file lost its lines"

# An unwritable log.file is a clear start-up error.
ae_config_write "$T/bad.json" "{\"log\": {\"file\": \"$T/missing-dir/x.log\"}}"
acmedge_stop
set +e
out=$("$ACMEDGE_BIN" run -c "$T/bad.json" 2>&1)
rc=$?
set -e
[ "$rc" -eq 1 ] || ae_fail "unwritable log.file: exit $rc, expected 1"
printf '%s\n' "$out" | grep "log.file: cannot open $T/missing-dir/x.log" >/dev/null ||
  ae_fail "unwritable log.file error does not name the field and path: $out"
echo ok
