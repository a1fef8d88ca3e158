#!/usr/bin/env python3
"""hf_check.py -- does Hugging Face transformers load what neox-train wrote,
and compute what our tools computed?

    scripts/hf_check.py OUT IDS.jsonl [--score SCORES.jsonl] [--eval-log]
                        [--logits F]

OUT          a neox-train output directory (config.json, model.safetensors)
IDS.jsonl    records as `bpe-encode -d --ids` writes them: {"question": [...],
             "answer": [...]}
--score F    `neox-gen -m OUT --score` of the same records: each record's
             summed negative log-likelihood of the answer given the question,
             compared with the same sum from transformers' logits
--eval-log   the last eval_loss in OUT/log.jsonl (neox-train --eval on the same
             records) against transformers' token-weighted cross-entropy
--logits F   a safetensors file of sequences ids.NAME (ids as numbers) and
             the logits.NAME [T, V] some code computed for them (our forward;
             or tiny-neox's reference.safetensors, whose float64 logits are
             those of the tiny-f32 weights): transformers' logits of OUT on
             the same ids against them

Prints the largest differences; exits 1 when loading reports missing or
unexpected tensors. Needs torch, transformers and safetensors.
"""
import argparse
import json
import math
import sys

import torch
from transformers import GPTNeoXForCausalLM


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("ids")
    ap.add_argument("--score")
    ap.add_argument("--eval-log", action="store_true")
    ap.add_argument("--logits")
    args = ap.parse_args()

    model, info = GPTNeoXForCausalLM.from_pretrained(
        args.out, output_loading_info=True, torch_dtype=torch.float32)
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    print(f"loaded {args.out}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"loading info: {problems or 'clean'}")

    records = [json.loads(line) for line in open(args.ids) if line.strip()]
    nll = []          # per record: summed -log p of the answer tokens
    ce_sum, ce_count = 0.0, 0
    with torch.no_grad():
        for r in records:
            q, a = r.get("question", []), r["answer"]
            ids = torch.tensor([q + a])
            logp = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
            first = max(len(q), 1)   # token p is predicted at position p-1
            s = -sum(logp[p - 1, ids[0, p]].item() for p in range(first, len(q) + len(a)))
            nll.append(s)
            ce_sum += s
            ce_count += len(q) + len(a) - first

    if args.score:
        ours = [json.loads(line) for line in open(args.score) if line.strip()]
        diffs = [abs(o["nll"] - h) for o, h in zip(ours, nll)]
        rel = [abs(o["nll"] - h) / abs(h) for o, h in zip(ours, nll)]
        print(f"neox-gen --score vs transformers, {len(diffs)} records: "
              f"max |nll diff| {max(diffs):.3e} (max relative {max(rel):.3e})")

    if args.eval_log:
        evals = [json.loads(line)["eval_loss"] for line in open(f"{args.out}/log.jsonl")
                 if "eval_loss" in line]
        hf = ce_sum / ce_count
        print(f"neox-train eval_loss {evals[-1]:.9f} vs transformers {hf:.9f}: "
              f"|diff| {abs(evals[-1] - hf):.3e}")

    if args.logits:
        from safetensors.torch import load_file
        given = load_file(args.logits)
        worst, scale = 0.0, 0.0
        with torch.no_grad():
            for name in sorted(k[4:] for k in given if k.startswith("ids.")):
                ids = given[f"ids.{name}"]
                ids = (ids.round() if ids.is_floating_point() else ids).long().view(1, -1)
                logits = model(ids).logits[0]
                worst = max(worst, (logits - given[f"logits.{name}"]).abs().max().item())
                scale = max(scale, given[f"logits.{name}"].abs().max().item())
        print(f"logits of OUT in transformers vs {args.logits}: max |diff| {worst:.3e} "
              f"(largest |logit| {scale:.3g})")

    return 1 if problems.get("missing_keys") or problems.get("unexpected_keys") else 0


if __name__ == "__main__":
    sys.exit(main())
