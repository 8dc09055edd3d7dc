//! The OpenAI API of the real binary over HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{Server, post, post_raw, sse_data};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn chat(content: &str, max_tokens: usize) -> Value {
    json!({"model": "demo", "messages": [{"role": "user", "content": content}], "temperature": 0, "max_tokens": max_tokens})
}

#[tokio::test]
async fn chat_streaming_and_not_agree_and_report_usage() {
    let server = Server::start(&[]);
    let (status, body) = post(&server, "/v1/chat/completions", &chat("Hello!", 12)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["finish_reason"], "length");
    let text = choice["message"]["content"].as_str().unwrap().to_owned();
    assert_eq!(body["usage"]["completion_tokens"], 12);
    let prompt_tokens = body["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(prompt_tokens > 5);
    assert_eq!(
        body["usage"]["total_tokens"].as_u64().unwrap(),
        prompt_tokens + 12
    );

    let mut streaming = chat("Hello!", 12);
    streaming["stream"] = json!(true);
    streaming["stream_options"] = json!({"include_usage": true});
    let resp = post_raw(&server, "/v1/chat/completions", &streaming).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let data = sse_data(&resp.text().await.unwrap());
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text, "greedy streaming equals non-streaming");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 12);
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
}

#[tokio::test]
async fn completions_with_logprobs_models_and_health() {
    let server = Server::start(&[]);
    let req = json!({"model": "demo", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0, "logprobs": 2});
    let (status, body) = post(&server, "/v1/completions", &req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "text_completion");
    let lp = &body["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), 6);
    assert_eq!(lp["top_logprobs"][0].as_object().unwrap().len(), 2);
    assert!(lp["token_logprobs"][0].as_f64().unwrap() <= 0.0);

    let mut streaming = req.clone();
    streaming["stream"] = json!(true);
    let text = post_raw(&server, "/v1/completions", &streaming)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let streamed: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| c["choices"][0]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(streamed, body["choices"][0]["text"].as_str().unwrap());

    let models: Value = reqwest::get(server.url("/v1/models"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"][0]["id"], "demo");
    let health = server.health().await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["models"][0]["kv_cache_blocks_total"], 512);
}

#[tokio::test]
async fn concurrent_clients_get_their_own_answers() {
    let server = Server::start(&[]);
    let prompts = [
        "Hello!",
        "What is the weather?",
        "Tell me a story",
        "fn main()",
        "Café",
        "Numbers: 1 2 3",
    ];
    let mut alone = Vec::new();
    for p in prompts {
        alone.push(post(&server, "/v1/chat/completions", &chat(p, 16)).await.1["choices"][0]["message"]["content"].clone());
    }
    let bodies: Vec<Value> = prompts.iter().map(|p| chat(p, 16)).collect();
    let together = futures_util::future::join_all(
        bodies
            .iter()
            .map(|b| post(&server, "/v1/chat/completions", b)),
    )
    .await;
    for (i, (status, body)) in together.into_iter().enumerate() {
        assert_eq!(status, 200);
        assert_eq!(
            body["choices"][0]["message"]["content"], alone[i],
            "prompt {i}"
        );
    }
}

#[tokio::test]
async fn a_streaming_client_that_disconnects_frees_its_blocks() {
    let server = Server::start(&[]);
    let mut req = chat("Once upon a time", 900);
    req["stream"] = json!(true);
    req["ignore_eos"] = json!(true);
    let resp = post_raw(&server, "/v1/chat/completions", &req).await;
    let mut body = resp.bytes_stream();
    let mut received = 0;
    while received < 2000 {
        received += body.next().await.unwrap().unwrap().len();
    }
    let busy = server.health().await;
    assert_eq!(busy["models"][0]["running"], 1, "{busy}");
    drop(body);
    server.wait_all_blocks_free().await;
}

#[tokio::test]
async fn bad_requests_get_openai_errors_with_the_right_status() {
    let server = Server::start(&[]);
    let client = reqwest::Client::new();
    let url = server.url("/v1/chat/completions");
    let send_raw = |body: &'static str, content_type: &'static str| {
        client
            .post(&url)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let check = |status: u16, body: &Value, want: u16, needle: &str| {
        assert_eq!(status, want, "{body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "want {needle:?} in {body}");
        assert!(body["error"]["type"].is_string(), "{body}");
    };

    let r = send_raw("{not json", "application/json").await.unwrap();
    check(r.status().as_u16(), &r.json().await.unwrap(), 400, "");
    let r = send_raw(r#"{"messages": "hi"}"#, "application/json")
        .await
        .unwrap();
    check(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        400,
        "messages",
    );
    let r = send_raw(r#"{"messages": []}"#, "text/plain").await.unwrap();
    check(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        415,
        "Content-Type",
    );
    let huge = format!(
        r#"{{"messages": [{{"role": "user", "content": "{}"}}]}}"#,
        "x".repeat(5 << 20)
    );
    let r = client
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    // The rest of the body is unread: the connection must not be reused.
    assert_eq!(r.headers()["connection"], "close");
    check(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        413,
        "too large",
    );

    let (s, b) = post(
        &server,
        "/v1/chat/completions",
        &json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    check(s, &b, 404, "nope");
    assert_eq!(b["error"]["code"], "model_not_found");
    let long = "word ".repeat(1500);
    let (s, b) = post(&server, "/v1/chat/completions", &chat(&long, 4)).await;
    check(s, &b, 400, "context length");
    assert_eq!(b["error"]["code"], "context_length_exceeded");
    let mut r = chat("hi", 4);
    r["temperature"] = json!(5);
    let (s, b) = post(&server, "/v1/chat/completions", &r).await;
    check(s, &b, 400, "temperature");
    let mut r = chat("hi", 4);
    r["n"] = json!(2);
    let (s, b) = post(&server, "/v1/chat/completions", &r).await;
    check(s, &b, 400, "n = 1");
    let (s, b) = post(
        &server,
        "/v1/chat/completions",
        &json!({"messages": [{"content": "no role"}]}),
    )
    .await;
    check(s, &b, 400, "role");
    let (s, b) = post(&server, "/v1/completions", &json!({"prompt": ["a", "b"]})).await;
    check(s, &b, 400, "one prompt");
    let r = client.get(server.url("/v1/nothing")).send().await.unwrap();
    check(
        r.status().as_u16(),
        &r.json().await.unwrap(),
        404,
        "no such path",
    );
    let r = client.get(&url).send().await.unwrap();
    check(r.status().as_u16(), &r.json().await.unwrap(), 405, "method");

    // After all that, the server still answers.
    let (s, _) = post(&server, "/v1/chat/completions", &chat("hi", 2)).await;
    assert_eq!(s, 200);
}

/// A client that sends all of an oversized body before it reads the answer
/// still reads its 413: the server drains what it did not read instead of
/// closing with data unread, which would reset the connection and destroy the
/// answer in the client's buffer.
#[tokio::test]
async fn an_oversized_body_sent_in_full_still_gets_its_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = Server::start(&[]);
    let authority = server.base.trim_start_matches("http://").to_owned();
    let total = 6 << 20;
    let mut stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {authority}\r\n\
         Content-Type: application/json\r\nContent-Length: {total}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // Past the 4 MiB limit, then a pause in which the server answers, then the rest.
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..5 {
        stream.write_all(&chunk).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stream.write_all(&chunk).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("too large"), "{answer}");
}

#[tokio::test]
async fn a_full_queue_answers_503() {
    let server = Server::start_with_config(&[], Some("max_seqs = 1\nmax_waiting = 1\n"));
    let mut long = chat("Once upon a time", 300);
    long["ignore_eos"] = json!(true);
    let requests: Vec<_> = (0..4)
        .map(|_| post(&server, "/v1/chat/completions", &long))
        .collect();
    let results = futures_util::future::join_all(requests).await;
    let statuses: Vec<u16> = results.iter().map(|(s, _)| *s).collect();
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let rejected = results.iter().find(|(s, _)| *s == 503).unwrap();
    assert_eq!(rejected.1["error"]["code"], "overloaded");
    let retry = reqwest::Client::new()
        .post(server.url("/v1/chat/completions"))
        .json(&long);
    let (a, b, c) = tokio::join!(
        retry.try_clone().unwrap().send(),
        retry.try_clone().unwrap().send(),
        retry.send()
    );
    let refused = [a.unwrap(), b.unwrap(), c.unwrap()]
        .into_iter()
        .find(|r| r.status() == 503)
        .expect("one of three is refused with one running and one waiting");
    assert_eq!(
        refused.headers()["retry-after"],
        "1",
        "a 503 says when to retry"
    );
}

#[tokio::test]
async fn tools_reach_the_chat_template_unless_tool_choice_is_none() {
    let server = Server::start(&[]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]);
    let prompt_tokens = |body: Value| {
        let server = &server;
        async move {
            post(server, "/v1/chat/completions", &body).await.1["usage"]["prompt_tokens"]
                .as_u64()
                .unwrap()
        }
    };
    let plain = prompt_tokens(chat("Weather?", 1)).await;
    let mut with_tools = chat("Weather?", 1);
    with_tools["tools"] = tools.clone();
    let mut none = with_tools.clone();
    none["tool_choice"] = json!("none");
    assert!(
        prompt_tokens(with_tools).await > plain + 10,
        "the tool definitions are in the prompt"
    );
    assert_eq!(prompt_tokens(none).await, plain);
}
