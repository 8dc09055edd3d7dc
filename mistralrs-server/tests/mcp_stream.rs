//! /mcp/stream of the real binary with the official MCP SDKs as clients.
#![cfg(feature = "http-mcp-stream")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::Server;
use serde_json::json;

#[test]
fn python_sdk_lists_and_calls_chat_with_progress() {
    let server = Server::start(&["--http-mcp-port", "0"]);
    let url = server.mcp.clone().expect("MCP endpoint line");
    assert!(url.ends_with("/mcp/stream"), "{url}");
    let stdout = common::run_python("mcp_client.py", &[&url]);
    assert!(stdout.contains("mcp client: ok"), "{stdout}");
}

#[tokio::test]
async fn raw_requests_get_the_statuses_the_spec_names() {
    let server = Server::start(&["--http-mcp-port", "0"]);
    let url = server.mcp.clone().unwrap();
    let client = reqwest::Client::new();
    let init = json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}});
    let ok = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(ok.headers().contains_key("mcp-session-id"));

    // An unknown session is 404.
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    let unknown = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-session-id", "no-such-session")
        .header("mcp-protocol-version", "2025-06-18")
        .json(&list)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    // A foreign Host is refused (DNS-rebinding protection).
    let rebinding = client
        .post(&url)
        .header("host", "evil.example.com")
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(rebinding.status(), 403);

    // Malformed JSON is a client error, and the server still serves afterwards.
    let malformed = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert!(
        malformed.status().is_client_error(),
        "{}",
        malformed.status()
    );
    let again = client
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&init)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}
