"""A two-tool task through LangChain's `ChatOpenAI.bind_tools`, as an agent
framework drives an OpenAI-compatible server: the model picks a tool (calls
forced with `tool_choice="required"`, so even a small model keeps the format),
LangChain parses the call, runs the Python function and sends the result back,
until both tools have been used; then the model answers with the tools off.

Usage: python langchain_agent.py <base url ending in /v1> <model>
Prints the calls made and the answer as JSON; exits non-zero on a mismatch.
"""
import json
import sys

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI


@tool
def get_weather(city: str) -> str:
    """Get the current weather in a city."""
    return f"Sunny, 24 degrees Celsius in {city}"


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def main(base_url, model):
    llm = ChatOpenAI(base_url=base_url, api_key="unused", model=model, temperature=0,
                     max_tokens=80, max_retries=0)
    tools = {t.name: t for t in [get_weather, add]}
    messages = [HumanMessage("What is the weather like in Paris? And what is 2 plus 3?")]
    calls = []
    for _ in range(len(tools)):
        remaining = [t for name, t in tools.items() if name not in {c["name"] for c in calls}]
        ai = llm.bind_tools(remaining, tool_choice="required", parallel_tool_calls=False).invoke(messages)
        assert len(ai.tool_calls) == 1, ai
        call = ai.tool_calls[0]
        assert call["name"] in tools, call
        messages.append(ai)
        result = tools[call["name"]].invoke(call["args"])
        messages.append(ToolMessage(content=str(result), tool_call_id=call["id"]))
        calls.append({"name": call["name"], "args": call["args"], "result": result})
    answer = llm.bind_tools(list(tools.values()), tool_choice="none").invoke(messages)
    assert isinstance(answer.content, str) and answer.content, answer
    print(json.dumps({"calls": calls, "answer": answer.content}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
