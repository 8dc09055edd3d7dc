//! The served model calling forwarded MCP tools itself: SmolLM2 reading a file
//! through server-filesystem and adding through server-everything, rounds
//! streamed as events, failures handed to the model as results, the blocked
//! tool refused, and the MCP `chat` tool doing the same under a key's scope.
#![cfg(feature = "tool-forwarding")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Server, node, node_package, post, series};
use serde_json::{Value, json};

/// server-everything and server-filesystem (serving `dir`) as upstreams; the
/// everything server's `get-env` blocked; a key that may use `filesystem` only.
fn config(dir: &Path) -> String {
    format!(
        "[http_mcp]\nauth_method = \"api_key\"\n\
         [mcp_client]\nenabled = true\n\
         [[mcp_client.servers]]\nname = \"everything\"\ncommand = {node:?}\nargs = [{everything:?}]\n\
         [[mcp_client.servers]]\nname = \"filesystem\"\ncommand = {node:?}\nargs = [{filesystem:?}, {dir:?}]\n\
         [tool_forwarding.security]\nblocked_tools = [\"everything__get-env\"]\n\
         [[tool_forwarding.security.key_scopes]]\nkey_env = \"TEST_FILES_KEY\"\nnamespaces = [\"filesystem\"]\n",
        node = node(),
        everything = node_package("@modelcontextprotocol/server-everything", "dist/index.js"),
        filesystem = node_package("@modelcontextprotocol/server-filesystem", "dist/index.js"),
        dir = dir.display().to_string(),
    )
}

/// SmolLM2 with both upstreams up; the folder they may read.
async fn gateway() -> (Server, PathBuf) {
    gateway_with("").await
}

/// [`gateway`] with more of the config file.
/// The shared folder has a fixed name of plain words: the small model copies
/// the path from the question, and a random temporary name trips it up.
async fn gateway_with(extra_config: &str) -> (Server, PathBuf) {
    let dir = std::env::temp_dir().join("share");
    std::fs::create_dir_all(&dir).unwrap();
    let real = dir.canonicalize().unwrap();
    std::fs::write(real.join("notes.txt"), "the secret word is pelican").unwrap();
    let server = Server::start_model_with_config(
        "smollm2",
        &["--http-mcp-port", "0"],
        &format!("{}{extra_config}", config(&real)),
        &[
            ("TEST_FILES_KEY", "files-only"),
            ("MISTRALRS_MCP_API_KEYS", "full-access"),
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = server.health().await;
        let up = health["mcp_upstreams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|u| u["status"] == "up");
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "upstreams not up: {health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (server, real)
}

/// A greedy one-call request: the question, the tools, one round of calls.
fn ask(question: &str, mcp: Value) -> Value {
    let mut body = json!({"model": "smollm2", "messages": [{"role": "user", "content": question}],
        "tool_choice": "required", "parallel_tool_calls": false, "max_tool_rounds": 1,
        "temperature": 0, "max_tokens": 60});
    let object = body.as_object_mut().unwrap();
    for (key, value) in mcp.as_object().unwrap() {
        object.insert(key.clone(), value.clone());
    }
    body
}

/// An unconstrained (`auto`) request with `everything__echo` offered, after
/// an earlier exchange: `(question, tool, arguments, result)`, then `question`.
fn after_an_earlier_call(earlier: (&str, &str, &str, &str), question: &str) -> Value {
    let (asked, tool, arguments, result) = earlier;
    let messages = json!([
        {"role": "user", "content": asked},
        {"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": tool, "arguments": arguments}}]},
        {"role": "tool", "tool_call_id": "c1", "content": result},
        {"role": "user", "content": question}]);
    json!({"model": "smollm2", "messages": messages, "mcp_tools": ["everything__echo"],
        "max_tool_rounds": 1, "temperature": 0, "max_tokens": 60})
}

#[tokio::test]
async fn smollm2_reads_a_file_through_the_gateway_and_answers_from_it() {
    let (server, dir) = gateway().await;
    let path = dir.join("notes.txt");
    let question = format!(
        "Read the file {} and tell me the secret word.",
        path.display()
    );
    let body = ask(
        &question,
        json!({"mcp_tools": ["filesystem__read_text_file"]}),
    );
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    let calls = choice["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["name"], "filesystem__read_text_file");
    assert_eq!(calls[0]["is_error"], false, "{answer}");
    assert!(
        calls[0]["content"].as_str().unwrap().contains("pelican"),
        "{answer}"
    );
    let text = choice["message"]["content"].as_str().unwrap();
    assert!(
        text.contains("pelican"),
        "the answer uses the file: {answer}"
    );
    // One round used up: the answer came with the tools withheld.
    assert_eq!(choice["finish_reason"], "length");

    let metrics = server.metrics().await;
    let forwarded = "mistralrs_tool_calls_total{namespace=\"filesystem\",outcome=\"ok\",tool=\"read_text_file\"}";
    assert_eq!(
        series(&metrics, forwarded),
        1.0,
        "the forwarder counted the call"
    );
    assert_eq!(
        series(
            &metrics,
            "mistralrs_model_tool_rounds_count{model=\"smollm2\"}"
        ),
        1.0
    );
    assert_eq!(
        series(
            &metrics,
            "mistralrs_model_tool_seconds_count{model=\"smollm2\"}"
        ),
        1.0
    );
}

#[tokio::test]
async fn streamed_rounds_show_each_call_and_its_result_then_the_answer() {
    let (server, _dir) = gateway().await;
    let mut body = ask(
        "What is 2 plus 3?",
        json!({"tools": [{"type": "mcp", "server_label": "everything"}],
        "tool_choice": {"type": "function", "function": {"name": "everything__get-sum"}}}),
    );
    body["stream"] = json!(true);
    let response = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(events.last(), Some(&"[DONE]"), "{text}");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let position = |key: &str| chunks.iter().position(|c| c.get(key).is_some());
    let (call, result) = (
        position("mcp_tool_call").unwrap(),
        position("mcp_tool_result").unwrap(),
    );
    assert!(call < result, "{text}");
    assert_eq!(chunks[call]["mcp_tool_call"]["name"], "everything__get-sum");
    let arguments: Value =
        serde_json::from_str(chunks[call]["mcp_tool_call"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(arguments, json!({"a": 2, "b": 3}), "{text}");
    assert_eq!(
        chunks[result]["mcp_tool_result"]["id"],
        chunks[call]["mcp_tool_call"]["id"]
    );
    assert!(
        chunks[result]["mcp_tool_result"]["content"]
            .as_str()
            .unwrap()
            .contains('5'),
        "{text}"
    );
    let answer: String = chunks[result..]
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(
        answer.contains('5'),
        "the answer follows the result: {answer:?}"
    );
    assert!(
        chunks.last().unwrap()["choices"][0]["finish_reason"].is_string(),
        "{text}"
    );
}

#[tokio::test]
async fn failed_calls_are_results_the_model_reads_and_refused_tools_are_400s() {
    let (server, _dir) = gateway().await;
    // Outside the allowed folder: the upstream refuses, the model reads why.
    let body = ask(
        "Read the file /etc/hostname.",
        json!({"mcp_tools": ["filesystem__read_text_file"]}),
    );
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let call = &answer["choices"][0]["mcp_tool_calls"][0];
    assert_eq!(call["is_error"], true, "{answer}");
    assert!(
        call["content"].as_str().unwrap().contains("denied"),
        "{answer}"
    );

    for (mcp, param, says) in [
        (
            json!({"mcp_tools": ["everything__get-env"]}),
            "mcp_tools",
            "not a forwarded tool",
        ),
        (
            json!({"mcp_tools": ["nobody__nothing"]}),
            "mcp_tools",
            "not a forwarded tool",
        ),
        (
            json!({"tools": [{"type": "mcp", "server_label": "nobody"}]}),
            "tools",
            "offers no tools",
        ),
        (json!({"tools": [{"type": "mcp"}]}), "tools", "server_label"),
        (
            json!({"mcp_tools": ["everything__echo"], "max_tool_rounds": 99}),
            "max_tool_rounds",
            "at most 20",
        ),
    ] {
        let (status, error) = post(&server, "/v1/chat/completions", &ask("hi", mcp.clone())).await;
        assert_eq!(status, 400, "{mcp}: {error}");
        assert_eq!(error["error"]["param"], param, "{error}");
        assert!(
            error["error"]["message"].as_str().unwrap().contains(says),
            "{error}"
        );
    }
}

/// `tools/call chat` on the MCP endpoint as one stateless JSON-RPC request.
async fn mcp_chat(server: &Server, key: &str, arguments: Value) -> Value {
    let response = reqwest::Client::new()
        .post(server.mcp.clone().unwrap())
        .bearer_auth(key)
        .header("Accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "chat", "arguments": arguments}}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["result"].clone()
}

#[tokio::test]
async fn the_mcp_chat_tool_runs_forwarded_tools_within_the_callers_scope() {
    let (server, _dir) = gateway().await;
    let arguments = ask(
        "What is 2 plus 3?",
        json!({"mcp_tools": ["everything__get-sum"]}),
    );
    let result = mcp_chat(&server, "full-access", arguments.clone()).await;
    assert_eq!(result["isError"], false, "{result}");
    let calls = result["structuredContent"]["mcp_tool_calls"]
        .as_array()
        .unwrap();
    assert_eq!(calls[0]["name"], "everything__get-sum", "{result}");
    assert!(
        calls[0]["content"].as_str().unwrap().contains('5'),
        "{result}"
    );
    // A key scoped to `filesystem` can't hand the model `everything`'s tools.
    let refused = mcp_chat(&server, "files-only", arguments).await;
    assert_eq!(refused["isError"], true, "{refused}");
    assert!(
        refused["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("not a forwarded tool"),
        "{refused}"
    );
}

#[tokio::test]
async fn a_models_configured_tools_are_offered_when_a_request_names_none() {
    // `nobody__nothing` is not available: left out, the chat still runs.
    let models = "[[models]]\nmodel = \"smollm2\"\nmcp_tools = [\"everything__get-sum\", \"nobody__nothing\"]\n";
    let (server, _dir) = gateway_with(models).await;
    let (status, answer) = post(
        &server,
        "/v1/chat/completions",
        &ask("What is 2 plus 3?", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let calls = answer["choices"][0]["mcp_tool_calls"].as_array().unwrap();
    assert_eq!(calls[0]["name"], "everything__get-sum", "{answer}");
    assert_eq!(calls[0]["is_error"], false, "{answer}");
}

#[tokio::test]
async fn a_blocked_tool_the_model_calls_anyway_is_refused_as_a_result() {
    let (server, _dir) = gateway().await;
    // An earlier turn used `get-env` (blocked by the policy): the model calls it again.
    let earlier = (
        "Show me the environment.",
        "everything__get-env",
        "{}",
        "PATH=/usr/bin",
    );
    let body = after_an_earlier_call(earlier, "Show me the environment again.");
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let call = &answer["choices"][0]["mcp_tool_calls"][0];
    assert_eq!(call["name"], "everything__get-env", "{answer}");
    assert_eq!(call["is_error"], true, "{answer}");
    assert!(
        call["content"]
            .as_str()
            .unwrap()
            .contains("not one of the tools offered"),
        "{answer}"
    );
    let metrics = server.metrics().await;
    let ok = "mistralrs_tool_calls_total{namespace=\"everything\",outcome=\"ok\",tool=\"get-env\"}";
    assert_eq!(series(&metrics, ok), 0.0, "the upstream never saw the call");
}

#[tokio::test]
async fn the_answer_carries_what_echo_returned() {
    let (server, _dir) = gateway().await;
    let body = ask(
        "Echo the word flamingo.",
        json!({"mcp_tools": ["everything__echo"]}),
    );
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let call = &answer["choices"][0]["mcp_tool_calls"][0];
    assert_eq!(call["name"], "everything__echo", "{answer}");
    let returned = call["content"].as_str().unwrap();
    assert!(returned.starts_with("Echo: "), "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        text.contains(returned),
        "the answer repeats the result: {answer}"
    );
}

#[tokio::test]
async fn arguments_that_fail_the_tools_schema_are_a_result_the_model_reads() {
    let (server, _dir) = gateway().await;
    // Unconstrained (`auto`), the model copies an earlier call's wrong key.
    let earlier = (
        "Echo hello.",
        "everything__echo",
        "{\"text\": \"hello\"}",
        "Echo: hello",
    );
    let body = after_an_earlier_call(earlier, "Echo goodbye.");
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let call = &answer["choices"][0]["mcp_tool_calls"][0];
    assert_eq!(call["is_error"], true, "{answer}");
    let says = call["content"].as_str().unwrap();
    assert!(
        says.contains("\"message\" is a required property"),
        "{answer}"
    );
}
