#!/bin/sh
# Test hook that never finishes on its own: a child sleeps, the script waits for it. Both pids are
# recorded so the test can check that the timeout killed the whole process group.
echo $$ > "$HOOK_OUT_DIR/sleep.$ACMEDGE_EVENT_ID.pid"
sleep 1000 &
echo $! > "$HOOK_OUT_DIR/child.$ACMEDGE_EVENT_ID.pid"
wait
