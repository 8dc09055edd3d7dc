"""The conformance scenarios that fit a stateless request, at protocol
2026-07-28 (no initialize, no session), run by the official Python SDK
against one MCP server: what each request answered (and which log messages a
call that opted in to them got, at `debug` and at `error`), as JSON on stdout, so a
test can compare the answers of the conformance fixture reached directly with
its answers through the gateway.

Usage: python stateless_scenarios.py URL
"""
import asyncio
import json
import sys

from mcp import Client

CALLS = [
    ("test_simple_text", {}),
    ("test_image_content", {}),
    ("test_audio_content", {}),
    ("test_embedded_resource", {}),
    ("test_multiple_content_types", {}),
    ("test_error_handling", {}),
    ("json_schema_2020_12_tool", {"name": "Ada", "address": {"city": "London"}}),
]
PROMPTS = [
    ("test_simple_prompt", None),
    ("test_prompt_with_arguments", {"arg1": "one", "arg2": "two"}),
    ("test_prompt_with_embedded_resource", {"resourceUri": "test://example-resource"}),
    ("test_prompt_with_image", None),
]
READS = ["test://static-text", "test://static-binary", "test://template/123/data"]


async def logs_at(url: str, level: str) -> list:
    """The log messages a call of `test_tool_with_logging` opted in at `level` gets."""
    got = []

    async def logged(params) -> None:
        got.append([params.level, params.data])

    async with Client(url, mode="2026-07-28", cache=None, log_level=level, logging_callback=logged) as client:
        await client.call_tool("test_tool_with_logging", {})
    return got


def dump(result) -> dict:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True, exclude={"meta", "result_type"})


async def main(url: str) -> None:
    answers: dict = {}
    async with Client(url, mode="2026-07-28", cache=None) as client:
        tools = (await client.list_tools()).tools
        answers["tools"] = {tool.name: tool.input_schema for tool in tools}
        for name, arguments in CALLS:
            answers[f"call {name}"] = dump(await client.call_tool(name, arguments))
        steps = []

        async def progressed(progress, total, message):
            steps.append([progress, total, message])

        result = await client.call_tool("test_tool_with_progress", {}, progress_callback=progressed)
        answers["progress steps"] = steps
        answers["progress result is an error"] = result.is_error
        resources = await client.list_resources()
        answers["resources"] = sorted(str(r.uri) for r in resources.resources)
        templates = await client.list_resource_templates()
        answers["templates"] = sorted(t.uri_template for t in templates.resource_templates)
        for uri in READS:
            answers[f"read {uri}"] = dump(await client.read_resource(uri))
        prompts = await client.list_prompts()
        answers["prompts"] = sorted(p.name for p in prompts.prompts)
        for name, arguments in PROMPTS:
            answers[f"prompt {name}"] = dump(await client.get_prompt(name, arguments))
        ref = {"type": "ref/prompt", "name": "test_prompt_with_arguments"}
        completed = await client.complete(ref, {"name": "arg1", "value": "pa"})
        answers["completion"] = completed.completion.values
    answers["logs at debug"] = await logs_at(url, "debug")
    answers["logs at error"] = await logs_at(url, "error")
    print(json.dumps(answers, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
