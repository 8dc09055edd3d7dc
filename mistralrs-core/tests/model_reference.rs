//! The decoder against Hugging Face transformers on the same weights.
//!
//! `tests/fixtures/reference.json` and the variant checkpoints come from
//! `scripts/make_reference.py` (transformers + torch on the CPU); see its header to
//! regenerate them. Each test reports the largest absolute logit error it saw.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use common::{Runner, argmax};
use mistralrs_core::model::load_decoder;
use serde_json::Value;

const TOLERANCE: f32 = 1e-3;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn reference() -> Value {
    let text = std::fs::read_to_string(fixtures().join("reference.json")).expect("reference.json");
    serde_json::from_str(&text).expect("valid reference.json")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("float") as f32)
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "logit rows differ in length");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn demo_model_matches_transformers() {
    let reference = reference();
    let demo = &reference["demo"];
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    for (file, hash) in demo["files"].as_object().unwrap() {
        let bytes = std::fs::read(dir.path().join(file)).unwrap();
        let got = sha256_hex(&bytes);
        assert_eq!(
            &got,
            hash.as_str().unwrap(),
            "{file} changed since the fixture was made: rerun scripts/make_reference.py"
        );
    }
    let loaded = mistralrs_core::model::load(dir.path(), DType::F32, &Device::Cpu).unwrap();
    let mut worst = 0f32;
    for prompt in demo["prompts"].as_array().unwrap() {
        let text = prompt["text"].as_str().unwrap();
        let want_ids = ids(&prompt["ids"]);
        assert_eq!(
            loaded.tokenizer.encode(text, true).unwrap(),
            want_ids,
            "tokens of {text:?}"
        );

        // Whole prompt in one prefill: last-position logits.
        let mut runner = Runner::new(
            mistralrs_core::model::load_decoder(dir.path(), DType::F32, &Device::Cpu).unwrap(),
        );
        let logits = runner.feed(&want_ids);
        let err = max_abs_diff(&logits, &floats(&prompt["last_logits"]));
        worst = worst.max(err);
        assert!(err < TOLERANCE, "{text:?}: max abs logit error {err}");

        // Greedy continuation through decode steps.
        let mut next = argmax(&logits);
        let mut greedy = vec![next];
        for _ in 1..prompt["greedy"].as_array().unwrap().len() {
            next = argmax(&runner.feed(&[next]));
            greedy.push(next);
        }
        assert_eq!(
            greedy,
            ids(&prompt["greedy"]),
            "greedy continuation of {text:?}"
        );
    }
    eprintln!("demo model: max abs logit error {worst:.2e}");
}

#[test]
fn token_by_token_and_chunked_prefill_agree_with_reference_argmax() {
    let reference = reference();
    let prompt = &reference["demo"]["prompts"][1];
    let want_ids = ids(&prompt["ids"]);
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    let load = || load_decoder(dir.path(), DType::F32, &Device::Cpu).unwrap();

    let mut one_by_one = Runner::new(load());
    let argmaxes: Vec<u32> = want_ids
        .iter()
        .map(|&t| argmax(&one_by_one.feed(&[t])))
        .collect();
    assert_eq!(argmaxes, ids(&prompt["argmax"]), "argmax at every position");

    let mut chunked = Runner::new(load());
    let (a, b) = want_ids.split_at(7); // 7 is not a multiple of the block size
    chunked.feed(a);
    let err = max_abs_diff(&chunked.feed(b), &floats(&prompt["last_logits"]));
    assert!(
        err < TOLERANCE,
        "chunked prefill: max abs logit error {err}"
    );
}

#[test]
fn variants_match_transformers() {
    let reference = reference();
    for variant in reference["variants"].as_array().unwrap() {
        let name = variant["name"].as_str().unwrap();
        let model = load_decoder(
            &fixtures().join("models").join(name),
            DType::F32,
            &Device::Cpu,
        )
        .unwrap();
        let want_ids = ids(&variant["ids"]);
        let tail: Vec<Vec<f32>> = variant["tail_logits"]
            .as_array()
            .unwrap()
            .iter()
            .map(floats)
            .collect();
        let mut runner = Runner::new(model);
        // Prefill all but the last four, then one position at a time.
        let split = want_ids.len() - tail.len();
        let mut got_argmax: Vec<u32> = Vec::new();
        let first = runner.feed(&want_ids[..split]);
        got_argmax.push(argmax(&first));
        let mut worst = 0f32;
        for (i, want) in tail.iter().enumerate() {
            let logits = runner.feed(&want_ids[split + i..split + i + 1]);
            let err = max_abs_diff(&logits, want);
            worst = worst.max(err);
            got_argmax.push(argmax(&logits));
        }
        assert!(worst < TOLERANCE, "{name}: max abs logit error {worst}");
        let want_argmax = ids(&variant["argmax"]);
        assert_eq!(
            got_argmax,
            want_argmax[split - 1..],
            "{name}: argmax of the last positions"
        );
        eprintln!("{name}: max abs logit error {worst:.2e}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
