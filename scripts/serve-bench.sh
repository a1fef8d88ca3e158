#!/bin/sh
# serve-bench.sh — neox-serve under concurrent streamed requests: total
# completion tokens/s and time to first token at 1, 4, 8 and 16 clients
# over loopback, and what 8 clients get over one. Run by bench.sh (rows
# appended to its table); alone it prints its rows.
#
#   SERVE_CONFIG   model shape (default data/pythia-70m.config.json), random weights
#   SERVE_TOKENS   tokens per request (default 64)
#   SERVE_ROUNDS   requests each client sends, one after another (default 4)
#   OUT            output directory (default out)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
config=${SERVE_CONFIG:-data/pythia-70m.config.json}
tokens=${SERVE_TOKENS:-64}
rounds=${SERVE_ROUNDS:-4}
dir=${OUT:-out}/bench
mkdir -p "$dir"
export TUNEPIPE_DATA="$top/data"
command -v node >/dev/null || { echo "serve-bench: node is not installed: no neox-serve rows" >&2; exit 0; }
shape=$(basename "$config" .config.json)
table=${BENCH_TABLE:-}
row() {
	line=$(printf '| %-34s | %-34s | %s |' "$1" "$2" "$3")
	if [ -n "$table" ]; then echo "$line" >>"$table"; else echo "$line"; fi
}

echo "bench: neox-serve ($config, $tokens tokens a request)..." >&2
model=$dir/serve-$shape
bin/neox-train --init "$config" --steps 0 -o "$model" --overwrite </dev/null >/dev/null
rm -f "$dir/serve.port"
bin/neox-serve -m "$model" --port 0 --port-file "$dir/serve.port" --parallel 16 --queue 64 2>"$dir/serve.err" &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid 2>/dev/null' EXIT
i=0
while [ ! -s "$dir/serve.port" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
url=http://127.0.0.1:$(cat "$dir/serve.port")
# A warm-up request: the first pays for page faults and thread starts.
node bench/serve_load.mjs "$url" "$(basename "$model")" 1 1 8 >/dev/null
: >"$dir/serve.txt"
for c in 1 4 8 16; do
	node bench/serve_load.mjs "$url" "$(basename "$model")" $c "$rounds" "$tokens" | tee -a "$dir/serve.txt" >&2
done
threads=$(nproc)
for c in 1 4 8 16; do
	line=$(grep "^clients $c x" "$dir/serve.txt")
	row "neox-serve $shape, $c clients" \
		"$(echo "$line" | sed 's/.*: \([0-9.]* tokens\/s\), ttft p50 \([0-9]* ms\) p99 \([0-9]* ms\).*/\1, TTFT p50 \2, p99 \3/')" \
		"$rounds x $tokens-token streamed requests each, loopback, $threads threads, fp32"
done
tps() { grep "^clients $1 x" "$dir/serve.txt" | sed 's/.*: \([0-9.]*\) tokens\/s.*/\1/'; }
row "neox-serve 8 clients / 1 client" "$(awk "BEGIN { printf \"%.2fx\", $(tps 8) / $(tps 1) }") total tokens/s" "continuous batching, same run"
