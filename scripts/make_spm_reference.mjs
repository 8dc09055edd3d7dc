// Reference tokenizations from llama.cpp for the SentencePiece GGUF tokenizer
// test (mistralrs-core/tests/gguf_tokenizer.rs): texts with special tokens and
// a chat prompt, which llama.cpp's own test vectors (ggml-vocab-llama-spm.gguf.inp
// and .out, beside the vocabulary) do not cover, tokenized by llama.cpp
// (node-llama-cpp 3.21.1, vocabulary only) with special tokens parsed.
//
// The vocabulary file is llama.cpp's `models/ggml-vocab-llama-spm.gguf` (MIT),
// taken from the llama.cpp source node-llama-cpp ships as a git bundle:
//   git clone node_modules/node-llama-cpp/llama/gitRelease.bundle /tmp/llrepo
//   cp /tmp/llrepo/models/ggml-vocab-llama-spm.gguf* mistralrs-core/tests/fixtures/llama_spm/
// Then, from a folder with node-llama-cpp installed (npm i -E node-llama-cpp@3.21.1):
//   node make_spm_reference.mjs mistralrs-core/tests/fixtures/llama_spm/ggml-vocab-llama-spm.gguf \
//     > mistralrs-core/tests/fixtures/llama_spm/llamacpp_special.json
import {getLlama} from "node-llama-cpp";

const modelPath = process.argv[2];
const llama = await getLlama({gpu: false, logLevel: "error"});
const model = await llama.loadModel({modelPath, vocabOnly: true});

const texts = [
  "<s>[INST] What is the capital of France? [/INST]",
  "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi there [/INST] Hello!</s><s>[INST] Again [/INST]",
  "</s>after an end",
  "Tabs\tand\nnewlines\n\n  indented",
  "Ünïcödé — “quotes” and emoji 🙂 and 日本語",
  "fn main() { println!(\"{}\", x + 1); }",
];
const cases = texts.map((text) => ({text, ids: Array.from(model.tokenize(text, true))}));
console.log(JSON.stringify({generator: "node-llama-cpp 3.21.1", cases}, null, 1));
await model.dispose();
await llama.dispose();
