// bpe_hf.js — Hugging Face tokenizers (npm package "tokenizers", 0.23) as the
// oracle and the baseline for bpe-encode. Not a dependency of tunepipe: install
// it anywhere (npm install tokenizers) and point NODE_PATH at its node_modules.
//
//   node bench/bpe_hf.js speed [TOKENIZER] <texts.jsonl
//       encode speed, one thread when RAYON_NUM_THREADS=1; texts.jsonl is
//       {"text": ...} per line, e.g. build/bench/bpe_bench --dump lamini
//   node bench/bpe_hf.js ids [TOKENIZER] <texts.jsonl >ref.jsonl
//       {"text", "ids", "decoded"} per line, the format of
//       tests/data/*.ref.jsonl; compare with build/bench/bpe_bench --check ref.jsonl
//   node bench/bpe_hf.js probes >probes.jsonl
//       texts that put every code point next to letters, digits, punctuation,
//       combining marks and conjoining jamo, and every canonical decomposition
//       back together: feed them to "ids" and "--check" to find where the
//       Unicode tables of utf8proc and of tokenizers disagree (see
//       common/utf8_class.c and common/utf8_nfc.c)
'use strict';
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

const mode = process.argv[2];
const tokenizerPath = process.argv[3] || path.join(__dirname, '..', 'data', 'tokenizer.json');

function readTexts() {
  return fs.readFileSync(0, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l).text);
}

async function speed() {
  const tok = Tokenizer.fromFile(tokenizerPath);
  const texts = readTexts();
  const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);
  let tokens = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < texts.length; i += 1000) {
    const encs = await tok.encodeBatch(texts.slice(i, i + 1000), { addSpecialTokens: false });
    for (const e of encs) tokens += e.getIds().length;
  }
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(`tokenizers (npm): ${texts.length} texts, ${(bytes / 1e6).toFixed(2)} MB, ${tokens} tokens: ` +
              `${(bytes / 1e6 / s).toFixed(2)} MB/s, ${(tokens / 1e6 / s).toFixed(3)} M tokens/s`);
}

async function ids() {
  const tok = Tokenizer.fromFile(tokenizerPath);
  const out = [];
  for (const text of readTexts()) {
    const ids = Array.from((await tok.encode(text, null, { addSpecialTokens: false })).getIds());
    out.push(JSON.stringify({ text, ids, decoded: await tok.decode(ids, false) }));
    if (out.length >= 10000) { process.stdout.write(out.join('\n') + '\n'); out.length = 0; }
  }
  if (out.length) process.stdout.write(out.join('\n') + '\n');
}

function probes() {
  const out = [];
  const flush = () => { process.stdout.write(out.join('\n') + '\n'); out.length = 0; };
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;
    const c = String.fromCodePoint(cp);
    // classes: letter, digit, other, space each join or split these differently
    for (const t of ['a' + c, '1' + c, '!' + c, ' ' + c + 'a', c + c + ' ' + c,
                     // normalization: reordering by combining class, composition
                     'a' + c + '\u0334', 'a\u0345' + c, 'a\u0334' + c, c + '\u0301', '\u1100' + c, c + '\u1161', '\u0915' + c,
                     c.normalize('NFD')])
      out.push(JSON.stringify({ text: t }));
    if (out.length >= 100000) flush();
  }
  flush();
}

({ speed, ids, probes }[mode] || (() => {
  console.error('usage: node bench/bpe_hf.js speed|ids [TOKENIZER] <texts.jsonl, or probes');
  process.exit(2);
}))();
