//! Tool calling and structured output on `/v1/chat/completions`: the official
//! `openai` client on the demo model (constrained decoding makes the format
//! hold with random weights), SmolLM2 filling a forced call from the question,
//! and the counters.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{Server, post, series};
use serde_json::{Value, json};

fn weather_tool() -> Value {
    json!({"type": "function", "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {"type": "object", "properties": {
            "city": {"type": "string", "description": "The city name"}}, "required": ["city"]}}})
}

#[test]
fn the_official_openai_client_gets_tool_calls_and_parsed_output() {
    let server = Server::start(&[]);
    let stdout = common::run_python("openai_tools.py", &[&server.url("/v1"), "demo"]);
    assert!(stdout.trim_end().ends_with("ok"), "{stdout}");
}

#[tokio::test]
async fn a_call_cut_short_is_text_counted_as_a_parse_failure() {
    let server = Server::start(&[]);
    let failures = "mistralrs_tool_call_parse_failures_total{model=\"demo\",parser=\"hermes\"}";
    let before = series(&server.metrics().await, failures);
    let (status, answer) = post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "weather?"}], "tools": [weather_tool()],
                "tool_choice": "required", "max_tokens": 20}),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let choice = &answer["choices"][0];
    assert_eq!(choice["finish_reason"], "length", "{answer}");
    assert!(choice["message"].get("tool_calls").is_none(), "{answer}");
    assert!(
        choice["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("<tool_call>"),
        "{answer}"
    );
    let after = series(&server.metrics().await, failures);
    assert_eq!(after - before, 1.0);
}

#[tokio::test]
async fn smollm2_fills_a_forced_call_from_the_question_and_reads_the_result() {
    let server = Server::start_model("smollm2", &[]);
    let mut messages =
        vec![json!({"role": "user", "content": "What is the weather like in Paris today?"})];
    let ask = |messages: &[Value], choice: &str| {
        json!({"model": "smollm2", "messages": messages, "tools": [weather_tool()],
               "tool_choice": choice, "parallel_tool_calls": false, "temperature": 0, "max_tokens": 60})
    };
    let (status, answer) = post(&server, "/v1/chat/completions", &ask(&messages, "required")).await;
    assert_eq!(status, 200, "{answer}");
    let message = answer["choices"][0]["message"].clone();
    let calls = message["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{answer}");
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments: Value =
        serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(
        arguments,
        json!({"city": "Paris"}),
        "the city comes from the question"
    );
    assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");

    // The result goes back (the template has no tool support: the call is
    // written into the assistant turn in SmolLM2's format) and the model answers.
    messages.push(message.clone());
    messages.push(json!({"role": "tool", "tool_call_id": calls[0]["id"], "content": "Sunny, 24 degrees Celsius"}));
    let (status, answer) = post(&server, "/v1/chat/completions", &ask(&messages, "none")).await;
    assert_eq!(status, 200, "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(text.contains("24"), "{answer}");
    let metrics = server.metrics().await;
    assert_eq!(
        series(
            &metrics,
            "mistralrs_tool_calls_generated_total{model=\"smollm2\",parser=\"hermes\"}"
        ),
        1.0
    );
}

#[test]
fn a_langchain_agent_runs_a_two_tool_task_on_smollm2() {
    let server = Server::start_model("smollm2", &[]);
    let stdout = common::run_python("langchain_agent.py", &[&server.url("/v1"), "smollm2"]);
    let run: Value = serde_json::from_str(stdout.trim()).unwrap();
    let calls = run["calls"].as_array().unwrap();
    let by_name = |name: &str| calls.iter().find(|c| c["name"] == name).unwrap();
    assert_eq!(
        by_name("get_weather")["args"],
        json!({"city": "Paris"}),
        "{run}"
    );
    assert_eq!(by_name("add")["args"], json!({"a": 2, "b": 3}), "{run}");
    assert_eq!(by_name("add")["result"], 5);
}

#[tokio::test]
async fn mcp_tools_without_upstreams_are_a_clear_400() {
    let server = Server::start(&[]);
    let (status, error) = post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "hi"}], "mcp_tools": ["filesystem__read_text_file"]}),
    )
    .await;
    assert_eq!(status, 400, "{error}");
    assert_eq!(error["error"]["param"], "mcp_tools");
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("forwards no MCP tools"),
        "{error}"
    );
}
