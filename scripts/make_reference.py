#!/usr/bin/env python3
"""Reference numbers from Hugging Face transformers for the engine's model tests.

Writes mistralrs-core/tests/fixtures/reference.json and the small variant
checkpoints under mistralrs-core/tests/fixtures/models/. Re-run it after changing
the demo model's generator (the Rust test names the files' hashes it expects):

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch transformers
    /tmp/refenv/bin/python scripts/make_reference.py

It builds the demo folder with the project's own generator (cargo example
`write_demo_model`), so the weights compared are exactly the ones the engine loads.
"""
import hashlib
import json
import pathlib
import shutil
import subprocess
import tempfile

import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, LlamaConfig,
                          LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "mistralrs-core" / "tests" / "fixtures"
GREEDY_STEPS = 16
PROMPTS = [
    "The quick brown fox",
    "Once upon a time there was a small town by the sea.",
    "Hello! How are you today?",
    "fn main() { let answer = 42; }",
    "Café 東京 — ñandú",
]
CHAT = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "  What is the weather in Paris?  "},
    ],
    "tools": [{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                           "required": ["city"]},
        },
    }],
}


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def rounded(values):
    return [float(f"{v:.6g}") for v in values]


@torch.no_grad()
def greedy(model, ids, steps):
    ids = list(ids)
    out = []
    for _ in range(steps):
        logits = model(torch.tensor([ids])).logits[0, -1]
        nxt = int(torch.argmax(logits))
        out.append(nxt)
        ids.append(nxt)
    return out


@torch.no_grad()
def demo_reference(folder):
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32,
                                                 attn_implementation="eager").eval()
    prompts = []
    for text in PROMPTS:
        ids = tok(text).input_ids
        logits = model(torch.tensor([ids])).logits[0]
        prompts.append({
            "text": text,
            "ids": ids,
            "last_logits": rounded(logits[-1].tolist()),
            "argmax": logits.argmax(-1).tolist(),
            "greedy": greedy(model, ids, GREEDY_STEPS),
        })
    rendered = tok.apply_chat_template(CHAT["messages"], tools=CHAT["tools"],
                                       add_generation_prompt=True, tokenize=False)
    plain = tok.apply_chat_template(CHAT["messages"], add_generation_prompt=False,
                                    tokenize=False)
    return {
        "files": {name: sha256(folder / name) for name in ("model.safetensors", "tokenizer.json")},
        "prompts": prompts,
        "chat": dict(CHAT, rendered_with_tools=rendered, rendered_plain=plain),
    }


def randomize(model, seed):
    """Non-zero values everywhere (biases and norms included), so every weight the
    loader reads changes the logits."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / (p.shape[-1] ** 0.5))


SMALL = dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
             num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5)
VARIANTS = [
    # Qwen2: q/k/v biases, tied embeddings, sharded safetensors with an index.
    ("qwen2_tied_bias", Qwen2ForCausalLM,
     Qwen2Config(**SMALL, tie_word_embeddings=True, max_position_embeddings=128), 24, "40KB"),
    # Llama 3.1 rope scaling over positions past the original context, GQA 4:1.
    ("llama3_rope_scaling", LlamaForCausalLM,
     LlamaConfig(**dict(SMALL, num_key_value_heads=1), max_position_embeddings=256,
                 rope_theta=500000.0,
                 rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 16}),
     96, None),
    # Mistral: a sliding window shorter than the prompt.
    ("mistral_sliding_window", MistralForCausalLM,
     MistralConfig(**SMALL, sliding_window=8, max_position_embeddings=128), 30, None),
]


@torch.no_grad()
def variant_reference(name, cls, config, length, shard):
    torch.manual_seed(0)
    model = cls(config).eval()
    model.config._attn_implementation = "eager"
    randomize(model, seed=len(name))
    folder = FIXTURES / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    kwargs = {"max_shard_size": shard} if shard else {}
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, config.vocab_size, (length,), generator=gen).tolist()
    logits = model(torch.tensor([ids])).logits[0]
    return {
        "name": name,
        "ids": ids,
        "tail_logits": [rounded(row.tolist()) for row in logits[-4:]],
        "argmax": logits.argmax(-1).tolist(),
        "greedy": greedy(model, ids, 8),
    }


def main():
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp) / "demo"
        subprocess.run(["cargo", "run", "-q", "--release", "-p", "mistralrs-core", "--example",
                        "write_demo_model", "--", str(folder)], cwd=ROOT, check=True)
        demo = demo_reference(folder)
    variants = [variant_reference(*v) for v in VARIANTS]
    out = {
        "generated_by": "scripts/make_reference.py",
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "demo": demo,
        "variants": variants,
    }
    path = FIXTURES / "reference.json"
    path.write_text(json.dumps(out, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
