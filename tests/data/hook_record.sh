#!/bin/sh
# Test hook: records its arguments, environment and stdin into $HOOK_OUT_DIR/<event id>.txt.
set -eu
out="$HOOK_OUT_DIR/$ACMEDGE_EVENT_ID.txt"
{
  echo "EVENT=$ACMEDGE_EVENT"
  echo "DOMAIN=$ACMEDGE_DOMAIN"
  echo "ARGS=$*"
  echo "PARENT_ENV=${HOOK_PARENT_VAR:-unset}"
  cat
} > "$out.tmp"
if [ -n "${HOOK_DELAY:-}" ]; then sleep "$HOOK_DELAY"; fi
mv "$out.tmp" "$out"
