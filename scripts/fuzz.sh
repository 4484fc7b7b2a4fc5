#!/usr/bin/env bash
# Builds every libFuzzer target (fuzz/fuzz_*.c) with clang into build-fuzz and runs each for
# FUZZ_SECONDS (default 30) over its committed corpus fuzz/corpus_<name>; fails on any crash,
# sanitizer report or broken invariant. New inputs go to a scratch directory, not the tree.
# Extra libFuzzer flags for one target (e.g. -max_len=4096) go on one line in fuzz/fuzz_<name>.options.
# Usage: scripts/fuzz.sh [target-name...]   (names without the fuzz_ prefix; default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${FUZZ_SECONDS:-30}
command -v clang >/dev/null || { echo "fuzz.sh: clang is required (scripts/setup.sh installs it)" >&2; exit 1; }

CC=clang cmake -S "$root" -B "$root/build-fuzz" -DAE_FUZZ=ON -DAE_TESTS=OFF -DAE_WERROR=ON >/dev/null
cmake --build "$root/build-fuzz" -j2

if (($#)); then
  names=("$@")
else
  names=()
  for f in "$root"/fuzz/fuzz_*.c; do
    n=$(basename "$f" .c)
    names+=("${n#fuzz_}")
  done
fi

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
failed=0
for n in "${names[@]}"; do
  bin="$root/build-fuzz/fuzz_$n"
  corpus="$root/fuzz/corpus_$n"
  [ -x "$bin" ] || { echo "fuzz.sh: no binary for $n" >&2; failed=1; continue; }
  [ -d "$corpus" ] || { echo "fuzz.sh: missing corpus $corpus" >&2; failed=1; continue; }
  opts=()
  if [ -f "$root/fuzz/fuzz_$n.options" ]; then read -ra opts <"$root/fuzz/fuzz_$n.options"; fi
  mkdir -p "$scratch/$n"
  echo "== fuzz_$n for ${secs}s"
  if ! (cd "$scratch/$n" && "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 "${opts[@]}" "$scratch/$n" "$corpus" >"$scratch/$n.log" 2>&1); then
    tail -40 "$scratch/$n.log" >&2
    ls "$scratch/$n"/crash-* "$scratch/$n"/leak-* "$scratch/$n"/timeout-* 2>/dev/null |
      while read -r c; do mkdir -p "$root/build-fuzz/crashes"; cp "$c" "$root/build-fuzz/crashes/"; done
    echo "fuzz.sh: fuzz_$n FAILED (reproducers in build-fuzz/crashes/)" >&2
    failed=1
    continue
  fi
  grep -E '^stat::number_of_executed_units' "$scratch/$n.log" || true
done
exit $failed
