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
	dirs=
	for d in "$F/corpus/$name" "$F/regress/$name"; do
		[ -d "$d" ] && dirs="$dirs $d"
	done
	[ -n "$dirs" ] || continue
	found=1
	if [ ! -x "$replay" ]; then
		ok "$name: replay driver built" false
		continue
	fi
	n=$(ls $dirs | grep -vc '^$\|:$')
	check "$name: $n corpus and regression inputs end cleanly" "'$replay' $dirs >'$TMP/out'"
done
[ $found -eq 1 ] || skip_all "no fuzz harness with stored inputs"
done_testing
