#!/bin/sh
# make_all.sh OUTDIR: every file of tests/data that a script makes, made
# again into OUTDIR (laid out like tests/data), then compared with the
# committed ones (compare.py: one line per file, OK/OK~/DIFF/MISSING).
# Exits non-zero when a script fails or a file differs. Needs python3 with
# torch, transformers, tokenizers and safetensors ($PYTHON picks another).
set -u
[ $# -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
out=$1
py=${PYTHON:-python3}
mkdir -p "$out" || exit 1
status=0
(cd "$here" && "$py" -c 'import util; print(util.versions())') | tee "$out/VERSIONS"
for script in model_files.py tokenizer_refs.py tiny_reference.py; do
	echo "== $script" >&2
	"$py" "$here/$script" --out "$out" || { echo "make_all.sh: $script failed" >&2; status=1; }
done
"$py" "$here/compare.py" "$out" || status=1
exit $status
