#!/usr/bin/env python3
"""The model race's drivers and its summary (run by load-tests/model-race.sh).

    race.py ours URL PROMPTS MAX_TOKENS PID   this server over HTTP (/v1/completions)
    race.py mistralrs GGUF|DIR PROMPTS MAX_TOKENS   mistral.rs 0.9.5 in-process
    race.py summary RESULTS.jsonl OUT_PREFIX       medians per system, JSON + PNG chart

Each driver prints one JSON line: single-stream decode tok/s (after the first
token), eight concurrent streams' total tok/s (all tokens over the wall time),
time to the first token of a ~500-token prompt, single-stream decode tok/s
after a ~4,000-token prompt (ours and llama.cpp), and resident memory.
Every prompt is the same ChatML text for every system; generation is greedy.
"""
import json
import os
import statistics
import sys
import threading
import time
import urllib.request


def chat(question):
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def long_prompt(prompts):
    return chat(prompts["long_unit"] * prompts["long_units"] + prompts["long_question"])


def context_prompt(prompts):
    """The ~4,000-token prompt (RACE_CONTEXT_UNITS shortens it for a smoke run)."""
    units = int(os.environ.get("RACE_CONTEXT_UNITS", prompts["context_units"]))
    return chat(prompts["long_unit"] * units + prompts["long_question"])


def rss_mib(pid="self"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def concurrently(run, questions):
    """`run` on every question at once, a thread each: (results, errors, wall seconds)."""
    results, errors = [None] * len(questions), []

    def one(i, q):
        try:
            results[i] = run(q)
        except Exception as e:
            errors.append(str(e)[:200])
    start = time.monotonic()
    threads = [threading.Thread(target=one, args=(i, q)) for i, q in enumerate(questions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors, time.monotonic() - start


def ours(url, prompts, max_tokens, pid):
    def stream(prompt, tokens=max_tokens):
        """(seconds to first token, seconds to the end, tokens) from now."""
        body = json.dumps({"model": "smollm2", "prompt": prompt, "max_tokens": tokens,
                           "temperature": 0, "ignore_eos": True, "stream": True}).encode()
        request = urllib.request.Request(f"{url}/v1/completions", body,
                                         {"content-type": "application/json"})
        start, first, count = time.monotonic(), None, 0
        with urllib.request.urlopen(request) as response:
            for line in response:
                if line.startswith(b"data: {") and b'"text":""' not in line:
                    count += 1
                    if first is None:
                        first = time.monotonic()
        return first - start, time.monotonic() - start, count

    first, end, count = stream(chat(prompts["single"]))
    decode = (count - 1) / (end - first)
    ttft, _, _ = stream(long_prompt(prompts))
    results, errors, wall = concurrently(lambda q: stream(chat(q)), prompts["streams"])
    if errors:
        raise RuntimeError(errors[0])
    total = sum(r[2] for r in results)
    first, end, count = stream(context_prompt(prompts), prompts["context_new_tokens"])
    return {"decode_tok_s": decode, "streams8_tok_s": total / wall, "ttft_s": ttft,
            "decode_4k_tok_s": (count - 1) / (end - first), "rss_mib": rss_mib(pid)}


def mistralrs(model, prompts, max_tokens):
    from mistralrs import CompletionRequest, Runner, Which
    if model.endswith(".gguf"):
        which = Which.GGUF(quantized_model_id=os.path.dirname(model),
                           quantized_filename=os.path.basename(model))
    else:
        which = Which.Plain(model_id=model)
    runner = Runner(which=which)

    def complete(prompt, tokens):
        """(seconds, tokens generated); mistral.rs's Python API streams chat only."""
        request = CompletionRequest(prompt=prompt, model="default", max_tokens=tokens,
                                    temperature=0.0, ignore_eos=True)
        start = time.monotonic()
        response = runner.send_completion_request(request)
        return time.monotonic() - start, response.usage.completion_tokens

    # Decode speed: the time of the whole answer less that of its first token
    # (asked first, cold; the answer may then find the prompt in mistral.rs's
    # prefix cache, which favours it by a short prompt's prefill).
    first, _ = complete(chat(prompts["single"]), 1)
    end, count = complete(chat(prompts["single"]), max_tokens)
    result = {"decode_tok_s": (count - 1) / (end - first)}
    result["ttft_s"] = complete(long_prompt(prompts), 1)[0]
    # mistral.rs 0.9.5's Python binding fails concurrent requests.
    results, errors, wall = concurrently(lambda q: complete(chat(q), max_tokens), prompts["streams"])
    if errors:
        result["streams8_error"] = errors[0]
    else:
        result["streams8_tok_s"] = sum(r[1] for r in results) / wall
    result["rss_mib"] = rss_mib()
    return result


METRICS = [("decode_tok_s", "1-stream decode, tok/s"),
           ("streams8_tok_s", "8 streams, total tok/s"),
           ("ttft_s", "TTFT, ~500-token prompt, s"),
           ("decode_4k_tok_s", "1-stream decode at ~4k context, tok/s"),
           ("rss_mib", "RSS, MiB")]


def summary(results_path, out_prefix):
    runs = [json.loads(line) for line in open(results_path) if line.strip()]
    systems = list(dict.fromkeys(r["system"] for r in runs))
    table = {}
    for system in systems:
        mine = [r for r in runs if r["system"] == system]
        table[system] = {"rounds": len(mine)}
        for key, _ in METRICS:
            values = [r[key] for r in mine if isinstance(r.get(key), (int, float))]
            table[system][key] = statistics.median(values) if values else None
        # "streams8_error" fails the streams8_tok_s column, "run_error" all.
        failed = {k.removesuffix("_error"): r[k] for r in mine for k in r if k.endswith("_error")}
        if failed:
            table[system]["error"] = next(iter(failed.values()))
            table[system]["failed"] = sorted(failed)
    json.dump(table, open(f"{out_prefix}.json", "w"), indent=1)
    print("| system | " + " | ".join(label for _, label in METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for system, row in table.items():
        def cell(key):
            if row[key] is not None:
                return f"{row[key]:.2f}"
            failed = row.get("failed", [])
            return "fails" if "run" in failed or any(key.startswith(f) for f in failed) else "n/a"
        cells = [cell(k) for k, _ in METRICS]
        print(f"| {system} | " + " | ".join(cells) + " |")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, axes = plt.subplots(1, len(METRICS), figsize=(16, 4))
    for ax, (key, label) in zip(axes, METRICS):
        values = [table[s][key] or 0 for s in systems]
        ax.barh(systems, values)
        ax.set_title(label, fontsize=9)
        ax.tick_params(labelsize=7)
    fig.tight_layout()
    fig.savefig(f"{out_prefix}.png", dpi=110)


if __name__ == "__main__":
    kind = sys.argv[1]
    if kind == "summary":
        summary(sys.argv[2], sys.argv[3])
        sys.exit(0)
    prompts = json.load(open(sys.argv[3]))
    max_tokens = int(sys.argv[4])
    if kind == "ours":
        print(json.dumps(ours(sys.argv[2], prompts, max_tokens, sys.argv[5])))
    elif kind == "mistralrs":
        print(json.dumps(mistralrs(sys.argv[2], prompts, max_tokens)))
