"""Two 2026-07-28 `subscriptions/listen` streams through the gateway (official
Python SDK, no session): one listens to `test://watched-resource` and tool list
changes, the other to `test://static-text`. A third client then has the
conformance fixture touch the watched resource. Prints, as JSON, what the
upstream held while the streams were open and after they closed (and how
long the withdrawal took), and what each stream received.

Usage: python listen_client.py URL
"""
import asyncio
import json
import sys

import anyio
from mcp import Client

WATCHED, STATIC = "test://watched-resource", "test://static-text"


async def held(client: Client) -> list:
    result = await client.call_tool("subscribed_uris", {})
    return json.loads(result.content[0].text)


async def next_event(stream, seconds: float):
    with anyio.move_on_after(seconds):
        return repr(await stream.__anext__())
    return None


async def main(url: str) -> None:
    report = {}
    async with Client(url, mode="2026-07-28") as caller:
        async with (
            Client(url, mode="2026-07-28") as watching,
            Client(url, mode="2026-07-28") as other,
            watching.listen(resource_subscriptions=[WATCHED], tools_list_changed=True) as watched,
            other.listen(resource_subscriptions=[STATIC]) as unrelated,
        ):
            report["honored"] = sorted(watched.honored.resource_subscriptions or [])
            report["held while listening"] = await held(caller)
            report["touched"] = (await caller.call_tool("touch_watched_resource", {})).content[0].text
            report["watching received"] = await next_event(watched, 10)
            report["other received"] = await next_event(unrelated, 1)
        # The listening clients are gone. The gateway learns a stream closed
        # when it next writes to it (a keep-alive every 15 s at the latest).
        started = anyio.current_time()
        with anyio.move_on_after(30):
            while await held(caller):
                await anyio.sleep(0.5)
        report["held after"] = await held(caller)
        report["seconds until withdrawn"] = round(anyio.current_time() - started)
    print(json.dumps(report, sort_keys=True))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
