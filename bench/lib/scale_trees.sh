# shellcheck shell=bash
# Shared by bench/scale.sh and bench/scale_cpu.sh: timing helpers, a run directory without Pebble,
# and the generated storage trees of N stored names (kept in $TREE_DIR between runs). Sourced after
# bench/lib/common.sh.
: "${TREE_DIR:=/var/tmp/acmedge-bench}"

now_ms() { echo $(($(date +%s%N) / 1000000)); }
phase() { echo "  [phase] $1: $(($(now_ms) - $2)) ms"; }
# run_dir DIR : DIR becomes the current run ($T) with fresh loopback ports (no CA is contacted).
run_dir() {
  T=$1
  export T
  mkdir -p "$T"
  : >"$T/.pids"
  : >"$T/.ports"
  unset AE_ADMIN_PORT PEBBLE_DIR PEBBLE_CA
  AE_HTTP_PORT=$(ae_free_port)
  AE_HTTPS_PORT=$(ae_free_port)
  export AE_HTTP_PORT AE_HTTPS_PORT
}

# tree N : prints the directory of a storage tree with N names s<i>.bench.test (CA host
# 127.0.0.1_9, the host of the unreachable directory URL the configs name), generating it once.
tree() {
  local n=$1 d=$TREE_DIR/tree-$1 t0
  if [ ! -f "$d/.complete" ]; then
    rm -rf "$d"
    mkdir -p "$d"
    t0=$(now_ms)
    nice -n 10 python3 "$SRC_DIR/tests/integration/helpers/gen_stored_certs.py" --root "$d/storage" \
      --ca-host 127.0.0.1_9 --count "$n" --prefix s --domain bench.test --serials "$d/serials.txt" \
      --link-key --jobs 2 >"$d/gen.log" 2>&1 || ae_fail "generating $n certificates failed: $(tail -3 "$d/gen.log")"
    echo $((($(now_ms) - t0) / 1000)) >"$d/.complete"
    echo "  [phase] generate $n certificates: $(($(now_ms) - t0)) ms" >&2
  else
    echo "  [phase] generate $n certificates: reused $d (generated earlier in $(cat "$d/.complete") s)" >&2
  fi
  echo "$d"
}

# wait_log FILE PATTERN SECS : waits until FILE has a line matching PATTERN.
wait_log() {
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    grep -q "$2" "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

