#!/usr/bin/env bash
# Install and package: `cmake --install` puts the binary, the systemd unit (naming the installed
# binary and config), the default config, man pages, the logrotate sample and the dashboards in
# place for both the /usr prefix (config in /etc) and another prefix; `cpack -G DEB` builds a
# .deb with exactly the expected files, conffiles and library dependencies, and lintian reports no
# error; both man pages render without warnings.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
BUILD=$(cd "$(dirname "$ACMEDGE_BIN")" && pwd)
[ -f "$BUILD/CPackConfig.cmake" ] || ae_fail "no CPackConfig.cmake in $BUILD"

EXPECTED="etc/acmedge/acmedge.json
etc/logrotate.d/acmedge
usr/bin/acmedge
usr/lib/systemd/system/acmedge.service
usr/share/acmedge/grafana/acmedge.json
usr/share/acmedge/prometheus/alerts.yml
usr/share/bash-completion/completions/acmedge
usr/share/doc/acmedge/changelog.Debian.gz
usr/share/doc/acmedge/copyright
usr/share/man/man1/acmedge.1.gz
usr/share/man/man5/acmedge.json.5.gz"

# --- cmake --install, /usr prefix into a staging root ---
DESTDIR=$T/root cmake --install "$BUILD" --prefix /usr >"$T/install.log" 2>&1 || ae_fail "cmake --install failed"
got=$(cd "$T/root" && find . -type f | sed 's|^\./||' | sort)
[ "$got" = "$EXPECTED" ] || ae_fail "installed files differ:
$(diff <(echo "$EXPECTED") <(echo "$got") || true)"
unit=$T/root/usr/lib/systemd/system/acmedge.service
for want in '^Type=notify$' '^ExecStart=/usr/bin/acmedge run -c /etc/acmedge/acmedge.json$' \
  '^ExecReload=/bin/kill -HUP \$MAINPID$' '^WatchdogSec=[0-9]+' '^DynamicUser=yes$' \
  '^AmbientCapabilities=CAP_NET_BIND_SERVICE$' '^ProtectSystem=strict$' '^StateDirectory=acmedge$' \
  '^NoNewPrivileges=yes$' '^WantedBy=multi-user.target$'; do
  grep -qE "$want" "$unit" || ae_fail "acmedge.service lacks a line matching $want"
done
"$T/root/usr/bin/acmedge" version | grep '^acmedge ' >/dev/null || ae_fail "installed binary does not run"
# The shipped config is valid as is.
"$ACMEDGE_BIN" check -c "$T/root/etc/acmedge/acmedge.json" >/dev/null 2>"$T/check.err" ||
  ae_fail "shipped default config is invalid: $(cat "$T/check.err")"
[ "$(stat -c %a "$T/root/etc/acmedge/acmedge.json")" = 644 ] || ae_fail "config mode"

# --- another prefix: config under the prefix, the unit names it ---
cmake --install "$BUILD" --prefix "$T/pfx" >>"$T/install.log" 2>&1 || ae_fail "cmake --install --prefix failed"
[ -f "$T/pfx/etc/acmedge/acmedge.json" ] || ae_fail "config not under the prefix"
grep -qx "ExecStart=$T/pfx/bin/acmedge run -c $T/pfx/etc/acmedge/acmedge.json" \
  "$T/pfx/lib/systemd/system/acmedge.service" || ae_fail "unit does not name the prefix's binary/config"
# systemd's own parser (offline): every key known, the binary it names executable. It prints
# unknown keys as warnings with exit 0, so any output is a failure.
if command -v systemd-analyze >/dev/null 2>&1; then
  timeout 120 systemd-analyze verify --man=no "$T/pfx/lib/systemd/system/acmedge.service" >"$T/verify.log" 2>&1 ||
    ae_fail "systemd-analyze verify failed: $(cat "$T/verify.log")"
  [ ! -s "$T/verify.log" ] || ae_fail "systemd-analyze verify: $(cat "$T/verify.log")"
fi

# --- man pages render without warnings (source and installed) ---
for page in "$AE_SRC/docs/man/acmedge.1" "$AE_SRC/docs/man/acmedge.json.5" \
  "$T/root/usr/share/man/man1/acmedge.1.gz" "$T/root/usr/share/man/man5/acmedge.json.5.gz"; do
  MANWIDTH=80 man --warnings -l "$page" >"$T/man.out" 2>"$T/man.err" || ae_fail "man -l $page failed"
  [ ! -s "$T/man.err" ] || ae_fail "man warnings for $page: $(cat "$T/man.err")"
  grep -q 'acmedge' "$T/man.out" || ae_fail "man -l $page rendered nothing"
done

# --- the .deb ---
(cd "$BUILD" && cpack -G DEB -B "$T/pkg") >"$T/cpack.log" 2>&1 || ae_fail "cpack -G DEB failed"
deb=$(ls "$T/pkg"/acmedge_*.deb 2>/dev/null | sed -n 1p)
[ -n "$deb" ] || ae_fail "no .deb produced"
got=$(dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $6}' | sed 's|^\./||' | sort)
[ "$got" = "$EXPECTED" ] || ae_fail ".deb file list differs:
$(diff <(echo "$EXPECTED") <(echo "$got") || true)"
dpkg-deb -f "$deb" Package | grep -x acmedge >/dev/null || ae_fail "package name"
dpkg-deb -f "$deb" Depends | grep 'libgnutls30' >/dev/null || ae_fail "Depends lacks libgnutls30: $(dpkg-deb -f "$deb" Depends)"
dpkg-deb -f "$deb" Depends | grep 'libuv1' >/dev/null || ae_fail "Depends lacks libuv1"
mkdir -p "$T/ctl"
dpkg-deb -e "$deb" "$T/ctl"
diff <(sort "$T/ctl/conffiles") <(printf '/etc/acmedge/acmedge.json\n/etc/logrotate.d/acmedge\n') >/dev/null ||
  ae_fail "conffiles: $(cat "$T/ctl/conffiles")"
for s in postinst prerm postrm; do
  [ -x "$T/ctl/$s" ] || ae_fail "$s missing or not executable"
  sh -n "$T/ctl/$s" || ae_fail "$s is not valid sh"
done
dpkg-deb -x "$deb" "$T/x"
"$T/x/usr/bin/acmedge" version >/dev/null || ae_fail "packaged binary does not run"
if ! command -v lintian >/dev/null 2>&1; then
  ae_fail "lintian is not installed (scripts/setup.sh installs it)"
fi
rc=0
lintian --fail-on error --tag-display-limit 0 "$deb" >"$T/lintian.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || grep '^E: ' "$T/lintian.log" >/dev/null; then
  ae_fail "lintian (exit $rc): $(cat "$T/lintian.log")"
fi
echo ok
