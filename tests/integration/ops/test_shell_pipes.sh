#!/usr/bin/env bash
# The project's shell scripts run under `set -o pipefail`: a reader that stops early (grep -q,
# grep -m, head, an awk that exits) makes a writer still writing die of SIGPIPE, and the
# pipeline then fails although the match was found (a test fails, or `set -e` aborts it, only
# when the writer's output spans more than one write: under load, on big logs). This check keeps
# every such reader out of pipelines in tests/, scripts/ and bench/; read to the end instead
# (`grep PATTERN >/dev/null`, `sed -n 1p`, awk with a flag instead of exit).
set -euo pipefail
SRC=${AE_SRC:-$(cd "$(dirname "$0")/../../.." && pwd)}
self=$(realpath "$0")
bad=0
while IFS= read -r -d '' f; do
  [ "$(realpath "$f")" = "$self" ] && continue
  # A pipeline whose status is ignored (`|| true`) may stop early.
  hits=$(awk '
    /^[ \t]*#/ || /\|\| true/ { next }
    /\|[ \t]*grep[ \t]+(-[a-zA-Z]*[qm]|[^|]*[ \t]-m[ \t]*[0-9])/ ||
    /\|[ \t]*head([ \t]|\)|$)/ ||
    /\|[ \t]*awk[ \t][^|]*[{;][ \t]*exit[ \t]*[};]/ { printf "%s:%d: %s\n", FILENAME, FNR, $0 }
  ' "$f")
  if [ -n "$hits" ]; then
    printf '%s\n' "$hits"
    bad=1
  fi
done < <(find "$SRC/tests" "$SRC/scripts" "$SRC/bench" -name '*.sh' -print0)
if [ "$bad" != 0 ]; then
  echo "FAIL: early-exiting readers in pipelines (see above)" >&2
  exit 1
fi
echo ok
