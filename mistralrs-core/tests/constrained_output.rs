//! Constrained decoding: whatever the (random-weight) demo model prefers, a
//! constrained output parses and matches its schema or grammar.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use common::engine;
use mistralrs_core::constraint::OutputConstraint;
use mistralrs_core::request::{FinishReason, Prompt, Request};
use serde_json::{Value, json};

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "enum": ["Paris", "Tokyo", "Lima"]},
            "population": {"type": "integer", "minimum": 0, "maximum": 99999},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
            "capital": {"type": "boolean"}
        },
        "required": ["city", "population", "tags", "capital"],
        "additionalProperties": false
    })
}

/// A sampled (temperature 1) chat request, so each seed walks another path.
fn sampled(seed: u64, constraint: Option<OutputConstraint>) -> Request {
    let mut r = Request::new(Prompt::Chat {
        messages: vec![json!({"role": "user", "content": "Describe a city as JSON."})],
        tools: None,
    });
    r.sampling.temperature = 1.0;
    r.sampling.seed = Some(seed);
    r.max_tokens = Some(160);
    r.constraint = constraint;
    r
}

#[tokio::test]
async fn every_sampled_output_matches_its_json_schema() {
    let e = engine("schema", 64, 4);
    let validator = jsonschema::validator_for(&schema()).unwrap();
    for seed in 0..8 {
        let constraint = Some(OutputConstraint::JsonSchema(schema()));
        let out = e.generate(sampled(seed, constraint)).await.unwrap();
        let value: Value = serde_json::from_str(&out.text)
            .unwrap_or_else(|err| panic!("seed {seed}: {err}: {:?}", out.text));
        assert!(validator.is_valid(&value), "seed {seed}: {value}");
        assert_eq!(
            out.completion.unwrap().finish_reason,
            FinishReason::Stop,
            "seed {seed}: a complete value ends the output"
        );
    }
    // The same seeds without the constraint: the demo model writes no JSON.
    let mut parsed = 0;
    for seed in 0..8 {
        let out = e.generate(sampled(seed, None)).await.unwrap();
        parsed += usize::from(serde_json::from_str::<Value>(&out.text).is_ok());
    }
    assert_eq!(parsed, 0, "unconstrained output parsed as JSON");
}

#[tokio::test]
async fn json_object_and_lark_grammars_hold() {
    let e = engine("grammars", 64, 4);
    // Any object: free strings, which a random model may not close within
    // `max_tokens` (then the output is cut, `length`); every finished one parses.
    let mut finished = 0;
    for seed in 0..6 {
        let out = e
            .generate(sampled(seed, Some(OutputConstraint::JsonObject)))
            .await
            .unwrap();
        assert!(out.text.starts_with('{'), "{:?}", out.text);
        if out.completion.unwrap().finish_reason == FinishReason::Stop {
            let value: Value = serde_json::from_str(&out.text)
                .unwrap_or_else(|err| panic!("seed {seed}: {err}: {:?}", out.text));
            assert!(value.is_object(), "{value}");
            finished += 1;
        }
    }
    assert!(finished >= 2, "only {finished} of 6 objects finished");
    let lark = r#"start: answer " because " reason
answer: "yes" | "no"
reason: /[a-z]{1,8}/"#;
    for seed in 0..4 {
        let out = e
            .generate(sampled(seed, Some(OutputConstraint::Lark(lark.into()))))
            .await
            .unwrap();
        let (answer, reason) = out.text.split_once(" because ").unwrap();
        assert!(answer == "yes" || answer == "no", "{:?}", out.text);
        assert!(
            (1..=8).contains(&reason.len()) && reason.bytes().all(|b| b.is_ascii_lowercase()),
            "{:?}",
            out.text
        );
    }
}

#[tokio::test]
async fn grammars_the_engine_refuses_are_invalid_requests() {
    let e = engine("bad-grammars", 16, 2);
    for (constraint, expect) in [
        (
            OutputConstraint::JsonSchema(json!({"type": "integer", "minimum": 5, "maximum": 1})),
            "can't be compiled",
        ),
        (
            OutputConstraint::JsonSchema(json!({"type": "no-such-type"})),
            "can't be compiled",
        ),
        (
            OutputConstraint::Lark("start: undefined_rule".into()),
            "can't be compiled",
        ),
    ] {
        let err = e.submit(sampled(1, Some(constraint.clone()))).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, mistralrs_core::Error::InvalidRequest(_)) && message.contains(expect),
            "{constraint:?}: {message}"
        );
    }
    assert!(e.is_idle(), "nothing was queued");
}
