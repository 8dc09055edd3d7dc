"""Drives the server with the official `openai` Python client.

Usage: python openai_client.py <base_url>   (e.g. http://127.0.0.1:1234/v1)
Exits non-zero with a message on the first mismatch.
"""
import sys

import openai


def main(base_url):
    client = openai.OpenAI(base_url=base_url, api_key="unused")

    models = [m.id for m in client.models.list()]
    assert models == ["demo"], models

    chat = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello!"}],
        temperature=0, max_tokens=10, seed=1)
    text = chat.choices[0].message.content
    assert chat.choices[0].finish_reason == "length", chat
    assert chat.usage.completion_tokens == 10, chat.usage
    assert chat.usage.total_tokens == chat.usage.prompt_tokens + 10

    pieces, usage = [], None
    stream = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hello!"}],
        temperature=0, max_tokens=10, stream=True, stream_options={"include_usage": True})
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
    assert "".join(pieces) == text, ("streamed", "".join(pieces), "whole", text)
    assert usage is not None and usage.completion_tokens == 10, usage

    with_logprobs = client.chat.completions.create(
        model="demo", messages=[{"role": "user", "content": "Hi"}],
        temperature=0, max_tokens=3, logprobs=True, top_logprobs=2)
    content = with_logprobs.choices[0].logprobs.content
    assert len(content) == 3 and len(content[0].top_logprobs) == 2, content

    completion = client.completions.create(model="demo", prompt="Once upon a time", max_tokens=5, temperature=0)
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 5

    try:
        client.chat.completions.create(model="missing", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("unknown model accepted")
    except openai.NotFoundError as e:
        assert e.status_code == 404

    print("openai client: ok")


if __name__ == "__main__":
    main(sys.argv[1])
