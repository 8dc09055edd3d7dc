//! Bad requests get clear errors, and the router serves models by name.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{engine, greedy};
use mistralrs_core::request::{Prompt, Request};
use mistralrs_core::{Error, Router};

#[tokio::test]
async fn prompts_over_the_context_or_cache_are_refused() {
    let e = engine("ctx", 8, 2); // 128 slots, context 1024
    let long = "word ".repeat(200);
    let err = e.submit(greedy(&long, 4)).unwrap_err();
    assert!(matches!(err, Error::PromptTooLong { .. }), "{err}");
    assert!(err.to_string().contains("KV cache is 128 tokens"), "{err}");
    let big = engine("ctx2", 256, 2);
    let err = big
        .submit(Request::new(Prompt::Tokens(vec![5; 1024])))
        .unwrap_err();
    assert!(err.to_string().contains("context length is 1024"), "{err}");
}

#[tokio::test]
async fn invalid_parameters_are_named() {
    let e = engine("params", 16, 2);
    let mut r = greedy("hi", 4);
    r.sampling.temperature = 9.0;
    assert!(e.submit(r).unwrap_err().to_string().contains("temperature"));
    let r = greedy("hi", 0);
    assert!(e.submit(r).unwrap_err().to_string().contains("max_tokens"));
    let err = e
        .submit(Request::new(Prompt::Tokens(vec![1, 99_999])))
        .unwrap_err();
    assert!(err.to_string().contains("99999"), "{err}");
    let err = e.submit(Request::new(Prompt::Tokens(vec![]))).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");
    let mut r = greedy("hi", 4);
    r.stop = vec![String::new()];
    assert!(e.submit(r).unwrap_err().to_string().contains("stop"));
    assert!(e.is_idle(), "nothing was queued");
}

#[tokio::test]
async fn chat_prompts_use_the_template() {
    let e = engine("chat", 64, 2);
    let messages = vec![serde_json::json!({"role": "user", "content": "Hello!"})];
    let ids = e
        .tokenize(&Prompt::Chat {
            messages: messages.clone(),
            tools: None,
        })
        .unwrap();
    let text = e.info().tokenizer.decode(&ids, false).unwrap();
    assert_eq!(
        text,
        "<|begin_of_text|><|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n"
    );
    let mut r = Request::new(Prompt::Chat {
        messages,
        tools: None,
    });
    r.max_tokens = Some(8);
    let out = e.generate(r).await.unwrap();
    assert_eq!(out.completion.unwrap().usage.prompt_tokens, ids.len());
}

#[tokio::test]
async fn router_serves_models_by_name() {
    let router = Router::new();
    assert!(matches!(router.get(None), Err(Error::UnknownModel(_))));
    router.add(engine("alpha", 32, 2));
    router.add(engine("beta", 32, 2));
    assert_eq!(router.names(), ["alpha", "beta"]);
    assert_eq!(router.get(None).unwrap().info().name, "alpha");
    assert_eq!(router.get(Some("beta")).unwrap().info().name, "beta");
    let err = router.get(Some("gamma")).unwrap_err();
    assert_eq!(err.to_string(), "model `gamma` is not served");
    let out = router
        .get(Some("beta"))
        .unwrap()
        .generate(greedy("hi", 3))
        .await
        .unwrap();
    assert_eq!(out.tokens.len(), 3);
    router.shutdown();
    assert!(matches!(
        router.get(Some("beta")).unwrap().submit(greedy("hi", 3)),
        Err(Error::EngineStopped)
    ));
}

#[tokio::test]
async fn a_full_queue_refuses_new_requests() {
    let e = engine("queue", 64, 1);
    // One running, 64 waiting (max_waiting), then refusal.
    let mut streams = Vec::new();
    let mut refused = None;
    for _ in 0..80 {
        match e.submit(greedy("Once upon a time", 200)) {
            Ok(s) => streams.push(s),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    assert!(matches!(refused, Some(Error::QueueFull(_))), "{refused:?}");
    drop(streams);
    common::eventually("queue drained", || e.is_idle()).await;
}
