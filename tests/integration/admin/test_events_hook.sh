#!/usr/bin/env bash
# events.hook: the hook program gets every event (JSON on stdin, ACMEDGE_EVENT / ACMEDGE_DOMAIN in
# its environment, no shell in between) and writes it to a file; events.hook_types filters; a hook
# that never finishes is killed at hook_timeout_ms while provisioning goes on undisturbed.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
source "$AE_SRC/tests/lib/ondemand.sh"
ae_setup
pebble_start

# ---- 1. recording hook, every event type
export HOOK_OUT_DIR=$T/hook-out
mkdir -p "$HOOK_OUT_DIR"
ae_config_write "$T/acmedge.json" "{\"events\": {\"hook\": [\"$AE_SRC/tests/data/hook_record.sh\", \"--from-acmedge\"], \"hook_timeout_ms\": 5000}}"
acmedge_start "$T/acmedge.json"

name=hook.example.test
ae_sni_cert "$name" >/dev/null
od_wait_issued "$name" 30
od_wait_event cert_installed "$name" 10

# hook_file TYPE DOMAIN : prints the file the hook wrote for that event (waits up to 10 s).
hook_file() {
  local type=$1 domain=$2 i f
  for ((i = 0; i < 100; i++)); do
    f=$(grep -lx "EVENT=$type" "$HOOK_OUT_DIR"/*.txt 2>/dev/null | xargs -r grep -lx "DOMAIN=$domain" 2>/dev/null | sed -n 1p || true)
    if [ -n "$f" ]; then
      echo "$f"
      return 0
    fi
    sleep 0.1
  done
  return 1
}
for ev in domain_requested issuance_started challenge_ready challenge_valid cert_issued cert_installed; do
  f=$(hook_file "$ev" "$name") || ae_fail "hook did not record $ev for $name: $(ls "$HOOK_OUT_DIR")"
  grep -qx 'ARGS=--from-acmedge' "$f" || ae_fail "hook arguments wrong in $f"
  "$AE_PY" - "$f" "$ev" "$name" <<'PY' || ae_fail "hook stdin for $ev is not the event JSON: $(cat "$f")"
import json, sys
path, ev, name = sys.argv[1:4]
text = open(path).read()
obj = json.loads(text[text.index("{"):])
assert obj["type"] == ev and obj["domain"] == name and isinstance(obj["id"], int), obj
PY
done
# The event ids the hook saw match the file names (ACMEDGE_EVENT_ID).
f=$(hook_file cert_issued "$name")
id=$(basename "$f" .txt)
grep -q "\"id\":$id," "$f" || ae_fail "ACMEDGE_EVENT_ID does not match the JSON id in $f"
acmedge_stop

# ---- 2. a hook that never ends: killed at its timeout, provisioning unaffected; type filter
rm -f "$HOOK_OUT_DIR"/*
ae_config_write "$T/acmedge.json" "{\"events\": {\"hook\": \"$AE_SRC/tests/data/hook_sleep.sh\", \"hook_timeout_ms\": 1500, \"hook_types\": [\"domain_requested\"]}}"
: >"$T/acmedge.log"
acmedge_start "$T/acmedge.json"
slow=slow.example.test
t0=$(date +%s%N)
ae_sni_cert "$slow" >/dev/null
od_wait_issued "$slow" 30
t1=$(date +%s%N)
# Issuance did not wait for the hook (which is still sleeping at this point, or already killed).
ms=$(((t1 - t0) / 1000000))
[ "$ms" -lt 20000 ] || ae_fail "issuance took $ms ms with a hanging hook"
ae_wait_for grep -q 'killed after 1500 ms' "$T/acmedge.log" || sleep 3
grep -q 'killed after 1500 ms' "$T/acmedge.log" || ae_fail "hanging hook was not killed at its timeout"
# Only domain_requested ran the hook.
n=$(ls "$HOOK_OUT_DIR" | grep -c '^sleep\.' || true)
[ "$n" -eq 1 ] || ae_fail "hook_types filter: hook ran $n times, want 1 ($(ls "$HOOK_OUT_DIR"))"
# The hook's own child went with it.
child=$(cat "$HOOK_OUT_DIR"/child.*.pid)
for ((i = 0; i < 30; i++)); do ae_pid_alive "$child" || break; sleep 0.1; done
ae_pid_alive "$child" && ae_fail "the hook's child process survived the timeout kill"
# Still serving, and another name still issues.
od_wait_issued other.example.test 30
acmedge_stop
echo "ok"
