#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# RSS per cached domain: acmedge beside Caddy, the same certificates, the same run.
#
# Generates MEM_MAX certificates (ECDSA P-256 leaves, each with its own key, signed by one
# throwaway CA; bench/tools/gen_certs.py) in acmedge's storage layout. For each count N (0 for the
# baseline, then MEM_COUNTS) and each server: start it with the first N certificates, wait until
# it has loaded them, read VmRSS ("loaded"), do one verified TLS handshake per name (so a server
# that loads lazily has every certificate in memory too), read VmRSS again ("served"), stop it.
# RSS per domain = (RSS_N - RSS_0) / N. acmedge gets the files in its storage dir (on-demand off);
# Caddy gets them through "tls": {"certificates": {"load_files": [...]}}.
#
# Usage: bench/memory.sh           (~1 min)
# Environment:
#   ACMEDGE_BIN   acmedge binary (default: build/acmedge)
#   CADDY_BIN     caddy binary (default: caddy)
#   MEM_COUNTS    name counts besides the 0 baseline (default "1000 10000")
#   MEM_SIDES     servers to measure (default "acmedge caddy")
#   MEM_THREADS   client threads (default 4)
#   AE_KEEP=1     keep the work dir
# Everything listens on and talks to 127.0.0.1 only; every process started is stopped on exit.
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$BENCH_DIR/lib/common.sh"
MEM_COUNTS=${MEM_COUNTS:-"1000 10000"}
MEM_SIDES=${MEM_SIDES:-"acmedge caddy"}
MEM_THREADS=${MEM_THREADS:-4}

bench_require_sides "$MEM_SIDES"
"$AE_PY" -c 'import cryptography' 2>/dev/null ||
  { echo "memory.sh: $AE_PY lacks the cryptography module (Debian: python3-cryptography)" >&2; exit 2; }
MEM_MAX=0
for n in $MEM_COUNTS; do
  if ! [[ $n =~ ^[1-9][0-9]{0,4}$ ]]; then
    echo "memory.sh: bad count $n (1..99999)" >&2
    exit 2
  fi
  if ((n > MEM_MAX)); then MEM_MAX=$n; fi
done

ae_setup
CA_HOST=127.0.0.1_9 # ae_config_write's dummy ACME directory https://127.0.0.1:9/dir
: >"$T/results"

echo "generating $MEM_MAX certificates..." >&2
"$AE_PY" "$BENCH_DIR/tools/gen_certs.py" --count "$MEM_MAX" --out "$T/pool" --ca-dir "$T/ca" \
  --names-file "$T/names-all.txt" --prefix mem --domain example.test

# storage_for N : a storage dir holding the first N certificates (hard links into the pool).
storage_for() {
  local n=$1 s=$T/storage-$1 name
  if [ ! -d "$s" ]; then
    mkdir -p "$s/certs/$CA_HOST"
    head -n "$n" "$T/names-all.txt" >"$T/names-$n.txt"
    while read -r name; do
      cp -al "$T/pool/$name" "$s/certs/$CA_HOST/$name"
    done <"$T/names-$n.txt"
  fi
  echo "$s"
}

# client_names N : one verified handshake per name; sets HS_OK / HS_FAILED.
client_names() {
  local n=$1 out
  "$AE_PY" "$BENCH_DIR/tools/sni_client.py" --port "$AE_HTTPS_PORT" --threads "$MEM_THREADS" \
    --names "$T/names-$n.txt" --ca "$T/ca/ca.pem" --verbose >"$T/client.last" 2>>"$T/client.log" &
  local pid=$!
  echo "$pid" >>"$T/.pids"
  wait "$pid" || ae_fail "handshake client exited with an error"
  out=$(grep '^summary ' "$T/client.last")
  HS_OK=$(sed -n 's/.* ok=\([0-9]*\).*/\1/p' <<<"$out")
  HS_FAILED=$(($(sed -n 's/.* failed=\([0-9]*\).*/\1/p' <<<"$out") + $(sed -n 's/.* timeout=\([0-9]*\).*/\1/p' <<<"$out")))
}

# client_warm : the baseline's handshakes: 200 random unknown names (acmedge answers with its
# default certificate, Caddy with a handshake failure); warms the TLS code paths and threads.
client_warm() {
  "$AE_PY" "$BENCH_DIR/tools/sni_client.py" --port "$AE_HTTPS_PORT" --threads "$MEM_THREADS" \
    --random warm.example.net --max 200 --secs 20 >"$T/client.last" 2>>"$T/client.log" &
  local pid=$!
  echo "$pid" >>"$T/.pids"
  wait "$pid" || ae_fail "handshake client exited with an error"
  HS_OK=0
  HS_FAILED=0
}

# measure SIDE N PID : the two RSS readings around the handshakes; appends a result line.
measure() {
  local side=$1 n=$2 pid=$3 loaded served
  sleep 1
  loaded=$(rss_kib "$pid")
  if ((n == 0)); then
    client_warm
  else
    client_names "$n"
  fi
  sleep 1
  served=$(rss_kib "$pid")
  echo "$side $n $loaded $served $HS_OK $HS_FAILED" >>"$T/results"
}

# ---- acmedge -------------------------------------------------------------------------------------
run_acmedge() {
  local n=$1 storage i
  storage=$(storage_for "$n")
  unset AE_HTTPS_PORT AE_HTTP_PORT AE_ADMIN_PORT
  rm -f "$T/acmedge.log"
  ae_config_write "$T/acmedge.json" "{\"storage\": {\"path\": \"$storage\"},
    \"on_demand\": {\"enabled\": false}, \"log\": {\"level\": \"info\"},
    \"cert_cache\": {\"preload\": true, \"max_entries\": 0}}"
  # ARI polls for the loaded certificates would start within minutes (against a CA that is not
  # there); keep them out of the measured window.
  ae_bg acmedge env ACMEDGE_ARI_FIRST_POLL_MAX_S=86400 "$ACMEDGE_BIN" run -c "$T/acmedge.json"
  ACMEDGE_PID=$(cat "$T/acmedge.pid")
  for ((i = 0; i < 1200; i++)); do
    if grep -q "loaded $n certificate(s)" "$T/acmedge.log" 2>/dev/null && ae_port_open "$AE_HTTPS_PORT"; then
      break
    fi
    ae_pid_alive "$ACMEDGE_PID" || ae_fail "acmedge exited during start-up"
    sleep 0.1
  done
  ((i < 1200)) || ae_fail "acmedge did not report 'loaded $n certificate(s)' within 120 s"
  measure acmedge "$n" "$ACMEDGE_PID"
  cp "$T/acmedge.log" "$T/acmedge-$n.log"
  acmedge_stop
}

# ---- caddy ---------------------------------------------------------------------------------------
# caddy_mem_config FILE N : TLS-only server on 127.0.0.1:$AE_HTTPS_PORT serving the first N
# certificates (load_files); no admin endpoint, no automatic HTTPS, no OCSP.
caddy_mem_config() {
  local file=$1 n=$2 storage=$3
  "$AE_PY" - "$file" "$n" "$storage/certs/$CA_HOST" "$T/names-$n.txt" "$AE_HTTPS_PORT" "$AE_HTTP_PORT" "$T" <<'PY'
import json, sys
path, n, certs, names_file, https_port, http_port, tdir = sys.argv[1:8]
files = []
if int(n) > 0:
    with open(names_file) as f:
        for name in (line.strip() for line in f):
            if name:
                files.append({"certificate": "%s/%s/cert.pem" % (certs, name),
                              "key": "%s/%s/key.pem" % (certs, name)})
tls = {"disable_ocsp_stapling": True}
if files:
    tls["certificates"] = {"load_files": files}
cfg = {
    "admin": {"disabled": True},
    "logging": {"logs": {"default": {"level": "WARN"}}},
    "storage": {"module": "file_system", "root": tdir + "/caddy-storage"},
    "apps": {
        "http": {
            "http_port": int(http_port),
            "https_port": int(https_port),
            "servers": {
                "srv0": {
                    "listen": ["127.0.0.1:" + https_port],
                    "routes": [{"handle": [{"handler": "static_response", "body": "ok"}]}],
                    "tls_connection_policies": [{}],
                    "automatic_https": {"disable": True},
                }
            },
        },
        "tls": tls,
    },
}
with open(path, "w") as f:
    json.dump(cfg, f)
PY
}

run_caddy() {
  local n=$1 storage
  storage=$(storage_for "$n")
  AE_HTTPS_PORT=$(ae_free_port)
  AE_HTTP_PORT=$(ae_free_port)
  export AE_HTTPS_PORT AE_HTTP_PORT
  caddy_mem_config "$T/caddy.json" "$n" "$storage"
  rm -f "$T/caddy.log"
  caddy_run "$T/caddy.json"
  # Caddy loads the files while provisioning, before it listens.
  bench_wait_port caddy "$CADDY_PID" "$AE_HTTPS_PORT" 120
  measure caddy "$n" "$CADDY_PID"
  cp "$T/caddy.log" "$T/caddy-$n.log"
  ae_kill_pid "$CADDY_PID" 50
}

for n in 0 $MEM_COUNTS; do
  for side in $MEM_SIDES; do
    echo "measuring $side with $n name(s)..." >&2
    "run_$side" "$n"
  done
done

# ---- report --------------------------------------------------------------------------------------
echo
echo "RSS per cached domain (ECDSA P-256 leaf + CA in the chain; KiB = 1024 bytes)"
awk '
  { side[NR] = $1; n[NR] = $2; loaded[NR] = $3; served[NR] = $4; ok[NR] = $5; bad[NR] = $6
    if ($2 == 0) { base_l[$1] = $3; base_s[$1] = $4 } }
  END {
    printf "%-8s %6s %12s %12s %10s %9s %14s %14s\n", "server", "names", "RSS loaded", "RSS served",
      "hs ok", "hs failed", "KiB/dom loaded", "KiB/dom served"
    for (i = 1; i <= NR; i++) {
      pl = "-"; ps = "-"
      if (n[i] > 0) {
        pl = sprintf("%.2f", (loaded[i] - base_l[side[i]]) / n[i])
        ps = sprintf("%.2f", (served[i] - base_s[side[i]]) / n[i])
        per[side[i] " " n[i]] = (served[i] - base_s[side[i]]) / n[i]
        counts[n[i]] = 1
      }
      printf "%-8s %6d %9d KiB %9d KiB %10d %9d %14s %14s\n", side[i], n[i], loaded[i], served[i],
        ok[i], bad[i], pl, ps
    }
    for (c in counts)
      if (("acmedge " c) in per && ("caddy " c) in per && per["caddy " c] > 0)
        printf "ratio acmedge/caddy of KiB per domain (served), %d names: %.3f\n", c,
          per["acmedge " c] / per["caddy " c]
  }' "$T/results"
