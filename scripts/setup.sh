#!/usr/bin/env bash
# Installs the Debian 12 packages acmedge needs to build, test and run its local demo.
# Only missing packages are installed; safe to run repeatedly. Usage: scripts/setup.sh [--bench]
set -euo pipefail

pkgs=(build-essential cmake pkg-config libgnutls28-dev nettle-dev libuv1-dev libcurl4-gnutls-dev
      libjansson-dev libcmocka-dev node-llhttp pebble gnutls-bin curl python3 procps iproute2
      openssl  # chain checks (internal CA), a second Ed25519 implementation (tokens), OCSP responder
      libc-ares-dev libpsl-dev  # DNS pre-check, registrable domains (fair queue)
      clang libclang-rt-14-dev)  # libFuzzer targets (scripts/fuzz.sh, run by scripts/test.sh)
# Shared storage (storage.type "redis"): client library, and the server the cluster tests start.
pkgs+=(libhiredis-dev redis-server redis-tools)
# Operator tooling: packaging (cpack DEB, lintian), man pages, dashboard checks, web-console test.
pkgs+=(python3-yaml lintian man-db dpkg-dev fakeroot chromium)
# HTTP/2 to clients (libnghttp2) and its test clients (nghttp, h2load, python3-h2 raw frames).
pkgs+=(libnghttp2-dev nghttp2-client python3-h2 python3-hyperframe python3-hpack)
if ! command -v npm >/dev/null 2>&1; then pkgs+=(nodejs npm); fi
if [[ "${1:-}" == "--bench" ]]; then
  pkgs+=(nginx caddy wrk clang python3-cryptography)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep "install ok installed" >/dev/null; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "setup: all packages present"
  exit 0
fi

echo "setup: installing ${missing[*]}"
sudo_cmd=()
if [[ $(id -u) -ne 0 ]]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
# Debian starts nginx after install; the benchmarks run their own instances.
if [[ " ${missing[*]} " == *" nginx "* ]] && command -v systemctl >/dev/null 2>&1; then
  "${sudo_cmd[@]}" systemctl stop nginx 2>/dev/null || true
fi
