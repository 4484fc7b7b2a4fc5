#!/usr/bin/env bash
# `acmedge check`, help, version and usage errors, against the real binary (no network needed).
set -u
BIN=${ACMEDGE_BIN:?ACMEDGE_BIN must point at the acmedge binary}
SRC=${AE_SRC:-$(cd "$(dirname "$0")/../../.." && pwd)}
T=$(mktemp -d /tmp/ae_cli_check.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }

# run_bin: runs the binary with a time bound, capturing exit code, stdout and stderr.
run_bin() {
  timeout 20 "$BIN" "$@" >"$T/out" 2>"$T/err"
  RC=$?
  OUT=$(cat "$T/out")
  ERR=$(cat "$T/err")
}

# expect_check FILE RC LINE: `check -c FILE` exits RC and prints LINE (stdout on 0, stderr on 1).
expect_check() {
  local file=$1 want_rc=$2 want_line=$3
  run_bin check -c "$file"
  [ "$RC" = "$want_rc" ] || fail "check $file: exit $RC, want $want_rc (stderr: $ERR)"
  if [ "$want_rc" = 0 ]; then
    [ "$OUT" = "$want_line" ] || fail "check $file: stdout '$OUT', want '$want_line'"
  else
    [ "$ERR" = "$want_line" ] || fail "check $file: stderr '$ERR', want '$want_line'"
    [ -z "$OUT" ] || fail "check $file: unexpected stdout '$OUT'"
  fi
}

OD='"on_demand": {"allow": ["*.example.test"]}'

printf '%s\n' "crt" >"$T/default.crt"
printf '%s\n' "key" >"$T/default.key"
chmod 600 "$T/default.key"

cat >"$T/good.json" <<JSON
{
  "listen": {"https": "127.0.0.1:8443", "http": "127.0.0.1:8080", "admin": "127.0.0.1:2020"},
  "storage": {"path": "$T/storage"},
  "default_cert": {"cert": "$T/default.crt", "key": "$T/default.key"},
  $OD,
  "routes": [{"hosts": ["*"], "upstream": "127.0.0.1:8081"}]
}
JSON
expect_check "$T/good.json" 0 "$T/good.json: ok"

echo "{\"foo\": 1, $OD}" >"$T/unknown.json"
expect_check "$T/unknown.json" 1 "$T/unknown.json: foo: unknown key"

echo "{\"on_demand\": {\"allow\": [\"*\"], \"rate\": {\"per_min\": 5}}}" >"$T/unknown2.json"
expect_check "$T/unknown2.json" 1 "$T/unknown2.json: on_demand.rate.per_min: unknown key"

echo "{\"workers\": \"four\", $OD}" >"$T/type.json"
expect_check "$T/type.json" 1 "$T/type.json: workers: must be an integer between 0 and 256"

echo "{\"redirect_http\": 1, $OD}" >"$T/type2.json"
expect_check "$T/type2.json" 1 "$T/type2.json: redirect_http: expected true or false"

echo "{\"listen\": {\"https\": \"127.0.0.1\"}, $OD}" >"$T/addr.json"
expect_check "$T/addr.json" 1 "$T/addr.json: listen.https: expected IP:port or [IPv6]:port"

echo "{\"routes\": [{\"hosts\": [\"*\"], \"upstream\": \"127.0.0.1:99999\"}], $OD}" >"$T/addr2.json"
expect_check "$T/addr2.json" 1 "$T/addr2.json: routes[0].upstream: expected host:port"

# Unreadable key file: permissions do not stop root, a directory in its place does.
if [ "$(id -u)" = 0 ]; then
  mkdir "$T/bad.key"
  KEYPROBLEM="not a regular file"
else
  printf 'key\n' >"$T/bad.key"
  chmod 000 "$T/bad.key"
  KEYPROBLEM="Permission denied"
fi
echo "{\"default_cert\": {\"cert\": \"$T/default.crt\", \"key\": \"$T/bad.key\"}, $OD}" >"$T/key.json"
expect_check "$T/key.json" 1 "$T/key.json: default_cert.key: $T/bad.key: $KEYPROBLEM"

echo "{\"default_cert\": {\"cert\": \"$T/default.crt\", \"key\": \"$T/none.key\"}, $OD}" >"$T/halfpair.json"
expect_check "$T/halfpair.json" 1 \
  "$T/halfpair.json: default_cert.key: $T/none.key: No such file or directory (the certificate file exists)"

# A key without its certificate: a mistake once it is old; while young it is another instance
# writing the generated pair (key first), which start-up waits for, bounded.
mkdir -p "$T/kp"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$T/kp/default.key" 2>/dev/null
touch -d '1 minute ago' "$T/kp/default.key"
echo "{\"default_cert\": {\"cert\": \"$T/kp/default.crt\", \"key\": \"$T/kp/default.key\"}, $OD}" >"$T/keyonly.json"
expect_check "$T/keyonly.json" 1 \
  "$T/keyonly.json: default_cert.cert: $T/kp/default.crt: No such file or directory (the key file exists)"
touch "$T/kp/default.key"
expect_check "$T/keyonly.json" 0 "$T/keyonly.json: ok"
start=$(date +%s%3N)
run_bin run -c "$T/keyonly.json"
waited=$(($(date +%s%3N) - start))
[ "$RC" != 0 ] || fail "run with a key and no certificate: exit 0"
grep -qF "$T/kp/default.key exists but $T/kp/default.crt is missing" <<<"$ERR" ||
  fail "run with a key and no certificate: stderr does not name both files: $ERR"
[ "$waited" -ge 4000 ] && [ "$waited" -lt 15000 ] || fail "run gave up after $waited ms, want about 5 s"
[ ! -e "$T/kp/default.crt" ] || fail "run wrote a certificate beside another instance's key"

echo "{\"listen\": {\"admin\": \"0.0.0.0:2020\"}, $OD}" >"$T/admin.json"
expect_check "$T/admin.json" 1 "$T/admin.json: listen.admin: non-loopback address requires admin.token"
echo "{\"listen\": {\"admin\": \"0.0.0.0:2020\"}, \"admin\": {\"token\": \"t0ken\"}, $OD}" >"$T/admin_ok.json"
expect_check "$T/admin_ok.json" 0 "$T/admin_ok.json: ok"

echo '{"on_demand": {"enabled": true}}' >"$T/open.json"
expect_check "$T/open.json" 1 \
  "$T/open.json: on_demand.allow: empty allow and no ask would issue for any name; set \"allow\": [\"*\"] explicitly"
echo '{"on_demand": {"allow": ["*"]}}' >"$T/open_ok.json"
expect_check "$T/open_ok.json" 0 "$T/open_ok.json: ok"

printf '{\n  "workers": 1,\n  "log": {,\n}\n' >"$T/syntax.json"
run_bin check -c "$T/syntax.json"
[ "$RC" = 1 ] || fail "syntax: exit $RC"
case "$ERR" in "$T/syntax.json: line 3 column "*) ;; *) fail "syntax: stderr '$ERR'" ;; esac

expect_check "$T/missing.json" 1 "$T/missing.json: No such file or directory"

# ACMEDGE_CONFIG replaces the default path; -c wins over it; --config=FILE works.
ACMEDGE_CONFIG="$T/good.json" run_bin check
[ "$RC" = 0 ] && [ "$OUT" = "$T/good.json: ok" ] || fail "ACMEDGE_CONFIG: rc=$RC out='$OUT' err='$ERR'"
ACMEDGE_CONFIG="$T/unknown.json" run_bin check -c "$T/good.json"
[ "$RC" = 0 ] || fail "-c over ACMEDGE_CONFIG: rc=$RC err='$ERR'"
run_bin check --config="$T/good.json"
[ "$RC" = 0 ] || fail "--config=: rc=$RC err='$ERR'"

# The shipped example passes once the demo's Pebble CA file exists (paths relative to the cwd).
mkdir -p "$T/repo/config" "$T/repo/var/pebble"
cp "$SRC/config/acmedge.json" "$T/repo/config/"
printf 'ca\n' >"$T/repo/var/pebble/ca.pem"
(cd "$T/repo" && env -u ACMEDGE_CONFIG timeout 20 "$BIN" check >"$T/out" 2>"$T/err")
RC=$?
[ "$RC" = 0 ] && [ "$(cat "$T/out")" = "config/acmedge.json: ok" ] ||
  fail "example config: rc=$RC out='$(cat "$T/out")' err='$(cat "$T/err")'"
rm "$T/repo/var/pebble/ca.pem"
(cd "$T/repo" && env -u ACMEDGE_CONFIG timeout 20 "$BIN" check >"$T/out" 2>"$T/err")
RC=$?
[ "$RC" = 1 ] && [ "$(cat "$T/err")" = "config/acmedge.json: acme.ca_bundle: var/pebble/ca.pem: No such file or directory" ] ||
  fail "example config without CA: rc=$RC err='$(cat "$T/err")'"

# Help tells about every subcommand and option.
for args in "--help" "help" "-h" ""; do
  # shellcheck disable=SC2086
  run_bin $args
  [ "$RC" = 0 ] || fail "'$args': exit $RC"
  for word in run check events domains version "-c, --config FILE" "--admin ADDR" "--json" "--since ID" \
    ACMEDGE_CONFIG ACMEDGE_ADMIN ACMEDGE_ADMIN_TOKEN config/acmedge.json; do
    case "$OUT" in *"$word"*) ;; *) fail "help ('$args') does not mention '$word'" ;; esac
  done
done
run_bin check --help
[ "$RC" = 0 ] && case "$OUT" in *"usage: acmedge"*) true ;; *) false ;; esac || fail "check --help: rc=$RC"

# Usage errors exit 2 with the usage on stderr.
for args in "frobnicate" "--bogus" "check --bogus" "check -c" "run extra" "version extra"; do
  # shellcheck disable=SC2086
  run_bin $args
  [ "$RC" = 2 ] || fail "'$args': exit $RC, want 2"
  case "$ERR" in *"usage: acmedge"*) ;; *) fail "'$args': no usage on stderr" ;; esac
done

# Version: our version first, then the linked libraries.
for args in version --version; do
  run_bin $args
  [ "$RC" = 0 ] || fail "$args: exit $RC"
  first=$(printf '%s\n' "$OUT" | sed -n 1p)
  [[ "$first" =~ ^acmedge\ [0-9]+\.[0-9]+\.[0-9]+$ ]] || fail "$args: first line '$first'"
  for lib in GnuTLS libuv libcurl jansson; do
    printf '%s\n' "$OUT" | grep -E "^  $lib [0-9]+\.[0-9]+" >/dev/null || fail "$args: no $lib version"
  done
done
if [ -f "$SRC/CMakeLists.txt" ]; then
  want=$(sed -n 's/^project(acmedge VERSION \([0-9.]*\).*/\1/p' "$SRC/CMakeLists.txt")
  run_bin version
  [ "$(printf '%s\n' "$OUT" | sed -n 1p)" = "acmedge $want" ] || fail "version is not $want"
fi

if [ "$FAILS" -ne 0 ]; then
  echo "$FAILS failure(s)" >&2
  exit 1
fi
echo "test_cli_check: all passed"
