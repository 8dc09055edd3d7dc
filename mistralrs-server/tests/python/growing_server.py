"""An upstream MCP server (official Python SDK, stdio) whose tool list grows.

Usage: python growing_server.py
Tools: `only_here`, and `grow`, which adds a tool `echo` and tells its client
that the list changed, so a test can make a name collide at runtime.
"""
from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("growing")


@server.tool()
def only_here() -> str:
    """A name no other upstream has."""
    return "only here"


def echo(message: str) -> str:
    """Echoes, like server-everything's tool of the same name."""
    return f"growing echo: {message}"


@server.tool()
async def grow(ctx: Context) -> str:
    """Adds `echo` and announces the change."""
    server.add_tool(echo, name="echo")
    await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    server.run()
