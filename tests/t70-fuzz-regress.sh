#!/bin/sh
# The fuzz corpus and regression inputs (tests/fuzz/corpus/NAME/ and
# tests/fuzz/regress/NAME/), replayed through each harness built without
# libFuzzer (pipelines/fuzz.mk builds BUILD/fuzz/NAME-replay with the normal
# compiler; under make check-asan with the sanitizers). Each input must end
# like a tool does — accepted, or rejected with a message and exit 1 — and
# as its name says when it is called accept-* or reject-*.
. "$(dirname "$0")/lib.sh"
BUILD=${TUNEPIPE_BUILD:-$TOP/build}
F=$TOP/tests/fuzz

found=0
for src in "$F"/fuzz_*.c; do
	[ -e "$src" ] || continue
	name=${src##*/fuzz_}
	name=${name%.c}
	replay=$BUILD/fuzz/$name-replay
	[ -d "$F/corpus/$name" ] || [ -d "$F/regress/$name" ] || continue
	found=1
	if [ ! -x "$replay" ]; then
		ok "$name: replay driver built" false
		continue
	fi
	# Under the sanitizers: every regression input and hand-made seed, but
	# only a quarter of the fuzzer's corpus (the whole takes a minute there).
	inputs=
	[ -d "$F/regress/$name" ] && inputs="$F/regress/$name"
	if [ -d "$F/corpus/$name" ]; then
		if [ -n "${TUNEPIPE_SANITIZE:-}" ]; then
			inputs="$inputs $(ls "$F/corpus/$name" | awk -v d="$F/corpus/$name" 'length($0) != 40 || NR % 4 == 1 { printf "%s/%s ", d, $0 }')"
		else
			inputs="$inputs $F/corpus/$name"
		fi
	fi
	check "$name: corpus and regression inputs end cleanly" "'$replay' $inputs >'$TMP/out'"
done
[ $found -eq 1 ] || skip_all "no fuzz harness with stored inputs"
done_testing
