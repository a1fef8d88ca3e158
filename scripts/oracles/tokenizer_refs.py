#!/usr/bin/env python3
"""tokenizer_refs.py -- the tokenizer oracles of tests/data:

  lamini_docs.ref.jsonl  every question, then its answer, of data/lamini_docs.jsonl
  tok_cases.ref.jsonl    every text of tests/data/tok_cases.json (90 stress cases)

    scripts/oracles/tokenizer_refs.py --out DIR

One line per text, {"text","ids","decoded"}: Hugging Face tokenizers'
encoding of the text with data/tokenizer.json (GPT-NeoX-20B's, as Pythia
uses it: NFC, byte-level BPE, no special tokens added) and the decoding of
those ids with special tokens kept. JSON as compact as it goes, UTF-8 left
unescaped. Needs the tokenizers package (the committed files: 0.23.2)."""
import argparse
import json
import os
import sys

import util


def lines(tok, texts):
    for text in texts:
        ids = tok.encode(text).ids
        yield json.dumps({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)},
                         ensure_ascii=False, separators=(",", ":")) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="directory laid out like tests/data")
    args = ap.parse_args()
    from tokenizers import Tokenizer
    print("tokenizer_refs.py:", util.versions(), file=sys.stderr)

    tok = Tokenizer.from_file(os.path.join(util.DATA, "tokenizer.json"))
    with open(os.path.join(util.DATA, "lamini_docs.jsonl"), encoding="utf-8") as f:
        lamini = [t for r in map(json.loads, f) for t in (r["question"], r["answer"])]
    with open(os.path.join(util.TESTDATA, "tok_cases.json"), encoding="utf-8") as f:
        cases = [c["text"] for c in json.load(f)]
    for name, texts in (("lamini_docs.ref.jsonl", lamini), ("tok_cases.ref.jsonl", cases)):
        util.write_text(os.path.join(args.out, name), "".join(lines(tok, texts)))


if __name__ == "__main__":
    main()
