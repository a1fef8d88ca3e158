#!/bin/sh
# Every tool: --help and --version on stdout with exit 0, a usage error exits
# 2, a man page that renders without warnings; every stream reader rejects
# text, random bytes and truncated input with exit 1 and one line.
. "$(dirname "$0")/lib.sh"

tools="jsonl-split bpe-encode pad-trunc neox-train neox-gen strip-prompt eval-compare neox-serve"
for t in $tools; do
	check "$t --help prints usage, exits 0" "$t --help | grep -q Usage"
	check "$t --version" "$t --version | grep -q '^$t (tunepipe) '"
	check "$t: unknown option exits 2" "$t --no-such-option >/dev/null 2>&1; test \$? -eq 2"
	check "man page of $t renders without warnings" \
		"test -f '$TOP/man/man1/$t.1' && test -z \"\$(COLUMNS=80 man --warnings -l '$TOP/man/man1/$t.1' 2>&1 >/dev/null)\""
done
check "neox-stream(5) renders without warnings" \
	"test -z \"\$(COLUMNS=80 man --warnings -l '$TOP/man/man5/neox-stream.5' 2>&1 >/dev/null)\""

# Bad stream input: exit 1, one line "tool: record N: ...", never a signal.
head -c 3000 /dev/urandom >"$TMP/random"
printf '{"question":"q","answer":"a"}\n' >"$TMP/text"
printf '\050\265\057\375garbage after a zstd magic' >"$TMP/badzstd"
: >"$TMP/empty"
# A real stream, cut in the middle of a frame, cut at a frame boundary (the
# end marker missing), and with one bit flipped in the middle.
jsonl-split --part test "$TOP/data/lamini_docs.jsonl" | bpe-encode >"$TMP/good"
size=$(wc -c <"$TMP/good")
head -c $((size / 2)) "$TMP/good" >"$TMP/truncated"
# (bpe-encode flushes its frame when it waits for input, then is killed)
jsonl-split --part test "$TOP/data/lamini_docs.jsonl" | head -3 >"$TMP/three.jsonl"
({ cat "$TMP/three.jsonl"; sleep 3; } | timeout -s KILL 1 bpe-encode >"$TMP/noend") 2>/dev/null
check "a killed writer leaves whole frames without the end marker" \
	"bpe-encode -d <'$TMP/noend' 2>&1 >/dev/null | grep -qx 'bpe-encode: record 4: truncated stream: input ended without the end marker (the writer did not finish)'"
cp "$TMP/good" "$TMP/bitflip"
byte=$(od -An -j $((size / 2)) -N1 -tu1 "$TMP/good" | tr -d ' ')
printf "$(printf '\\%03o' $((byte ^ 4)))" | dd of="$TMP/bitflip" bs=1 seek=$((size / 2)) conv=notrunc 2>/dev/null
check "the bit-flipped copy differs from the stream in one byte" \
	"test \$(cmp -l '$TMP/good' '$TMP/bitflip' | wc -l) -eq 1"
tiny=$TOP/tests/data/tiny-neox/tiny-f32
for cmd in "pad-trunc -q 1" "strip-prompt" "bpe-encode -d" "neox-gen -m $tiny" "neox-gen -m $tiny --score" \
	"neox-train --init $TOP/data/pythia-14m.config.json --steps 1 -o $TMP/o"; do
	t=${cmd%% *}
	for f in random text badzstd empty; do
		check "$t rejects $f input with exit 1 and one line" \
			"$cmd <'$TMP/$f' >/dev/null 2>'$TMP/err'; test \$? -eq 1 && test \$(wc -l <'$TMP/err') -eq 1 && grep -q '^$t: record 1: ' '$TMP/err'"
	done
	for f in truncated noend bitflip; do
		check "$t rejects a $f stream with exit 1 and one line" \
			"$cmd <'$TMP/$f' >/dev/null 2>'$TMP/err'; test \$? -eq 1 && test \$(wc -l <'$TMP/err') -eq 1 && grep -q '^$t: record [0-9]*: ' '$TMP/err'"
	done
done
for cmd in "pad-trunc -q 1" "strip-prompt" "bpe-encode" "neox-gen -m $tiny"; do
	check "${cmd%% *} refuses to write a stream to a terminal" \
		"command -v script >/dev/null || exit 0; script -qec '$BIN/$cmd </dev/null' /dev/null | grep -q 'refusing to write'"
done

done_testing
