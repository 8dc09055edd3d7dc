"""An upstream MCP server (official Python SDK, stdio) that logs at every level
and reports progress, as fast as it can, to check that the gateway keeps their
order, and asks for the caller's roots.

Usage: python log_server.py
Its tool `log_all` sends one `notifications/message` at each MCP level, debug
to emergency, from logger `probe`, `rounds` times over, then answers;
`progress_burst` reports progress 1..`steps` without pausing, then answers;
`roots` asks `roots/list` during the call and answers with the URIs as JSON;
`impatient_sampling` asks for sampling and withdraws the request after 0.5 s;
`url_consent` asks the client to open a URL (URL-mode elicitation `consent-1`)
and, once accepted, says the elicitation is complete.
"""
import json

import anyio
from mcp import types
from mcp.server.mcpserver import Context, MCPServer

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
server = MCPServer("log-probe")


@server.tool()
async def log_all(ctx: Context, rounds: int = 1) -> str:
    """Logs one message per level, `rounds` times over."""
    for round_ in range(rounds):
        for level in LEVELS:
            await ctx.log(level, f"{level} message {round_}", logger_name="probe")
    return "logged"


@server.tool()
async def progress_burst(ctx: Context, steps: int) -> str:
    """Reports progress 1..steps of steps."""
    for step in range(1, steps + 1):
        await ctx.report_progress(step, steps)
    return "done"


@server.tool()
async def roots(ctx: Context) -> str:
    """The roots of whoever is asked during this call."""
    listed = await ctx.session.list_roots()
    return json.dumps([str(root.uri) for root in listed.roots])


@server.tool()
async def impatient_sampling(ctx: Context) -> str:
    """Asks for sampling, gives up after 0.5 s (the SDK then sends notifications/cancelled)."""
    message = types.SamplingMessage(role="user", content=types.TextContent(type="text", text="hi"))
    with anyio.move_on_after(0.5):
        await ctx.session.create_message(messages=[message], max_tokens=4)
        return "answered"
    return "withdrawn"


@server.tool()
async def url_consent(ctx: Context) -> str:
    """URL-mode elicitation `consent-1`, then its completion notice when accepted."""
    result = await ctx.elicit_url("Please consent.", "https://example.com/consent", "consent-1")
    if result.action == "accept":
        await ctx.session.send_elicit_complete("consent-1")
    return result.action


if __name__ == "__main__":
    server.run()
