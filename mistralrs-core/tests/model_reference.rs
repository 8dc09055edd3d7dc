//! The decoder against Hugging Face transformers on the same weights.
//!
//! `tests/fixtures/reference.json` and the variant checkpoints come from
//! `scripts/make_reference.py` (transformers + torch on the CPU); see its header to
//! regenerate them. Each test reports the largest absolute logit error it saw.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};

use common::{Runner, argmax};
use mistralrs_core::model::{FloatType, LoadOptions, Quantization, load_decoder};
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
    let loaded = mistralrs_core::model::load(dir.path(), &LoadOptions::default()).unwrap();
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
            mistralrs_core::model::load_decoder(dir.path(), &LoadOptions::default()).unwrap(),
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
    let load = || load_decoder(dir.path(), &LoadOptions::default()).unwrap();

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
            &LoadOptions::default(),
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

/// Largest abs logit error over the demo prompts' last positions, and the
/// prompts whose argmax moved although the reference's lead was clear.
fn demo_error(options: &LoadOptions) -> (f32, Vec<String>) {
    let reference = reference();
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    let mut worst = 0f32;
    let mut moved = Vec::new();
    for prompt in reference["demo"]["prompts"].as_array().unwrap() {
        let want = floats(&prompt["last_logits"]);
        let mut runner = Runner::new(load_decoder(dir.path(), options).unwrap());
        let got = runner.feed(&ids(&prompt["ids"]));
        worst = worst.max(max_abs_diff(&got, &want));
        let best = argmax(&want);
        let runner_up = want
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != best as usize)
            .map(|(_, &x)| x)
            .fold(f32::MIN, f32::max);
        if argmax(&got) != best && want[best as usize] - runner_up > 0.1 {
            moved.push(prompt["text"].as_str().unwrap().to_owned());
        }
    }
    (worst, moved)
}

#[test]
fn half_precision_weights_stay_close_to_transformers() {
    for dtype in [FloatType::F16, FloatType::Bf16] {
        let (err, moved) = demo_error(&LoadOptions::with_dtype(dtype));
        eprintln!("--dtype {dtype}: max abs logit error {err:.2e}");
        assert!(moved.is_empty(), "{dtype}: argmax moved for {moved:?}");
        assert!(
            err > 0.0,
            "{dtype}: no rounding at all: the dtype was not applied"
        );
    }
}

#[test]
fn in_situ_quantization_stays_close_to_transformers() {
    let mut errors = Vec::new();
    for target in [Quantization::Q8_0, Quantization::Q4K, Quantization::Q4_0] {
        let options = LoadOptions {
            quantize: Some(target),
            ..LoadOptions::default()
        };
        let (err, moved) = demo_error(&options);
        eprintln!("--quantize {target}: max abs logit error {err:.2e}");
        // The demo's random weights give small logit leads: only q8_0 keeps them all.
        if target == Quantization::Q8_0 {
            assert!(moved.is_empty(), "{target}: argmax moved for {moved:?}");
        }
        errors.push(err);
    }
    // The demo's rows (64 wide) are too short for q4_k, which falls back to q5_0:
    // fewer bits, larger error.
    let [q8, q5, q4] = errors[..] else {
        unreachable!()
    };
    assert!(
        q8 > 0.0,
        "q8_0 changed nothing: the weights were not quantized"
    );
    assert!(q8 < 0.25, "q8_0: max abs logit error {q8}");
    assert!(
        q8 < q5 && q5 < q4,
        "errors should grow as bits shrink: q8_0 {q8}, q5_0 {q5}, q4_0 {q4}"
    );
}
