#!/usr/bin/env bash
# contrib/bash-completion/acmedge: completes the commands, each command's options, and .json
# files after -c.
set -euo pipefail
source "$AE_SRC/tests/lib/common.sh"
ae_setup
source "$AE_SRC/contrib/bash-completion/acmedge"
# complete_words WORDS... : the completions offered for the last word.
complete_words() {
  COMP_WORDS=("$@")
  COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
  COMPREPLY=()
  _acmedge
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}
[ "$(complete_words acmedge '')" = "check domains events help run storage version " ] ||
  ae_fail "commands: $(complete_words acmedge '')"
[ "$(complete_words acmedge d)" = "domains " ] || ae_fail "d -> $(complete_words acmedge d)"
[ "$(complete_words acmedge domains --)" = "--admin --help --json --watch " ] ||
  ae_fail "domains options: $(complete_words acmedge domains --)"
[ "$(complete_words acmedge events --)" = "--admin --help --json --since " ] ||
  ae_fail "events options: $(complete_words acmedge events --)"
[ "$(complete_words acmedge storage '')" = "--from --help --to copy " ] ||
  ae_fail "storage options: $(complete_words acmedge storage '')"
mkdir -p "$T/cfg"
: >"$T/cfg/a.json"
: >"$T/cfg/b.txt"
cd "$T"
got=$(complete_words acmedge run -c cfg/)
[ "$got" = "cfg/a.json " ] || ae_fail "-c completion: '$got'"
# Every option the completion offers is accepted by the binary's help text.
help=$("$ACMEDGE_BIN" help)
for opt in --admin --json --since --watch --config --from --to; do
  grep -q -- "$opt" <<<"$help" || ae_fail "completion offers $opt but 'acmedge help' does not know it"
done
echo ok
