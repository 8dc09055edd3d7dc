//! Three replicas behind nginx (Debian's package, with the shipped
//! `deploy/nginx/mistralrs-locations.conf`) sharing rate limits through Redis:
//! the official clients through the one address, MCP sessions pinned by their
//! id, streams not held in nginx's buffers, a replica dying mid-run, one per-key
//! budget for all replicas, and each client's own address behind the proxy.
#![cfg(feature = "http-mcp-stream")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use common::services::{Nginx, Redis, Upstream};
use common::{Server, authority};
use futures_util::StreamExt;
use serde_json::{Value, json};

const KEY: &str = "replica-key";
const ACCEPT_BOTH: &str = "application/json, text/event-stream";
/// nginx connects to the replicas from here; test clients come from 127.0.0.1.
const PROXY_ADDRESS: &str = "127.0.0.2";

/// The budget test's clients keep both cores busy for seconds; a stream read
/// meanwhile is read late, so the two clusters take turns.
static ONE_CLUSTER_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Three replicas trusting the proxy, limits in `redis`, then nginx over them.
fn cluster(redis: &Redis, rate_limit: &str) -> (Vec<Server>, Nginx) {
    let toml = format!(
        "trusted_proxies = [\"{PROXY_ADDRESS}\"]\n[http_mcp]\napi_keys = [\"{KEY}\", \"other-key\"]\n\
         [http_mcp.rate_limit]\nbackend = \"redis\"\nredis_url = \"{}\"\n{rate_limit}\n",
        redis.url()
    );
    let ids = ["replica-1", "replica-2", "replica-3"];
    let replicas: Vec<Server> = ids
        .iter()
        .map(|id| {
            Server::start_with_config(&["--http-mcp-port", "0", "--replica-id", id], Some(&toml))
        })
        .collect();
    let upstreams: Vec<Upstream> = ids
        .iter()
        .zip(&replicas)
        .map(|(id, r)| Upstream {
            id: (*id).to_owned(),
            openai: authority(&r.base),
            mcp: authority(r.mcp.as_deref().unwrap()),
        })
        .collect();
    let nginx = Nginx::start(&upstreams, PROXY_ADDRESS);
    (replicas, nginx)
}

/// A client connecting from `from`.
fn client_from(from: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(from.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// POSTs a JSON-RPC message to `url` with the key and, when given, a session.
async fn mcp_post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    session: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut request = client
        .post(url)
        .header("accept", ACCEPT_BOTH)
        .header("authorization", format!("Bearer {key}"))
        .json(body);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-06-18");
    }
    request.send().await.unwrap()
}

/// Opens a session through `url` with the key; its id.
async fn open_session(url: &str) -> String {
    let authorization = format!("Bearer {KEY}");
    common::open_session_at(url, "2025-06-18", Some(&authorization))
        .await
        .0
}

/// `tools/list` in `session` through `url`: the HTTP status.
async fn list_tools(url: &str, session: &str) -> u16 {
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    mcp_post(&reqwest::Client::new(), url, KEY, Some(session), &list)
        .await
        .status()
        .as_u16()
}

/// A streamed body as it arrived: each read's text and how long after the
/// response's headers it came.
async fn reads(response: reqwest::Response) -> Vec<(Duration, String)> {
    let headers_at = Instant::now();
    let mut body = response.bytes_stream();
    let mut reads = Vec::new();
    while let Some(chunk) = body.next().await {
        let text = String::from_utf8_lossy(&chunk.unwrap()).into_owned();
        reads.push((headers_at.elapsed(), text));
    }
    reads
}

/// Asserts that the first read holding `marker` came in the first half of the
/// stream's time: an event held in a buffer until the end comes with the last
/// reads. (How many reads a stream fills says nothing: nginx reads at most a
/// page at a time, and a client scheduled late reads many events at once.)
fn assert_came_early(reads: &[(Duration, String)], marker: &str) {
    let first = reads
        .iter()
        .find(|(_, text)| text.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in the stream"));
    let end = reads.last().unwrap().0;
    eprintln!(
        "DEBUG {marker} first {:?} end {end:?} reads {}",
        first.0,
        reads.len()
    );
    assert!(
        first.0 * 2 < end,
        "the first {marker} came at {:?} of a {end:?} stream ({} reads)",
        first.0,
        reads.len()
    );
}

#[tokio::test]
async fn clients_and_sessions_through_nginx_survive_a_replica_dying() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let redis = Redis::start("pw");
    let (mut replicas, nginx) = cluster(&redis, "per_key = 1000");
    let mcp_url = nginx.url("/mcp/stream");

    // The official clients, each through the one address.
    let sdk = common::run_python("mcp_client.py", &[&mcp_url, &nginx.url(""), KEY]);
    assert!(sdk.contains("20"), "negotiated version printed: {sdk}");
    common::run_python("openai_client.py", &[&nginx.url("/v1")]);

    // A streamed chat completion comes through nginx as the model writes it, not
    // at the end from nginx's buffers.
    let stream = reqwest::Client::new()
        .post(nginx.url("/v1/chat/completions"))
        .json(
            &json!({"model": "demo", "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": 200, "ignore_eos": true, "temperature": 0, "stream": true}),
        )
        .send()
        .await
        .unwrap();
    let chunks = reads(stream).await;
    assert_came_early(&chunks, "data:");

    // MCP progress events through nginx arrive before the tool's result.
    let session = open_session(&mcp_url).await;
    let call = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
        "name": "chat", "_meta": {"progressToken": "p1"},
        "arguments": {"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 200,
            "ignore_eos": true}}});
    let response = mcp_post(
        &reqwest::Client::new(),
        &mcp_url,
        KEY,
        Some(&session),
        &call,
    )
    .await;
    let chunks = reads(response).await;
    assert!(
        chunks.last().unwrap().1.contains("\"result\""),
        "ends with the result"
    );
    assert_came_early(&chunks, "notifications/progress");

    // Sessions opened through nginx: each is pinned to the replica that opened it.
    let mut sessions = Vec::new();
    for _ in 0..12 {
        sessions.push(open_session(&mcp_url).await);
    }
    let mut owner = Vec::new();
    for session in &sessions {
        for _ in 0..3 {
            assert_eq!(list_tools(&mcp_url, session).await, 200);
        }
        // Asked directly, exactly one replica knows the session.
        let mut holders = Vec::new();
        for (i, replica) in replicas.iter().enumerate() {
            if list_tools(replica.mcp.as_deref().unwrap(), session).await == 200 {
                holders.push(i);
            }
        }
        assert_eq!(holders.len(), 1, "{holders:?}");
        owner.push(holders[0]);
    }
    let used: std::collections::BTreeSet<_> = owner.iter().copied().collect();
    assert!(used.len() >= 2, "sessions spread over replicas: {owner:?}");

    // The replica holding the most sessions dies.
    let dead = (0..3)
        .max_by_key(|i| owner.iter().filter(|o| *o == i).count())
        .unwrap();
    replicas[dead].child.kill().unwrap();
    replicas[dead].child.wait().unwrap();
    for (session, owner) in sessions.iter().zip(&owner) {
        let status = list_tools(&mcp_url, session).await;
        if *owner == dead {
            // Its clients learn the session is gone, open a new one, carry on.
            assert_eq!(status, 404, "a dead replica's session");
            let again = open_session(&mcp_url).await;
            assert_eq!(list_tools(&mcp_url, &again).await, 200);
        } else {
            assert_eq!(status, 200, "another replica's session saw an error");
        }
    }
    // The official client still works through nginx on the two replicas left.
    common::run_python("mcp_client.py", &[&mcp_url, &nginx.url(""), KEY]);
}

#[tokio::test]
async fn one_per_key_budget_and_each_clients_address_behind_nginx() {
    let _alone = ONE_CLUSTER_AT_A_TIME.lock().await;
    let mut redis = Redis::start("pw");
    // 10 at once, then 10 per second, for all replicas together.
    let (replicas, nginx) = cluster(&redis, "per_key = 10\nburst = 10\nauth_failures_burst = 3");
    let mcp_url = nginx.url("/mcp/stream");

    // Four clients send sessionless requests as fast as answers come, for ~3 s.
    let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
    let started = Instant::now();
    let window = Duration::from_secs(3);
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, list) = (mcp_url.clone(), list.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut passed, mut limited) = (0u32, 0u32);
                while started.elapsed() < window {
                    match mcp_post(&client, &url, KEY, None, &list)
                        .await
                        .status()
                        .as_u16()
                    {
                        429 => limited += 1,
                        200 => passed += 1,
                        other => panic!("status {other}"),
                    }
                }
                (passed, limited)
            })
        })
        .collect();
    let (mut passed, mut limited) = (0, 0);
    for worker in workers {
        let (p, l) = worker.await.unwrap();
        passed += p;
        limited += l;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let expected = 10.0 + 10.0 * elapsed;
    let error = (f64::from(passed) - expected).abs() / expected;
    assert!(
        error <= 0.10,
        "{passed} passed in {elapsed:.2} s (expected {expected:.0}), {limited} limited"
    );
    assert!(
        limited > f64::from(passed) as u32,
        "the clients did push past the limit"
    );

    // Key guessing from 127.0.0.1 spends 127.0.0.1's budget, not the proxy's: a
    // client at 127.0.0.3 behind the same nginx is not blocked, and the guesser
    // can't pass itself off as another address with its own X-Forwarded-For.
    let guesser = client_from("127.0.0.1");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let status = mcp_post(&guesser, &mcp_url, "guess", None, &list)
            .await
            .status();
        statuses.push(status.as_u16());
    }
    assert_eq!(statuses, [401, 401, 401, 429], "a budget of 3 failures");
    let spoofed = guesser
        .post(&mcp_url)
        .header("accept", ACCEPT_BOTH)
        .header("authorization", "Bearer other-key")
        .header("x-forwarded-for", "127.0.0.3")
        .json(&list)
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        spoofed, 429,
        "the guesser is blocked, whatever it claims to be"
    );
    let neighbour = client_from("127.0.0.3");
    let status = mcp_post(&neighbour, &mcp_url, "other-key", None, &list)
        .await
        .status();
    assert_eq!(
        status, 200,
        "another client behind the proxy is not blocked"
    );

    // Redis stops mid-run: requests still pass under each replica's own
    // counters, and the replicas' metrics say so.
    redis.kill();
    for _ in 0..6 {
        let status = mcp_post(&neighbour, &mcp_url, "other-key", None, &list)
            .await
            .status();
        assert_eq!(status, 200);
    }
    let mut fallbacks = 0.0;
    for replica in &replicas {
        let metrics = replica.metrics().await;
        fallbacks += common::series(
            &metrics,
            "mistralrs_rate_limit_fallback_total{policy=\"local\"}",
        );
    }
    assert!(fallbacks >= 6.0, "{fallbacks} fallback checks");
}
