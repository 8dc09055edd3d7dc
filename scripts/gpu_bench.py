"""The Python half of scripts/gpu-bench.sh (issue 16), run with the GPU machine's
PyTorch and transformers:

  make SHAPE DIR          a random-weight llama of SHAPE in bf16, with a tokenizer
  check URL DIR OUT       the server's log-probabilities against transformers' on
                          the same weights and tokens
  transformers DIR OUT    transformers' own generate() throughput, the baseline

The tokenizer is a word-level one of `t0 .. t{V-1}`: prompts go to the server as
token ids, so no text needs real tokens, and any vocabulary size works.
"""

import json
import sys
import time
import urllib.request
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM

# Shapes of the public models, with their vocabularies; weights are random.
SHAPES = {
    "smollm2-360m": dict(
        hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
        num_attention_heads=15, num_key_value_heads=5, vocab_size=49152,
        max_position_embeddings=8192, rope_theta=100000.0, tie_word_embeddings=True,
    ),
    "llama-3.2-1b": dict(
        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
        num_attention_heads=32, num_key_value_heads=8, head_dim=64, vocab_size=128256,
        max_position_embeddings=131072, tie_word_embeddings=True,
        rope_parameters=dict(
            rope_type="llama3", rope_theta=500000.0, factor=32.0, low_freq_factor=1.0,
            high_freq_factor=4.0, original_max_position_embeddings=8192,
        ),
    ),
    # For trying the script on a CPU (GPU_BENCH_DEVICE=cpu).
    "tiny": dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, vocab_size=512,
        max_position_embeddings=2048, tie_word_embeddings=True,
    ),
}

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def device():
    return "cuda" if torch.cuda.is_available() else "cpu"


def make(shape, out):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    config = LlamaConfig(**SHAPES[shape], bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(out, safe_serialization=True)
    vocab = {f"t{i}": i for i in range(config.vocab_size)}
    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": False},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "t0"},
    }
    (out / "tokenizer.json").write_text(json.dumps(tokenizer))
    (out / "tokenizer_config.json").write_text(json.dumps({
        "chat_template": CHAT_TEMPLATE, "bos_token": "t1", "eos_token": "t2",
    }))
    params = sum(p.numel() for p in model.parameters())
    print(json.dumps({"shape": shape, "parameters": params, "dir": str(out)}))


def post(url, body):
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def check(url, model_dir, out, tolerance=0.05):
    """At 8 prompt lengths, the server's top-5 next tokens and their
    log-probabilities against transformers' log-probabilities of the same tokens
    (one forward of the longest prompt; eager attention, bf16 as served)."""
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="eager"
    ).to(device()).eval()
    vocab = model.config.vocab_size
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, vocab, (64,), generator=generator).tolist()
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=device())).logits[0].float()
    reference = torch.log_softmax(logits, dim=-1).cpu()
    positions = []
    for length in (1, 2, 4, 8, 16, 32, 48, 64):
        answer = post(f"{url}/v1/completions", {
            "prompt": ids[:length], "max_tokens": 1, "temperature": 0, "logprobs": 5,
        })
        ours = answer["choices"][0]["logprobs"]["top_logprobs"][0]
        theirs = reference[length - 1]
        diffs = {t: abs(lp - theirs[int(t[1:])].item()) for t, lp in ours.items()}
        positions.append({
            "prompt_tokens": length,
            "ours_top1": max(ours, key=ours.get),
            "transformers_top1": f"t{int(theirs.argmax())}",
            "max_abs_diff": max(diffs.values()),
        })
    worst = max(p["max_abs_diff"] for p in positions)
    agree = sum(p["ours_top1"] == p["transformers_top1"] for p in positions)
    result = {
        "positions": positions, "max_abs_logprob_diff": worst,
        "top1_agreement": f"{agree}/{len(positions)}", "tolerance": tolerance,
        "passed": worst <= tolerance,
    }
    Path(out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "positions"}))
    sys.exit(0 if result["passed"] else 1)


def transformers_throughput(model_dir, out, batches, new_tokens=64, prompt_tokens=16):
    """generate() at each batch size: tok/s over `new_tokens` per sequence, time to
    the first token (a 1-token generate) and the time per later token."""
    dev = device()
    model = LlamaForCausalLM.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="eager"
    ).to(dev).eval()
    vocab = model.config.vocab_size

    def timed(batch, tokens):
        ids = torch.randint(3, vocab, (batch, prompt_tokens), device=dev)
        if dev == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.no_grad():
            model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=tokens,
                           min_new_tokens=tokens, do_sample=False, pad_token_id=0)
        if dev == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    timed(1, 4)  # warm-up
    rows = []
    for batch in batches:
        first = timed(batch, 1)
        whole = timed(batch, new_tokens)
        rows.append({
            "batch": batch, "tokens_per_second": batch * new_tokens / whole,
            "time_to_first_token_ms": first * 1000,
            "inter_token_latency_ms": (whole - first) / (new_tokens - 1) * 1000,
            "seconds": whole,
        })
        print(json.dumps(rows[-1]))
    memory = torch.cuda.max_memory_allocated() if dev == "cuda" else None
    Path(out).write_text(json.dumps({"rows": rows, "max_memory_allocated": memory}, indent=1))


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "make":
        make(*args)
    elif command == "check":
        check(*args)
    elif command == "transformers":
        model_dir, out, *batches = args
        transformers_throughput(model_dir, out, [int(b) for b in batches])
    else:
        sys.exit(f"unknown command {command}")
