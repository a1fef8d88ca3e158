#!/bin/sh
# bench-gpu.sh — neox-train and neox-gen on the GPU against Hugging Face +
# PyTorch on the same card, in one run (make bench-gpu). pythia-410m
# shapes, random weights, lamini lengths:
#   train   the seed recipe (batch 1, grad-accum 4, AdamW, clip 1), 40 steps,
#           examples/s and tokens/s over steps 11..40, bf16 and fp32
#   decode  greedy, 128 new tokens for each of the 140 test questions, at
#           batch 1 and 8: new tokens/s
#   hf      scripts/bench_gpu_hf.py (needs torch and transformers)
# BIN (default bin) holds the tools; the rows go to stdout and to OUT
# (default out/bench-gpu.txt).
set -eu
BIN=${BIN:-bin}
OUT=${OUT:-out/bench-gpu.txt}
T=${TMPDIR:-/tmp}/bench-gpu.$$
mkdir -p "$T" "$(dirname "$OUT")"
trap 'rm -rf "$T"' EXIT
C=data/pythia-410m.config.json
tmpl='### Question:\n{question}\n\n### Answer:'
{
echo "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null || echo 'no nvidia-smi'); $(date -u +%Y-%m-%d)"
"$BIN/jsonl-split" --part train data/lamini_docs.jsonl | "$BIN/bpe-encode" --template "$tmpl" |
	"$BIN/pad-trunc" -q1000 -a100 >"$T/train.tok"
"$BIN/jsonl-split" --part test data/lamini_docs.jsonl | "$BIN/bpe-encode" --template "$tmpl" >"$T/test.tok"
for dt in bf16 fp32; do
	"$BIN/neox-train" -q --device cuda --dtype "$dt" --init "$C" -o "$T/m-$dt" --steps 40 --save-every 0 \
		--lr 1e-5 "$T/train.tok"
	awk -v dt="$dt" -F'[:,]' '
		{ for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i+1); if ($i ~ /"elapsed"/) e = $(i+1);
		                             if ($i ~ /"tokens"$/) tok = $(i+1) }
		  if (s == 10) { e0 = e } if (s > 10) { n += 4; toks += tok; e1 = e } }
		END { printf "train seed recipe %s: %.1f examples/s, %.0f tokens/s (steps 11-40)\n", dt, n / (e1 - e0), toks / (e1 - e0) }' \
		"$T/m-$dt/log.jsonl"
done
for b in 1 8; do
	for dt in bf16 fp32; do
		s=$(date +%s.%N)
		"$BIN/neox-gen" -q --device cuda --dtype "$dt" -m "$T/m-bf16" -b "$b" -n 128 --eos-id -1 \
			"$T/test.tok" >/dev/null
		e=$(date +%s.%N)
		awk -v s="$s" -v e="$e" -v b="$b" -v dt="$dt" \
			'BEGIN { printf "decode batch %d %s: %.0f new tokens/s (140 x 128 tokens, %.1f s, prefill included)\n", b, dt, 140 * 128 / (e - s), e - s }'
	done
done
"$BIN/bpe-encode" -d --ids "$T/train.tok" >"$T/train.ids.jsonl"
python3 scripts/bench_gpu_hf.py "$C" "$T/train.ids.jsonl" --steps 20 2>/dev/null | sed 's/^/hf /'
} | tee "$OUT"
