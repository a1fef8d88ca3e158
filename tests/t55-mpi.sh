#!/bin/sh
# neox-train on 2 data-parallel ranks (mpirun, one machine, one thread
# each): the same losses, gradient norms and weights as one process with
# twice the accumulation, the tiny-neox oracle trajectory, standard input
# and eval through rank 0, --resume with the same rank count only, and a
# rank killed with kill -9 ending the job within seconds, the last
# checkpoint intact, and SIGTERM to one rank stopping every rank at the
# same step.
. "$(dirname "$0")/lib.sh"
command -v mpirun >/dev/null || skip_all "no mpirun (make deps installs openmpi-bin)"
tiny=$TOP/tests/data/tiny-neox/tiny-f32
ref=$TOP/tests/data/tiny-neox/reference.safetensors
# Open MPI refuses root unless told; 2 ranks may share fewer cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Open MPI's own allocations outlive MPI_Finalize: no leak report for them.
[ -n "${TUNEPIPE_SANITIZE:-}" ] && export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0
mpi2="mpirun -np 2 --oversubscribe --bind-to none neox-train --threads 1"

tiny_examples

# ---- the same step on 2 ranks as on one ------------------------------------------
test_expect_success '2 ranks x grad-accum 2 log the losses and gradient norms of 1 x grad-accum 4 (1e-6)' '
	neox-train -m "$tiny" -o "$TMP/one" --steps 12 --lr 1e-3 --grad-accum 4 --threads 1 "$TMP/tiny.tok" &&
	$mpi2 -m "$tiny" -o "$TMP/two" --steps 12 --lr 1e-3 --grad-accum 2 "$TMP/tiny.tok" &&
	within 1e-6 "$TMP/one/log.jsonl" "$TMP/two/log.jsonl"
'
test_expect_success '... and end with the same weights (1e-6 per tensor)' '
	st diff "$TMP/two/model.safetensors" "$TMP/one/model.safetensors" >"$TMP/d" && cat "$TMP/d" &&
	awk "{ exit !(\$1 < 1e-6) }" "$TMP/d"
'
test_expect_success 'rank 0 alone writes log.jsonl, which names the ranks and the seconds spent waiting and reducing' '
	test $(wc -l <"$TMP/two/log.jsonl") -eq 12 &&
	grep -c "\"blas\":\"[A-Za-z0-9]*\",\"ranks\":2,\"wait_s\":[0-9.]*,\"comm_s\":[0-9.]*}\$" "$TMP/two/log.jsonl" | grep -qx 12
'
test_expect_success 'the training stream on standard input reaches both ranks: the same numbers, bit for bit' '
	$mpi2 -m "$tiny" -o "$TMP/stdin" --steps 12 --lr 1e-3 --grad-accum 2 <"$TMP/tiny.tok" &&
	within 0 "$TMP/two/log.jsonl" "$TMP/stdin/log.jsonl" &&
	cmp "$TMP/two/model.safetensors" "$TMP/stdin/model.safetensors"
'
test_expect_success '--eval is split over the ranks: the eval losses of one process (1e-6)' '
	neox-train -m "$tiny" -o "$TMP/ev1" --steps 3 --lr 1e-3 --eval "$TMP/tiny-eval.tok" --eval-every 1 --threads 1 "$TMP/tiny.tok" &&
	$mpi2 -m "$tiny" -o "$TMP/ev2" --steps 3 --lr 1e-3 --grad-accum 2 --eval "$TMP/tiny-eval.tok" --eval-every 1 "$TMP/tiny.tok" &&
	sed "s/.*\"eval_loss\":\([0-9.e+-]*\).*/\1/" "$TMP/ev1/log.jsonl" >"$TMP/e1" &&
	sed "s/.*\"eval_loss\":\([0-9.e+-]*\).*/\1/" "$TMP/ev2/log.jsonl" | paste - "$TMP/e1" >"$TMP/e" && cat "$TMP/e" &&
	test $(wc -l <"$TMP/e") -eq 3 && awk "{ d = \$1 - \$2; if (d < 0) d = -d; if (d > 1e-6 * \$2) bad = 1 } END { exit bad }" "$TMP/e"
'

# ---- the tiny-neox oracle (Hugging Face, torch AdamW) on 2 ranks --------------------
# Steps of examples ex[(4 s + j) % 8]: the input order, 4 a step.
st ids "$ref" | bpe-encode --no-eos >"$TMP/ref.tok"
st f64 "$ref" train.loss >"$TMP/ref.loss"
st f64 "$ref" train.gradnorm >"$TMP/ref.norm"
test_expect_success 'tiny-neox oracle: 6 steps on 2 ranks x grad-accum 2, losses and gradient norms within 1e-4' '
	$mpi2 -m "$tiny" -o "$TMP/oracle" --steps 6 --no-shuffle --batch 1 --grad-accum 2 --lr 1e-3 --schedule constant \
		--warmup 0 --weight-decay 0.1 --clip 1 "$TMP/ref.tok" &&
	sed "s/.*\"loss\":\([^,]*\),.*\"grad_norm\":\([^,]*\),.*/\1 \2/" "$TMP/oracle/log.jsonl" | paste -d" " - "$TMP/ref.loss" "$TMP/ref.norm" >"$TMP/o" &&
	cat "$TMP/o" && test $(wc -l <"$TMP/o") -eq 6 &&
	awk "function rel(a, b) { d = (a - b) / b; return d < 0 ? -d : d }
	     { if (rel(\$1, \$3) > 1e-4 || rel(\$2, \$4) > 1e-4) bad = 1 } END { exit bad }" "$TMP/o"
'
test_expect_success '... and the parameters after them within 1e-4 per tensor' '
	st diff "$TMP/oracle/model.safetensors" "$ref" final >"$TMP/d" && cat "$TMP/d" &&
	awk "{ exit !(\$1 < 1e-4) }" "$TMP/d"
'

# ---- resuming ------------------------------------------------------------------------
test_expect_success '--resume with another rank count is refused, naming the count' '
	! neox-train --resume "$TMP/two" --steps 14 "$TMP/tiny.tok" 2>"$TMP/err" &&
	grep "trained on 2 ranks" "$TMP/err" && test $(wc -l <"$TMP/two/log.jsonl") -eq 12
'
test_expect_success '--resume on as many ranks continues the run' '
	$mpi2 --resume "$TMP/two" --steps 14 "$TMP/tiny.tok" && test $(wc -l <"$TMP/two/log.jsonl") -eq 14
'

# ---- faults ----------------------------------------------------------------------------
test_expect_success 'bad input read by rank 0 ends the job with its one-line message' '
	printf "{\"question\":[5,6],\"answer\":[7,600]}\n" | bpe-encode >"$TMP/oov.tok" &&
	! $mpi2 -m "$tiny" -o "$TMP/oov" "$TMP/oov.tok" 2>"$TMP/err" &&
	grep -x "neox-train: $TMP/oov.tok: record 1: token id 600 is outside the vocabulary (512)" "$TMP/err" &&
	test ! -e "$TMP/oov"
'
test_expect_success 'several ranks on a device other than the CPU are refused in one line' '
	! $mpi2 --device cuda -m "$tiny" -o "$TMP/gpu" "$TMP/tiny.tok" 2>"$TMP/err" &&
	grep -x "neox-train: --device cuda: several processes (mpirun -np 2) train on the CPU only" "$TMP/err" &&
	test ! -e "$TMP/gpu"
'

# kill -9 of rank 1 while the job runs: mpirun ends rank 0 and itself, names
# the rank, and the last checkpoint resumes (on 2 ranks) to the weights of
# a run never interrupted.
# rank_pid MPIRUN-PID RANK: the process of that rank (mpirun's child).
rank_pid() {
	for p in /proc/[0-9]*; do
		[ "$(cut -d' ' -f4 "$p/stat" 2>/dev/null)" = "$1" ] &&
			tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2" && echo "${p#/proc/}"
	done
}
steps=200
train2="$mpi2 -m $tiny --steps $steps --lr 1e-3 --grad-accum 2 --save-every 25 $TMP/tiny.tok -o"
$train2 "$TMP/whole" 2>/dev/null
$train2 "$TMP/killed" 2>"$TMP/killed.err" &
job=$!
while [ ! -e "$TMP/killed/training_state.safetensors" ] && kill -0 $job 2>/dev/null; do sleep 0.01; done
rank1=$(rank_pid $job 1)
t0=$(date +%s.%N)
[ -n "$rank1" ] && kill -9 "$rank1"
wait $job
rc=$?
seconds=$(echo "$(date +%s.%N) $t0" | awk '{ printf "%.1f", $1 - $2 }')
lines=$(wc -l <"$TMP/killed/log.jsonl")
test_expect_success "kill -9 of rank 1 (pid ${rank1:-not found}) ends the job, exit $rc, in $seconds s (under 10)" '
	test -n "$rank1" && test $rc -ne 0 && awk "BEGIN { exit !($seconds < 10) }" && test $lines -lt $steps
'
test_expect_success '... with a message naming rank 1' '
	cat "$TMP/killed.err" && grep -q "rank 1 .*signal 9" "$TMP/killed.err"
'
test_expect_success '... and the last checkpoint resumes on 2 ranks to the uninterrupted weights, bit for bit' '
	$mpi2 --resume "$TMP/killed" "$TMP/tiny.tok" &&
	cmp "$TMP/whole/model.safetensors" "$TMP/killed/model.safetensors" &&
	within 0 "$TMP/whole/log.jsonl" "$TMP/killed/log.jsonl"
'

# SIGTERM to one rank: every rank stops after the same step, rank 0 writes
# the checkpoint before any exits, and it resumes to the same weights.
$train2 "$TMP/stopped" 2>"$TMP/stopped.err" &
job=$!
while [ ! -e "$TMP/stopped/training_state.safetensors" ] && kill -0 $job 2>/dev/null; do sleep 0.01; done
kill -TERM "$(rank_pid $job 1)"
wait $job
rc=$?
test_expect_success "SIGTERM to rank 1 stops the job at a step boundary, exit $rc (143)" '
	test $rc -eq 143 && cat "$TMP/stopped.err" &&
	grep -q "^neox-train: interrupted at step [0-9]* of $steps; continue with: mpirun -np 2 neox-train --resume" "$TMP/stopped.err"
'
test_expect_success '... its checkpoint is of that step and resumes to the uninterrupted weights' '
	step=$(sed -n "s/.*interrupted at step \([0-9]*\) .*/\1/p" "$TMP/stopped.err") &&
	test $(wc -l <"$TMP/stopped/log.jsonl") -eq $step &&
	$mpi2 --resume "$TMP/stopped" "$TMP/tiny.tok" && cmp "$TMP/whole/model.safetensors" "$TMP/stopped/model.safetensors"
'

done_testing
