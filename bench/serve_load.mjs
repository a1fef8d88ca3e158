// Load for neox-serve: C clients, each sending R streamed requests one after
// another; prints the completion tokens per second over the whole run, the
// time to first token and the request latency (p50, p99), and the errors.
// Usage: node serve_load.mjs URL MODEL CLIENTS REQUESTS MAX_TOKENS
// Exit 1 if any request failed. Built-in fetch only: no packages needed.
const [url, model, clients, requests, maxTokens] = process.argv.slice(2);
const C = Number(clients), R = Number(requests), N = Number(maxTokens);
const ttft = [], latency = [];
let tokens = 0, errors = 0, firstError = "";

async function one(k) {
  const t0 = performance.now();
  const r = await fetch(url + "/v1/completions", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ model, prompt: `Question ${k}: what is Lamini?`, max_tokens: N, temperature: 0,
                           ignore_eos: true, stream: true })
  });
  if (!r.ok) throw new Error(`HTTP ${r.status}: ${await r.text()}`);
  const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "", first = 0, done = false;
  while (!done) {
    const { value, done: end } = await reader.read();
    if (end) break;
    buf += value;
    let at;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const line = buf.slice(6, at);
      buf = buf.slice(at + 2);
      if (line === "[DONE]") { done = true; break; }
      const ch = JSON.parse(line).choices[0];
      if (ch.text && !first) first = performance.now();
    }
  }
  if (!done) throw new Error("stream ended without [DONE]");
  const t1 = performance.now();
  ttft.push((first || t1) - t0);
  latency.push(t1 - t0);
  tokens += N;
}

async function client(c) {
  for (let i = 0; i < R; i++) {
    try { await one(c * R + i); } catch (e) { errors++; firstError ||= String(e); }
  }
}

const pct = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
const t0 = performance.now();
await Promise.all(Array.from({ length: C }, (_, c) => client(c)));
const wall = (performance.now() - t0) / 1000;
console.log(`clients ${C} x ${R} requests x ${N} tokens: ${(tokens / wall).toFixed(1)} tokens/s, ` +
            `ttft p50 ${pct(ttft, 0.5).toFixed(0)} ms p99 ${pct(ttft, 0.99).toFixed(0)} ms, ` +
            `latency p50 ${pct(latency, 0.5).toFixed(0)} ms p99 ${pct(latency, 0.99).toFixed(0)} ms, errors ${errors}` +
            (firstError ? ` (${firstError})` : ""));
process.exit(errors ? 1 : 0);
