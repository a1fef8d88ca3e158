#!/bin/sh
# gpu-run.sh — on a GPU machine, from the top of the tree, with the tools
# of gpu-bundle/ (scripts/gpu-bundle.sh) or of the build tree: the GPU tests
# (every CUDA op against its CPU twin, the Hugging Face fidelity checks on
# cuda, a checkpoint resumed on the other device, neox-gen's tests with
# the tools on cuda; the ops and neox-gen's tests again with the decoding
# kernels launched early, TUNEPIPE_CUDA_PDL=1), then the rows of make
# bench-gpu. Everything goes to OUT (default out/gpu-run): one log per
# test, bench-gpu.txt, summary.txt.
# Exits 1 when a test failed.
set -u
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
out=${OUT:-out/gpu-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
if [ -d gpu-bundle ]; then
	if [ ! -d gpu-bundle/lib ]; then # unpacked once, with xz or Python's
		if command -v xz >/dev/null; then tar -C gpu-bundle -xJf gpu-bundle/lib.tar.xz
		else python3 -m tarfile -e gpu-bundle/lib.tar.xz gpu-bundle; fi
	fi
	B=$top/gpu-bundle bin=$top/gpu-bundle/bin
	export LD_LIBRARY_PATH=$top/gpu-bundle/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export TUNEPIPE_CUDA_LIB=$B/libtunepipe-cuda.so
else
	B=$top/${BUILD:-build} bin=$top/${BIN:-bin}
fi
export TUNEPIPE_DATA=$top/data TUNEPIPE_BIN=$bin TUNEPIPE_BUILD=$B
status=0
{
	echo "# $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1); $(date -u '+%Y-%m-%d %H:%M')"
	for t in "$B"/tests/gpu/*.t tests/gpu/t*.sh; do
		name=$(basename "$t")
		if prove -v --exec '' "$t" >"$out/$name.log" 2>&1; then r=pass; else r=FAIL status=1; fi
		echo "$name: $r, $(grep -c '^ok' "$out/$name.log") ok, $(grep -c '^not ok' "$out/$name.log") not ok"
	done
	if TUNEPIPE_DEVICE=cuda prove -v --exec '' tests/t40-neox-gen.sh >"$out/t40-cuda.log" 2>&1; then r=pass; else r=FAIL status=1; fi
	echo "t40-neox-gen.sh on cuda: $r, $(grep -c '^ok' "$out/t40-cuda.log") ok"
	# the early launch of the decoding kernels, not yet the default
	if TUNEPIPE_CUDA_PDL=1 prove -v --exec '' "$B/tests/gpu/cuda_ops.t" >"$out/cuda_ops-pdl.log" 2>&1; then r=pass
	else r=FAIL status=1; fi
	echo "cuda_ops.t, TUNEPIPE_CUDA_PDL=1: $r, $(grep -c '^ok' "$out/cuda_ops-pdl.log") ok"
	if TUNEPIPE_CUDA_PDL=1 TUNEPIPE_DEVICE=cuda prove -v --exec '' tests/t40-neox-gen.sh >"$out/t40-cuda-pdl.log" 2>&1
	then r=pass; else r=FAIL status=1; fi
	echo "t40-neox-gen.sh on cuda, TUNEPIPE_CUDA_PDL=1: $r, $(grep -c '^ok' "$out/t40-cuda-pdl.log") ok"
	BIN=$bin OUT=$out/bench-gpu.txt sh scripts/bench-gpu.sh >/dev/null 2>"$out/bench-gpu.err" || echo "bench-gpu.sh: FAIL (bench-gpu.err)"
	cat "$out/bench-gpu.txt"
} | tee "$out/summary.txt"
grep -q FAIL "$out/summary.txt" && status=1
exit $status
