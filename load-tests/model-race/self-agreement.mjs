// llama.cpp against its own reference fixture under settings that change only
// the order of its arithmetic (threads, batch size), on this machine's CPU:
// how far llama.cpp agrees with itself, top-1, over the 256 teacher-forced
// positions of mistralrs-core/tests/gguf_reference.rs. A measurement, not a
// test (docs/perf.md quotes it):
//   (cd load-tests/model-race && npm ci && node self-agreement.mjs \
//     ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf \
//     ../../mistralrs-core/tests/fixtures/smollm2_q4_1_llamacpp.json)
import {readFileSync} from "node:fs";
import {getLlama} from "node-llama-cpp";

const [modelPath, fixturePath] = process.argv.slice(2);
const fixture = JSON.parse(readFileSync(fixturePath, "utf8"));
const ids = fixture.teacher_forced.ids.slice(0, 256);
const reference = fixture.teacher_forced.runs[0].top;
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath});
const settings = [
  {label: "one batch, 2 threads", batchSize: 512, threads: 2},
  {label: "one batch, 1 thread", batchSize: 512, threads: 1},
  {label: "batches of 1 token", batchSize: 1, threads: 2},
  {label: "batches of 7 tokens", batchSize: 7, threads: 2},
  {label: "batches of 64 tokens", batchSize: 64, threads: 2},
];
console.log(`reference made on ${fixture.made_on}; this run on the CPU here, f32 KV cache`);
for (const {label, batchSize, threads} of settings) {
  const context = await model.createContext({
    sequences: 1, contextSize: 1024, batchSize, threads, flashAttention: false,
    experimentalKvCacheKeyType: "F32", experimentalKvCacheValueType: "F32",
  });
  const outputs = await context.getSequence().controlledEvaluate(
    ids.map((token) => [token, {generateNext: {probabilities: true}}]));
  // (position, the reference's lead of its pick over its runner-up) where the picks differ.
  const differ = [];
  outputs.forEach((out, i) => {
    const pick = [...out.next.probabilities.entries()].sort((a, b) => b[1] - a[1])[0][0];
    if (pick !== reference[i][0][0])
      differ.push([i, Number((reference[i][0][1] - reference[i][1][1]).toFixed(4))]);
  });
  console.log(`${label}: top-1 agreement ${256 - differ.length}/256, differ at ${JSON.stringify(differ)}`);
  await context.dispose();
}
