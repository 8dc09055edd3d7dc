"""Tool calling and structured output through the official `openai` client.

Usage: python openai_tools.py <base url ending in /v1> <model>

Against the demo model (random weights) every check relies on constrained
decoding: forced calls and JSON schemas must hold whatever the model prefers.
Exits non-zero with a message on the first mismatch; prints "ok" at the end.
"""
import json
import sys
from typing import Literal

import jsonschema
import openai
from pydantic import BaseModel, Field

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}
SUM = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Adds two integers.",
        "parameters": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "minimum": -100, "maximum": 100},
                "b": {"type": "integer", "minimum": -100, "maximum": 100},
            },
            "required": ["a", "b"],
            "additionalProperties": False,
        },
    },
}
TOOLS = [WEATHER, SUM]
SCHEMAS = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
ASK = [{"role": "user", "content": "What is the weather in Paris, and what is 2 + 3?"}]


def check_calls(calls, allowed):
    assert calls, "no tool calls"
    for call in calls:
        assert call.type == "function", call
        assert call.id.startswith("call_"), call.id
        assert call.function.name in allowed, call.function.name
        arguments = json.loads(call.function.arguments)
        jsonschema.validate(arguments, SCHEMAS[call.function.name])


def required_calls(client, model):
    for seed in range(4):
        chat = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, tool_choice="required",
            temperature=1.0, seed=seed, max_tokens=200)
        choice = chat.choices[0]
        assert choice.finish_reason == "tool_calls", (seed, choice)
        check_calls(choice.message.tool_calls, SCHEMAS)
    return chat


def named_call(client, model):
    for seed in range(4):
        chat = client.chat.completions.create(
            model=model, messages=ASK, tools=TOOLS, parallel_tool_calls=False,
            tool_choice={"type": "function", "function": {"name": "add"}},
            temperature=1.0, seed=seed, max_tokens=200)
        calls = chat.choices[0].message.tool_calls
        assert len(calls) == 1, calls
        check_calls(calls, ["add"])


def streamed_calls(client, model):
    """The client reassembles the deltas into the calls a whole answer gives."""
    args = dict(model=model, messages=ASK, tools=TOOLS, tool_choice="required",
                temperature=1.0, seed=11, max_tokens=200)
    whole = client.chat.completions.create(**args).choices[0]
    calls, finish, argument_pieces = {}, None, 0
    for chunk in client.chat.completions.create(stream=True, **args):
        for choice in chunk.choices:
            finish = choice.finish_reason or finish
            for delta in choice.delta.tool_calls or []:
                call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
                if delta.id:
                    assert call["id"] is None, "the id comes once"
                    call["id"] = delta.id
                if delta.function and delta.function.name:
                    call["name"] += delta.function.name
                if delta.function and delta.function.arguments:
                    call["arguments"] += delta.function.arguments
                    argument_pieces += 1
    assert finish == "tool_calls", finish
    assert argument_pieces > 2 * len(calls), f"arguments come in pieces: {argument_pieces}"
    streamed = [(c["name"], json.loads(c["arguments"])) for _, c in sorted(calls.items())]
    expected = [(c.function.name, json.loads(c.function.arguments)) for c in whole.message.tool_calls]
    assert streamed == expected, (streamed, expected)
    assert all(c["id"] and c["id"].startswith("call_") for c in calls.values()), calls


def tool_results_go_back(client, model, answer):
    message = answer.choices[0].message
    results = [{"role": "tool", "tool_call_id": c.id, "content": "21 degrees" if c.function.name == "get_weather" else "5"}
               for c in message.tool_calls]
    follow_up = ASK + [message.model_dump(exclude_none=True)] + results
    chat = client.chat.completions.create(
        model=model, messages=follow_up, tools=TOOLS, temperature=0, max_tokens=8)
    assert chat.choices[0].finish_reason in ("stop", "length", "tool_calls"), chat
    try:
        client.chat.completions.create(
            model=model, messages=ASK + [message.model_dump(exclude_none=True),
                                         {"role": "tool", "tool_call_id": "call_nobody", "content": "x"}],
            tools=TOOLS, max_tokens=4)
    except openai.BadRequestError as e:
        assert "answers no earlier tool call" in str(e), e
    else:
        raise AssertionError("a tool result for no call was accepted")


class City(BaseModel):
    name: Literal["Paris", "Tokyo", "Lima"]
    population_millions: int = Field(ge=0, le=99)
    capital: bool


def parsed_output(client, model):
    parse = getattr(client.chat.completions, "parse", None) or client.beta.chat.completions.parse
    for seed in range(4):
        chat = parse(model=model, messages=[{"role": "user", "content": "Describe a city."}],
                     response_format=City, temperature=1.0, seed=seed, max_tokens=120)
        city = chat.choices[0].message.parsed
        assert isinstance(city, City), chat
        assert chat.choices[0].finish_reason == "stop", chat


def bad_requests(client, model):
    cases = [
        (dict(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "nope"}}), "tool_choice"),
        (dict(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]), "tools"),
        (dict(tools=TOOLS, tool_choice="required", response_format={"type": "json_object"}), "response_format"),
        (dict(tool_choice="required"), "tool_choice"),
        # A valid schema no value satisfies: the grammar engine refuses it.
        (dict(response_format={"type": "json_schema", "json_schema": {
            "name": "n", "schema": {"type": "integer", "minimum": 5, "maximum": 1}}}), None),
    ]
    for extra, param in cases:
        try:
            client.chat.completions.create(model=model, messages=ASK, max_tokens=4, **extra)
        except openai.BadRequestError as e:
            assert e.body["param"] == param, (extra, e.body)
        else:
            raise AssertionError(f"accepted: {extra}")


def main(base_url, model):
    client = openai.OpenAI(base_url=base_url, api_key="unused")
    answer = required_calls(client, model)
    named_call(client, model)
    streamed_calls(client, model)
    tool_results_go_back(client, model, answer)
    parsed_output(client, model)
    bad_requests(client, model)
    print("ok")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
