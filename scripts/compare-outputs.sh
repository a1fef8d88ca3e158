#!/bin/sh
# compare-outputs.sh — the tools' outputs on the test fixtures, from two
# builds, compared byte for byte: a restructuring must change none of them.
#
#   scripts/compare-outputs.sh BEFORE_BIN AFTER_BIN
#
# BEFORE_BIN and AFTER_BIN are bin/ directories (build the old commit in a
# worktree: git worktree add /tmp/old COMMIT && make -C /tmp/old). Runs
# each tool on the fixtures with each build, on one thread and with
# OpenBLAS's kernel set fixed, and prints one line per output: same or
# DIFFERS. Exit status 1 when any output differs. Timings are the only
# things left out: log.jsonl's tokens_per_s and elapsed, and the header of
# training_state.safetensors (its tensors, the parameters and AdamW
# moments, are compared).
set -eu
[ $# -eq 2 ] || { echo "usage: $0 BEFORE_BIN AFTER_BIN" >&2; exit 2; }
top=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/compare-outputs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export TUNEPIPE_DATA="$top/data" OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=Haswell
tiny=$top/tests/data/tiny-neox/tiny-f32
micro=$top/tests/data/neox-micro.config.json
ev=$top/tests/data/eval
template='### Question:\n{question}\n\n### Answer:'

# outputs BIN DIR: every output of the run with the tools in BIN, into DIR.
outputs() {
	b=$1 o=$2
	mkdir -p "$o"
	"$b/jsonl-split" --train "$o/train.jsonl" --test "$o/test.jsonl" "$top/data/lamini_docs.jsonl"
	head -60 "$o/train.jsonl" | "$b/bpe-encode" --template "$template" >"$o/train.tok"
	head -12 "$o/test.jsonl" | "$b/bpe-encode" --template "$template" >"$o/test.tok"
	"$b/bpe-encode" -d --ids <"$o/train.tok" >"$o/train.ids.jsonl"
	"$b/pad-trunc" -q 40 -a 20 <"$o/train.tok" >"$o/padded.tok"
	"$b/bpe-encode" -d <"$o/padded.tok" >"$o/padded.jsonl"
	# tiny-f32 has a 512-token vocabulary: ids from the template-free
	# records, drawn with our own generator (Park-Miller, exact in awk's
	# doubles): awk's rand() differs between awks and machines.
	awk 'function draw() { x = (x * 16807) % 2147483647; return x / 2147483647 }
		BEGIN { x = 3; for (i = 0; i < 16; i++) { printf "{\"question\":["; k = 3 + int(draw() * 20)
		for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 1 + int(draw() * 511)
		printf "],\"answer\":["; k = 2 + int(draw() * 12)
		for (j = 0; j < k; j++) printf "%s%d", j ? "," : "", 1 + int(draw() * 511)
		printf "]}\n" } }' | "$b/bpe-encode" >"$o/tiny.tok"
	"$b/neox-gen" -m "$tiny" -n 12 <"$o/tiny.tok" | "$b/bpe-encode" -d --ids >"$o/greedy.jsonl"
	"$b/neox-gen" -m "$tiny" -n 12 -b 4 <"$o/tiny.tok" | "$b/bpe-encode" -d --ids >"$o/greedy-b4.jsonl"
	"$b/neox-gen" -m "$tiny" -n 12 --repetition-penalty 1.3 --no-repeat-ngram 3 <"$o/tiny.tok" |
		"$b/bpe-encode" -d --ids >"$o/penalties.jsonl"
	"$b/neox-gen" -m "$tiny" -n 12 --temperature 0.8 --top-k 40 --top-p 0.9 --seed 5 <"$o/tiny.tok" |
		"$b/bpe-encode" -d --ids >"$o/sampled.jsonl"
	"$b/neox-gen" -m "$tiny" --score <"$o/tiny.tok" >"$o/score.jsonl"
	"$b/neox-gen" -m "$tiny" -n 12 --dtype bf16 <"$o/tiny.tok" 2>/dev/null | "$b/bpe-encode" -d --ids >"$o/greedy-bf16.jsonl"
	"$b/neox-gen" -m "$tiny" -n 8 <"$o/tiny.tok" | "$b/strip-prompt" | "$b/bpe-encode" -d --ids >"$o/stripped.jsonl"
	for dtype in fp32 bf16; do
		"$b/neox-train" -m "$tiny" -o "$o/train-$dtype" --steps 4 --lr 1e-3 --dtype $dtype --threads 1 -q \
			--eval "$o/tiny.tok" --eval-every 2 "$o/tiny.tok" 2>/dev/null
		sed 's/,"tokens_per_s":[0-9.]*,"elapsed":[0-9.]*//' "$o/train-$dtype/log.jsonl" >"$o/train-$dtype.log"
		"$b/neox-gen" -m "$o/train-$dtype" -n 8 <"$o/tiny.tok" | "$b/bpe-encode" -d --ids >"$o/train-$dtype.gen.jsonl"
	done
	"$b/neox-train" --init "$micro" --steps 2 --lr 1e-3 --threads 1 -q -o "$o/micro" "$o/train.tok"
	"$b/eval-compare" -l base -s "$ev/base.score.jsonl" "$ev/base.jsonl" -l ft -s "$ev/ft.score.jsonl" "$ev/ft.jsonl" \
		--json >"$o/eval.json"
	"$b/eval-compare" -l base -s "$ev/base.score.jsonl" "$ev/base.jsonl" -l ft -s "$ev/ft.score.jsonl" "$ev/ft.jsonl" \
		--log "$ev/log.jsonl" --html "$o/report.html" >"$o/eval.txt"
}

outputs "$1" "$tmp/before"
outputs "$2" "$tmp/after"
# The tensors of a safetensors file: what follows its 8-byte length and header.
tensors() { tail -c +$((9 + $(od -An -t u8 -N 8 "$1"))) "$1"; }
for d in before after; do
	for f in $(find "$tmp/$d" -name training_state.safetensors); do
		tensors "$f" >"${f%.safetensors}.tensors" && rm "$f"
	done
done
status=0
for f in $(cd "$tmp/before" && find . -type f ! -name log.jsonl | sort); do
	if cmp -s "$tmp/before/$f" "$tmp/after/$f"; then
		echo "same     ${f#./}"
	else
		echo "DIFFERS  ${f#./}"
		status=1
	fi
done
exit $status
