#!/bin/sh
# bench-ab.sh OLD NEW — the benchmarks both builds have (bpe_bench,
# gen_bench, train_bench), run alternately in one sitting: OLD then NEW,
# ROUNDS times, each figure the median over the rounds; for every row NEW /
# OLD of the medians, and the median of each round's own NEW / OLD. OLD
# and NEW are source trees built with `make` (their build/bench and bin).
# Used to show that a restructuring costs no speed.
#
#   ROUNDS   rounds (default 3)
#   CONFIG   model shape (default data/pythia-410m.config.json)
#   STEPS    training steps timed per run (default 4)
#   DTYPES   default "fp32 bf16"; bf16 only where the CPU has bf16 products
#   CPUS     taskset -c list to pin every run to (default: none)
#   BENCHES  which of them to run (default "bpe gen train"): more rounds of
#            one row for the same time, where the machine's noise needs it
#   OUT      where the raw outputs and the table go (default out/bench-ab)
set -eu
[ $# -eq 2 ] || { echo "usage: bench-ab.sh OLD NEW" >&2; exit 2; }
old=$(cd "$1" && pwd) new=$(cd "$2" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
rounds=${ROUNDS:-3} config=$top/${CONFIG:-data/pythia-410m.config.json} steps=${STEPS:-4}
dtypes=${DTYPES:-fp32 bf16} out=${OUT:-$top/out/bench-ab} benches=${BENCHES:-bpe gen train}
mkdir -p "$out"
out=$(cd "$out" && pwd)
grep -q -w -E 'avx512_bf16|amx_bf16' /proc/cpuinfo || dtypes=$(echo " $dtypes " | sed 's/ bf16 / /; s/^ *//; s/ *$//')
has() { case " $benches " in *" $1 "*) true ;; *) false ;; esac; }
pin() { if [ -n "${CPUS:-}" ]; then taskset -c "$CPUS" "$@"; else "$@"; fi; }
"$new/bin/jsonl-split" --part train "$top/data/lamini_docs.jsonl" |
	"$new/bin/bpe-encode" --template '### Question:\n{question}\n\n### Answer:' |
	"$new/bin/pad-trunc" -q 1000 -a 100 >"$out/train.tok"
r=1
while [ "$r" -le "$rounds" ]; do
	for side in old new; do
		eval "tree=\$$side"
		echo "bench-ab: round $r, $side" >&2
		! has bpe || (cd "$tree" && TUNEPIPE_DATA=$top/data pin build/bench/bpe_bench) >"$out/$side.$r.bpe"
		for dt in $dtypes; do
			! has gen || (cd "$tree" && TUNEPIPE_DATA=$top/data pin build/bench/gen_bench -c "$config" --dtype "$dt") >"$out/$side.$r.gen-$dt"
			! has train || (cd "$tree" && pin build/bench/train_bench "$config" "$out/train.tok" "$steps" "$dt") >"$out/$side.$r.train-$dt"
		done
	done
	r=$((r + 1))
done
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
# row NAME FILE-SUFFIX SED: the figure SED picks from each round's file;
# each build's median over the rounds, their ratio, and the median of the
# rounds' own ratios (new over the old run just before it: a change in
# the machine's speed from one round to the next cancels there)
row() {
	for side in old new; do
		for f in "$out"/$side.*."$2"; do sed -n "$3" "$f" | head -1; done | median >"$out/median.$side"
	done
	i=1
	while [ "$i" -le "$rounds" ]; do
		echo "$(sed -n "$3" "$out/old.$i.$2" | head -1) $(sed -n "$3" "$out/new.$i.$2" | head -1)"
		i=$((i + 1))
	done | awk 'NF == 2 && $1 > 0 { print $2 / $1 }' | median >"$out/median.paired"
	awk -v name="$1" -v o="$(cat "$out/median.old")" -v n="$(cat "$out/median.new")" -v p="$(cat "$out/median.paired")" \
		'BEGIN { printf "| %-32s | %10.4g | %10.4g | %.3f | %.3f |\n", name, o, n, n / o, p }'
}
{
	echo "Machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), ${CPUS:+CPUs $CPUS, }$rounds rounds alternated, medians; $(date -u +%Y-%m-%d)"
	echo "old: $old ($(git -C "$old" rev-parse --short HEAD 2>/dev/null || echo ?)), new: $new ($(git -C "$new" rev-parse --short HEAD 2>/dev/null || echo ?))"
	echo
	echo "| row | old | new | new / old | round by round |"
	echo "|---|---|---|---|---|"
	if has bpe; then
		row "bpe-encode lamini, MB/s" bpe 's/^lamini: .*: \([0-9.]*\) MB\/s.*/\1/p'
		row "bpe-encode code+multilingual, MB/s" bpe 's/^code+multilingual: .*: \([0-9.]*\) MB\/s.*/\1/p'
		row "tokenizer load, ms (lower is better)" bpe 's/^load: \([0-9.]*\) ms.*/\1/p'
	fi
	for dt in $dtypes; do
		if has gen; then
			for b in 1 8; do
				row "neox-gen $dt batch $b prefill, tok/s" "gen-$dt" "s/^batch $b: prefill \([0-9.]*\) tok\/s.*/\1/p"
				row "neox-gen $dt batch $b decode, tok/s" "gen-$dt" "s/^batch $b: .*decode \([0-9.]*\) tok\/s.*/\1/p"
			done
			row "neox-gen $dt peak RSS, MB" "gen-$dt" 's/^peak RSS: \([0-9]*\) MB.*/\1/p'
		fi
		! has train || row "neox-train $dt, tokens/s" "train-$dt" 's/^median of [0-9]* steps: \([0-9.]*\) tokens\/s.*/\1/p'
	done
} | tee "$out/table.md"
