#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole ctest suite (unit + integration), then the
# same suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
# Then every fuzz target for a bounded time (scripts/fuzz.sh).
# Usage: scripts/test.sh [--no-asan] [--no-fuzz] [ctest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

asan=1
fuzz=1
while [[ "${1:-}" == "--no-asan" || "${1:-}" == "--no-fuzz" ]]; do
  [[ "$1" == "--no-asan" ]] && asan=0
  [[ "$1" == "--no-fuzz" ]] && fuzz=0
  shift
done

scripts/setup.sh

jobs=$(nproc 2>/dev/null || echo 2)

run_suite() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DAE_WERROR=ON -DAE_TESTS=ON "$@" >/dev/null
  cmake --build "$dir" -j"$jobs"
  (cd "$dir" && ctest --output-on-failure --timeout 600 -j"$jobs" "${CTEST_ARGS[@]}")
}

CTEST_ARGS=("$@")
echo "== build + tests"
run_suite "$root/build"

if ((asan)); then
  echo "== build + tests under ASan+UBSan"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:detect_stack_use_after_return=0"
  export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  run_suite "$root/build-asan" -DAE_SANITIZE=ON
fi
if ((fuzz)); then
  echo "== fuzz targets (FUZZ_SECONDS=${FUZZ_SECONDS:-30} each)"
  scripts/fuzz.sh
fi
echo "== all tests passed"
