#!/usr/bin/env python3
"""tiny_reference.py -- tests/data/tiny-neox/reference.safetensors and
reference.json: what Hugging Face transformers computes with the tiny model.

    scripts/oracles/tiny_reference.py --out DIR [--model DIR] [--inputs FILE]

--model    the tiny-f32 directory (default tests/data/tiny-neox/tiny-f32)
--inputs   a reference.safetensors to take the token ids from (default the
           committed one): ids.{a,b,c,d}, train.ex{0..7}.{prompt,answer} and
           gen.prompt were drawn at random once and are inputs here, copied
           as they are; every other tensor is computed:

  logits.X             the float64 forward of ids.X (model.double()), stored F32
  loss.{answer,all}_mean_per_example
                       per example, the mean cross-entropy over the answer
                       tokens (targets ids[len(prompt):], predicted from
                       position len(prompt)-1 on) or over all tokens
                       (targets ids[1:]); float32 forward, log-softmax of the
                       logits in float64
  train.loss, train.gradnorm, grad0.<tensor>, final.<tensor>
                       6 AdamW steps in float32 (settings in SETTINGS below),
                       the loss as above; the gradient norm before clipping,
                       summed in float64; grad0 the gradients of step 0,
                       final the parameters after step 5
  gen.greedy, gen.greedy_eos0, gen.rep1.3, gen.norep3
                       model.generate from gen.prompt in float32, 40 new tokens

Runs on the CPU (the fp32 numbers then do not depend on a GPU's TF32 or
kernels). Needs torch, transformers and safetensors; the committed file was
made with torch 2.11, transformers 5.17, safetensors 0.8. The fp32 parts
reproduce to rounding only (compare.py's tolerances), the rest exactly."""
import argparse
import json
import math
import os
import sys

import util

SETTINGS = {
    "model": "tiny-f32 (same weights rounded in tiny-f16, tiny-bf16)",
    "logits": "float64 forward of tiny-f32 weights, stored f32",
    "loss_mode_answer": "CE over answer tokens only: targets ids[len(prompt):], predicted from positions len(prompt)-1 ..",
    "trajectory": {
        "steps": 6,
        "micro_batch": 1,
        "grad_accum": 4,
        "examples_per_step": "ex[(4*s+j)%8], j=0..3",
        "loss": "sum of CE over all answer tokens of the 4 examples / their count",
        "optimizer": "AdamW lr=1e-3 constant, betas=(0.9,0.999), eps=1e-8, weight_decay=0.1 on 2-D weights only",
        "clip": "global grad norm clipped to 1.0 before each step",
        "gradnorm": "pre-clip norm",
        "grad0": "gradients of step 0 loss",
        "final": "parameters after the 6 steps",
    },
    "generation": "greedy, max_new_tokens=40, float32, tiny-f32 weights; rep1.3 = repetition_penalty 1.3 (HF "
                  "semantics); norep3 = no_repeat_ngram_size 3; greedy_eos0 stops at token 0; EOS check: this "
                  "random model never emits id 0, so greedy_eos0 == greedy; with eos id 457 HF emits gen.greedy "
                  "up to and including its first 457, then stops",
}
STEPS, ACCUM, NUM_EX = 6, 4, 8
LR, BETAS, EPS, WEIGHT_DECAY, CLIP = 1e-3, (0.9, 0.999), 1e-8, 0.1, 1.0
NEW_TOKENS = 40


def summed_nll(model, prompt, answer, answer_only):
    """Σ -log p(target) over the answer (or all) tokens, in float64, and the count."""
    import torch
    ids = torch.cat([prompt, answer])[None]
    logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
    first = len(prompt) if answer_only else 1  # the first target position
    targets = ids[0, first:]
    return -logp[first - 1:-1].gather(1, targets[:, None]).sum(), len(targets)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory laid out like tests/data")
    ap.add_argument("--model", default=os.path.join(util.TESTDATA, "tiny-neox", "tiny-f32"))
    ap.add_argument("--inputs", default=os.path.join(util.TESTDATA, "tiny-neox", "reference.safetensors"))
    args = ap.parse_args()
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import GenerationConfig, GPTNeoXForCausalLM
    print("tiny_reference.py:", util.versions(), file=sys.stderr)

    given = load_file(args.inputs)
    out = {k: v for k, v in given.items() if k.startswith(("ids.", "train.ex", "gen.prompt"))}
    prompts = [given["train.ex%d.prompt" % i] for i in range(NUM_EX)]
    answers = [given["train.ex%d.answer" % i] for i in range(NUM_EX)]

    def load(dtype):
        model = GPTNeoXForCausalLM.from_pretrained(args.model, dtype=dtype)
        model.eval()
        return model

    with torch.no_grad():
        m64 = load(torch.float64)
        for name in sorted(k for k in given if k.startswith("ids.")):
            out["logits." + name[4:]] = m64(given[name][None]).logits[0].float().contiguous()
        del m64

        m32 = load(torch.float32)
        for mode, answer_only in (("answer", True), ("all", False)):
            means = []
            for p, a in zip(prompts, answers):
                nll, n = summed_nll(m32, p, a, answer_only)
                means.append(nll.item() / n)
            out["loss.%s_mean_per_example" % mode] = torch.tensor(means, dtype=torch.float64)

        prompt = given["gen.prompt"][None]

        def generate(**kw):
            config = GenerationConfig(max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=0, **kw)
            ids = m32.generate(prompt, attention_mask=torch.ones_like(prompt), generation_config=config)
            return ids[0, prompt.shape[1]:].contiguous()

        out["gen.greedy"] = generate(eos_token_id=None)
        out["gen.greedy_eos0"] = generate(eos_token_id=0)
        out["gen.rep1.3"] = generate(eos_token_id=None, repetition_penalty=1.3)
        out["gen.norep3"] = generate(eos_token_id=None, no_repeat_ngram_size=3)
        greedy = out["gen.greedy"].tolist()
        if 457 in greedy:  # the EOS check reference.json states
            stopped = generate(eos_token_id=457).tolist()
            want = greedy[:greedy.index(457) + 1]
            print("tiny_reference.py: eos 457 stops after %d tokens: %s" %
                  (len(stopped), "as stated" if stopped == want else "NOT as stated"), file=sys.stderr)
        del m32

    model = load(torch.float32)
    model.train()  # no dropout in this config: the same forward
    # transformers 5 names the output projection lm_head in the module tree;
    # checkpoints (and the committed oracle) call it embed_out
    params = {n.replace("lm_head.", "embed_out."): p for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([{"params": [p for p in params.values() if p.dim() == 2], "weight_decay": WEIGHT_DECAY},
                             {"params": [p for p in params.values() if p.dim() != 2], "weight_decay": 0.0}],
                            lr=LR, betas=BETAS, eps=EPS)
    losses, norms = [], []
    for step in range(STEPS):
        ex = [(ACCUM * step + j) % NUM_EX for j in range(ACCUM)]
        count = sum(len(answers[i]) for i in ex)
        opt.zero_grad(set_to_none=True)
        loss = 0.0
        for i in ex:  # micro-batches of one example, their gradients summed
            nll, _ = summed_nll(model, prompts[i], answers[i], True)
            (nll / count).backward()
            loss += nll.item() / count
        if step == 0:
            for n, p in params.items():
                out["grad0." + n] = p.grad.detach().clone()
        norms.append(math.sqrt(sum(p.grad.double().pow(2).sum().item() for p in params.values())))
        torch.nn.utils.clip_grad_norm_(list(params.values()), CLIP)
        opt.step()
        losses.append(loss)
        print("tiny_reference.py: step %d loss %.9f grad norm %.9f" % (step, loss, norms[-1]), file=sys.stderr)
    out["train.loss"] = torch.tensor(losses, dtype=torch.float64)
    out["train.gradnorm"] = torch.tensor(norms, dtype=torch.float64)
    for n, p in params.items():
        out["final." + n] = p.detach().clone()

    tiny = os.path.join(args.out, "tiny-neox")
    os.makedirs(tiny, exist_ok=True)
    save_file(out, os.path.join(tiny, "reference.safetensors"))
    util.write_text(os.path.join(tiny, "reference.json"), json.dumps(SETTINGS, indent=1))


if __name__ == "__main__":
    main()
