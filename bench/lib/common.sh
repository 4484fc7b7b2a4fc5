# shellcheck shell=bash
# Shared start of every bench script and the helpers they have in common. Sourced right after the
# script sets BENCH_DIR; sets SRC_DIR, the ACMEDGE_BIN / CADDY_BIN (exported) and NGINX_BIN
# defaults and CLK_TCK, and sources tests/lib/common.sh (ae_bg, ae_fail, ae_free_port,
# pebble_start, ...).

SRC_DIR=$(cd "$BENCH_DIR/.." && pwd)
: "${ACMEDGE_BIN:=$SRC_DIR/build/acmedge}"
: "${CADDY_BIN:=caddy}"
: "${NGINX_BIN:=nginx}"
export BENCH_DIR ACMEDGE_BIN CADDY_BIN
BENCH_SCRIPT=${0##*/}
CLK_TCK=$(getconf CLK_TCK)

# shellcheck source-path=SCRIPTDIR/.. source=../tests/lib/common.sh
source "$SRC_DIR/tests/lib/common.sh"

# ---- preconditions -------------------------------------------------------------------------------
# bench_require_sides SIDES : exits 2 unless each of the space-separated SIDES (acmedge, caddy) is
# known and its binary is there.
bench_require_sides() {
  local side
  for side in $1; do
    case $side in
    acmedge | acmedge-dns | acmedge-fair) [ -x "$ACMEDGE_BIN" ] || { echo "$BENCH_SCRIPT: no acmedge binary at $ACMEDGE_BIN" >&2; exit 2; } ;;
    caddy) command -v "$CADDY_BIN" >/dev/null || { echo "$BENCH_SCRIPT: $CADDY_BIN not found" >&2; exit 2; } ;;
    *) echo "$BENCH_SCRIPT: unknown side $side" >&2; exit 2 ;;
    esac
  done
}

# bench_require_tools TOOL... : exits 2 unless every TOOL is on PATH (or an executable path).
bench_require_tools() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null || { echo "$BENCH_SCRIPT: $tool not found" >&2; exit 2; }
  done
}

# ---- work dir with one sub-dir per run ($T), each with its own processes -------------------------
# bench_base NAME : makes the work dir $BASE ("acmedge-NAME.XXXXXX" under TMPDIR) with an empty
# $RESULTS file, and installs the traps that clean up after it on exit.
bench_base() {
  BASE=$(mktemp -d "${TMPDIR:-/tmp}/acmedge-$1.XXXXXX")
  RESULTS=$BASE/results
  : >"$RESULTS"
  trap _bench_on_exit EXIT
  trap 'exit 130' INT TERM
}

# Stops every process of every run (newest first), shows the logs of the run that failed, removes
# the work dir (kept with AE_KEEP=1).
_bench_on_exit() {
  local rc=$? d pid f
  set +e
  trap - EXIT
  for d in "$BASE"/*/; do
    [ -f "$d/.pids" ] || continue
    for pid in $(tac "$d/.pids"); do
      ae_kill_pid "$pid" 20
    done
  done
  if [ "$rc" -ne 0 ] && [ -n "${T:-}" ] && [ -d "$T" ]; then
    for f in "$T"/*.log; do
      [ -f "$f" ] || continue
      echo "===== $(basename "$f") (last 40 lines) =====" >&2
      tail -n 40 "$f" >&2
    done
  fi
  if [ "${AE_KEEP:-0}" = "1" ]; then
    echo "work dir kept: $BASE" >&2
  else
    rm -rf "$BASE"
  fi
  exit "$rc"
}

# bench_run_dir DIR : makes DIR the current run ($T, exported, with empty kill and port lists),
# picks fresh loopback ports AE_HTTP_PORT / AE_HTTPS_PORT and starts a Pebble validating on them.
bench_run_dir() {
  T=$1
  export T
  mkdir -p "$T"
  : >"$T/.pids"
  : >"$T/.ports"
  unset AE_ADMIN_PORT PEBBLE_DIR PEBBLE_CA PEBBLE_MGMT PEBBLE_LOG
  AE_HTTP_PORT=$(ae_free_port)
  AE_HTTPS_PORT=$(ae_free_port)
  export AE_HTTP_PORT AE_HTTPS_PORT
  pebble_start ""
}

# bench_run_stop : stops the processes of the current run, newest first.
bench_run_stop() {
  local pid
  for pid in $(tac "$T/.pids"); do
    ae_kill_pid "$pid" 50
  done
  : >"$T/.pids"
}

# _field KEY LINE : value of KEY=VALUE in a summary line.
_field() {
  printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

# ---- servers -------------------------------------------------------------------------------------
# bench_wait_port NAME PID PORT SECS : waits until 127.0.0.1:PORT accepts; fails when PID exits
# first or after SECS seconds.
bench_wait_port() {
  local name=$1 pid=$2 port=$3 secs=$4 i
  for ((i = 0; i < secs * 10; i++)); do
    if ae_port_open "$port"; then
      return 0
    fi
    ae_pid_alive "$pid" || ae_fail "$name exited during start-up"
    sleep 0.1
  done
  ae_fail "$name did not listen on 127.0.0.1:$port within $secs s"
}

# caddy_run CONFIG : starts $CADDY_BIN with the JSON CONFIG (log $T/caddy.log, pid in CADDY_PID);
# HOME and the XDG dirs point into $T so nothing outside it is written.
caddy_run() {
  mkdir -p "$T/caddy-home"
  ae_bg caddy env HOME="$T/caddy-home" XDG_DATA_HOME="$T/caddy-home/data" \
    XDG_CONFIG_HOME="$T/caddy-home/config" "$CADDY_BIN" run --config "$1"
  # shellcheck disable=SC2034 # read by the scripts
  CADDY_PID=$(cat "$T/caddy.pid")
}

# nginx_start DIR PORT : checks and starts $NGINX_BIN with DIR/nginx.conf (prefix DIR, logs in
# DIR/logs), waits until it listens on PORT; pid in NGINX_PID.
nginx_start() {
  local d=$1 port=$2
  "$NGINX_BIN" -t -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log" >"$T/nginx-check.log" 2>&1 ||
    ae_fail "nginx rejected its config: $(tail -5 "$T/nginx-check.log")"
  ae_bg nginx "$NGINX_BIN" -p "$d" -c "$d/nginx.conf" -e "$d/logs/error.log"
  # shellcheck disable=SC2034 # read by the scripts
  NGINX_PID=$(cat "$T/nginx.pid")
  ae_wait_for ae_port_open "$port" || ae_fail "nginx did not listen on $port"
}

# bench_ca DIR : a throwaway ECDSA P-256 CA in DIR (ca.key, ca.pem) for the bench certificates.
bench_ca() {
  local d=$1
  mkdir -p "$d"
  printf 'cn = "acmedge bench CA"\nca\ncert_signing_key\nexpiration_days = 30\n' >"$d/ca.tmpl"
  certtool --generate-privkey --key-type=ecdsa --curve=secp256r1 --outfile "$d/ca.key" >/dev/null 2>&1
  certtool --generate-self-signed --load-privkey "$d/ca.key" --template "$d/ca.tmpl" \
    --outfile "$d/ca.pem" >/dev/null 2>&1
}

# ---- server resources from /proc (the load generators share the cores, so the servers' own CPU
# time is what compares) ------------------------------------------------------------------------------
# rss_kib PID : VmRSS of the process in KiB.
rss_kib() {
  awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

# cpu_ms PID : utime + stime of the process (all its threads) in milliseconds.
cpu_ms() {
  awk -v hz="$CLK_TCK" '{ printf "%.0f", ($14 + $15) * 1000 / hz }' "/proc/$1/stat"
}

_cpu_ticks1() {
  awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# _proc_sum FN PID... : FN PID summed over the PIDs; a PID that is gone counts 0.
_proc_sum() {
  local fn=$1 total=0 pid v
  shift
  for pid in "$@"; do
    v=$("$fn" "$pid" 2>/dev/null) || v=0
    total=$((total + v))
  done
  echo "$total"
}

# cpu_ticks PID... : utime+stime (clock ticks) summed over the PIDs and their threads.
cpu_ticks() {
  _proc_sum _cpu_ticks1 "$@"
}

# rss_kb PID... : VmRSS (KiB) summed over the PIDs.
rss_kb() {
  _proc_sum rss_kib "$@"
}

# proc_family MAINPID : the process and its direct children (nginx's worker).
proc_family() {
  echo "$1"
  pgrep -P "$1" 2>/dev/null || true
}

# cpu_sample_start MAINPID : notes MAINPID's family and the CPU ticks it has used so far.
cpu_sample_start() {
  mapfile -t _BENCH_CPU_PIDS < <(proc_family "$1")
  _BENCH_CPU_T0=$(cpu_ticks "${_BENCH_CPU_PIDS[@]}")
}

# cpu_sample_end PER_S : CPU time the same processes used since cpu_sample_start, in 1/PER_S
# seconds (1000: ms), rounded.
cpu_sample_end() {
  local t1
  t1=$(cpu_ticks "${_BENCH_CPU_PIDS[@]}")
  awk -v d="$((t1 - _BENCH_CPU_T0))" -v hz="$CLK_TCK" -v f="$1" 'BEGIN { printf "%.0f", d * f / hz }'
}
