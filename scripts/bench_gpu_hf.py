#!/usr/bin/env python3
"""bench_gpu_hf.py -- Hugging Face transformers + PyTorch on one GPU, the
baseline that `make bench-gpu` sets neox-train and neox-gen against.

    scripts/bench_gpu_hf.py CONFIG IDS.jsonl [--steps N] [--out F.jsonl]

CONFIG   a config.json (data/pythia-410m.config.json): random weights of
         that shape (speed does not depend on the values)
IDS      training records as `bpe-encode -d --ids` writes them
         ({"question": [...], "answer": [...]}); each example is question
         then answer, unpadded, its labels the whole sequence

Rows (one JSON object per line, also on stdout):
  seed     batch 1, gradient accumulation 4, bf16 autocast, AdamW, clipping
           1.0: what the seed's Trainer run does; examples/s and tokens/s
  batch16  16 examples a step, padded to the longest (as HF's collator
           does), accumulation 1: tokens/s of real tokens and MFU
           (6 * parameters * tokens/s over the card's dense bf16 peak)
  decode   greedy `generate` of 128 new tokens at batch 1 and 8
           (min_new_tokens forces the length: random weights)
Every row gives the card and its peak memory.
"""
import argparse
import json
import time

import torch
import transformers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

# Dense bf16 peak of the SXM cards (NVIDIA's datasheets).
PEAK_BF16 = {"H100": 989e12, "H200": 989e12}


def card():
    name = torch.cuda.get_device_name()
    for k in PEAK_BF16:
        if k in name:
            return name, PEAK_BF16[k]
    return name, None


def emit(out, row):
    row.update(card=card()[0], torch=torch.__version__, transformers=transformers.__version__,
               peak_mem_gib=round(torch.cuda.max_memory_allocated() / 2**30, 2))
    line = json.dumps(row)
    print(line, flush=True)
    if out:
        out.write(line + "\n")
        out.flush()


def train_rows(model, examples, steps, out):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    nparams = sum(p.numel() for p in model.parameters())

    def step(batch_examples, accum):
        tokens = 0
        for micro in range(accum):
            group = batch_examples[micro]
            T = max(len(e) for e in group)
            ids = torch.ones(len(group), T, dtype=torch.long)
            mask = torch.zeros(len(group), T, dtype=torch.long)
            for i, e in enumerate(group):
                ids[i, :len(e)] = torch.tensor(e)
                mask[i, :len(e)] = 1
                tokens += len(e)
            ids, mask = ids.cuda(non_blocking=True), mask.cuda(non_blocking=True)
            labels = ids.masked_fill(mask == 0, -100)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / accum
            loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return tokens

    for name, bsz, accum in (("seed", 1, 4), ("batch16", 16, 1)):
        per_step = bsz * accum
        pos = 0

        def next_batch():
            nonlocal pos
            groups = []
            for _ in range(accum):
                g = [examples[(pos + i) % len(examples)] for i in range(bsz)]
                pos += bsz
                groups.append(g)
            return groups

        for _ in range(3):
            step(next_batch(), accum)
        torch.cuda.synchronize()
        tokens = 0
        t0 = time.perf_counter()
        for _ in range(steps):
            tokens += step(next_batch(), accum)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        row = dict(row=name, batch=bsz, grad_accum=accum, steps=steps,
                   examples_per_s=round(steps * per_step / dt, 2),
                   tokens_per_s=round(tokens / dt, 1))
        peak = card()[1]
        if peak:
            row["mfu_pct"] = round(100 * 6 * nparams * tokens / dt / peak, 2)
        emit(out, row)


def decode_rows(model, prompts, out):
    model.eval()
    for bsz in (1, 8):
        group = prompts[:bsz]
        T = max(len(p) for p in group)
        ids = torch.ones(bsz, T, dtype=torch.long)
        mask = torch.zeros(bsz, T, dtype=torch.long)
        for i, p in enumerate(group):  # left padding, as generation wants
            ids[i, T - len(p):] = torch.tensor(p)
            mask[i, T - len(p):] = 1
        ids, mask = ids.cuda(), mask.cuda()
        new = 128
        kw = dict(max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=1)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            model.generate(input_ids=ids, attention_mask=mask, **kw)
            torch.cuda.synchronize()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                model.generate(input_ids=ids, attention_mask=mask, **kw)
                torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
        dt = sorted(times)[1]
        emit(out, dict(row="decode", batch=bsz, new_tokens=new,
                       tokens_per_s=round(bsz * new / dt, 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("ids")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--out")
    a = ap.parse_args()
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    cfg = GPTNeoXConfig.from_json_file(a.config)
    model = GPTNeoXForCausalLM(cfg).cuda()
    examples = []
    with open(a.ids) as f:
        for line in f:
            r = json.loads(line)
            examples.append(r["question"] + r.get("answer", []))
    out = open(a.out, "w") if a.out else None
    train_rows(model, examples, a.steps, out)
    decode_rows(model, [e[:64] for e in examples], out)


if __name__ == "__main__":
    main()
