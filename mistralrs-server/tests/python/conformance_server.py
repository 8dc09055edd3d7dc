"""An upstream MCP server (official Python SDK, low-level API) offering every
fixture the server scenarios of `@modelcontextprotocol/conformance` call:
the `test_*` tools (text, image, audio, embedded resource, mixed content,
logging, error, progress, sampling, elicitation with SEP-1034 defaults and
SEP-1330 enums, SSE reconnection), `json_schema_2020_12_tool` listed with its
raw 2020-12 schema, the `test://` resources (static text, binary, a
template, a watched resource that can be subscribed to), the four `test_*`
prompts, completions and logging. Two more tools let a test watch
subscriptions through the gateway: `touch_watched_resource` tells every
session subscribed to `test://watched-resource` that it changed, and
`subscribed_uris` lists the URIs the calling session is subscribed to.

The test suite runs the conformance suite against it directly (so the fixture
itself is proven) and then through the gateway's /mcp/stream, where every
scenario must pass the same way.

Usage: python conformance_server.py PORT  (Streamable HTTP at /mcp on 127.0.0.1)
"""
import json
import sys
from collections import defaultdict
from itertools import count

import anyio
import uvicorn
from mcp import types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http import EventMessage, EventStore

# A 1x1 PNG and a WAV header with two bytes of samples.
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
WAV = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA="
LOGGER = "conformance-fixture"
EMPTY = {"type": "object", "properties": {}}


def text(value: str) -> types.TextContent:
    return types.TextContent(type="text", text=value)


def tool(name: str, description: str, schema: dict | None = None) -> types.Tool:
    return types.Tool(name=name, description=description, input_schema=schema or EMPTY)


TOOLS = [
    tool("test_simple_text", "Answers with one text item."),
    tool("test_image_content", "Answers with a PNG image."),
    tool("test_audio_content", "Answers with a WAV clip."),
    tool("test_embedded_resource", "Answers with an embedded text resource."),
    tool("test_multiple_content_types", "Answers with text, an image and a resource."),
    tool("test_tool_with_logging", "Logs three messages while it runs."),
    tool("test_tool_with_progress", "Reports progress 0, 50 and 100 of 100."),
    tool("test_error_handling", "Fails with a tool error."),
    tool("test_reconnection", "Closes its response stream mid-call; the answer follows on reconnection."),
    tool(
        "test_sampling",
        "Asks the client's model to answer `prompt`.",
        {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]},
    ),
    tool(
        "test_elicitation",
        "Asks the user for a response, showing `message`.",
        {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    ),
    tool("test_elicitation_sep1034_defaults", "Asks for a form whose fields all have defaults."),
    tool("touch_watched_resource", "Tells the subscribers of test://watched-resource that it changed."),
    tool("subscribed_uris", "The resource URIs this session is subscribed to, as a JSON list."),
    tool("test_elicitation_sep1330_enums", "Asks for a form with each kind of enum."),
    tool(
        "json_schema_2020_12_tool",
        "Takes a JSON Schema 2020-12 input ($schema, $defs, additionalProperties).",
        {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "$defs": {
                "address": {
                    "type": "object",
                    "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
                }
            },
            "properties": {"name": {"type": "string"}, "address": {"$ref": "#/$defs/address"}},
            "additionalProperties": False,
        },
    ),
]

SEP1034_FORM = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "description": "Name", "default": "John Doe"},
        "age": {"type": "integer", "description": "Age", "default": 30},
        "score": {"type": "number", "description": "Score", "default": 95.5},
        "status": {
            "type": "string",
            "description": "Status",
            "enum": ["active", "inactive", "pending"],
            "default": "active",
        },
        "verified": {"type": "boolean", "description": "Verified", "default": True},
    },
    "required": [],
}

SEP1330_FORM = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "description": "One of three", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "description": "One of three, titled",
            "oneOf": [
                {"const": "value1", "title": "First"},
                {"const": "value2", "title": "Second"},
                {"const": "value3", "title": "Third"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "One of three, legacy titles",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option one", "Option two", "Option three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Some of three",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Some of three, titled",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First"},
                    {"const": "value2", "title": "Second"},
                    {"const": "value3", "title": "Third"},
                ]
            },
        },
    },
    "required": [],
}

RESOURCES = [
    types.Resource(uri="test://static-text", name="static-text", description="A fixed text.", mime_type="text/plain"),
    types.Resource(uri="test://static-binary", name="static-binary", description="A PNG.", mime_type="image/png"),
    types.Resource(
        uri="test://watched-resource", name="watched-resource", description="Can be subscribed to.", mime_type="text/plain"
    ),
]

TEMPLATES = [
    types.ResourceTemplate(
        uri_template="test://template/{id}/data",
        name="template",
        description="Data for an id.",
        mime_type="application/json",
    )
]

PROMPTS = [
    types.Prompt(name="test_simple_prompt", description="A prompt without arguments."),
    types.Prompt(
        name="test_prompt_with_arguments",
        description="A prompt with two required arguments.",
        arguments=[
            types.PromptArgument(name="arg1", description="First argument", required=True),
            types.PromptArgument(name="arg2", description="Second argument", required=True),
        ],
    ),
    types.Prompt(
        name="test_prompt_with_embedded_resource",
        description="A prompt embedding the resource `resourceUri`.",
        arguments=[types.PromptArgument(name="resourceUri", description="The resource to embed", required=True)],
    ),
    types.Prompt(name="test_prompt_with_image", description="A prompt with an image."),
]

# Values completion/complete offers per prompt argument, filtered by prefix.
COMPLETIONS = {"arg1": ["paris", "park", "party", "test", "testing"], "arg2": ["alpha", "beta"]}


class MemoryEvents(EventStore):
    """Every event kept in memory, so a client can resume a stream (SEP-1699)."""

    def __init__(self) -> None:
        self.events: list = []
        self.ids = count()

    async def store_event(self, stream_id, message):
        event_id = f"{next(self.ids)}"
        self.events.append((event_id, stream_id, message))
        return event_id

    async def replay_events_after(self, last_event_id, send_callback):
        stream = next((s for e, s, _ in self.events if e == last_event_id), None)
        if stream is None:
            return None
        after = int(last_event_id)
        for event_id, stream_id, message in self.events:
            if stream_id == stream and int(event_id) > after and message is not None:
                await send_callback(EventMessage(message, event_id))
        return stream


async def list_tools(ctx, params):
    return types.ListToolsResult(tools=TOOLS)


async def call_tool(ctx, params: types.CallToolRequestParams):
    name, args = params.name, params.arguments or {}
    session, related = ctx.session, ctx.request_id
    if name == "test_simple_text":
        return types.CallToolResult(content=[text("A simple text answer.")])
    if name == "test_image_content":
        return types.CallToolResult(content=[types.ImageContent(type="image", data=PNG, mime_type="image/png")])
    if name == "test_audio_content":
        return types.CallToolResult(content=[types.AudioContent(type="audio", data=WAV, mime_type="audio/wav")])
    if name == "test_embedded_resource":
        resource = types.TextResourceContents(uri="test://embedded-resource", mime_type="text/plain", text="Embedded.")
        return types.CallToolResult(content=[types.EmbeddedResource(type="resource", resource=resource)])
    if name == "test_multiple_content_types":
        resource = types.TextResourceContents(
            uri="test://mixed-content-resource", mime_type="application/json", text=json.dumps({"value": 123})
        )
        return types.CallToolResult(
            content=[
                text("Three kinds of content:"),
                types.ImageContent(type="image", data=PNG, mime_type="image/png"),
                types.EmbeddedResource(type="resource", resource=resource),
            ]
        )
    if name == "test_tool_with_logging":
        for step in ("started", "working", "finished"):
            await session.send_log_message("info", f"tool {step}", LOGGER, related_request_id=related)
            await anyio.sleep(0.05)
        return types.CallToolResult(content=[text("Logged three messages.")])
    if name == "test_tool_with_progress":
        token = (ctx.meta or {}).get("progressToken")
        for step in (0, 50, 100):
            await session.report_progress(step, 100, f"step {step} of 100")
            await anyio.sleep(0.05)
        return types.CallToolResult(content=[text(str(token))])
    if name == "test_error_handling":
        return types.CallToolResult(content=[text("This tool fails on purpose.")], is_error=True)
    if name == "test_reconnection":
        if ctx.close_sse_stream is not None:
            await ctx.close_sse_stream()
        await anyio.sleep(0.1)
        return types.CallToolResult(content=[text("Answered after the stream was closed.")])
    if name == "test_sampling":
        message = types.SamplingMessage(role="user", content=text(args.get("prompt", "")))
        answer = await session.create_message(messages=[message], max_tokens=100, related_request_id=related)
        content = answer.content if isinstance(answer.content, types.TextContent) else None
        return types.CallToolResult(content=[text(f"LLM response: {content.text if content else answer.content}")])
    if name in ("test_elicitation", "test_elicitation_sep1034_defaults", "test_elicitation_sep1330_enums"):
        message, form = {
            "test_elicitation": (
                args.get("message", ""),
                {
                    "type": "object",
                    "properties": {"response": {"type": "string", "description": "Your response"}},
                    "required": ["response"],
                },
            ),
            "test_elicitation_sep1034_defaults": ("Check the defaults.", SEP1034_FORM),
            "test_elicitation_sep1330_enums": ("Pick options.", SEP1330_FORM),
        }[name]
        answer = await session.elicit_form(message, form, related_request_id=related)
        return types.CallToolResult(
            content=[text(f"Elicitation: action={answer.action}, content={json.dumps(answer.content or {})}")]
        )
    if name == "touch_watched_resource":
        watched = "test://watched-resource"
        told = [SESSIONS[key] for key, uris in SUBSCRIBED.items() if watched in uris]
        for subscriber in told:
            await subscriber.send_resource_updated(watched)
        return types.CallToolResult(content=[text(f"told {len(told)} session(s)")])
    if name == "subscribed_uris":
        held = sorted(SUBSCRIBED[session_id(ctx)])
        return types.CallToolResult(content=[text(json.dumps(held))])
    if name == "json_schema_2020_12_tool":
        return types.CallToolResult(content=[text(f"Called with {json.dumps(args, sort_keys=True)}")])
    return types.CallToolResult(content=[text(f"unknown tool {name}")], is_error=True)


async def list_resources(ctx, params):
    return types.ListResourcesResult(resources=RESOURCES)


async def list_templates(ctx, params):
    return types.ListResourceTemplatesResult(resource_templates=TEMPLATES)


async def read_resource(ctx, params: types.ReadResourceRequestParams):
    uri = str(params.uri)
    if uri == "test://static-text":
        contents = [types.TextResourceContents(uri=uri, mime_type="text/plain", text="The static text.")]
    elif uri == "test://static-binary":
        contents = [types.BlobResourceContents(uri=uri, mime_type="image/png", blob=PNG)]
    elif uri == "test://watched-resource":
        contents = [types.TextResourceContents(uri=uri, mime_type="text/plain", text="Watched content.")]
    elif uri.startswith("test://template/") and uri.endswith("/data"):
        id_ = uri.removeprefix("test://template/").removesuffix("/data")
        body = json.dumps({"id": id_, "templateTest": True, "data": f"data for {id_}"})
        contents = [types.TextResourceContents(uri=uri, mime_type="application/json", text=body)]
    else:
        raise ValueError(f"unknown resource {uri}")
    return types.ReadResourceResult(contents=contents)


# Subscribed URIs by MCP session id, and a handle to send each session
# notifications.
SUBSCRIBED: dict[str, set[str]] = defaultdict(set)
SESSIONS: dict = {}


def session_id(ctx) -> str:
    return ctx.request.headers.get("mcp-session-id", "") if ctx.request else ""


async def subscribe(ctx, params: types.SubscribeRequestParams):
    SUBSCRIBED[session_id(ctx)].add(str(params.uri))
    SESSIONS[session_id(ctx)] = ctx.session
    return types.EmptyResult()


async def unsubscribe(ctx, params: types.UnsubscribeRequestParams):
    SUBSCRIBED[session_id(ctx)].discard(str(params.uri))
    return types.EmptyResult()


async def list_prompts(ctx, params):
    return types.ListPromptsResult(prompts=PROMPTS)


async def get_prompt(ctx, params: types.GetPromptRequestParams):
    args = params.arguments or {}
    if params.name == "test_simple_prompt":
        messages = [types.PromptMessage(role="user", content=text("A simple prompt."))]
    elif params.name == "test_prompt_with_arguments":
        said = f"arg1={args.get('arg1')}, arg2={args.get('arg2')}"
        messages = [types.PromptMessage(role="user", content=text(said))]
    elif params.name == "test_prompt_with_embedded_resource":
        resource = types.TextResourceContents(uri=args.get("resourceUri", ""), mime_type="text/plain", text="Embedded.")
        messages = [
            types.PromptMessage(role="user", content=types.EmbeddedResource(type="resource", resource=resource)),
            types.PromptMessage(role="user", content=text("Use the resource above.")),
        ]
    elif params.name == "test_prompt_with_image":
        messages = [
            types.PromptMessage(role="user", content=types.ImageContent(type="image", data=PNG, mime_type="image/png")),
            types.PromptMessage(role="user", content=text("Describe the image.")),
        ]
    else:
        raise ValueError(f"unknown prompt {params.name}")
    return types.GetPromptResult(messages=messages)


async def complete(ctx, params: types.CompleteRequestParams):
    values = [v for v in COMPLETIONS.get(params.argument.name, []) if v.startswith(params.argument.value)]
    return types.CompleteResult(completion=types.Completion(values=values, total=len(values), has_more=False))


async def set_level(ctx, params: types.SetLevelRequestParams):
    return types.EmptyResult()


server = Server(
    "conformance-fixture",
    version="1.0.0",
    on_list_tools=list_tools,
    on_call_tool=call_tool,
    on_list_resources=list_resources,
    on_list_resource_templates=list_templates,
    on_read_resource=read_resource,
    on_subscribe_resource=subscribe,
    on_unsubscribe_resource=unsubscribe,
    on_list_prompts=list_prompts,
    on_get_prompt=get_prompt,
    on_completion=complete,
    on_set_logging_level=set_level,
)

if __name__ == "__main__":
    app = server.streamable_http_app(event_store=MemoryEvents(), retry_interval=500)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
