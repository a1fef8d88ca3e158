# lib.sh — sourced by the shell tests: TAP helpers and paths.
# Tools come from $TUNEPIPE_BIN (set by make test), else ./bin.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
BIN=${TUNEPIPE_BIN:-$TOP/bin}
PATH=$BIN:$PATH
export TUNEPIPE_DATA=$TOP/data
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tunepipe-test.XXXXXX")
export TOP BIN TMP
trap 'rm -rf "$TMP"' EXIT
_n=0
_failed=0
# ok DESCRIPTION COMMAND...: runs the command; passes when it exits 0.
ok() {
	desc=$1; shift
	_n=$((_n + 1))
	if "$@" >"$TMP/.out" 2>&1; then
		echo "ok $_n - $desc"
	else
		echo "not ok $_n - $desc"
		sed 's/^/#   /' "$TMP/.out" | head -20
		_failed=$((_failed + 1))
	fi
}
# check DESCRIPTION SHELL-SNIPPET: like ok, the snippet evaluated in a
# subshell (pipes and the test's shell functions allowed).
check() {
	desc=$1; shift
	ok "$desc" eval "($1)"
}
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
done_testing() { echo "1..$_n"; [ "$_failed" -eq 0 ]; }
