#!/bin/sh
# bench-mpi.sh — run by scripts/bench.sh (or alone): neox-train fp32 on 2
# data-parallel ranks of 1 thread each (mpirun, this machine) against 1
# process of 2 threads, the same global batch (the seed recipe: batch 1 x
# accumulation 4, so 2 per rank), in one sitting. Prints one line:
#   mpi: 2x1 S2 s/step (wait W, comm C s/step), 1x2 S1 s/step, loss rel diff D
# where wait is the time the faster rank waits for the slower at the
# reduce (their shares differ in tokens) and comm the reduce itself.
# Each figure is the median over the steps after the first (which pays
# for first-touching the model's memory).
#
#   BENCH_CONFIG     model shape (default data/pythia-410m.config.json)
#   BENCH_MPI_STEPS  optimizer steps per run (default 3)
#   OUT              output directory (default out); the runs go to OUT/bench/mpi-*
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
config=${BENCH_CONFIG:-data/pythia-410m.config.json}
steps=${BENCH_MPI_STEPS:-3}
dir=${OUT:-out}/bench
mkdir -p "$dir"
export TUNEPIPE_DATA="$top/data"
command -v mpirun >/dev/null || { echo "bench-mpi: no mpirun (make deps installs openmpi-bin)" >&2; exit 1; }
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if [ ! -s "$dir/train.tok" ]; then
	bin/jsonl-split --part train data/lamini_docs.jsonl | bin/bpe-encode --template '### Question:\n{question}\n\n### Answer:' |
		bin/pad-trunc -q 1000 -a 100 >"$dir/train.tok"
fi
run="--init $config --steps $steps --lr 1e-6 --batch 1 --save-every 0 -q $dir/train.tok --overwrite -o"
echo "bench: 1 process x 2 threads, $steps steps..." >&2
bin/neox-train --threads 2 --grad-accum 4 $run "$dir/mpi-1x2"
echo "bench: 2 ranks x 1 thread, $steps steps..." >&2
mpirun -np 2 --oversubscribe --bind-to core bin/neox-train --threads 1 --grad-accum 2 $run "$dir/mpi-2x1"
# Seconds of each step after the first: tokens / tokens_per_s; wait_s, comm_s.
median() { sort -g | awk '{ v[NR] = $1 } END { printf "%.3f", NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
step_s() { sed -n '2,$s/.*"tokens":\([0-9]*\),"tokens_per_s":\([0-9.]*\),.*/\1 \2/p' "$1" | awk '{ print $1 / $2 }' | median; }
field() { sed -n "2,\$s/.*\"$2\":\([0-9.]*\).*/\1/p" "$1" | median; }
loss_diff() {
	for f in "$1" "$2"; do sed 's/.*"loss":\([^,]*\),.*/\1/' "$f"; done |
		awk -v n="$(wc -l <"$1")" 'NR <= n { l[NR] = $1; next } { d = ($1 - l[NR - n]) / l[NR - n]; if (d < 0) d = -d; if (d > w) w = d } END { printf "%.2g", w }'
}
one=$dir/mpi-1x2/log.jsonl two=$dir/mpi-2x1/log.jsonl
echo "mpi: 2x1 $(step_s "$two") s/step (wait $(field "$two" wait_s), comm $(field "$two" comm_s) s/step), 1x2 $(step_s "$one") s/step, loss rel diff $(loss_diff "$one" "$two")"
# The checkpoints are gigabytes and of no further use.
rm -f "$dir"/mpi-*/*.safetensors
