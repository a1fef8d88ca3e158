#!/bin/sh
# decode-gpu.sh — where GPU decoding's time goes, on a GPU machine, with
# the tools in BIN (default bin; gpu-bundle/bin after gpu-run.sh unpacked
# its libraries): pythia-410m shapes, random weights, greedy, 128 new
# tokens for each of the first 48 test questions. For each dtype and batch
# (1, 8): new tokens/s with the step recorded as a CUDA graph and its
# kernels launched early (TUNEPIPE_CUDA_PDL=1), as the tools run (the
# graph alone), and with neither (TUNEPIPE_CUDA_GRAPHS=0), alternated over
# ROUNDS rounds (default 2); then the per-op table of
# TUNEPIPE_CUDA_PROFILE=1. Output on stdout.
set -eu
BIN=${BIN:-bin}
# the bundle's tools, run on their own, need its libraries and backend
if [ -d "$BIN/../lib" ] && [ -f "$BIN/../libtunepipe-cuda.so" ]; then
	b=$(cd "$BIN/.." && pwd)
	export LD_LIBRARY_PATH=$b/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} TUNEPIPE_CUDA_LIB=$b/libtunepipe-cuda.so
fi
ROUNDS=${ROUNDS:-2}
T=${TMPDIR:-/tmp}/decode-gpu.$$
mkdir -p "$T"
trap 'rm -rf "$T"' EXIT
tmpl='### Question:\n{question}\n\n### Answer:'
"$BIN/jsonl-split" --part test data/lamini_docs.jsonl | head -n 48 | "$BIN/bpe-encode" --template "$tmpl" >"$T/q.tok"
"$BIN/jsonl-split" --part train data/lamini_docs.jsonl | head -n 8 | "$BIN/bpe-encode" --template "$tmpl" |
	"$BIN/pad-trunc" -q1000 -a100 >"$T/t.tok"
"$BIN/neox-train" -q --device cuda --init data/pythia-410m.config.json -o "$T/m" --steps 1 --save-every 0 "$T/t.tok"
gen() { "$BIN/neox-gen" -q -v --device cuda --dtype "$1" -m "$T/m" -b "$2" -n 128 --eos-id -1 "$T/q.tok" 2>&1 >/dev/null; }
echo "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u +%Y-%m-%d)"
for dt in bf16 fp32; do
	for b in 1 8; do
		r=0
		while [ $r -lt "$ROUNDS" ]; do
			for gp in "1 1" "1 0" "0 0"; do
				set -- $gp
				rate=$(TUNEPIPE_CUDA_GRAPHS=$1 TUNEPIPE_CUDA_PDL=$2 gen "$dt" "$b" |
					sed -n 's/.*: \([0-9.]*\) tokens\/s (prefill.*/\1/p')
				echo "decode $dt batch $b graphs $1 early-launch $2 round $((r + 1)): $rate new tokens/s"
			done
			r=$((r + 1))
		done
	done
done
for run in "bf16 1" "bf16 8" "fp32 1"; do
	set -- $run
	echo "# profile, $1 batch $2"
	TUNEPIPE_CUDA_PROFILE=1 gen "$1" "$2" | sed -n '/^cuda profile/,$p' | head -30
done
