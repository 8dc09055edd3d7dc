"""Drives /mcp/stream with the official Python MCP SDK (`mcp`).

Usage: python mcp_client.py <url of /mcp/stream> <server base url> [api key]
Exits non-zero on the first mismatch; prints the negotiated protocol version.
"""
import logging
import sys

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

CHAT = {"messages": [{"role": "user", "content": "Hello!"}], "max_tokens": 12, "temperature": 0}


async def wait_blocks_free(base):
    """Polls /health (bounded) until the engine is idle with every block free."""
    async with httpx2.AsyncClient() as http:
        for _ in range(500):
            model = (await http.get(f"{base}/health")).json()["models"][0]
            if model["running"] == 0 and model["kv_cache_blocks_free"] == model["kv_cache_blocks_total"]:
                return
            await anyio.sleep(0.02)
    raise AssertionError(f"KV blocks not freed: {model}")


class Warnings(logging.Handler):
    """Collects what the SDK logs at WARNING and above, but for its own race on
    cancelling: an event that arrives as the cancelled call's reader closes is
    logged as "Error parsing SSE message" with a BrokenResourceError (the SDK's
    source says so: "not a parse failure")."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, anyio.BrokenResourceError):
            return
        self.records.append(record.getMessage())


async def main(url, base, key=None):
    warnings = Warnings()
    logging.getLogger().addHandler(warnings)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=300.0))
    logs = []

    async def on_log(params):
        logs.append(params)

    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write, logging_callback=on_log) as session:
            init = await session.initialize()
            await session.set_logging_level("info")
            assert init.server_info.name == "mistralrs-server", init

            tools = await session.list_tools()
            assert [t.name for t in tools.tools] == ["chat"], tools
            assert "messages" in tools.tools[0].input_schema["properties"]

            progress = []

            async def on_progress(value, total, message):
                progress.append((value, message))

            result = await session.call_tool("chat", CHAT, progress_callback=on_progress)
            assert not result.is_error, result
            text = result.content[0].text
            usage = result.structured_content["usage"]
            assert usage["completion_tokens"] == 12, result.structured_content
            assert progress, "progress notifications arrived before the result"
            assert "".join(m for _, m in progress) == text, (progress, text)
            assert [v for v, _ in progress] == sorted(v for v, _ in progress), "progress increases"

            # The log message is not tied to the call (it may come on the
            # session's own stream), so it can land just after the result.
            for _ in range(50):
                if any(log.data.get("event") == "chat finished" for log in logs):
                    break
                await anyio.sleep(0.1)
            assert any(log.data.get("event") == "chat finished" for log in logs), logs

            again = await session.call_tool("chat", CHAT)
            assert again.content[0].text == text, "greedy is deterministic"

            unknown = await session.call_tool("chat", dict(CHAT, model="nope"))
            assert unknown.is_error and "nope" in unknown.content[0].text, unknown

            # Cancel a long call after its first progress event: leaving the cancel
            # scope makes the SDK send notifications/cancelled.
            started = anyio.Event()

            async def first_progress(value, total, message):
                started.set()

            long = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 900, "ignore_eos": True}
            async with anyio.create_task_group() as tg:
                async def long_call():
                    await session.call_tool("chat", long, progress_callback=first_progress)
                    raise AssertionError("the long call was not cancelled")

                tg.start_soon(long_call)
                await started.wait()
                tg.cancel_scope.cancel()
            await wait_blocks_free(base)
            async with httpx2.AsyncClient() as http:
                metrics = (await http.get(f"{base}/metrics")).text
            generated = next(float(line.split()[-1]) for line in metrics.splitlines()
                             if line.startswith('mistralrs_generation_tokens_total{model="demo"}'))
            assert generated < 12 + 12 + 900, f"the cancelled call ran on ({generated} tokens in all)"

            too_long = await session.call_tool("chat", {"messages": [{"role": "user", "content": "word " * 1500}]})
            assert too_long.is_error and "context length" in too_long.content[0].text, too_long

    # The SDK accepts only 200 or 204 for the closing DELETE and warns otherwise.
    assert not warnings.records, f"the SDK warned: {warnings.records}"
    print("mcp client: ok", init.protocol_version)


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:4])
