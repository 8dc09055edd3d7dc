// Reference numbers from llama.cpp for every GGUF tensor type the server runs
// (mistralrs-core/tests/gguf_reference.rs, `every_gguf_tensor_type_...`): the
// SmolLM2 GGUF rewritten in each type, and llama.cpp's five likeliest next
// tokens at each of the first 64 teacher-forced positions of the passage in
// tests/fixtures/smollm2_q4_1_llamacpp.json, with an f32 KV cache (the
// reference) and an f16 one (how far llama.cpp moves from itself).
//
// Made with node-llama-cpp 3.21.1 (prebuilt llama.cpp CPU binaries):
//   cargo run --release -p mistralrs-core --example write_test_ggufs -- \
//     ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf /tmp/gguf-types
//   cp scripts/make_gguf_types_reference.mjs load-tests/model-race/
//   (cd load-tests/model-race && npm ci && node make_gguf_types_reference.mjs /tmp/gguf-types \
//     ../../mistralrs-core/tests/fixtures/smollm2_q4_1_llamacpp.json) \
//     > mistralrs-core/tests/fixtures/smollm2_gguf_types_llamacpp.json
import {createHash} from "node:crypto";
import {readFileSync} from "node:fs";
import {join} from "node:path";
import {getLlama} from "node-llama-cpp";

const TYPES = ["q4_0", "q5_0", "q5_1", "q8_0", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "f16", "bf16", "f32"];
const POSITIONS = 64;
const [dir, passageFixture] = process.argv.slice(2);
const ids = JSON.parse(readFileSync(passageFixture, "utf8")).teacher_forced.ids.slice(0, POSITIONS);
const llama = await getLlama({gpu: false, logLevel: "error"});

const files = [];
for (const type of TYPES) {
  const path = join(dir, `${type}.gguf`);
  const model = await llama.loadModel({modelPath: path});
  const runs = [];
  for (const [settings, kv] of [["f32 KV cache", "F32"], ["f16 KV cache", "F16"]]) {
    const context = await model.createContext({
      sequences: 1,
      contextSize: 256,
      flashAttention: false,
      experimentalKvCacheKeyType: kv,
      experimentalKvCacheValueType: kv,
    });
    const outputs = await context.getSequence().controlledEvaluate(
      ids.map((token) => [token, {generateNext: {probabilities: true}}]));
    const top = outputs.map((out) =>
      [...out.next.probabilities.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([token, p]) => [token, Number(Math.log(p).toFixed(6))]));
    runs.push({settings, top});
    await context.dispose();
  }
  await model.dispose();
  const sha256 = createHash("sha256").update(readFileSync(path)).digest("hex");
  files.push({type, sha256, runs});
}

const json = JSON.stringify({
  made_by: "node-llama-cpp 3.21.1 (llama.cpp, CPU), scripts/make_gguf_types_reference.mjs",
  positions: POSITIONS,
  files,
}, null, 1);
// One line per position: [token, log-probability] pairs side by side.
console.log(json
  .replace(/\[\s*(-?[\d.e+-]+),\s*(-?[\d.e+-]+)\s*\]/g, "[$1,$2]")
  .replace(/\[((?:\s*\[[^[\]]*\],?)+)\s*\]/g, (_, pairs) => `[${pairs.replace(/\s+/g, "")}]`));
