# lib.sh — sourced by the shell tests: TAP helpers and paths.
# Tools come from $TUNEPIPE_BIN (set by make test), else ./bin.
set -u
TOP=$(cd "$(dirname "$0")/.." && pwd)
# (tests/gpu/*.sh are a level deeper)
[ -f "$TOP/tests/lib.sh" ] || TOP=$(cd "$TOP/.." && pwd)
BIN=${TUNEPIPE_BIN:-$TOP/bin}
PATH=$BIN:$PATH
export TUNEPIPE_DATA=$TOP/data
TMP=$(mktemp -d "${TMPDIR:-/tmp}/tunepipe-test.XXXXXX")
export TOP BIN TMP
trap 'rm -rf "$TMP"' EXIT
_n=0
_failed=0
# A failing test's name and output go to stderr, which prove shows without
# -v (it hides the TAP on stdout).
# ok DESCRIPTION COMMAND...: runs the command; passes when it exits 0.
ok() {
	desc=$1; shift
	_n=$((_n + 1))
	if "$@" >"$TMP/.out" 2>&1; then
		echo "ok $_n - $desc"
	else
		echo "not ok $_n - $desc"
		{ echo "#   Failed test $_n - $desc"; sed 's/^/#   /' "$TMP/.out" | head -40; } >&2
		_failed=$((_failed + 1))
	fi
}
# check DESCRIPTION SHELL-SNIPPET: like ok, the snippet evaluated in a
# subshell (pipes and the test's shell functions allowed).
check() {
	desc=$1; shift
	ok "$desc" eval "($1)"
}
# test_expect_success DESCRIPTION BODY, as in git's t/: BODY, single-quoted
# so that it reads the variables when it runs, is evaluated in a subshell
# (assignments do not outlive it); on failure the body and its output are
# shown.
test_expect_success() {
	_n=$((_n + 1))
	if (eval "$2") >"$TMP/.out" 2>&1; then
		echo "ok $_n - $1"
	else
		echo "not ok $_n - $1"
		{
			echo "#   Failed test $_n - $1"
			printf '%s\n' "$2" | sed "/^[[:space:]]*\$/d; s/^/#$(printf '\t')/"
			sed 's/^/#   /' "$TMP/.out" | head -40
		} >&2
		_failed=$((_failed + 1))
	fi
}
# test_cmp EXPECTED ACTUAL: like cmp, with a diff -u of the two when they differ.
test_cmp() { diff -u "$1" "$2"; }
skip_all() { echo "1..0 # SKIP $1"; exit 0; }
done_testing() { echo "1..$_n"; [ "$_failed" -eq 0 ]; }

# tiny_examples: 48 random examples for the tiny model (vocab 512), ids as
# JSON arrays, in $TMP/tiny.jsonl; the first 40 as $TMP/tiny.tok, the last
# 8 as $TMP/tiny-eval.tok (t50, t55).
tiny_examples() {
	awk -v n=48 -v seed=7 'BEGIN { srand(seed);
		for (i = 0; i < n; i++) {
			printf "{\"question\":["; k = 2 + int(rand() * 30)
			for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 2 + int(rand() * 510)
			printf "],\"answer\":["; k = 1 + int(rand() * 30)
			for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 2 + int(rand() * 510)
			printf "]}\n" } }' >"$TMP/tiny.jsonl"
	head -40 "$TMP/tiny.jsonl" | bpe-encode >"$TMP/tiny.tok"
	tail -8 "$TMP/tiny.jsonl" | bpe-encode >"$TMP/tiny-eval.tok"
}

# st ids|f64|diff ...: the safetensors files, read with perl (tests/safetensors.pl).
st() { perl "$TOP/tests/safetensors.pl" "$@"; }
# "within TOL LOG-A LOG-B": the same steps and tokens, loss and grad_norm
# within TOL relative (t55, tests/gpu/t-device-resume.sh).
within() {
	for f in "$2" "$3"; do
		sed 's/.*"step":\([0-9]*\),"loss":\([^,]*\),.*"grad_norm":\([^,]*\),"tokens":\([0-9]*\),.*/\1 \2 \3 \4/' "$f"
	done | awk -v tol="$1" -v n="$(wc -l <"$2")" '
		function rel(a, b) { d = a - b; if (d < 0) d = -d; return b ? d / (b < 0 ? -b : b) : d }
		NR <= n { s[NR] = $1; l[NR] = $2; g[NR] = $3; t[NR] = $4; next }
		{ i = NR - n; if ($1 != s[i] || $4 != t[i] || rel($2, l[i]) > tol || rel($3, g[i]) > tol) { print "differs: " $0; bad = 1 }
		  if (rel($2, l[i]) > w) w = rel($2, l[i]); if (rel($3, g[i]) > w) w = rel($3, g[i]) }
		END { printf "worst relative difference %.3g over %d steps\n", w, NR - n; exit bad || NR != 2 * n }'
}
