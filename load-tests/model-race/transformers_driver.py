#!/usr/bin/env python3
"""transformers (f32, the GGUF dequantized on load) on the race's prompts; one
JSON line like race.py's drivers. Needs torch, transformers, gguf and accelerate
(too large for the race to install: load-tests/model-race.sh runs this only with
RACE_TRANSFORMERS_PYTHON).

    transformers_driver.py MODEL.gguf PROMPTS.json MAX_TOKENS
"""
import json
import pathlib
import sys
import threading
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from race import chat, long_prompt, rss_mib  # noqa: E402

path = pathlib.Path(sys.argv[1])
prompts = json.load(open(sys.argv[2]))
max_tokens = int(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name,
                                             torch_dtype=torch.float32).eval()


def stream(prompt):
    """(seconds to the first token, seconds to the end, tokens), greedy, no EOS stop."""
    inputs = tokenizer(prompt, return_tensors="pt")
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    kwargs = dict(**inputs, streamer=streamer, max_new_tokens=max_tokens, min_new_tokens=max_tokens,
                  do_sample=False)
    start = time.monotonic()
    worker = threading.Thread(target=model.generate, kwargs=kwargs)
    worker.start()
    first = None
    for _ in streamer:
        if first is None:
            first = time.monotonic()
    worker.join()
    return first - start, time.monotonic() - start, max_tokens


with torch.no_grad():
    first, end, count = stream(chat(prompts["single"]))
    decode = (count - 1) / (end - first)
    ttft = stream(long_prompt(prompts))[0]
    # Eight streams as one padded batch: transformers' own way to serve several.
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    batch = tokenizer([chat(q) for q in prompts["streams"]], return_tensors="pt", padding=True)
    start = time.monotonic()
    model.generate(**batch, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False)
    streams8 = len(prompts["streams"]) * max_tokens / (time.monotonic() - start)
print(json.dumps({"decode_tok_s": decode, "streams8_tok_s": streams8, "ttft_s": ttft,
                  "rss_mib": rss_mib()}))
