"""An upstream MCP server (official Python SDK, stdio) that logs at every level.

Usage: python log_server.py
Its tool `log_all` sends one `notifications/message` at each MCP level, debug
to emergency, from logger `probe`, then answers.
"""
from mcp.server.mcpserver import Context, MCPServer

LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]
server = MCPServer("log-probe")


@server.tool()
async def log_all(ctx: Context) -> str:
    """Logs one message per level."""
    for level in LEVELS:
        await ctx.log(level, f"{level} message", logger_name="probe")
    return "logged"


if __name__ == "__main__":
    server.run()
