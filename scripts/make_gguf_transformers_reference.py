#!/usr/bin/env python3
"""Reference logits from Hugging Face transformers for the SmolLM2 GGUF.

transformers loads the GGUF (`from_pretrained(dir, gguf_file=...)`), dequantizing
every tensor to f32: the f32 conversion of the file. Its logits at two positions
of a fixed token sequence (the first 64 tokens of the teacher-forced passage in
smollm2_q4_1_llamacpp.json) are written to
mistralrs-core/tests/fixtures/smollm2_f32_transformers.json, for the test that
compares the engine's own f32 conversion (`--dtype f32`) with them.

    python3 -m venv /tmp/refenv && /tmp/refenv/bin/pip install torch transformers gguf accelerate
    scripts/get-model smollm2
    /tmp/refenv/bin/python scripts/make_gguf_transformers_reference.py \
        ~/.cache/mistralrs/models/SmolLM2-135M-Instruct.Q4_1.gguf
"""
import hashlib
import json
import os
import pathlib
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "mistralrs-core" / "tests" / "fixtures"
POSITIONS = [31, 63]

path = pathlib.Path(sys.argv[1])
ids = json.loads((FIXTURES / "smollm2_q4_1_llamacpp.json").read_text())["teacher_forced"]["ids"][:64]
model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, torch_dtype=torch.float32)
model.eval()
with torch.no_grad():
    logits = model(torch.tensor([ids])).logits[0]
out = {
    "model": path.name,
    "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    "made_by": f"transformers {transformers.__version__}, torch {torch.__version__}, "
               "scripts/make_gguf_transformers_reference.py",
    "ids": ids,
    "positions": POSITIONS,
    "logits": [[round(float(x), 5) for x in logits[p]] for p in POSITIONS],
}
(FIXTURES / "smollm2_f32_transformers.json").write_text(json.dumps(out, separators=(",", ":")))
print("wrote", FIXTURES / "smollm2_f32_transformers.json")
