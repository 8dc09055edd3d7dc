//! Continuous batching gives each sequence the output it gets alone, and the KV
//! cache is returned in full: after completion, cancellation and preemption.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::{PROMPTS, engine, engine_with, eventually, greedy};
use mistralrs_core::model::FloatType;
use mistralrs_core::request::{Event, FinishReason, Prompt, Request};

#[tokio::test]
async fn eight_prompts_at_once_match_each_alone_and_free_every_block() {
    let solo_engine = engine("solo", 256, 1);
    let mut alone = Vec::new();
    for p in PROMPTS {
        alone.push(solo_engine.generate(greedy(p, 24)).await.unwrap());
    }
    let batch_engine = engine("batch", 256, 8);
    let handles: Vec<_> = PROMPTS
        .iter()
        .map(|p| {
            let e = batch_engine.clone();
            let r = greedy(p, 24);
            tokio::spawn(async move { e.generate(r).await })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let together = h.await.unwrap().unwrap();
        let ids = |o: &mistralrs_core::Output| o.tokens.iter().map(|t| t.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&together),
            ids(&alone[i]),
            "prompt {i}: {:?}",
            PROMPTS[i]
        );
        assert_eq!(together.text, alone[i].text);
        let c = together.completion.unwrap();
        assert_eq!(
            (c.finish_reason, c.usage.completion_tokens),
            (FinishReason::Length, 24)
        );
    }
    let stats = batch_engine.stats();
    assert_eq!(
        stats.blocks.free, stats.blocks.total,
        "every KV block is free again"
    );
    assert_eq!((stats.running, stats.waiting), (0, 0));
}

#[tokio::test]
async fn cancelling_mid_generation_returns_the_blocks() {
    let e = engine("cancel", 64, 4);
    let mut stream = e.submit(greedy("Once upon a time", 900)).unwrap();
    let mut seen = 0;
    while seen < 5 {
        if let Some(Event::Token(_)) = stream.next_event().await {
            seen += 1;
        }
    }
    assert!(e.stats().blocks.free < 64, "the sequence holds blocks");
    stream.cancel();
    let last = loop {
        match stream.next_event().await.expect("a final event") {
            Event::Token(_) => continue,
            other => break other,
        }
    };
    let Event::Done(done) = last else {
        panic!("expected Done, got {last:?}")
    };
    assert_eq!(done.finish_reason, FinishReason::Cancelled);
    assert!(done.usage.completion_tokens >= 5);
    eventually("blocks returned", || e.stats().blocks.free == 64).await;
}

#[tokio::test]
async fn dropping_the_stream_cancels() {
    let e = engine("drop", 64, 4);
    let mut stream = e.submit(greedy("Hello! How are you today?", 900)).unwrap();
    assert!(matches!(stream.next_event().await, Some(Event::Token(_))));
    drop(stream);
    eventually("blocks returned after drop", || {
        e.is_idle() && e.stats().blocks.free == 64
    })
    .await;
}

#[tokio::test]
async fn shared_prefix_hits_the_prefix_cache() {
    let e = engine("prefix", 128, 4);
    let prefix = "The cache keeps the keys and the values of every token that the model has already seen, so that the next step does not compute them again. ";
    let first = e
        .generate(greedy(&format!("{prefix}First question?"), 4))
        .await
        .unwrap();
    let before = e.stats().blocks;
    let second = e
        .generate(greedy(&format!("{prefix}Second question!"), 4))
        .await
        .unwrap();
    let after = e.stats().blocks;
    let cached = second.completion.unwrap().usage.cached_prompt_tokens;
    let block = e.block_size();
    assert!(
        cached >= 2 * block,
        "at least two full blocks reused, got {cached} tokens"
    );
    assert_eq!(first.completion.unwrap().usage.cached_prompt_tokens, 0);
    assert_eq!(
        after.prefix_hits - before.prefix_hits,
        (cached / block) as u64
    );
    // A prompt made only of cached full blocks: all but its last token come from
    // the cache, and that token is recomputed in a private copy of the shared block.
    let tokens = e
        .tokenize(&Prompt::Text(format!("{prefix}Second question!")))
        .unwrap();
    let exact = tokens[..3 * block].to_vec();
    let token_request = |ids: Vec<u32>| {
        let mut r = Request::new(Prompt::Tokens(ids));
        (r.max_tokens, r.ignore_eos) = (Some(8), true);
        r
    };
    let again = e.generate(token_request(exact.clone())).await.unwrap();
    let usage = again.completion.unwrap().usage;
    assert_eq!(usage.cached_prompt_tokens, 3 * block - 1);
    let fresh = engine("fresh", 128, 4)
        .generate(token_request(exact))
        .await
        .unwrap();
    assert_eq!(
        again.text, fresh.text,
        "cached keys and values give the same output"
    );
    let stats = e.stats().blocks;
    assert_eq!(stats.free, stats.total);
}

#[tokio::test]
async fn preemption_under_block_pressure_keeps_outputs_exact() {
    // 12 blocks of 16 slots: four sequences growing to ~70 tokens cannot all fit.
    let roomy = engine("roomy", 256, 4);
    let tight = engine("tight", 12, 4);
    let prompts = &PROMPTS[..4];
    let mut alone = Vec::new();
    for p in prompts {
        alone.push(roomy.generate(greedy(p, 48)).await.unwrap().text);
    }
    let handles: Vec<_> = prompts
        .iter()
        .map(|p| {
            let e = tight.clone();
            let r = greedy(p, 48);
            tokio::spawn(async move { e.generate(r).await })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.await.unwrap().unwrap().text, alone[i], "prompt {i}");
    }
    let stats = tight.stats();
    assert!(stats.preemptions > 0, "the tight cache forced preemption");
    assert_eq!(stats.blocks.free, 12);
}

#[tokio::test]
async fn stop_strings_end_the_text_before_them() {
    let e = engine("stop", 64, 2);
    let full = e
        .generate(greedy("Once upon a time", 24))
        .await
        .unwrap()
        .text;
    // Stop at a piece from the middle of the greedy output.
    let mid = full
        .char_indices()
        .nth(full.chars().count() / 2)
        .map(|(i, _)| i)
        .unwrap();
    let stop: String = full[mid..].chars().take(3).collect();
    let cut = full.find(&stop).unwrap();
    let mut r = greedy("Once upon a time", 24);
    r.stop = vec![stop.clone()];
    let out = e.generate(r).await.unwrap();
    assert_eq!(out.text, full[..cut], "stop {stop:?}");
    assert_eq!(out.completion.unwrap().finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn seeded_sampling_is_reproducible_and_logprobs_are_reported() {
    let e = engine("seed", 64, 4);
    let request = |seed| {
        let mut r = greedy("Hello!", 16);
        r.sampling.temperature = 1.0;
        r.sampling.top_p = 0.95;
        r.sampling.seed = Some(seed);
        r.sampling.logprobs = Some(3);
        r
    };
    let a = e.generate(request(1)).await.unwrap();
    let b = e.generate(request(1)).await.unwrap();
    let c = e.generate(request(2)).await.unwrap();
    let ids = |o: &mistralrs_core::Output| o.tokens.iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    assert_ne!(ids(&a), ids(&c));
    for t in &a.tokens {
        assert_eq!(t.top_logprobs.len(), 3);
        let lp = t.logprob.unwrap();
        assert!(lp <= 0.0 && lp >= t.top_logprobs[2].2 - 50.0);
        assert!(
            t.top_logprobs[0].2 >= lp,
            "the best alternative is at least as likely"
        );
    }
}

#[tokio::test]
async fn chunked_prefill_over_many_steps_gives_the_same_output() {
    let long = PROMPTS.join(" ");
    let whole = engine("whole", 64, 4)
        .generate(greedy(&long, 16))
        .await
        .unwrap();
    // 8 tokens per step: the ~100-token prompt is read over a dozen steps while
    // a second request decodes beside it.
    let chunked = engine_with("chunked", 64, 4, 8, FloatType::F32);
    let other = {
        let e = chunked.clone();
        tokio::spawn(async move { e.generate(greedy("Hello!", 40)).await.unwrap() })
    };
    let out = chunked.generate(greedy(&long, 16)).await.unwrap();
    assert!(whole.completion.unwrap().usage.prompt_tokens > 80);
    assert_eq!(out.text, whole.text);
    assert_eq!(other.await.unwrap().tokens.len(), 40);
}

#[tokio::test]
async fn bf16_weights_and_cache_run_and_agree_with_f32_on_the_first_token() {
    let f32_out = engine("f32", 64, 2)
        .generate(greedy("Once upon a time", 8))
        .await
        .unwrap();
    let bf16_out = engine_with("bf16", 64, 2, 256, FloatType::Bf16)
        .generate(greedy("Once upon a time", 8))
        .await
        .unwrap();
    assert_eq!(bf16_out.tokens.len(), 8);
    // bf16 keeps 8 bits of mantissa: the first greedy token should survive it.
    assert_eq!(bf16_out.tokens[0].id, f32_out.tokens[0].id);
}
