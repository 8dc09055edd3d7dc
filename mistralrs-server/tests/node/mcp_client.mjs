// Drives /mcp/stream with the official TypeScript MCP SDK.
// Usage: node mcp_client.mjs <mcp url> <server base url> [api key]
// Exits non-zero on the first mismatch.
import assert from "node:assert/strict";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, base, key] = process.argv.slice(2);
const requestInit = key ? { headers: { Authorization: `Bearer ${key}` } } : undefined;
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit });
const client = new Client({ name: "mistralrs-ts-test", version: "0.0.0" });
await client.connect(transport);
assert.equal(client.getServerVersion().name, "mistralrs-server");
assert.ok(transport.sessionId, "a session was opened");

const { tools } = await client.listTools();
assert.deepEqual(tools.map((t) => t.name), ["chat"]);

const chat = { messages: [{ role: "user", content: "Hello!" }], max_tokens: 12, temperature: 0 };
const progress = [];
const result = await client.callTool({ name: "chat", arguments: chat }, undefined, {
  onprogress: (p) => progress.push(p),
});
assert.ok(!result.isError, JSON.stringify(result));
const text = result.content[0].text;
assert.ok(progress.length > 0, "progress arrived");
assert.equal(progress.map((p) => p.message).join(""), text);
assert.equal(result.structuredContent.usage.completion_tokens, 12);

// Cancel a long call after its first progress event: the SDK sends
// notifications/cancelled, and the server frees the sequence's KV blocks.
const controller = new AbortController();
const long = { messages: [{ role: "user", content: "Once upon a time" }], max_tokens: 900, ignore_eos: true };
const cancelled = client.callTool({ name: "chat", arguments: long }, undefined, {
  signal: controller.signal,
  onprogress: () => controller.abort(),
});
await assert.rejects(cancelled);
const deadline = Date.now() + 10_000;
for (;;) {
  const health = await (await fetch(`${base}/health`)).json();
  const m = health.models[0];
  if (m.running === 0 && m.kv_cache_blocks_free === m.kv_cache_blocks_total) break;
  assert.ok(Date.now() < deadline, `blocks not freed after cancel: ${JSON.stringify(m)}`);
  await new Promise((r) => setTimeout(r, 20));
}

// The sequence was cut short, not run to its 900 tokens.
const metrics = await (await fetch(`${base}/metrics`)).text();
const generated = Number(metrics.match(/^mistralrs_generation_tokens_total\{model="demo"\} (\d+)/m)[1]);
assert.ok(generated < 12 + 900, `cancelled call generated ${generated - 12} tokens`);

// Ending the session: DELETE, after which the session id is unknown (404).
const sessionId = transport.sessionId;
await transport.terminateSession();
const after = await fetch(url, {
  method: "POST",
  headers: {
    "content-type": "application/json",
    accept: "application/json, text/event-stream",
    "mcp-session-id": sessionId,
    "mcp-protocol-version": transport.protocolVersion ?? "2025-06-18",
    ...(key ? { authorization: `Bearer ${key}` } : {}),
  },
  body: JSON.stringify({ jsonrpc: "2.0", id: 9, method: "tools/list" }),
});
assert.equal(after.status, 404);
await client.close();
console.log("ts client: ok", transport.protocolVersion);
