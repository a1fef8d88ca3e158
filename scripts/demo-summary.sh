#!/bin/sh
# demo-summary.sh — run by `make demo`: writes the Markdown summary of a demo
# run to standard output, for the README to quote: the date, the machine, the
# matrix-product kernels, the model and settings, the wall time, and
# eval-compare's table (read from standard input).
#
#   demo-summary.sh OUT START TOOLS MODEL SETTINGS
#
# OUT is the demo's output directory, START the Unix time the demo began
# (empty: unknown), TOOLS the directory of the tools, MODEL and SETTINGS
# one line each describing the run.
set -eu
[ $# -eq 5 ] || { echo "usage: demo-summary.sh OUT START TOOLS MODEL SETTINGS" >&2; exit 2; }
out=$1 start=$2 tools=$3 model=$4 settings=$5
table=$(cat)
[ -n "$table" ] || { echo "demo-summary.sh: no table on standard input" >&2; exit 1; }

now=$(date +%s)
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
flags=$(sed -n 's/^flags[[:space:]]*: //p' /proc/cpuinfo | head -1)
has() { case " $flags " in *" $1 "*) echo yes ;; *) echo no ;; esac; }
# The demo trains and decodes in fp32: OpenBLAS's kernels (the tools pick
# SkylakeX's on CPUs with AVX-512) and our own vector code, built for this
# CPU. OpenBLAS names the core it runs when OPENBLAS_VERBOSE=2; the tools
# re-run themselves once when they change it, so the last name counts.
core=$(OPENBLAS_VERBOSE=2 "$tools/neox-gen" --version 2>&1 >/dev/null | sed -n 's/^Core: //p' | tail -1)
if [ -z "$start" ]; then
	wall="unknown (make summary; \`make demo\` times itself)"
else
	s=$((now - start))
	if [ $s -ge 60 ]; then wall="$((s / 60)) min $((s % 60)) s"; else wall="$s s"; fi
	# Every step depends on the split: made by this run, it redid them all.
	if [ "$(stat -c %Y "$out/train.jsonl")" -ge "$start" ]; then wall="$wall, every step"
	else wall="$wall, redoing only the stale steps"; fi
fi
loss=$(grep '"eval_loss"' "$out/finetuned/log.jsonl" | tail -1 |
	sed -n 's/.*"step":\([0-9]*\).*"eval_loss":\([-0-9.e+]*\).*/eval loss \2 at step \1/p')

cat <<EOF
# make demo: summary

| | |
|---|---|
| date | $(date -u -d "@$now" '+%Y-%m-%d %H:%M UTC') |
| machine | $cpu, $(nproc) cores (AVX-512: $(has avx512f), AVX-512 BF16: $(has avx512_bf16), AMX: $(has amx_tile)) |
| matrix products | fp32: OpenBLAS ${core:-?} kernels$(if [ -n "${OPENBLAS_CORETYPE:-}" ]; then echo " (OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE)"; fi) |
| model | $model |
| settings | $settings |
| fine-tuned | ${loss:-no eval loss in the log} |
| wall time | $wall |

\`\`\`
$table
\`\`\`
EOF
