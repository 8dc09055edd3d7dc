"""An upstream MCP server (official Python SDK, stdio) that reports cancellations.

Usage: python cancel_probe_server.py <marker file>
Its tool `wait` sleeps for a minute; when the call is cancelled by a
`notifications/cancelled` from its client, it writes "cancelled" to the marker
file, so a test can see that a cancellation made through the gateway reached it.
"""
import sys

import anyio
from mcp.server.mcpserver import MCPServer

MARKER = sys.argv[1]
server = MCPServer("cancel-probe")


@server.tool()
async def wait() -> str:
    """Waits a minute unless cancelled."""
    try:
        await anyio.sleep(60)
    except anyio.get_cancelled_exc_class():
        with open(MARKER, "w") as f:
            f.write("cancelled")
        raise
    return "waited"


if __name__ == "__main__":
    server.run()
