// llama.cpp (node-llama-cpp 3.21.1, prebuilt CPU binaries) on the race's
// prompts: one greedy stream, eight at once, the time to the first token of a
// ~500-token prompt, and one stream's decode after a ~4,000-token prompt.
// Prints one JSON line. Run by model-race.sh.
//   node llamacpp.mjs MODEL.gguf PROMPTS.json MAX_TOKENS
import {readFileSync} from "node:fs";
import {cpus} from "node:os";
import {getLlama} from "node-llama-cpp";

const [modelPath, promptsPath, maxTokensArg] = process.argv.slice(2);
const maxTokens = Number(maxTokensArg);
const prompts = JSON.parse(readFileSync(promptsPath, "utf8"));
const chat = (q) => `<|im_start|>user\n${q}<|im_end|>\n<|im_start|>assistant\n`;
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const threads = cpus().length;
const now = () => performance.now() / 1000;

/** Greedy tokens for `prompt` on `sequence`: [first-token time, end time, count]. */
async function generate(sequence, prompt, start, limit = maxTokens) {
  let first = null;
  let count = 0;
  for await (const _ of sequence.evaluate(model.tokenize(prompt, true), {temperature: 0})) {
    count += 1;
    if (first === null) first = now();
    if (count >= limit) break;
  }
  return [first - start, now() - start, count];
}

const single = await model.createContext({sequences: 1, contextSize: 2048, threads});
let start = now();
const [firstAt, endAt, count] = await generate(single.getSequence(), chat(prompts.single), start);
const decode = (count - 1) / (endAt - firstAt);

const longPrompt = chat(prompts.long_unit.repeat(prompts.long_units) + prompts.long_question);
await single.dispose();
const fresh = await model.createContext({sequences: 1, contextSize: 2048, threads});
start = now();
const [ttft] = await generate(fresh.getSequence(), longPrompt, start);
await fresh.dispose();

const eight = await model.createContext({sequences: 8, contextSize: 8 * 1024, threads});
start = now();
const results = await Promise.all(
  prompts.streams.map((q) => generate(eight.getSequence(), chat(q), start)));
const wall = Math.max(...results.map((r) => r[1]));
const total = results.reduce((sum, r) => sum + r[2], 0);

await eight.dispose();
const contextUnits = Number(process.env.RACE_CONTEXT_UNITS ?? prompts.context_units);
const contextPrompt = chat(prompts.long_unit.repeat(contextUnits) + prompts.long_question);
const contextTokens = model.tokenize(contextPrompt, true).length;
const deep = await model.createContext({
  sequences: 1, contextSize: contextTokens + prompts.context_new_tokens + 64, threads});
const [deepFirst, deepEnd, deepCount] =
  await generate(deep.getSequence(), contextPrompt, now(), prompts.context_new_tokens);

console.log(JSON.stringify({
  decode_tok_s: decode,
  streams8_tok_s: total / wall,
  ttft_s: ttft,
  decode_4k_tok_s: (deepCount - 1) / (deepEnd - deepFirst),
  long_prompt_tokens: model.tokenize(longPrompt, true).length,
  context_prompt_tokens: contextTokens,
  rss_mib: process.memoryUsage().rss / 2 ** 20,
}));
process.exit(0);
