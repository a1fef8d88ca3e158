// The official openai client against neox-serve: models, completions, chat,
// streaming of both. Usage: node openai.mjs URL MODEL CHAT_EXPECTED RAW_EXPECTED
// (the files hold neox-gen -i's greedy answers to the question and the raw
// prompt below, each with its trailing newline). One line per check; exit 1
// on the first failure.
import OpenAI from "openai";
import { readFileSync } from "node:fs";

const [url, model, chatFile, rawFile] = process.argv.slice(2);
const client = new OpenAI({ baseURL: url + "/v1", apiKey: "unused", maxRetries: 0 });
const expected = f => readFileSync(f, "utf8").replace(/\n$/, "");
const question = "What is Lamini?", raw = "Hello, my name is";
const opts = { temperature: 0, max_tokens: 24 };

function check(name, cond, detail) {
  if (!cond) { console.log("FAIL " + name + (detail ? ": " + detail : "")); process.exit(1); }
  console.log("ok " + name);
}

const list = await client.models.list();
check("models.list names the model", list.data.some(m => m.id === model), JSON.stringify(list.data));

const chat = await client.chat.completions.create({ model, messages: [{ role: "user", content: question }], ...opts });
const chatText = chat.choices[0].message.content;
check("chat at temperature 0 is neox-gen -i's greedy answer", chatText === expected(chatFile),
      JSON.stringify([chatText, expected(chatFile)]));
check("chat usage counts the tokens", chat.usage.completion_tokens > 0 &&
      chat.usage.total_tokens === chat.usage.prompt_tokens + chat.usage.completion_tokens);

const compl = await client.completions.create({ model, prompt: raw, ...opts });
check("completion at temperature 0 is neox-gen's answer to the raw prompt", compl.choices[0].text === expected(rawFile),
      JSON.stringify([compl.choices[0].text, expected(rawFile)]));

let streamed = "", chunks = 0, reason = null;
for await (const ch of await client.chat.completions.create({ model, messages: [{ role: "user", content: question }], stream: true, ...opts })) {
  streamed += ch.choices[0].delta.content ?? "";
  chunks++;
  reason = ch.choices[0].finish_reason ?? reason;
}
check("streamed chat: the same text, in several chunks, with a finish reason", streamed === chatText && chunks > 2 && reason,
      JSON.stringify([streamed, chunks, reason]));

let cstreamed = "";
for await (const ch of await client.completions.create({ model, prompt: raw, stream: true, ...opts }))
  cstreamed += ch.choices[0].text;
check("streamed completion: the same text", cstreamed === compl.choices[0].text);

const stopAt = chatText.slice(4, 8);
const stopped = await client.chat.completions.create({ model, messages: [{ role: "user", content: question }], stop: [stopAt], ...opts });
check("stop string: the text ends before it, finish_reason stop",
      stopped.choices[0].message.content === chatText.slice(0, chatText.indexOf(stopAt)) && stopped.choices[0].finish_reason === "stop",
      JSON.stringify([stopAt, stopped.choices[0].message.content]));

const a = await client.completions.create({ model, prompt: raw, temperature: 0.9, top_p: 0.95, top_k: 40, seed: 7, max_tokens: 16 });
const b = await client.completions.create({ model, prompt: raw, temperature: 0.9, top_p: 0.95, top_k: 40, seed: 7, max_tokens: 16 });
check("sampling with a seed repeats", a.choices[0].text === b.choices[0].text);

try {
  await client.chat.completions.create({ model: "no-such-model", messages: [{ role: "user", content: "x" }] });
  check("an unknown model is refused", false);
} catch (e) {
  check("an unknown model: NotFoundError 404 with an OpenAI error body", e.status === 404 && e.error?.code === "model_not_found", String(e));
}
