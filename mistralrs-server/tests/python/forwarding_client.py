"""Drives forwarded upstream tools through /mcp/stream with the official Python MCP SDK.

Usage: python forwarding_client.py <scenario> <url of /mcp/stream> <server base url> [args...]

Scenarios (each exits non-zero with a message on the first mismatch):
  suite <file> <text>      namespaced tools, prompts, resources; filesystem__read_text_file
                           returns <file>'s <text>; echo; progress of a long-running operation
  policy                   blocked tools hidden and refused, also under altered names;
                           arguments over the size limit refused
  scoped <key>             a scoped key sees and calls only what its scope allows
  cache <file>             a cacheable read is served from the cache until the TTL (1 s) ends
  kill                     the stdio upstream killed mid-call: a tool error, then it is back
  cancel <marker>          a call cancelled by the client is cancelled upstream (probe__wait)
  relay                    an upstream's sampling, elicitation and roots requests answered by
                           the client whose call it is, else by the gateway
  relay-concurrent         three clients' sampling requests in flight at once on an HTTP
                           upstream: each answered by its own client
  relay-faults             a relayed request answered with garbage, and one whose client
                           goes away
  per-client               session_mode = "per_client": two clients' roots kept apart upstream
  per-client-limit         max_upstream_sessions = 1 refuses a second client until the first leaves
  call <tool> <json>       one call; prints {"is_error": ..., "text": ..., "structured": ...}
"""
import contextlib
import json
import os
import signal
import sys

import anyio
import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

# Look-alikes of `everything__get-env` that must not reach the blocked tool.
ALTERED_NAMES = [
    "EVERYTHING__get-env",
    "everything__GET-ENV",
    "everything____get-env",
    "everything___get-env",
    "everything__get-env ",
    "everything__get\u2010env",  # Unicode hyphen
    "\u0435verything__get-env",  # Cyrillic e
    "everything\uff3f\uff3fget-env",  # fullwidth low lines
]


async def metric(base, name, labels):
    """The value of one series of /metrics, or 0 when absent."""
    async with httpx2.AsyncClient() as http:
        text = (await http.get(f"{base}/metrics")).text
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"mistralrs_{name}{{") and line.split("}")[0].endswith(want):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(f"mistralrs_{name}{{"):
            got = line[line.index("{") + 1 : line.index("}")]
            if sorted(got.split(",")) == sorted(want.split(",")):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


async def health(base):
    async with httpx2.AsyncClient() as http:
        return (await http.get(f"{base}/health")).json()


async def expect_refused(session, name, arguments=None):
    try:
        result = await session.call_tool(name, arguments or {})
    except MCPError as e:
        assert "unknown tool" in str(e), (name, e)
        return
    raise AssertionError(f"{name!r} was not refused: {result}")


LEVELS = ["debug", "info", "notice", "warning", "error", "critical", "alert", "emergency"]


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def suite(session, base, path, expected):
    tools = {t.name: t for t in (await session.list_tools()).tools}
    for name in ["chat", "everything__echo", "everything__trigger-long-running-operation", "filesystem__read_text_file"]:
        assert name in tools, sorted(tools)
    assert not any(n in tools for n in ["echo", "read_text_file"]), "only namespaced names"
    echo = tools["everything__echo"]
    assert echo.input_schema["properties"]["message"]["type"] == "string", echo.input_schema
    long_op = tools["everything__trigger-long-running-operation"]
    assert long_op.annotations and long_op.annotations.read_only_hint is True, long_op
    assert long_op.title == "Trigger Long Running Operation Tool", long_op

    result = await session.call_tool("filesystem__read_text_file", {"path": path})
    assert not result.is_error, result
    assert text_of(result) == expected, (text_of(result), expected)

    result = await session.call_tool("everything__echo", {"message": "hi there"})
    assert not result.is_error and "hi there" in text_of(result), result

    progress = []

    async def on_progress(value, total, message):
        progress.append((value, total))

    result = await session.call_tool(
        "everything__trigger-long-running-operation",
        {"duration": 1, "steps": 4},
        progress_callback=on_progress,
    )
    assert not result.is_error, result
    assert progress == [(1, 4), (2, 4), (3, 4), (4, 4)], progress

    # An upstream error comes back as a tool error with the upstream's message.
    result = await session.call_tool("filesystem__read_text_file", {"path": "/etc/passwd"})
    assert result.is_error, result
    assert "filesystem" in text_of(result).lower() or "denied" in text_of(result).lower(), result

    # Arguments are checked against the tool's schema before forwarding.
    try:
        await session.call_tool("everything__echo", {"message": 42})
        raise AssertionError("wrong argument type was forwarded")
    except MCPError as e:
        assert "arguments of `everything__echo`" in str(e), e

    prompts = {p.name for p in (await session.list_prompts()).prompts}
    assert "everything__simple-prompt" in prompts, prompts
    prompt = await session.get_prompt("everything__simple-prompt")
    assert "without arguments" in prompt.messages[0].content.text, prompt

    templates = (await session.list_resource_templates()).resource_templates
    assert any(t.name.startswith("everything__") for t in templates), templates
    uri = "demo://resource/dynamic/text/1"
    read = await session.read_resource(uri)
    assert read.contents and str(read.contents[0].uri) == uri, read

    assert await metric(base, "tool_calls_total", {"namespace": "everything", "tool": "echo", "outcome": "ok"}) >= 1
    assert await metric(base, "mcp_upstream_up", {"server": "filesystem"}) == 1
    print("suite ok")


async def policy(session, base):
    tools = {t.name for t in (await session.list_tools()).tools}
    assert "everything__echo" in tools, tools
    assert "everything__get-env" not in tools, "blocked tool listed"
    assert not any(t.startswith("filesystem__") for t in tools), "namespace not allowed"
    before = await metric(base, "tool_errors_total", {"namespace": "everything", "kind": "denied"})
    await expect_refused(session, "everything__get-env")
    after = await metric(base, "tool_errors_total", {"namespace": "everything", "kind": "denied"})
    assert after == before + 1, (before, after)
    for name in ALTERED_NAMES:
        await expect_refused(session, name)
    await expect_refused(session, "filesystem__list_allowed_directories")
    result = await session.call_tool("everything__echo", {"message": "allowed"})
    assert not result.is_error, result
    # Arguments over max_argument_bytes (2000) are refused before forwarding.
    try:
        await session.call_tool("everything__echo", {"message": "x" * 3000})
        raise AssertionError("oversized arguments were forwarded")
    except MCPError as e:
        assert "over the limit of 2000 bytes" in str(e), e
    print("policy ok")


async def scoped(session, base):
    tools = {t.name for t in (await session.list_tools()).tools}
    assert "everything__echo" in tools, tools
    assert "everything__get-sum" not in tools, tools
    assert not any(t.startswith("filesystem__") for t in tools), tools
    await expect_refused(session, "everything__get-sum", {"a": 1, "b": 2})
    await expect_refused(session, "filesystem__list_allowed_directories")
    result = await session.call_tool("everything__echo", {"message": "scoped"})
    assert not result.is_error, result
    # The upstream child process never sees the server's keys.
    env = text_of(await session.call_tool("everything__get-env", {}))
    assert "PATH" in env, env
    for secret in ["MISTRALRS_MCP_API_KEYS", "TEST_SCOPED_KEY", "full-access", "scoped-key-123"]:
        assert secret not in env, f"{secret} reached the upstream: {env}"
    prompts = {p.name for p in (await session.list_prompts()).prompts}
    assert "everything__simple-prompt" in prompts, prompts
    print("scoped ok")


async def cache(session, base, path):
    labels = {"namespace": "filesystem"}
    hits0 = await metric(base, "tool_cache_hits_total", labels)
    misses0 = await metric(base, "tool_cache_misses_total", labels)
    with open(path, "w") as f:
        f.write("first")
    first = await session.call_tool("filesystem__read_text_file", {"path": path})
    with open(path, "w") as f:
        f.write("second")
    # The same call, keys in the same order: a hit, so the old content.
    again = await session.call_tool("filesystem__read_text_file", {"path": path})
    assert text_of(first) == "first" and text_of(again) == "first", (first, again)
    assert await metric(base, "tool_cache_hits_total", labels) == hits0 + 1
    assert await metric(base, "tool_cache_misses_total", labels) == misses0 + 1
    # A tool not declared cacheable is always forwarded.
    listing = await session.call_tool("filesystem__get_file_info", {"path": path})
    assert not listing.is_error, listing
    assert await metric(base, "tool_cache_hits_total", labels) == hits0 + 1
    # Errors are not cached: the same failing call is forwarded twice.
    missing = path + ".missing"
    for _ in range(2):
        result = await session.call_tool("filesystem__read_text_file", {"path": missing})
        assert result.is_error, result
    assert await metric(base, "tool_cache_misses_total", labels) == misses0 + 3
    await anyio.sleep(1.5)
    fresh = await session.call_tool("filesystem__read_text_file", {"path": path})
    assert text_of(fresh) == "second", fresh
    assert await metric(base, "tool_cache_misses_total", labels) == misses0 + 4
    print("cache ok")


def upstream(state, name):
    return next(u for u in state["mcp_upstreams"] if u["name"] == name)


async def kill(session, base, changed):
    before = upstream(await health(base), "everything")
    assert before["status"] == "up" and before["pid"], before
    progress = []
    result = {}

    async def on_progress(value, total, message):
        progress.append(value)

    async def long_call():
        result["value"] = await session.call_tool(
            "everything__trigger-long-running-operation",
            {"duration": 20, "steps": 20},
            progress_callback=on_progress,
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(long_call)
        with anyio.fail_after(15):
            while not progress:
                await anyio.sleep(0.05)
        os.kill(before["pid"], signal.SIGKILL)
    killed = result["value"]
    assert killed.is_error, killed
    assert "everything" in text_of(killed), killed
    # Back after a reconnect, as a new process, with its tools.
    with anyio.fail_after(20):
        while True:
            now = upstream(await health(base), "everything")
            if now["status"] == "up" and now["pid"] != before["pid"]:
                break
            await anyio.sleep(0.1)
    echo = await session.call_tool("everything__echo", {"message": "back"})
    assert not echo.is_error and "back" in text_of(echo), echo
    assert changed, "no notifications/tools/list_changed reached the client"
    print("kill ok")


async def cancel(session, base, marker):
    with anyio.move_on_after(1.5):
        await session.call_tool("probe__wait", {})
        raise AssertionError("probe__wait returned before the cancellation")
    with anyio.fail_after(10):
        while not os.path.exists(marker):
            await anyio.sleep(0.05)
    assert open(marker).read() == "cancelled"
    assert await metric(base, "tool_errors_total", {"namespace": "probe", "kind": "cancelled"}) == 1
    print("cancel ok")


async def complete(session, prefix):
    """completion/complete through the gateway, for a prompt and a resource template."""
    assert session.server_capabilities.completions is not None
    prompt = types.PromptReference(type="ref/prompt", name=f"{prefix}completable-prompt")
    result = await session.complete(prompt, {"name": "department", "value": "Ma"})
    assert result.completion.values == ["Marketing"], result
    result = await session.complete(prompt, {"name": "name", "value": ""},
                                    context_arguments={"department": "Sales"})
    assert result.completion.values == ["David", "Eve", "Frank"], result
    templates = (await session.list_resource_templates()).resource_templates
    uri = next(t.uri_template for t in templates if t.uri_template.endswith("/text/{resourceId}"))
    template = types.ResourceTemplateReference(type="ref/resource", uri=uri)
    result = await session.complete(template, {"name": "resourceId", "value": "7"})
    assert result.completion.values == ["7"], result
    try:
        await session.complete(types.PromptReference(type="ref/prompt", name="no-such-prompt"),
                               {"name": "x", "value": ""})
    except MCPError as e:
        assert "unknown prompt" in str(e), e
    else:
        raise AssertionError("an unknown prompt was completed")
    print("complete ok")


async def logs(session, url, http, received):
    """Upstream log messages reach the sessions that asked, each at its level."""
    others = {"error": [], "unasked": []}

    async def open_other(name, level, ready, done):
        async def on_log(params):
            others[name].append(params)
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, logging_callback=on_log) as other:
                await other.initialize()
                if level:
                    await other.set_logging_level(level)
                ready.set()
                await done.wait()

    done = anyio.Event()
    async with anyio.create_task_group() as tasks:
        for name, level in (("error", "error"), ("unasked", None)):
            ready = anyio.Event()
            tasks.start_soon(open_other, name, level, ready, done)
            await ready.wait()
        await session.set_logging_level("debug")
        result = await session.call_tool("logs__log_all", {})
        assert text_of(result) == "logged", result
        with anyio.fail_after(10):
            while len(received) < 8 or len(others["error"]) < 4:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)  # anything more would arrive now
        done.set()
    assert [p.level for p in received] == LEVELS, received
    assert all(p.logger == "logs/probe" for p in received), received
    assert received[0].data == "debug message 0", received[0]
    assert [p.level for p in others["error"]] == ["error", "critical", "alert", "emergency"], others
    assert others["unasked"] == [], others

    # A burst keeps its order, logs and progress alike.
    received.clear()
    await session.call_tool("logs__log_all", {"rounds": 25})
    with anyio.fail_after(10):
        while len(received) < 200:
            await anyio.sleep(0.05)
    expected = [f"{level} message {r}" for r in range(25) for level in LEVELS]
    assert [p.data for p in received] == expected, [p.data for p in received]
    progress = []

    async def on_progress(value, total, message):
        progress.append(value)
    result = await session.call_tool("logs__progress_burst", {"steps": 100},
                                     progress_callback=on_progress)
    assert text_of(result) == "done", result
    with anyio.fail_after(10):
        while len(progress) < 100:
            await anyio.sleep(0.05)
    assert progress == list(range(1, 101)), progress
    print("logs ok")


async def open_session(url, http, stack, **callbacks):
    """A further client session of the gateway, with the given callbacks."""
    read, write = await stack.enter_async_context(streamable_http_client(url, http_client=http))
    session = await stack.enter_async_context(ClientSession(read, write, **callbacks))
    await session.initialize()
    return session


def sampled_by(text):
    async def answer(context, params):
        return types.CreateMessageResult(
            role="assistant", content=types.TextContent(type="text", text=text),
            model="client-model", stop_reason="endTurn")
    return answer


async def relay(url, http):
    """Requests an upstream sends during a call go to the client whose call it
    is, when it declared the capability; else the gateway answers them."""
    urls = []

    async def elicited(context, params):
        if isinstance(params, types.ElicitRequestURLParams):
            urls.append(params.url)
            return types.ElicitResult(action="accept")
        assert "name" in str(params.requested_schema), params
        return types.ElicitResult(action="accept", content={"name": "Ada Lovelace"})

    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri="file:///srv/gateway-root", name="work")])

    async def refuses(context, params):
        return types.ErrorData(code=-32001, message="the user refused to sample")

    withdrawn = []

    async def patient(context, params):
        try:
            await anyio.sleep(10)
        except anyio.get_cancelled_exc_class():
            withdrawn.append(params)
            raise

    completed = []

    async def on_message(message):
        if isinstance(message, types.ElicitCompleteNotification):
            completed.append(message.params.elicitation_id)

    async with contextlib.AsyncExitStack() as stack:
        able = await open_session(url, http, stack, sampling_callback=sampled_by("sampled by the client"),
                                  elicitation_callback=elicited, list_roots_callback=roots,
                                  message_handler=on_message)
        plain = await open_session(url, http, stack)
        refusing = await open_session(url, http, stack, sampling_callback=refuses)

        sample = {"prompt": "Say hello.", "maxTokens": 8}
        result = await able.call_tool("everything__trigger-sampling-request", sample)
        assert '"text": "sampled by the client"' in text_of(result), result
        assert '"model": "client-model"' in text_of(result), result
        result = await plain.call_tool("everything__trigger-sampling-request", sample)
        assert '"model": "demo"' in text_of(result), result
        result = await refusing.call_tool("everything__trigger-sampling-request", sample)
        assert result.is_error and "the user refused to sample" in text_of(result), result

        result = await able.call_tool("everything__trigger-elicitation-request", {})
        assert "- Name: Ada Lovelace" in text_of(result), result
        result = await plain.call_tool("everything__trigger-elicitation-request", {})
        assert "declined" in text_of(result), result

        result = await able.call_tool("everything__trigger-url-elicitation",
                                      {"url": "https://example.com/consent"})
        assert not result.is_error and urls == ["https://example.com/consent"], (result, urls)
        # A URL elicitation's completion notice reaches the client that accepted it.
        result = await able.call_tool("logs__url_consent", {})
        assert text_of(result) == "accept", result
        with anyio.fail_after(5):
            while completed != ["consent-1"]:
                await anyio.sleep(0.05)

        result = await able.call_tool("logs__roots", {})
        assert json.loads(text_of(result)) == ["file:///srv/gateway-root"], result
        result = await plain.call_tool("logs__roots", {})
        assert json.loads(text_of(result)) == [], result

        # The upstream withdraws its request: the client is told, its callback cancelled.
        waiting = await open_session(url, http, stack, sampling_callback=patient)
        result = await waiting.call_tool("logs__impatient_sampling", {})
        assert text_of(result) == "withdrawn", result
        with anyio.fail_after(5):
            while not withdrawn:
                await anyio.sleep(0.05)
    print("relay ok")


async def relay_concurrent(url, http):
    """Two clients' calls in flight at once on one HTTP upstream: each upstream
    request goes to the client whose call it belongs to."""
    def slow(text):
        answer = sampled_by(text)

        async def slowly(context, params):
            await anyio.sleep(0.5)
            return await answer(context, params)
        return slowly

    async with contextlib.AsyncExitStack() as stack:
        sessions = {name: await open_session(url, http, stack, sampling_callback=slow(f"from {name}"))
                    for name in ("a", "b", "c")}
        results = {}

        async def call(name):
            results[name] = text_of(await sessions[name].call_tool(
                "everything__trigger-sampling-request", {"prompt": name, "maxTokens": 8}))
        async with anyio.create_task_group() as tasks:
            for name in sessions:
                tasks.start_soon(call, name)
    for name, text in results.items():
        assert f'"text": "from {name}"' in text, results
    print("relay concurrent ok")


async def raw_session(url, http, capabilities):
    """Headers of a raw 2025-11-25 session that declared `capabilities`."""
    headers = {"Accept": "application/json, text/event-stream"}
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": capabilities,
        "clientInfo": {"name": "raw", "version": "1"}}}
    response = await http.post(url, json=init, headers=headers)
    assert response.status_code == 200, response.text
    headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
    headers["MCP-Protocol-Version"] = "2025-11-25"
    await http.post(url, json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                    headers=headers)
    return headers


async def sse_messages(response):
    async for line in response.aiter_lines():
        if line.startswith("data:") and line[5:].strip():
            yield json.loads(line[5:])


async def relay_faults(url, http):
    """A client that answers a relayed request with garbage: the upstream gets
    an error and the call's result names it. A client that goes away while
    asked: the upstream gets an error at once (the test reads the metrics)."""
    headers = await raw_session(url, http, {"sampling": {}})
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "everything__trigger-sampling-request",
        "arguments": {"prompt": "x", "maxTokens": 4}}}
    result = None
    with anyio.fail_after(20):
        async with http.stream("POST", url, json=call, headers=headers) as response:
            async for message in sse_messages(response):
                if message.get("method") == "sampling/createMessage":
                    answer = {"jsonrpc": "2.0", "id": message["id"], "result": {"nonsense": [1, 2]}}
                    sent = await http.post(url, json=answer, headers=headers)
                    assert sent.status_code == 202, sent.text
                elif message.get("id") == 2:
                    result = message["result"]
                    break
    text = "".join(c.get("text", "") for c in result["content"])
    assert result.get("isError") and "sampling/createMessage" in text, result

    headers = await raw_session(url, http, {"sampling": {}})
    with anyio.fail_after(20):
        async with http.stream("POST", url, json=call, headers=headers) as response:
            async for message in sse_messages(response):
                if message.get("method") == "sampling/createMessage":
                    break
    gone = await http.delete(url, headers=headers)
    assert gone.status_code in (200, 204), gone.text
    print("relay faults ok")


def roots_of(uri):
    async def roots(context):
        return types.ListRootsResult(roots=[types.Root(uri=uri)])
    return roots


async def per_client(url, http, base):
    """session_mode = "per_client": each client session has an upstream session
    of its own, so an upstream that keeps what a client told it (server-everything
    keeps the roots it fetched) keeps it per client."""
    async with contextlib.AsyncExitStack() as stack:
        a = await open_session(url, http, stack, list_roots_callback=roots_of("file:///srv/a"))
        b = await open_session(url, http, stack, list_roots_callback=roots_of("file:///srv/b"))
        for _ in range(2):
            seen_a = text_of(await a.call_tool("everything__get-roots-list", {}))
            seen_b = text_of(await b.call_tool("everything__get-roots-list", {}))
            assert "file:///srv/a" in seen_a and "file:///srv/b" not in seen_a, seen_a
            assert "file:///srv/b" in seen_b and "file:///srv/a" not in seen_b, seen_b
        metrics = (await http.get(f"{base}/metrics")).text
        assert 'mistralrs_mcp_upstream_sessions{server="everything"} 2' in metrics, metrics
    print("per client ok")


async def per_client_limit(url, http):
    """max_upstream_sessions = 1: a second client's call is a tool error naming
    the limit until the first client's session ends."""
    echo = {"message": "hi"}
    async with contextlib.AsyncExitStack() as second:
        b = await open_session(url, http, second)
        async with contextlib.AsyncExitStack() as first:
            a = await open_session(url, http, first)
            assert not (await a.call_tool("everything__echo", echo)).is_error
            refused = await b.call_tool("everything__echo", echo)
            assert refused.is_error and "max_upstream_sessions" in text_of(refused), refused
        with anyio.fail_after(10):
            while (await b.call_tool("everything__echo", echo)).is_error:
                await anyio.sleep(0.1)
    print("per client limit ok")


async def subscribe(session, url, http, updates):
    """Resource updates reach exactly the sessions subscribed to the URI; the
    upstream's subscription lasts while any session holds one."""
    assert session.server_capabilities.resources.subscribe is True
    uris = [str(r.uri) for r in (await session.list_resources()).resources]
    x, y = uris[0], uris[1]
    other_updates = []
    commands = {"subscribe": anyio.Event(), "done": anyio.Event()}

    async def on_other(message):
        if isinstance(message, types.ResourceUpdatedNotification):
            other_updates.append(str(message.params.uri))

    async def other_session(ready):
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, message_handler=on_other) as other:
                await other.initialize()
                await other.subscribe_resource(y)
                ready.set()
                await commands["subscribe"].wait()
                await other.subscribe_resource(x)
                commands["subscribed"].set()
                await commands["done"].wait()

    commands["subscribed"] = anyio.Event()
    async with anyio.create_task_group() as tasks:
        ready = anyio.Event()
        tasks.start_soon(other_session, ready)
        await ready.wait()
        await session.subscribe_resource(x)
        # The upstream sends an update for every URI subscribed, now and every 5 s.
        result = await session.call_tool("everything__toggle-subscriber-updates", {})
        assert not result.is_error, result
        with anyio.fail_after(10):
            while x not in updates or y not in other_updates:
                await anyio.sleep(0.05)
        assert set(updates) == {x}, updates
        assert set(other_updates) == {y}, other_updates
        # Both hold x; one lets go: the upstream keeps sending x to the other.
        commands["subscribe"].set()
        await commands["subscribed"].wait()
        await session.unsubscribe_resource(x)
        updates.clear()
        other_updates.clear()
        with anyio.fail_after(15):
            while x not in other_updates:
                await anyio.sleep(0.05)
        await anyio.sleep(0.3)
        assert updates == [], updates
        await session.call_tool("everything__toggle-subscriber-updates", {})
        commands["done"].set()
    print("subscribe ok")


async def main(scenario, url, base, *args):
    key = args[0] if scenario == "scoped" else os.environ.get("MCP_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    http = httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0, read=120.0))
    changed = []

    updates = []

    async def on_message(message):
        if isinstance(message, types.ToolListChangedNotification):
            changed.append(message)
        if isinstance(message, types.ResourceUpdatedNotification):
            updates.append(str(message.params.uri))

    received = []

    async def on_log(params):
        received.append(params)

    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write, message_handler=on_message,
                                 logging_callback=on_log) as session:
            await session.initialize()
            if scenario == "suite":
                await suite(session, base, args[0], args[1])
            elif scenario == "policy":
                await policy(session, base)
            elif scenario == "scoped":
                await scoped(session, base)
            elif scenario == "cache":
                await cache(session, base, args[0])
            elif scenario == "cancel":
                await cancel(session, base, args[0])
            elif scenario == "kill":
                await kill(session, base, changed)
            elif scenario == "subscribe":
                await subscribe(session, url, http, updates)
            elif scenario == "logs":
                await logs(session, url, http, received)
            elif scenario == "relay":
                await relay(url, http)
            elif scenario == "per-client":
                await per_client(url, http, base)
            elif scenario == "per-client-limit":
                await per_client_limit(url, http)
            elif scenario == "relay-faults":
                await relay_faults(url, http)
            elif scenario == "relay-concurrent":
                await relay_concurrent(url, http)
            elif scenario == "complete":
                await complete(session, args[0] if args else "")
            elif scenario == "call":
                result = await session.call_tool(args[0], json.loads(args[1]))
                print(json.dumps({"is_error": bool(result.is_error), "text": text_of(result),
                                  "structured": result.structured_content}))
            else:
                raise SystemExit(f"unknown scenario {scenario}")


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:])
