#!/bin/sh
# The main job on a shortened run: a random pythia-14m-shaped model, a
# 300-record slice of lamini_docs, 60 steps at a high learning rate. The
# fine-tuned model must beat the base one on ROUGE-L and perplexity, and the
# report must hold the table, the answers and the loss plot.
. "$(dirname "$0")/lib.sh"

head -300 "$TOP/data/lamini_docs.jsonl" >"$TMP/docs.jsonl"
steps=60
ok "make report runs the whole pipeline" \
	make -s -C "$TOP" report T="$BIN" OUT="$TMP/out" DATA="$TMP/docs.jsonl" STEPS=$steps LR=3e-3 \
	WARMUP=4 EVAL_EVERY=20 MAXNEW=16 EXAMPLES=3
check "the split is 270/30" "test \$(wc -l <'$TMP/out/train.jsonl') -eq 270 && test \$(wc -l <'$TMP/out/test.jsonl') -eq 30"

eval-compare --json --label base --score "$TMP/out/base.score.jsonl" "$TMP/out/base.answers.jsonl" \
	--label finetuned --score "$TMP/out/finetuned.score.jsonl" "$TMP/out/finetuned.answers.jsonl" \
	>"$TMP/metrics.json"
# metric NAME INDEX: the value of NAME for input INDEX (0 base, 1 fine-tuned).
metric() { tr -d ' \t\n' <"$TMP/metrics.json" | sed 's/"inputs":\[/\n/; s/},{/\n/g' | sed -n "$(($2 + 2))p" |
	sed -n "s/.*\"$1\":\([-0-9.e+]*\).*/\1/p"; }
rb=$(metric rouge_l_f1 0) rf=$(metric rouge_l_f1 1) pb=$(metric perplexity 0) pf=$(metric perplexity 1)
echo "# ROUGE-L base $rb fine-tuned $rf; perplexity base $pb fine-tuned $pf"
check "fine-tuned beats base on ROUGE-L" "awk 'BEGIN { exit !($rf > $rb) }'"
check "fine-tuned beats base on perplexity" "awk 'BEGIN { exit !($pf < $pb) }'"
check "the report has the table, the answers and the loss plot" \
	"grep -q '<table' '$TMP/out/report.html' && grep -q 'ROUGE-L' '$TMP/out/report.html' && grep -q '<svg' '$TMP/out/report.html' && grep -c 'Lamini' '$TMP/out/report.html' >/dev/null"
check "the training log has one line per step" "test \$(wc -l <'$TMP/out/finetuned/log.jsonl') -eq $steps"

done_testing
