#!/bin/sh
# bench-gpu.sh — neox-train and neox-gen on the GPU against Hugging Face +
# PyTorch on the same card, in one run (make bench-gpu). pythia-410m
# shapes, random weights, lamini lengths:
#   train   the seed recipe (batch 1, grad-accum 4, AdamW, clip 1), 40 steps,
#           examples/s and tokens/s over steps 11..40, bf16 and fp32; then
#           batch 16 x accumulation 1 in bf16, with its MFU (6 x parameters
#           x tokens/s over the card's dense bf16 peak, as the HF script)
#   decode  greedy, 128 new tokens for each of the 140 test questions, at
#           batch 1 and 8: new tokens/s while generating (neox-gen -v:
#           prefill included, loading the model not, as HF's generate), and
#           the whole command's time; bf16 also with the kernels launched
#           early (TUNEPIPE_CUDA_PDL=1, "bf16-pdl")
#   memory  the most GPU memory each run's own allocations held (-v)
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
card=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
case $card in *H100*|*H200*) peak=989e12 ;; *) peak=0 ;; esac # dense bf16, SXM datasheets
peak_mem() { sed -n 's/.*at most \([0-9.]*\) GiB.*/\1/p' "$1"; }
{
echo "# ${card:-no nvidia-smi}, $(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u +%Y-%m-%d)"
"$BIN/jsonl-split" --part train data/lamini_docs.jsonl | "$BIN/bpe-encode" --template "$tmpl" |
	"$BIN/pad-trunc" -q1000 -a100 >"$T/train.tok"
"$BIN/jsonl-split" --part test data/lamini_docs.jsonl | "$BIN/bpe-encode" --template "$tmpl" >"$T/test.tok"
for run in "bf16 1 4" "fp32 1 4" "bf16 16 1"; do
	set -- $run
	dt=$1 batch=$2 accum=$3 dir=$T/m-$1-$2
	"$BIN/neox-train" -q -v --device cuda --dtype "$dt" --init "$C" -o "$dir" --steps 40 --save-every 0 \
		--lr 1e-5 --batch "$batch" --grad-accum "$accum" "$T/train.tok" 2>"$T/train.err"
	# parameters: the fp32 checkpoint's bytes past its header, over 4
	st=$dir/model.safetensors
	params=$(( ($(wc -c <"$st") - 8 - $(od -An -t u8 -N8 "$st")) / 4 ))
	awk -v dt="$dt" -v b="$batch" -v a="$accum" -v mem="$(peak_mem "$T/train.err")" -v params="$params" -v peak="$peak" -F'[:,]' '
		{ for (i = 1; i < NF; i++) { if ($i ~ /"step"/) s = $(i+1); if ($i ~ /"elapsed"/) e = $(i+1);
		                             if ($i ~ /"tokens"$/) tok = $(i+1) }
		  if (s == 10) { e0 = e } if (s > 10) { n += b * a; toks += tok; e1 = e } }
		END { name = b == 1 && a == 4 ? "seed recipe" : sprintf("batch %d x accum %d", b, a)
		      mfu = peak > 0 ? sprintf(", MFU %.2f%%", 100 * 6 * params * toks / (e1 - e0) / peak) : ""
		      printf "train %s %s: %.1f examples/s, %.0f tokens/s%s (steps 11-40), peak GPU memory %s GiB\n",
		             name, dt, n / (e1 - e0), toks / (e1 - e0), mfu, mem }' "$dir/log.jsonl"
done
for b in 1 8; do
	for dt in bf16 bf16-pdl fp32; do
		s=$(date +%s.%N)
		pdl=0
		[ "$dt" = bf16-pdl ] && pdl=1
		TUNEPIPE_CUDA_PDL=$pdl "$BIN/neox-gen" -q -v --device cuda --dtype "${dt%-pdl}" -m "$T/m-bf16-1" -b "$b" \
			-n 128 --eos-id -1 "$T/test.tok" >/dev/null 2>"$T/gen.err"
		e=$(date +%s.%N)
		awk -v s="$s" -v e="$e" -v b="$b" -v dt="$dt" -v mem="$(peak_mem "$T/gen.err")" \
			-v rate="$(sed -n 's/.*: \([0-9.]*\) tokens\/s (prefill.*/\1/p' "$T/gen.err")" \
			'BEGIN { printf "decode batch %d %s: %.0f new tokens/s generating (140 x 128 tokens, prefill included); whole command %.1f s; peak GPU memory %s GiB\n", b, dt, rate, e - s, mem }'
	done
done
"$BIN/bpe-encode" -d --ids "$T/train.tok" >"$T/train.ids.jsonl"
python3 scripts/bench_gpu_hf.py "$C" "$T/train.ids.jsonl" --steps 20 2>/dev/null | sed 's/^/hf /'
echo "# complete"
} | tee "$OUT"
# set -e ends the block at a failed run, but not the pipeline's status
grep -q '^# complete' "$OUT" || { echo "bench-gpu: stopped early; $OUT has the rows so far" >&2; exit 1; }
