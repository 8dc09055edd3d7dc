// Reference numbers from llama.cpp for the GGUF model tests
// (mistralrs-core/tests/gguf_reference.rs): tokenization of a few texts,
// llama.cpp's ten most likely next tokens at each of 256 positions of a fixed
// text (teacher-forced), with three KV cache and attention settings, and its
// greedy answer to a chat prompt.
//
// Made with node-llama-cpp 3.21.1 (prebuilt llama.cpp CPU binaries, pinned in
// load-tests/model-race; Node resolves the package from the script's folder):
//   scripts/get-model smollm2
//   cp scripts/make_gguf_reference.mjs load-tests/model-race/
//   (cd load-tests/model-race && npm ci && node make_gguf_reference.mjs \
//     ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf) \
//     > mistralrs-core/tests/fixtures/smollm2_q4_1_llamacpp.json
// on a CPU with AVX2 and no AVX-512, and the same into
// smollm2_q4_1_llamacpp_avx512.json on one with AVX-512 (ggml picks its
// kernels by CPU, so the two differ at near-ties as any two settings do).
import {createHash} from "node:crypto";
import {existsSync, readFileSync} from "node:fs";
import {cpus} from "node:os";
import {basename} from "node:path";
import {getLlama} from "node-llama-cpp";

const modelPath = process.argv[2];
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath});

const texts = [
  "Hello, world!",
  "The year 2024 had 366 days; 3.14159 is pi.",
  "  two spaces,\ttab\nnewline\n\nand blank line",
  "Ünïcödé — “quotes” and emoji 🙂 and 日本語",
  "fn main() { println!(\"{}\", x + 1); }",
  "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
];
const tokenization = texts.map((text) => ({text, ids: Array.from(model.tokenize(text, true))}));

// A fixed text of at least 257 tokens; the first 257 are used.
const passage = [
  "The history of the printing press begins long before Gutenberg.",
  "In China, woodblock printing was used to reproduce texts and images as early as the ninth century,",
  "and movable type made of fired clay was described by the scholar Shen Kuo around 1040.",
  "Korean printers later cast movable type in bronze, and the oldest surviving book printed that way dates from 1377.",
  "In Europe, Johannes Gutenberg combined several existing technologies around 1450:",
  "a hand mould for casting metal type quickly and precisely, an oil-based ink that stuck to metal,",
  "and a screw press adapted from those used to make wine and paper.",
  "His workshop in Mainz produced the famous forty-two-line Bible, of which about forty-nine copies survive.",
  "Within fifty years, printing presses were operating in more than two hundred cities across Europe,",
  "and millions of books had been printed. Prices fell, literacy rose, and ideas travelled faster than ever before.",
  "Scientists could share precise diagrams and tables; reformers could spread pamphlets in days rather than months.",
  "Historians still debate how much the press caused these changes and how much it merely accelerated them,",
  "but few doubt that it was one of the most important inventions of the second millennium.",
  "Today, the same basic idea survives in every device that turns stored characters into visible text.",
].join(" ");
const passageIds = Array.from(model.tokenize(passage, false)).slice(0, 257);
if (passageIds.length < 257) throw new Error(`passage has only ${passageIds.length} tokens`);

// Teacher-forced: the whole passage in one evaluation, llama.cpp's ten most
// likely next tokens (with their log-probabilities) after each of the first 256
// tokens. The first run is the reference: an f32 KV cache without flash
// attention, as the server computes attention. The others are llama.cpp with
// its own defaults (an f16 cache; flash attention): how far llama.cpp moves
// from itself is the yardstick for how far the server may move from it.
const runs = [
  {settings: "f32 KV cache", kv: "F32", flashAttention: false},
  {settings: "f16 KV cache", kv: "F16", flashAttention: false},
  {settings: "f32 KV cache, flash attention", kv: "F32", flashAttention: true},
];
const contextFor = (run) => model.createContext({
  sequences: 1,
  contextSize: 1024,
  flashAttention: run.flashAttention,
  experimentalKvCacheKeyType: run.kv,
  experimentalKvCacheValueType: run.kv,
});
const items = passageIds.slice(0, 256).map((token) => [token, {generateNext: {probabilities: true}}]);
for (const run of runs) {
  const context = await contextFor(run);
  const outputs = await context.getSequence().controlledEvaluate(items);
  run.top = outputs.map((out) =>
    [...out.next.probabilities.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, 10)
      .map(([token, p]) => [token, Number(Math.log(p).toFixed(6))]));
  await context.dispose();
}

const sequence = (await contextFor(runs[0])).getSequence();
const chatPrompt = tokenization[5].ids;
const greedy = [];
for await (const token of sequence.evaluate(chatPrompt, {temperature: 0})) {
  greedy.push(token);
  if (greedy.length >= 12) break;
}

/** The CPU and the widest vector extension llama.cpp's kernels may use on it:
 * ggml's float sums follow the vector width, so another CPU gives other
 * near-ties. */
function madeOn() {
  const flags = existsSync("/proc/cpuinfo") ? readFileSync("/proc/cpuinfo", "utf8") : "";
  const widest = / avx512f /.test(flags) ? "AVX-512" : / avx2 /.test(flags) ? "AVX2" : "no AVX2";
  return `${cpus()[0].model}, ${widest}`;
}

const sha256 = createHash("sha256").update(readFileSync(modelPath)).digest("hex");
const json = JSON.stringify({
  model: basename(modelPath),
  sha256,
  made_by: "node-llama-cpp 3.21.1 (llama.cpp, CPU), scripts/make_gguf_reference.mjs",
  tokenization,
  made_on: madeOn(),
  teacher_forced: {
    text: passage,
    ids: passageIds,
    runs: runs.map(({settings, top}) => ({settings, top})),
  },
  chat: {prompt_ids: chatPrompt, greedy, greedy_text: model.detokenize(greedy)},
}, null, 1);
// One line per position: [token, log-probability] pairs side by side.
console.log(json
  .replace(/\[\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+)\s*\]/g, "[$1,$2]")
  .replace(/\[((?:\s*\[[^[\]]*\],?)+)\s*\]/g, (_, pairs) => `[${pairs.replace(/\s+/g, "")}]`));
