#!/bin/sh
# Faults: a reader that goes away (SIGPIPE), a full disk (/dev/full) for
# every writer, truncated outputs that must never pass for complete ones,
# messages that quote hostile input, kill -9 while neox-train writes a
# checkpoint, and SIGINT/SIGTERM during training (a clean stop that keeps
# the checkpoint and says how to resume).
. "$(dirname "$0")/lib.sh"
tiny=$TOP/tests/data/tiny-neox/tiny-f32
sanitized=${TUNEPIPE_SANITIZE:-}

# Inputs: lamini twice (its stream is larger than a pipe's buffer), and
# random token ids for the tiny model (vocab 512).
cat "$TOP/data/lamini_docs.jsonl" "$TOP/data/lamini_docs.jsonl" >"$TMP/big.jsonl"
bpe-encode "$TMP/big.jsonl" >"$TMP/big.tok"
bpe-encode -d "$TMP/big.tok" >"$TMP/big.dec.jsonl"
awk -v n=40 'BEGIN { srand(11);
	for (i = 0; i < n; i++) {
		printf "{\"question\":["; k = 2 + int(rand() * 30)
		for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 2 + int(rand() * 510)
		printf "],\"answer\":["; k = 1 + int(rand() * 30)
		for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 2 + int(rand() * 510)
		printf "]}\n" } }' | bpe-encode >"$TMP/tiny.tok"
head -c 300 "$TMP/tiny.tok" >/dev/null

# ---- SIGPIPE: the reader closes the pipe early ------------------------------
# The writer must end quietly: killed by SIGPIPE or exit 141, nothing on
# stderr. With SIGPIPE ignored by the parent it must be just as quiet.
for ignore in "" "trap '' PIPE;"; do
	how=${ignore:+" (SIGPIPE ignored by the parent)"}
	for cmd in "bpe-encode '$TMP/big.jsonl'" "bpe-encode -d '$TMP/big.tok'" "pad-trunc -q 8 -a 8 '$TMP/big.tok'" \
		"strip-prompt -k '$TMP/big.tok'" "jsonl-split --part train '$TMP/big.jsonl'" \
		"bpe-encode --text '$TMP/big.jsonl'"; do
		t=${cmd%% *}
		check "$t | head -c 100 ends quietly$how: ${cmd#* }" \
			"{ $ignore $cmd 2>'$TMP/pipe.err'; echo \$? >'$TMP/pipe.rc'; } | head -c 100 >/dev/null;
			 rc=\$(cat '$TMP/pipe.rc'); test ! -s '$TMP/pipe.err' && { test \$rc -eq 141 || test \$rc -eq 0; }"
	done
done

# ---- a full disk: every writer to /dev/full -----------------------------------
# Exit 1 with one line naming the cause, never a signal or silence.
full() { # DESCRIPTION COMMAND (its stdout or named output is /dev/full)
	check "$1" "$2 2>'$TMP/full.err'; rc=\$?; test \$rc -eq 1 && test \$(wc -l <'$TMP/full.err') -eq 1 &&
		grep -q 'No space left on device' '$TMP/full.err'"
}
full "bpe-encode's stream to a full disk" "bpe-encode '$TMP/big.jsonl' >/dev/full"
full "bpe-encode's stream of one small record to a full disk" "echo '{\"question\":\"q\",\"answer\":\"a\"}' | bpe-encode >/dev/full"
full "bpe-encode -d's JSON lines to a full disk" "bpe-encode -d '$TMP/big.tok' >/dev/full"
full "bpe-encode -d's JSON of one record to a full disk" "head -c 0 /dev/null | bpe-encode | bpe-encode -d >/dev/full || true; bpe-encode '$TMP/big.jsonl' | bpe-encode -d --ids >/dev/full"
full "pad-trunc's stream to a full disk" "pad-trunc -q 4 '$TMP/big.tok' >/dev/full"
full "strip-prompt's stream to a full disk" "strip-prompt '$TMP/big.tok' >/dev/full"
full "jsonl-split --part to a full disk" "jsonl-split --part train '$TMP/big.jsonl' >/dev/full"
full "jsonl-split --train FILE on a full disk" "jsonl-split --train /dev/full --test '$TMP/t.jsonl' '$TMP/big.jsonl'"
full "jsonl-split --test FILE on a full disk" "jsonl-split --train '$TMP/t.jsonl' --test /dev/full '$TMP/big.jsonl'"
full "neox-gen's stream to a full disk" "neox-gen -m '$tiny' -n 2 '$TMP/tiny.tok' >/dev/full"
full "neox-gen --score's JSON lines to a full disk" "neox-gen -m '$tiny' --score '$TMP/tiny.tok' >/dev/full"
E=$TOP/tests/data/eval
full "eval-compare's table to a full disk" "eval-compare '$E/base.jsonl' >/dev/full"
full "eval-compare --json to a full disk" "eval-compare --json '$E/base.jsonl' >/dev/full"
full "eval-compare --html FILE on a full disk" "eval-compare --html /dev/full '$E/base.jsonl' >/dev/null"

# ---- truncated output never passes for complete --------------------------------
# A stream cut anywhere (a writer killed mid-way) is rejected: the end
# marker and the zstd frames make every cut visible.
size=$(stat -c %s "$TMP/tiny.tok")
for cut in 1 4 17 $((size / 3)) $((size / 2)) $((size - 13)) $((size - 1)); do
	check "a stream cut to $cut of $size bytes is rejected" \
		"head -c $cut '$TMP/tiny.tok' | pad-trunc -q 4 >/dev/null 2>'$TMP/cut.err'; test \$? -eq 1 &&
		 grep -q 'truncated\\|empty input\\|not a neox' '$TMP/cut.err'"
done
msize=$(stat -c %s "$tiny/model.safetensors")
mkdir "$TMP/cutmodel"
cp "$tiny/config.json" "$TMP/cutmodel/"
for cut in 7 100 $((msize / 2)) $((msize - 1)); do
	check "a model.safetensors cut to $cut of $msize bytes is rejected" \
		"head -c $cut '$tiny/model.safetensors' >'$TMP/cutmodel/model.safetensors';
		 neox-gen -m '$TMP/cutmodel' -n 1 '$TMP/tiny.tok' >/dev/null 2>'$TMP/cut.err'; test \$? -eq 1 &&
		 test \$(wc -l <'$TMP/cut.err') -eq 1"
done

# ---- messages quoting the input stay one line ------------------------------------
# A file name holding a newline and a terminal escape, and one of 3000
# bytes: the message is one line, the control characters written as \n and
# \x1b, the long one cut.
check "a newline and an escape in a quoted name stay on one line" \
	"pad-trunc -q 4 \"\$(printf 'no\\nsuch\\033[31m')\" 2>'$TMP/err'; test \$? -eq 1 && test \$(wc -l <'$TMP/err') -eq 1 &&
	 grep -q 'no\\\\nsuch\\\\x1b\\[31m' '$TMP/err'"
long=$(awk 'BEGIN { for (i = 0; i < 3000; i++) printf "x" }')
check "a 3000-byte name quoted in a message is cut" \
	"pad-trunc -q 4 '$long' 2>'$TMP/err'; test \$? -eq 1 && test \$(wc -l <'$TMP/err') -eq 1 &&
	 test \$(wc -c <'$TMP/err') -le 1100 && grep -q '\\.\\.\\.\$' '$TMP/err'"

# ---- neox-train: kill -9 while a checkpoint is being written ---------------------
# Every step writes a checkpoint (atomically: NAME.tmp.PID, then rename);
# the run is killed the moment a temporary file is seen, after the first
# checkpoint is complete. What is left must be the previous checkpoint,
# whole: it loads, and --resume continues from it.
out=$TMP/killed
neox-train -m "$tiny" -o "$out" --steps 400 --save-every 1 -q "$TMP/tiny.tok" 2>/dev/null &
pid=$!
while [ ! -e "$out/training_state.safetensors" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
caught=
while kill -0 $pid 2>/dev/null; do
	for f in "$out"/*.tmp.*; do
		if [ -e "$f" ]; then
			kill -9 $pid 2>/dev/null && caught=${f##*/} && caught=${caught%.tmp.*}
			break 2
		fi
	done
done
wait $pid 2>/dev/null
if [ -n "$caught" ]; then
	check "killed while writing $caught: model.safetensors and config.json still load" \
		"neox-gen -m '$out' -n 1 '$TMP/tiny.tok' >/dev/null"
	check "... every line of log.jsonl is whole" \
		"test -s '$out/log.jsonl' && test \$(tail -c 1 '$out/log.jsonl' | od -An -c | tr -d ' ') = '\\n'"
	check "... --resume continues from the last complete checkpoint" \
		"neox-train --resume '$out' --steps 420 -q '$TMP/tiny.tok' && test \$(wc -l <'$out/log.jsonl') -eq 420"
	check "... and leaves no temporary file" "! ls '$out' | grep -q '\\.tmp\\.'"
else
	check "neox-train was killed while writing a checkpoint (the run ended first?)" false
fi

# ---- neox-train: SIGINT / SIGTERM ---------------------------------------------------
# A clean stop: the run ends soon, with a message that says how to resume,
# the last checkpoint intact, and --resume reaching the same weights as an
# uninterrupted run. (A shell starts background commands with SIGINT
# ignored; env gives neox-train the default disposition a terminal's ^C
# would meet.)
neox-train -m "$tiny" -o "$TMP/whole" --steps 60 --save-every 5 -q "$TMP/tiny.tok"
for sig in INT TERM; do
	out=$TMP/sig$sig
	env --default-signal=INT,TERM neox-train -m "$tiny" -o "$out" --steps 60 --save-every 5 "$TMP/tiny.tok" \
		2>"$TMP/sig.err" &
	pid=$!
	while [ ! -e "$out/training_state.safetensors" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
	kill -$sig $pid 2>/dev/null
	start=$(date +%s)
	wait $pid 2>/dev/null
	rc=$?
	took=$(($(date +%s) - start))
	want=130; [ $sig = INT ] || want=143
	check "SIG$sig: neox-train stops within 10 s with exit status $want (got $rc)" "test $took -le 10 && test $rc -eq $want"
	check "SIG$sig: the checkpoint left loads" "neox-gen -m '$out' -n 1 '$TMP/tiny.tok' >/dev/null"
	check "SIG$sig: --resume then ends with the uninterrupted run's weights" \
		"neox-train --resume '$out' -q '$TMP/tiny.tok' && cmp '$TMP/whole/model.safetensors' '$out/model.safetensors'"
	check "SIG$sig: one line says where it stopped and how to resume" \
		"test \$(wc -l <'$TMP/sig.err') -eq 1 &&
		 grep -q 'interrupted at step [0-9]* of 60; continue with: neox-train --resume $out ' '$TMP/sig.err'"
done
# A background job's SIGINT is ignored from the start: it stays ignored.
# (Sent once neox-train runs: before, the forked shell may not ignore it yet.)
neox-train -m "$tiny" -o "$TMP/bg" --steps 20 -q "$TMP/tiny.tok" &
pid=$!
while [ ! -e "$TMP/bg/log.jsonl" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -INT $pid 2>/dev/null
wait $pid
check "SIGINT ignored at start stays ignored (exit $?)" "test \$(wc -l <'$TMP/bg/log.jsonl') -eq 20"
done_testing
