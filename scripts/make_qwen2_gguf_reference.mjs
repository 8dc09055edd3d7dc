// Reference numbers from llama.cpp for the Qwen2 GGUF test
// (mistralrs-core/tests/gguf_reference.rs, `a_qwen2_gguf_...`): the small
// Qwen2 checkpoint of the fixtures written as a GGUF file
// (tests/common/qwen2_gguf.rs), and llama.cpp's log-probabilities of every
// token of its 128-token vocabulary after each of 24 fixed tokens (one
// evaluation, an f32 KV cache).
//
// Made with node-llama-cpp 3.21.1 (prebuilt llama.cpp CPU binaries):
//   cargo run --release -p mistralrs-core --example write_test_ggufs -- \
//     ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/gguf-types
//   cp scripts/make_qwen2_gguf_reference.mjs load-tests/model-race/
//   (cd load-tests/model-race && npm ci && node make_qwen2_gguf_reference.mjs /tmp/gguf-types/qwen2.gguf) \
//     > mistralrs-core/tests/fixtures/qwen2_gguf_llamacpp.json
import {createHash} from "node:crypto";
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [path] = process.argv.slice(2);
const ids = [3, 17, 42, 99, 5, 64, 127, 8, 23, 77, 51, 12, 90, 33, 61, 2, 110, 45, 7, 88, 19, 70, 36, 101];
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath: path});
const vocab = model.tokens.length ?? 128;
const context = await model.createContext({
  sequences: 1,
  contextSize: 64,
  flashAttention: false,
  experimentalKvCacheKeyType: "F32",
  experimentalKvCacheValueType: "F32",
});
const outputs = await context.getSequence().controlledEvaluate(
  ids.map((token) => [token, {generateNext: {probabilities: true}}]));
const logprobs = outputs.map((out) => {
  const row = new Array(128).fill(null);
  for (const [token, p] of out.next.probabilities.entries()) row[token] = Number(Math.log(p).toFixed(7));
  if (row.includes(null)) throw new Error("llama.cpp left tokens out of its probabilities");
  return row;
});
const json = JSON.stringify({
  made_by: "node-llama-cpp 3.21.1 (llama.cpp, CPU), scripts/make_qwen2_gguf_reference.mjs",
  sha256: createHash("sha256").update(readFileSync(path)).digest("hex"),
  ids,
  logprobs,
}, null, 1);
// One line per position.
console.log(json.replace(/\[\s*((?:-?[\d.e+-]+,\s*)*-?[\d.e+-]+)\s*\]/g, (_, xs) => `[${xs.replace(/\s+/g, "")}]`));
