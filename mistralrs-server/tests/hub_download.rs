//! `-m org/name` from a Hugging Face Hub: a local server laid out like the
//! Hub's file API (`/api/models/{repo}/revision/main`, `/{repo}/resolve/main/{file}`
//! with ranges, `x-repo-commit` and `etag` headers) stands in for huggingface.co,
//! which the suite never contacts (HF_ENDPOINT points here).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Server, post};
use serde_json::json;

const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";
const TOKEN: &str = "hf_test_secret_token";

/// Repos by id: file name to the file on disk; gated repos need [`TOKEN`].
struct Hub {
    repos: HashMap<String, Vec<(String, PathBuf)>>,
    gated: Vec<String>,
    requests: AtomicUsize,
}

async fn info(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = match admit(&hub, &org, &name, &headers) {
        Ok(repo) => repo,
        Err(refused) => return *refused,
    };
    match hub.repos.get(&repo) {
        Some(files) => axum::Json(json!({
            "id": repo,
            "sha": COMMIT,
            "siblings": files.iter().map(|(f, _)| json!({"rfilename": f})).collect::<Vec<_>>(),
        }))
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn resolve(
    State(hub): State<Arc<Hub>>,
    UrlPath((org, name, file)): UrlPath<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let repo = match admit(&hub, &org, &name, &headers) {
        Ok(repo) => repo,
        Err(refused) => return *refused,
    };
    let Some(path) = hub
        .repos
        .get(&repo)
        .and_then(|files| files.iter().find(|(f, _)| *f == file))
        .map(|(_, p)| p.clone())
    else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let bytes = std::fs::read(&path).unwrap();
    let size = bytes.len();
    // `bytes=a-b` or `bytes=a-`, as the Hub answers them (206).
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .map(|(a, b)| {
            let start: usize = a.parse().unwrap();
            let end = b.parse::<usize>().map_or(size - 1, |e| e.min(size - 1));
            (start, end)
        });
    let etag = format!("\"{}-{size}\"", file.replace('.', "-"));
    let common = [("x-repo-commit", COMMIT.to_owned()), ("etag", etag)];
    match range {
        Some((start, end)) => {
            let mut response =
                (StatusCode::PARTIAL_CONTENT, bytes[start..=end].to_vec()).into_response();
            for (k, v) in common {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                format!("bytes {start}-{end}/{size}").parse().unwrap(),
            );
            response
        }
        None => {
            let mut response = bytes.into_response();
            for (k, v) in common {
                response.headers_mut().insert(k, v.parse().unwrap());
            }
            response
        }
    }
}

/// Counts the request; the repo id, or 401 for a gated repo without the
/// right bearer token.
fn admit(hub: &Hub, org: &str, name: &str, headers: &HeaderMap) -> Result<String, Box<Response>> {
    hub.requests.fetch_add(1, Ordering::SeqCst);
    let repo = format!("{org}/{name}");
    let authorized = headers
        .get(header::AUTHORIZATION)
        .is_some_and(|v| v.to_str().ok() == Some(&format!("Bearer {TOKEN}")));
    if hub.gated.contains(&repo) && !authorized {
        return Err(Box::new(StatusCode::UNAUTHORIZED.into_response()));
    }
    Ok(repo)
}

/// Serves `hub` on a free loopback port; its URL.
async fn serve(hub: Arc<Hub>) -> String {
    let app = Router::new()
        .route("/api/models/{org}/{name}/revision/main", get(info))
        .route("/{org}/{name}/resolve/main/{*file}", get(resolve))
        .with_state(hub);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The demo model's files, for a repo.
fn demo_files(dir: &Path) -> Vec<(String, PathBuf)> {
    mistralrs_core::demo::write_demo_model(dir).unwrap();
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            )
        })
        .collect()
}

fn smollm2_path() -> PathBuf {
    let dir = std::env::var_os("MISTRALRS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mistralrs/models")
        });
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// A short chat request for `model`.
fn hello(model: &str) -> serde_json::Value {
    json!({"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": "Hi"}]})
}

fn as_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Runs the server expecting it to refuse to start; its stderr.
fn refused(model: &str, extra: &[&str], env: &[(&str, &str)]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_mistralrs-server"))
        .args(["--port", "0", "run", "-m", model])
        .args(extra)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{model} started");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// Two workers: the stand-in Hub answers while the test waits on the server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_download_from_a_hub_once_then_load_from_its_cache() {
    let demo_dir = tempfile::tempdir().unwrap();
    let gguf = smollm2_path();
    let ggufs = vec![
        ("a.gguf".to_owned(), gguf.clone()),
        ("b.gguf".to_owned(), gguf),
    ];
    let hub = Arc::new(Hub {
        repos: HashMap::from([
            ("test-org/demo".to_owned(), demo_files(demo_dir.path())),
            ("test-org/gated".to_owned(), demo_files(demo_dir.path())),
            ("test-org/two-ggufs".to_owned(), ggufs),
        ]),
        gated: vec!["test-org/gated".to_owned()],
        requests: AtomicUsize::new(0),
    });
    let endpoint = serve(Arc::clone(&hub)).await;
    let home = tempfile::tempdir().unwrap();
    let home = home.path().to_str().unwrap().to_owned();
    let env = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, String)> {
        let mut env = vec![("HF_ENDPOINT", endpoint.clone()), ("HF_HOME", home.clone())];
        env.extend(extra.iter().map(|(k, v)| (*k, v.to_string())));
        env
    };

    // Downloaded, then served.
    let first = env(&[]);
    let server = Server::start_model_with_env("test-org/demo", &[], &as_refs(&first));
    let body = hello("demo");
    let (status, answer) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    drop(server);
    let snapshot = Path::new(&home).join(format!("hub/models--test-org--demo/snapshots/{COMMIT}"));
    assert!(snapshot.join("config.json").exists() && snapshot.join("model.safetensors").exists());

    // Offline: from the cache, not one request to the Hub.
    let before = hub.requests.load(Ordering::SeqCst);
    let offline = env(&[("HF_HUB_OFFLINE", "1")]);
    let server = Server::start_model_with_env("test-org/demo", &[], &as_refs(&offline));
    let (status, _) = post(&server, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    drop(server);
    assert_eq!(
        hub.requests.load(Ordering::SeqCst),
        before,
        "offline contacted the Hub"
    );
    let err = refused("test-org/not-cached", &[], &as_refs(&offline));
    assert!(
        err.contains("HF_HUB_OFFLINE") && err.contains("test-org/not-cached"),
        "{err}"
    );

    // Unknown repo, gated repo without and with a token.
    let err = refused("test-org/missing", &[], &as_refs(&first));
    assert!(
        err.contains("test-org/missing") && err.contains("404"),
        "{err}"
    );
    let err = refused("test-org/gated", &[], &as_refs(&first));
    assert!(
        err.contains("access denied") && err.contains("HF_TOKEN"),
        "{err}"
    );
    let with_token = env(&[("HF_TOKEN", TOKEN)]);
    let server = Server::start_model_with_env("test-org/gated", &[], &as_refs(&with_token));
    let gated = hello("gated");
    let (status, answer) = post(&server, "/v1/chat/completions", &gated).await;
    assert_eq!(status, 200, "{answer}");
    drop(server);

    // A repo of several GGUF files needs --gguf-file.
    let err = refused("test-org/two-ggufs", &[], &as_refs(&first));
    assert!(
        err.contains("a.gguf, b.gguf") && err.contains("--gguf-file"),
        "{err}"
    );
    let err = refused(
        "test-org/two-ggufs",
        &["--gguf-file", "c.gguf"],
        &as_refs(&first),
    );
    assert!(err.contains("no GGUF file `c.gguf`"), "{err}");
    let server = Server::start_model_with_env(
        "test-org/two-ggufs",
        &["--gguf-file", "b.gguf", "--name", "smollm2"],
        &as_refs(&first),
    );
    let health = server.health().await;
    assert_eq!(health["models"][0]["name"], "smollm2", "{health}");
}
