#!/bin/sh
# neox-gen through the tools: token ids in JSONL -> bpe-encode -> neox-gen ->
# bpe-encode -d, batching and padding, scoring, answers that come out as the
# questions go in, -i, and one-line errors for damaged model directories.
# (Exactness against Hugging Face is in tests/unit/neox_gen.c.)
. "$(dirname "$0")/lib.sh"

TINY=$TOP/tests/data/tiny-neox/tiny-f32

# Four questions of different lengths (ids < 512, the tiny vocabulary).
cat >"$TMP/q.jsonl" <<'JSON'
{"question":[12,250,3,77,400,9,18,5,61,2],"answer":[33,44,55]}
{"question":[7,8,9],"answer":[10,11]}
{"question":[100,200,300,400,500,11,22,33,44,55,66,77,88,99,111,122,133,144,155,166,177,188,199],"answer":[1,2,3,4]}
{"question":[42],"answer":[43,44,45,46,47,48]}
JSON
bpe-encode --fields question,answer --no-eos <"$TMP/q.jsonl" >"$TMP/q.tok"

check "greedy generation through the pipeline" \
	"neox-gen -m '$TINY' -n 12 --eos-id -1 <'$TMP/q.tok' | bpe-encode -d --ids >'$TMP/b1.jsonl' &&
	 test \$(wc -l <'$TMP/b1.jsonl') -eq 4 &&
	 test \$(grep -c '\"generated\":\[[0-9]*\(,[0-9]*\)\{11\}\]' '$TMP/b1.jsonl') -eq 4"
check "--batch 3 gives the same answers, in order" \
	"neox-gen -m '$TINY' -n 12 --eos-id -1 --batch 3 <'$TMP/q.tok' | bpe-encode -d --ids | cmp - '$TMP/b1.jsonl'"
check "left padding (pad-trunc) changes nothing" \
	"pad-trunc -q 30 <'$TMP/q.tok' | neox-gen -m '$TINY' -n 12 --eos-id -1 --batch 2 | bpe-encode -d --ids | cmp - '$TMP/b1.jsonl'"
check "--max-new 0 appends an empty generation" \
	"test \$(neox-gen -m '$TINY' -n 0 <'$TMP/q.tok' | bpe-encode -d --ids | grep -c '\"generated\":\[\]') -eq 4"

check "--score writes one JSON line per record" \
	"neox-gen -m '$TINY' --score <'$TMP/q.tok' >'$TMP/score.jsonl' &&
	 test \$(grep -c '^{\"id\":[1-4],\"tokens\":[0-9]*,\"nll\":[0-9.e+-]*,\"ppl\":[0-9.e+-]*}\$' '$TMP/score.jsonl') -eq 4 &&
	 grep -q '\"id\":4,\"tokens\":6,' '$TMP/score.jsonl'"
check "--score ignores answer padding" \
	"pad-trunc -q 30 -a 9 <'$TMP/q.tok' | neox-gen -m '$TINY' --score | cmp - '$TMP/score.jsonl'"

# A question as long as max_position_embeddings (2048) leaves room for one token; a longer one is bad input.
ids_json() { seq 1 "$1" | awk '{ printf "%s%d", (NR > 1 ? "," : ""), ($1 * 7) % 512 } END { print "" }'; }
printf '{"question":[%s]}\n' "$(ids_json 2048)" | bpe-encode --fields question >"$TMP/q2048.tok"
printf '{"question":[%s]}\n' "$(ids_json 2049)" | bpe-encode --fields question >"$TMP/q2049.tok"
check "a 2048-token question gets one token" \
	"test \$(neox-gen -m '$TINY' -n 20 --eos-id -1 <'$TMP/q2048.tok' | bpe-encode -d --ids | grep -o '\"generated\":\[[0-9]*\]' | wc -l) -eq 1"
check "a 2049-token question: exit 1, one line" \
	"neox-gen -m '$TINY' <'$TMP/q2049.tok' >/dev/null 2>'$TMP/err.long'; test \$? -eq 1 && test \$(wc -l <'$TMP/err.long') -eq 1 &&
	 grep -q 'record 1: question of 2049 tokens, more than the model.s 2048 positions' '$TMP/err.long'"

# Answers come out while the input is still open: one question in, its
# answer out, before the input ends.
answer_before_eof() {
	mkfifo "$TMP/fifo"
	neox-gen -m "$TINY" -n 5 --eos-id -1 <"$TMP/fifo" | bpe-encode -d --ids >"$TMP/live.jsonl" &
	exec 3>"$TMP/fifo"
	echo '{"question":[12,250,3]}' | bpe-encode --fields question >&3
	i=0
	while [ $i -lt 100 ] && ! grep -q generated "$TMP/live.jsonl"; do sleep 0.1; i=$((i + 1)); done
	grep -q generated "$TMP/live.jsonl"
	answered=$?
	exec 3>&-
	wait
	return $answered
}
ok "an answer is written before the input ends" answer_before_eof

# Damaged model directories: exit 1 and one line.
mkdir -p "$TMP/bin-only" "$TMP/trunc" "$TMP/nocfg"
cp "$TINY/config.json" "$TMP/bin-only/" && : >"$TMP/bin-only/pytorch_model.bin"
cp "$TINY/config.json" "$TMP/trunc/" && head -c 20000 "$TINY/model.safetensors" >"$TMP/trunc/model.safetensors"
cp "$TINY/model.safetensors" "$TMP/nocfg/"
for d in bin-only trunc nocfg; do
	check "model dir $d: exit 1, one line" \
		"neox-gen -m '$TMP/$d' <'$TMP/q.tok' >/dev/null 2>'$TMP/err.$d'; test \$? -eq 1 && test \$(wc -l <'$TMP/err.$d') -eq 1 && grep -q '^neox-gen: ' '$TMP/err.$d'"
done
check "pytorch_model.bin only: told to convert to safetensors" "grep -q 'convert them to safetensors' '$TMP/err.bin-only'"
check "no -m is a usage error" "neox-gen <'$TMP/q.tok' >/dev/null 2>&1; test \$? -eq 2"
check "bad stream input: exit 1, one line naming the record" \
	"printf 'not a stream' | neox-gen -m '$TINY' >/dev/null 2>'$TMP/err'; test \$? -eq 1 && test \$(wc -l <'$TMP/err') -eq 1 && grep -q '^neox-gen: record 1: ' '$TMP/err'"

# OpenBLAS retries a failed buffer allocation forever: under an
# address-space limit neox-gen must still finish, or fail in one line.
# (The sanitizers, and CUDA's runtime under check-gpu, need more address
# space than any such limit allows.)
if [ -z "${TUNEPIPE_SANITIZE:-}" ] && [ "${TUNEPIPE_DEVICE:-cpu}" = cpu ]; then
	check "under ulimit -v 250000 the tiny model generates" \
		"(ulimit -v 250000; timeout 60 neox-gen -m '$TINY' -n 3 --batch 2 <'$TMP/q.tok' >/dev/null)"
	check "ulimit -v too low for OpenBLAS: exit 1, one line, no hang" \
		"(ulimit -v 100000; timeout 60 neox-gen -m '$TINY' -n 3 <'$TMP/q.tok' >/dev/null 2>'$TMP/err.ulimit'; test \$? -eq 1) &&
		 test \$(wc -l <'$TMP/err.ulimit') -eq 1"
fi

# -i with a Pythia-vocabulary model (random weights, 14m shape).
if neox-train --init "$TOP/data/pythia-14m.config.json" --steps 0 -o "$TMP/m14" </dev/null >/dev/null 2>&1; then
	check "-i answers each line with one line of text" \
		"printf 'What is Lamini?\n\nHow do I fine-tune?\n' | neox-gen -m '$TMP/m14' -i -n 6 >'$TMP/ans' && test \$(wc -l <'$TMP/ans') -eq 2"
	check "-i gives what the documented stream pipeline gives" \
		"printf 'What is Lamini?\n' | bpe-encode --text --template '### Question:\n{question}\n\n### Answer:' |
		   neox-gen -m '$TMP/m14' -n 6 --eos-id -1 | strip-prompt | bpe-encode -d --skip-special >'$TMP/pipe.jsonl' &&
		 printf 'What is Lamini?\n' | neox-gen -m '$TMP/m14' -i -n 6 --eos-id -1 >'$TMP/i.txt' &&
		 test -s '$TMP/i.txt' && grep -qF \"\$(head -c 12 '$TMP/i.txt')\" '$TMP/pipe.jsonl'"
	# A question longer than the model's 2048 positions: refused in one line
	# naming it, as the stream path refuses it, and the next one answered.
	awk 'BEGIN { for (i = 0; i < 3000; i++) printf "lamini %d ", i; print "" }' >"$TMP/long.txt"
	{ echo 'What is Lamini?'; cat "$TMP/long.txt"; echo 'How do I fine-tune?'; } >"$TMP/three.txt"
	check "-i: an over-long question gets one line on stderr and no answer; the next is answered" \
		"neox-gen -m '$TMP/m14' -i -n 6 <'$TMP/three.txt' >'$TMP/ans3' 2>'$TMP/err3' &&
		 test \$(wc -l <'$TMP/ans3') -eq 2 && test \$(wc -l <'$TMP/err3') -eq 1 &&
		 grep -q '^neox-gen: line 2: question of [0-9]* tokens, more than the model.s 2048 positions; skipped\$' '$TMP/err3'"
	check "... the stream path refuses the same question with the same count" \
		"bpe-encode --text --template '### Question:\n{question}\n\n### Answer:' <'$TMP/long.txt' |
		   neox-gen -m '$TMP/m14' >/dev/null 2>'$TMP/err.stream'; test \$? -eq 1 &&
		 n=\$(sed -n 's/.*question of \\([0-9]*\\) tokens.*/\\1/p' '$TMP/err3') && test \$n -gt 2048 &&
		 grep -q \"record 1: question of \$n tokens, more than the model's 2048 positions\\$\" '$TMP/err.stream'"
else
	ok "neox-train --init makes a 14m model for -i" false
fi

done_testing
