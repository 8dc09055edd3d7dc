// Reference numbers from llama.cpp for the GGUF model tests
// (mistralrs-core/tests/gguf_reference.rs): tokenization of a few texts,
// llama.cpp's top-1 next token at each of 256 positions of a fixed text
// (teacher-forced) with its lead over the runner-up, and its greedy answer to
// a chat prompt.
//
// Made with node-llama-cpp 3.21.1 (prebuilt llama.cpp CPU binaries):
//   mkdir /tmp/llcpp && cd /tmp/llcpp && npm init -y && npm i -E node-llama-cpp@3.21.1
//   scripts/get-model smollm2
//   NODE_PATH=/tmp/llcpp/node_modules node scripts/make_gguf_reference.mjs \
//     ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf \
//     > mistralrs-core/tests/fixtures/smollm2_q4_1_llamacpp.json
// (Node resolves bare imports from NODE_PATH only for CommonJS, so run it from
// /tmp/llcpp or copy it there: `cp scripts/make_gguf_reference.mjs /tmp/llcpp/`.)
import {createHash} from "node:crypto";
import {readFileSync} from "node:fs";
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

// An f32 KV cache without flash attention, as the server computes attention.
const context = await model.createContext({
  sequences: 1,
  contextSize: 1024,
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const sequence = context.getSequence();
// Teacher-forced: the whole passage in one evaluation, llama.cpp's greedy
// pick after each of the first 256 tokens.
// `margin`: how far (in log-probability) its pick leads the runner-up, so a
// test can tell near-ties, which precision alone flips, from real disagreement.
const items = passageIds.slice(0, 256).map((token) => [token, {generateNext: {probabilities: true}}]);
const outputs = await sequence.controlledEvaluate(items);
const top1 = [];
const margin = [];
for (const out of outputs) {
  const ranked = [...out.next.probabilities.entries()].sort((a, b) => b[1] - a[1]);
  top1.push(ranked[0][0]);
  margin.push(Math.log(ranked[0][1]) - Math.log(ranked[1][1]));
}
await sequence.clearHistory();

const chatPrompt = tokenization[5].ids;
const greedy = [];
for await (const token of sequence.evaluate(chatPrompt, {temperature: 0})) {
  greedy.push(token);
  if (greedy.length >= 12) break;
}

const sha256 = createHash("sha256").update(readFileSync(modelPath)).digest("hex");
console.log(JSON.stringify({
  model: basename(modelPath),
  sha256,
  made_by: "node-llama-cpp 3.21.1 (llama.cpp, CPU), scripts/make_gguf_reference.mjs",
  tokenization,
  teacher_forced: {text: passage, ids: passageIds, top1, margin},
  chat: {prompt_ids: chatPrompt, greedy, greedy_text: model.detokenize(greedy)},
}, null, 1));
