#!/usr/bin/env python3
"""model_files.py -- the model fixtures of tests/data, made from their inputs:

  tiny-neox/tiny-f32/config.json
  tiny-neox/tiny-f16/{config.json,model.safetensors}
  tiny-neox/tiny-bf16/{config.json,model.safetensors}
  neox-micro.config.json

    scripts/oracles/model_files.py --out DIR [--weights F32.safetensors]

The tiny model (vocab 512, hidden 64, 2 layers, 4 heads, intermediate 256,
rotary_pct 0.25, parallel residual, untied embed_out) has random weights
drawn once; the draw was not recorded, so tiny-f32/model.safetensors is this
script's input (--weights, by default the committed one), not its output.
tiny-f16 and tiny-bf16 hold the same weights rounded to nearest even (as
torch's .half() and .bfloat16()), plus the buffers old Pythia checkpoints
carry: attention.bias (a causal mask, here 64x64), attention.masked_bias
(-1e9) and attention.rotary_emb.inv_freq. The configs are written in
transformers 4.x's keys (rotary_pct, rotary_emb_base, torch_dtype), which
tunepipe and transformers 5 both read.

neox-micro.config.json is data/pythia-14m.config.json with hidden_size 32,
intermediate_size 128 and 2 layers (neox-train --init's test model).

Plain Python: needs neither torch nor numpy."""
import argparse
import json
import os
import struct
import sys

import util

TINY = {
    "architectures": ["GPTNeoXForCausalLM"],
    "model_type": "gpt_neox",
    "bos_token_id": 0,
    "eos_token_id": 0,
    "hidden_act": "gelu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 256,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 2048,
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "rotary_emb_base": 10000,
    "rotary_pct": 0.25,
    "tie_word_embeddings": False,
    "torch_dtype": None,  # per copy
    "use_cache": True,
    "use_parallel_residual": True,
    "vocab_size": 512,
    "attention_bias": True,
    "attention_dropout": 0.0,
    "hidden_dropout": 0.0,
}
MASK_SIZE = 64  # of the attention.bias buffer (old checkpoints: max_position_embeddings)


def f32_to_bf16(raw):
    out = bytearray()
    for (u,) in struct.iter_unpack("<I", raw):
        out += struct.pack("<H", ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) & 0xFFFF)
    return bytes(out)


def f32_to_f16(raw):
    return b"".join(struct.pack("<e", x) for (x,) in struct.iter_unpack("<f", raw))


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def old_buffers(cfg):
    """The non-parameter tensors of an old GPT-NeoX checkpoint, per layer."""
    rot = int(cfg["hidden_size"] // cfg["num_attention_heads"] * cfg["rotary_pct"])
    # transformers: 1 / base ** (arange(0, rot, 2).float() / rot), in fp32
    inv_freq = [f32(1.0 / f32(f32(cfg["rotary_emb_base"]) ** f32(i / rot))) for i in range(0, rot, 2)]
    mask = bytes(1 if j <= i else 0 for i in range(MASK_SIZE) for j in range(MASK_SIZE))
    out = {}
    for l in range(cfg["num_hidden_layers"]):
        p = "gpt_neox.layers.%d.attention." % l
        out[p + "bias"] = ("BOOL", [1, 1, MASK_SIZE, MASK_SIZE], mask)
        out[p + "masked_bias"] = ("F32", [], struct.pack("<f", -1e9))
        out[p + "rotary_emb.inv_freq"] = ("F32", [len(inv_freq)], struct.pack("<%df" % len(inv_freq), *inv_freq))
    return out


def config_text(dtype):
    return json.dumps(dict(TINY, torch_dtype=dtype), indent=2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory laid out like tests/data")
    ap.add_argument("--weights", default=os.path.join(util.TESTDATA, "tiny-neox", "tiny-f32", "model.safetensors"))
    args = ap.parse_args()
    print("model_files.py:", util.versions(), file=sys.stderr)

    weights, _ = util.st_load(args.weights)
    if any(dtype != "F32" for dtype, _, _ in weights.values()):
        sys.exit("model_files.py: %s: every tensor must be F32" % args.weights)
    tiny = os.path.join(args.out, "tiny-neox")
    util.write_text(os.path.join(tiny, "tiny-f32", "config.json"), config_text("float32"))
    for name, dtype, st_dtype, convert in (("tiny-f16", "float16", "F16", f32_to_f16),
                                           ("tiny-bf16", "bfloat16", "BF16", f32_to_bf16)):
        tensors = {n: (st_dtype, shape, convert(raw)) for n, (_, shape, raw) in weights.items()}
        tensors.update(old_buffers(TINY))
        util.write_text(os.path.join(tiny, name, "config.json"), config_text(dtype))
        with open(os.path.join(tiny, name, "model.safetensors"), "wb") as f:
            f.write(util.st_dump(tensors, {"format": "pt"}))

    with open(os.path.join(util.DATA, "pythia-14m.config.json"), encoding="utf-8") as f:
        micro = json.load(f)
    micro.update(hidden_size=32, intermediate_size=128, num_hidden_layers=2)
    util.write_text(os.path.join(args.out, "neox-micro.config.json"), json.dumps(micro, indent=2) + "\n")


if __name__ == "__main__":
    main()
