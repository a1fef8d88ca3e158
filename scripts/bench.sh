#!/bin/sh
# bench.sh — run by `make bench`: the speed of each stage on this machine,
# printed as one table at the end (each figure a median of several runs; the
# full output of every benchmark is kept in $OUT/bench/).
#
#   BENCH_CONFIG  model shape (default data/pythia-410m.config.json)
#   BENCH_STEPS   optimizer steps timed for training (default 6)
#   BENCH_MPI_STEPS  steps of each run of the 2-rank comparison (default 3)
#   BENCH_DTYPES  products to time, training and generation (default "fp32 bf16")
#   OUT           output directory (default out)
#   NODE_PATH     where the npm package tokenizers is, for the HF comparison
#   SERVE_*       neox-serve's rows (scripts/serve-bench.sh)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
config=${BENCH_CONFIG:-data/pythia-410m.config.json}
steps=${BENCH_STEPS:-6}
dtypes=${BENCH_DTYPES:-fp32 bf16}
dir=${OUT:-out}/bench
mkdir -p "$dir"
export TUNEPIPE_DATA="$top/data"

row() { printf '| %-34s | %-34s | %s |\n' "$1" "$2" "$3" >>"$dir/table.md"; }
: >"$dir/table.md"
rm -f "$dir"/gen-*.txt "$dir"/train-*.txt
threads=$(nproc)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
flags=$(grep -m1 '^flags' /proc/cpuinfo)
isa=$(for f in avx512f avx512_bf16 amx_bf16; do case " $flags " in *" $f "*) printf '%s ' "$f";; esac; done)
isa=${isa% }
# bf16 rows only where the CPU has bf16 products (else they would time fp32).
case " $isa " in
*" avx512_bf16 "*) ;;
*) dtypes=$(echo " $dtypes " | sed 's/ bf16 / /; s/^ *//; s/ *$//')
   echo "bench: this CPU has no bf16 products (AVX512_BF16 or AMX): bf16 rows left out" >&2 ;;
esac

echo "bench: tokenizer (single thread)..." >&2
build/bench/bpe_bench >"$dir/bpe.txt"
for corpus in lamini code+multilingual; do
	line=$(grep "^$corpus:" "$dir/bpe.txt")
	row "bpe-encode, $corpus text" "$(echo "$line" | grep -o ': [0-9.]* MB/s' | cut -c3-), $(echo "$line" | grep -o '[0-9.]* M tokens/s')" "1 thread"
done
# Hugging Face tokenizers through its Node binding, when installed (never a
# dependency: npm install tokenizers somewhere and set NODE_PATH).
if command -v node >/dev/null && node -e "require('tokenizers')" 2>/dev/null; then
	build/bench/bpe_bench --dump lamini >"$dir/lamini.texts.jsonl"
	hf=$(RAYON_NUM_THREADS=1 node bench/bpe_hf.js speed <"$dir/lamini.texts.jsonl" | grep -o '[0-9.]* MB/s' | cut -d' ' -f1)
	ours=$(grep '^lamini:' "$dir/bpe.txt" | grep -o ': [0-9.]* MB/s' | cut -d' ' -f2)
	row "HF tokenizers (npm), lamini text" "$hf MB/s (bpe-encode: $(awk "BEGIN { printf \"%.0f\", $ours / $hf }")x)" "1 thread, same run"
fi
row "tokenizer load" "$(sed -n 's/^load: \([0-9.]* ms\).*peak memory \([0-9.]* MB\).*/\1, \2 peak/p' "$dir/bpe.txt")" "whole process"

# Decoding at batch 1 reads every weight once a token: bound by this.
build/bench/mem_bench >"$dir/mem.txt"
mem=$(sed -n 's/^read [0-9]* threads*: \([0-9.]*\) GB\/s.*/\1/p' "$dir/mem.txt" | tail -1)
row "memory read bandwidth" "$(sed -n 's/^read \([0-9]* threads*\): \([0-9.]* GB\/s\).*/\2 (\1)/p' "$dir/mem.txt" | paste -sd, - | sed 's/,/, /g')" "a sum over 1 GiB, median of 9 passes"

for dtype in $dtypes; do
	echo "bench: generation ($config, $dtype)..." >&2
	build/bench/gen_bench -c "$config" --dtype "$dtype" >"$dir/gen-$dtype.txt"
	kernels="$(sed -n 's/^dtype [a-z0-9]* (products: \([a-z0-9]*\)).*/\1/p' "$dir/gen-$dtype.txt"), BLAS $(sed -n 's/.*BLAS core \([A-Za-z0-9]*\).*/\1/p' "$dir/gen-$dtype.txt")"
	for b in 1 8; do
		line=$(grep "^batch $b:" "$dir/gen-$dtype.txt" || true)
		[ -n "$line" ] || continue
		row "neox-gen $dtype batch $b, $(basename "$config" .config.json)" \
			"$(echo "$line" | sed 's/^batch [0-9]*: \([^(]*\) (.*/\1/')" "$threads threads, $kernels"
	done
	gb=$(sed -n 's/^linear weights read per decoded token: \([0-9.]*\) GB/\1/p' "$dir/gen-$dtype.txt")
	tps=$(sed -n 's/^batch 1: .*decode \([0-9.]*\) tok\/s.*/\1/p' "$dir/gen-$dtype.txt")
	[ -n "$gb" ] && [ -n "$tps" ] && [ -n "$mem" ] &&
		row "neox-gen $dtype batch 1 weight stream" "$(awk "BEGIN { printf \"%.1f GB/s, %.0f%% of the read bandwidth\", $gb * $tps, 100 * $gb * $tps / $mem }")" "$gb GB of linear weights a token"
	row "neox-gen $dtype peak RSS" "$(sed -n 's/^peak RSS: //p' "$dir/gen-$dtype.txt")" "batch 8"
done

echo "bench: training ($config, $steps steps)..." >&2
bin/jsonl-split --part train data/lamini_docs.jsonl | bin/bpe-encode --template '### Question:\n{question}\n\n### Answer:' |
	bin/pad-trunc -q 1000 -a 100 >"$dir/train.tok"
for dtype in $dtypes; do
	build/bench/train_bench "$config" "$dir/train.tok" "$steps" "$dtype" >"$dir/train-$dtype.txt"
	line=$(grep '^median' "$dir/train-$dtype.txt")
	kernels=$(sed -n 's/.*(BLAS core \([A-Za-z0-9]*\), kernel \([a-z0-9]*\)).*/\2, BLAS \1/p' "$dir/train-$dtype.txt")
	row "neox-train $dtype, $(basename "$config" .config.json)" \
		"$(echo "$line" | sed 's/^median of [0-9]* steps: \([0-9.]* tokens\/s\), \([0-9.]* s\/step\).*peak RSS \(.*\)$/\1, \2, peak RSS \3/')" \
		"seed recipe (batch 1 x accum 4), -q1000 -a100 input, $threads threads, $kernels"
done
# bf16 against fp32, both measured in this run.
ratio() { # FILE-A FILE-B SED-EXPRESSION: the number it picks from A over B's
	a=$(sed -n "$3" "$1" | head -1) b=$(sed -n "$3" "$2" | head -1)
	[ -n "$a" ] && [ -n "$b" ] && awk "BEGIN { printf \"%.2fx\", $a / $b }"
}
has_dtype() { case " $dtypes " in *" $1 "*) true ;; *) false ;; esac; }
if has_dtype fp32 && has_dtype bf16; then
	row "bf16 / fp32, this run" \
		"training $(ratio "$dir/train-bf16.txt" "$dir/train-fp32.txt" 's/^median of [0-9]* steps: \([0-9.]*\) tokens\/s.*/\1/p'), decode batch 1 $(ratio "$dir/gen-bf16.txt" "$dir/gen-fp32.txt" 's/^batch 1: .*decode \([0-9.]*\) tok\/s.*/\1/p')" \
		"tokens/s ratios"
fi

# Data parallelism on this machine: 2 ranks of 1 thread against 1 process
# of 2 threads (scripts/bench-mpi.sh), fp32.
if command -v mpirun >/dev/null; then
	scripts/bench-mpi.sh >"$dir/mpi.txt"
	line=$(grep '^mpi:' "$dir/mpi.txt")
	row "neox-train fp32 2 ranks x 1 thread vs 1 x 2 threads, $(basename "$config" .config.json)" \
		"$(echo "$line" | sed 's/^mpi: 2x1 \([0-9.]*\) s\/step (wait \([0-9.]*\), comm \([0-9.]*\) s\/step), 1x2 \([0-9.]*\) s\/step.*/\1 vs \4 s\/step; per step \3 s reducing, \2 s waiting/')" \
		"seed recipe, mpirun on this machine (shared memory), ${BENCH_MPI_STEPS:-3} steps, median after the first"
fi

echo "bench: checkpoints ($config)..." >&2
build/bench/ckpt_bench "$config" "$dir" 3 >"$dir/ckpt.txt"
for what in "save state" "save model f16" "save model f32" "load model f16, cold" "load model f32, cold" "load state, cold"; do
	row "checkpoint $what, $(basename "$config" .config.json)" \
		"$(grep "^$what:" "$dir/ckpt.txt" | sed 's/^[^:]*: \([^(]*\) (.*/\1/')" "fsync'd, in $dir"
done

BENCH_TABLE=$dir/table.md scripts/serve-bench.sh

{
	echo
	echo "Machine: $cpu, $threads cores ($isa); $(date -u +%Y-%m-%d)."
	echo
	echo "| what | figure | configuration |"
	echo "|---|---|---|"
	cat "$dir/table.md"
} | tee "$dir/summary.md"
