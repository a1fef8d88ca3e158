#!/bin/sh
# neox-train from the command line: the output directory transformers loads,
# --init --steps 0, padding that changes nothing, kill -9 then --resume equal
# to an uninterrupted run, a full disk keeping the last checkpoint, eval and
# --keep-best, bad input and usage errors. (The numbers against Hugging Face
# are in tests/unit/train.c.)
. "$(dirname "$0")/lib.sh"
tiny=$TOP/tests/data/tiny-neox/tiny-f32
micro=$TOP/tests/data/neox-micro.config.json

tiny_examples
head -24 "$TOP/data/lamini_docs.jsonl" | bpe-encode >"$TMP/lamini.tok"

# "sed -f $numbers LOG": step, loss, lr, grad_norm, tokens (timings differ run to run).
numbers=$TMP/numbers.sed
echo 's/,"tokens_per_s".*//' >"$numbers"

# ---- usage -----------------------------------------------------------------
check "no model is a usage error" "neox-train -o '$TMP/x' <'$TMP/tiny.tok' 2>/dev/null; test \$? -eq 2"
check "-m and --init together are a usage error" \
	"neox-train -m '$tiny' --init '$micro' -o '$TMP/x' <'$TMP/tiny.tok' 2>/dev/null; test \$? -eq 2"
check "--keep-best without --eval is a usage error" \
	"neox-train -m '$tiny' -o '$TMP/x' --keep-best <'$TMP/tiny.tok' 2>/dev/null; test \$? -eq 2"
check "a bad --schedule is a usage error" \
	"neox-train -m '$tiny' -o '$TMP/x' --schedule steep <'$TMP/tiny.tok' 2>/dev/null; test \$? -eq 2"
check "--resume keeps the run's settings: --lr is refused" \
	"neox-train --resume '$TMP/x' --lr 1 <'$TMP/tiny.tok' 2>&1 >/dev/null | grep -q 'keeps its settings'"

# ---- --init --steps 0 --------------------------------------------------------
check "--init CONFIG --steps 0 writes a checkpoint without reading input" \
	"neox-train --init '$micro' --steps 0 -o '$TMP/init' </dev/null &&
	 test -s '$TMP/init/model.safetensors' && test -s '$TMP/init/config.json' &&
	 cmp -s '$TMP/init/tokenizer.json' '$TOP/data/tokenizer.json' && test ! -e '$TMP/init/training_state.safetensors'"
check "model.safetensors has Hugging Face's tensor names and format" \
	"head -c 4000 '$TMP/init/model.safetensors' | grep -a -q '\"__metadata__\":{\"format\":\"pt\"}' &&
	 head -c 4000 '$TMP/init/model.safetensors' | grep -a -q '\"gpt_neox.layers.1.mlp.dense_4h_to_h.weight\":{\"dtype\":\"F32\",\"shape\":\\[32,128\\]' &&
	 head -c 4000 '$TMP/init/model.safetensors' | grep -a -q '\"embed_out.weight\"'"
check "--save-dtype bf16 halves the file and says so in config.json" \
	"neox-train --init '$micro' --steps 0 --save-dtype bf16 -o '$TMP/init16' &&
	 grep -q '\"torch_dtype\":.*\"bfloat16\"' '$TMP/init16/config.json' &&
	 test \$(stat -c %s '$TMP/init16/model.safetensors') -lt \$((\$(stat -c %s '$TMP/init/model.safetensors') / 2 + 4096))"
check "the same seed initializes the same weights" \
	"neox-train --init '$micro' --steps 0 -o '$TMP/init2' && cmp '$TMP/init/model.safetensors' '$TMP/init2/model.safetensors'"
check "a trained checkpoint loads back as -m" \
	"neox-train -m '$tiny' -o '$TMP/t1' --steps 2 -q <'$TMP/tiny.tok' && neox-train -m '$TMP/t1' -o '$TMP/t2' --steps 1 -q <'$TMP/tiny.tok'"
check "log.jsonl: one line per step with its fields" \
	"test \$(wc -l <'$TMP/t1/log.jsonl') -eq 2 &&
	 grep -q '^{\"step\":2,\"loss\":[0-9.]*,\"lr\":[-0-9.e]*,\"grad_norm\":[0-9.e-]*,\"tokens\":[0-9]*,\"tokens_per_s\":[0-9.]*,\"elapsed\":[0-9.]*,\"kernel\":\"fp32\",\"blas\":\"[A-Za-z0-9]*\"}\$' '$TMP/t1/log.jsonl'"
check "the first step of the default schedule (warmup 1) has lr 0" \
	"head -1 '$TMP/t1/log.jsonl' | grep -q '\"lr\":0,'"
check "an output directory holding a run is not overwritten without --overwrite" \
	"neox-train -m '$tiny' -o '$TMP/t1' --steps 1 <'$TMP/tiny.tok' 2>&1 | grep -q 'holds a training run' &&
	 neox-train -m '$tiny' -o '$TMP/t1' --steps 1 --overwrite <'$TMP/tiny.tok'"

# ---- padding is free ---------------------------------------------------------
check "pad-trunc -q1000 -a100 input trains to the same numbers and weights as unpadded" \
	"pad-trunc --no-pad -q1000 -a100 <'$TMP/lamini.tok' | neox-train --init '$micro' -o '$TMP/plain' --steps 3 --lr 1e-3 --save-every 0 &&
	 pad-trunc -q1000 -a100 <'$TMP/lamini.tok' | neox-train --init '$micro' -o '$TMP/padded' --steps 3 --lr 1e-3 --save-every 0 &&
	 sed -f '$numbers' '$TMP/plain/log.jsonl' >'$TMP/n1' && sed -f '$numbers' '$TMP/padded/log.jsonl' >'$TMP/n2' && cmp '$TMP/n1' '$TMP/n2' &&
	 cmp '$TMP/plain/model.safetensors' '$TMP/padded/model.safetensors'"
check "--batch 2 --grad-accum 2 is --batch 1 --grad-accum 4" \
	"neox-train -m '$tiny' -o '$TMP/b22' --steps 3 --batch 2 --grad-accum 2 <'$TMP/tiny.tok' &&
	 neox-train -m '$tiny' -o '$TMP/b14' --steps 3 --batch 1 --grad-accum 4 <'$TMP/tiny.tok' &&
	 sed -f '$numbers' '$TMP/b22/log.jsonl' >'$TMP/n1' && sed -f '$numbers' '$TMP/b14/log.jsonl' >'$TMP/n2' && cmp '$TMP/n1' '$TMP/n2'"

check "--dtype bf16 trains to nearly the fp32 losses" \
	"neox-train -m '$tiny' -o '$TMP/bf16' --steps 3 --dtype bf16 <'$TMP/tiny.tok' &&
	 sed 's/.*\"loss\":\\([0-9.]*\\).*/\\1/' '$TMP/b14/log.jsonl' >'$TMP/l32' &&
	 sed 's/.*\"loss\":\\([0-9.]*\\).*/\\1/' '$TMP/bf16/log.jsonl' | paste - '$TMP/l32' |
	 awk '{ d = \$1 - \$2; if (d < 0) d = -d; if (d > 0.01 * \$2) bad = 1 } END { exit bad }'"

# ---- the thread count changes no bit, on every OpenBLAS kernel set ------------
# Wide enough (256 x 1536) that every product is cut into several pieces.
# OpenBLAS's Haswell kernels (also those of AMD's Zen) and its AVX-512
# SkylakeX ones add in different orders; each must give the same bits for
# any thread count.
wide=$TOP/tests/data/neox-wide.config.json
cores=Haswell
grep -q avx512f /proc/cpuinfo && cores="$cores SkylakeX"
for core in $cores; do
	for t in 1 2 3; do
		OPENBLAS_CORETYPE=$core neox-train --init "$wide" -o "$TMP/wide-$core-$t" --steps 2 --lr 1e-3 \
			--threads $t -q "$TMP/tiny.tok"
	done
	check "OpenBLAS $core: 1, 2 and 3 threads train to the same weights, bit for bit" \
		"cmp '$TMP/wide-$core-1/model.safetensors' '$TMP/wide-$core-2/model.safetensors' &&
		 cmp '$TMP/wide-$core-1/model.safetensors' '$TMP/wide-$core-3/model.safetensors'"
	check "OpenBLAS $core: ... and the same losses and gradient norms" \
		"sed -f '$numbers' '$TMP/wide-$core-1/log.jsonl' >'$TMP/n1' && sed -f '$numbers' '$TMP/wide-$core-3/log.jsonl' >'$TMP/n3' &&
		 cmp '$TMP/n1' '$TMP/n3'"
	check "OpenBLAS $core: log.jsonl names the kernel set" \
		"grep -q '\"kernel\":\"fp32\",\"blas\":\"$core\"' '$TMP/wide-$core-1/log.jsonl'"
done
check "--resume on other kernels says the numbers will differ in the last bits" \
	"OPENBLAS_CORETYPE=Haswell neox-train -m '$tiny' -o '$TMP/moved' --steps 2 -q '$TMP/tiny.tok' &&
	 OPENBLAS_CORETYPE=Prescott neox-train --resume '$TMP/moved' --steps 3 -q '$TMP/tiny.tok' 2>'$TMP/moved.err' &&
	 grep -q 'OpenBLAS Haswell, this one on fp32 with OpenBLAS Prescott: from step 3 on' '$TMP/moved.err'"
check "... and nothing when the kernels are the same" \
	"OPENBLAS_CORETYPE=Prescott neox-train --resume '$TMP/moved' --steps 4 -q '$TMP/tiny.tok' 2>'$TMP/moved.err' &&
	 test ! -s '$TMP/moved.err'"
# A run begun on the GPU, as its log says: its last line before the
# checkpoint names the kernels cuda-fp32, five characters taken off the blas
# name so that the log keeps the length the state records.
# (tests/gpu/t-device-resume.sh resumes real ones, on a GPU.)
cat >"$TMP/gpulog.sed" <<'EOF'
$s/"kernel":"fp32","blas":"\([A-Za-z0-9]*\)[A-Za-z0-9]\{5\}"/"kernel":"cuda-fp32","blas":"\1"/
EOF
check "--resume of a run trained on the GPU says, in one line, that the numbers differ in the last bits" \
	"sed -f '$TMP/gpulog.sed' '$TMP/moved/log.jsonl' >'$TMP/gpulog' && tail -1 '$TMP/gpulog' | grep -q '\"kernel\":\"cuda-fp32\"' &&
	 test \$(stat -c %s '$TMP/gpulog') -eq \$(stat -c %s '$TMP/moved/log.jsonl') && cp '$TMP/gpulog' '$TMP/moved/log.jsonl' &&
	 OPENBLAS_CORETYPE=Prescott neox-train --resume '$TMP/moved' --steps 5 -q '$TMP/tiny.tok' 2>'$TMP/moved.err' &&
	 test \$(wc -l <'$TMP/moved.err') -eq 1 &&
	 grep -q 'the run so far trained on cuda (cuda-fp32), this one on cpu (fp32 with OpenBLAS Prescott): from step 5 on, the numbers differ' '$TMP/moved.err'"
check "--dtype bf16 trains the wide model (bf16 kernels, or fp32 where the CPU has none)" \
	"neox-train --init '$wide' -o '$TMP/wide-bf16' --steps 2 --lr 1e-3 --dtype bf16 -q '$TMP/tiny.tok' 2>'$TMP/bf16.err' &&
	 if grep -q 'no bf16 products' '$TMP/bf16.err'; then grep -q '\"kernel\":\"fp32\"' '$TMP/wide-bf16/log.jsonl';
	 else grep -q '\"kernel\":\"a[mv]' '$TMP/wide-bf16/log.jsonl'; fi"
check "-v names the kernels and the thread count" \
	"neox-train --init '$wide' -o '$TMP/wide-v' --steps 1 --threads 1 -v -q '$TMP/tiny.tok' 2>&1 | grep -q '^neox-train: fp32 on OpenBLAS [A-Za-z0-9]*; 1 thread\$'"
# s in all, starting, steps, evaluating, checkpoints: the parts within the whole
check "-v ends with where the wall time went, the parts adding up to at most the whole" \
	"neox-train --init '$wide' -o '$TMP/wide-v2' --steps 3 --save-every 2 --eval '$TMP/tiny.tok' -v -q '$TMP/tiny.tok' 2>'$TMP/v2.err' &&
	 tail -1 '$TMP/v2.err' | grep -E '^neox-train: [0-9.]+ s in all: [0-9.]+ s starting \(model, data, device\), [0-9.]+ s in 3 steps, [0-9.]+ s evaluating, [0-9.]+ s writing checkpoints\$' >'$TMP/v2.last' &&
	 tr -c '0-9.\n' ' ' <'$TMP/v2.last' | awk '{ exit !(\$1 > 0 && \$2 + \$3 + \$5 + \$6 <= \$1 + 0.25 && \$4 == 3) }'"

# ---- kill -9, then --resume ----------------------------------------------------
steps=300
run="neox-train -m $tiny --steps $steps --lr 1e-3 --save-every 25 --threads 1 $TMP/tiny.tok -o"
$run "$TMP/whole"
$run "$TMP/killed" &
pid=$!
while [ ! -e "$TMP/killed/training_state.safetensors" ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
lines=$(wc -l <"$TMP/killed/log.jsonl")
check "the run was killed mid-way ($lines of $steps steps logged)" "test $lines -lt $steps"
check "--resume after kill -9 ends with the uninterrupted run's weights, bit for bit" \
	"neox-train --resume '$TMP/killed' '$TMP/tiny.tok' && cmp '$TMP/whole/model.safetensors' '$TMP/killed/model.safetensors'"
check "... and the same log" \
	"sed -f '$numbers' '$TMP/whole/log.jsonl' >'$TMP/n1' && sed -f '$numbers' '$TMP/killed/log.jsonl' >'$TMP/n2' && cmp '$TMP/n1' '$TMP/n2'"
check "--resume with other data is refused" \
	"neox-train --resume '$TMP/killed' --steps 400 '$TMP/tiny-eval.tok' 2>&1 | grep -q 'not the training data'"
check "--resume --steps N continues a finished run" \
	"neox-train --resume '$TMP/killed' --steps 310 '$TMP/tiny.tok' && test \$(wc -l <'$TMP/killed/log.jsonl') -eq 310"

# ---- a full disk -------------------------------------------------------------
if unshare -r -m true 2>/dev/null; then
	# A tmpfs that holds the first checkpoint but not the next file on top.
	neox-train -m "$tiny" --steps 1 -o "$TMP/sizes" "$TMP/tiny.tok"
	kb=$(du -sk "$TMP/sizes" | cut -f1)
	mkdir "$TMP/disk"
	unshare -r -m sh -c "mount -t tmpfs -o size=$((kb + 400))k tmpfs '$TMP/disk' &&
		neox-train -m '$tiny' --steps 3 --save-every 1 -o '$TMP/disk/out' '$TMP/tiny.tok' 2>'$TMP/full.err';
		echo \$? >'$TMP/full.rc'; cp -r '$TMP/disk/out' '$TMP/after-full'"
	check "a full disk is an error, exit 1" "test \$(cat '$TMP/full.rc') -eq 1 && grep -q 'No space left on device' '$TMP/full.err'"
	check "... no temporary file is left" "! ls '$TMP/after-full' | grep -q '\\.tmp\\.'"
	check "... and the last checkpoint resumes to the uninterrupted result" \
		"neox-train -m '$tiny' --steps 3 --save-every 1 -o '$TMP/nofull' '$TMP/tiny.tok' &&
		 neox-train --resume '$TMP/after-full' '$TMP/tiny.tok' && cmp '$TMP/nofull/model.safetensors' '$TMP/after-full/model.safetensors'"
else
	echo "# no user namespaces here: the full-disk checks are skipped"
fi

# ---- eval and --keep-best ------------------------------------------------------
check "--eval --eval-every adds eval_loss to those steps and the last" \
	"neox-train -m '$tiny' -o '$TMP/ev' --steps 7 --lr 3e-3 --warmup 0 --eval '$TMP/tiny-eval.tok' --eval-every 2 -q <'$TMP/tiny.tok' &&
	 test \$(grep -c eval_loss '$TMP/ev/log.jsonl') -eq 4 && tail -1 '$TMP/ev/log.jsonl' | grep -q '\"step\":7,.*eval_loss'"
check "--keep-best keeps the model of the lowest eval loss and names its step" \
	"neox-train -m '$tiny' -o '$TMP/best' --steps 12 --lr 3e-2 --warmup 0 --eval '$TMP/tiny-eval.tok' --eval-every 2 --keep-best <'$TMP/tiny.tok' 2>'$TMP/best.err' &&
	 best=\$(sed -n 's/.*\"step\":\\([0-9]*\\),.*\"eval_loss\":\\([0-9.e+-]*\\)}/\\2 \\1/p' '$TMP/best/log.jsonl' | sort -g | head -1 | cut -d' ' -f2) &&
	 grep -q \"model of step \$best,\" '$TMP/best.err' && cmp '$TMP/best/model.safetensors' '$TMP/best/best.safetensors'"

# ---- bad input -------------------------------------------------------------------
printf '{"question":[5,6],"answer":[7,600]}\n' | bpe-encode >"$TMP/oov.tok"
check "a token outside the vocabulary is an error naming the record, and OUT is not created" \
	"neox-train -m '$tiny' -o '$TMP/oov' <'$TMP/oov.tok' 2>'$TMP/err'; test \$? -eq 1 &&
	 grep -qx 'neox-train: -: record 1: token id 600 is outside the vocabulary (512)' '$TMP/err' && test ! -e '$TMP/oov'"
check "text input is an error" \
	"neox-train -m '$tiny' -o '$TMP/txt' <'$TMP/tiny.jsonl' 2>'$TMP/err'; test \$? -eq 1 && grep -q 'record 1:' '$TMP/err'"
check "a missing model directory is an error" \
	"neox-train -m '$TMP/none' -o '$TMP/m' <'$TMP/tiny.tok' 2>/dev/null; test \$? -eq 1"

done_testing
