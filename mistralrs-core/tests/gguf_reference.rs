//! A real GGUF model (SmolLM2-135M-Instruct, Q4_1) against llama.cpp on the
//! same file, and GGUF files that are broken in each way a loader must name.
//!
//! The model comes from `scripts/get-model smollm2` (run by `scripts/test-all`);
//! `tests/fixtures/smollm2_q4_1_llamacpp.json` (made on an AVX2 CPU) and
//! `smollm2_q4_1_llamacpp_avx512.json` (on an AVX-512 one) from
//! `scripts/make_gguf_reference.mjs` (node-llama-cpp 3.21.1).
//!
//! Runs in the default build only: the plain build (`--no-default-features`)
//! differs in its locks, not in model code, and these minutes of numerics
//! would repeat what the default build already checked.
#![cfg(feature = "prometheus-locks")]
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use common::{Runner, argmax, qwen2_gguf, requantize};
use mistralrs_core::KvDtype;
use mistralrs_core::model::{FloatType, LoadOptions, Quantization};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// A lead (log-probability of llama.cpp's pick over its runner-up) that
/// numeric noise does not overturn.
const CLEAR_LEAD: f64 = 0.5;

/// The model file `scripts/get-model smollm2` fetched.
fn model_path() -> PathBuf {
    let dir = std::env::var_os("MISTRALRS_MODELS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/mistralrs/models")
        });
    let path = dir.join(MODEL_FILE);
    assert!(
        path.is_file(),
        "{} is missing: run scripts/get-model smollm2 (scripts/test-all does)",
        path.display()
    );
    path
}

/// llama.cpp's numbers for the model, made on an AVX2 CPU: the reference
/// the other tests compare with.
fn reference() -> Json {
    fixture("smollm2_q4_1_llamacpp.json")
}

/// The same script's numbers made on an AVX-512 CPU. ggml's float sums
/// follow the CPU's vector width, so llama.cpp on one CPU agrees with itself
/// on the other only as far as rounding lets it: the yardstick for ours.
fn reference_made_on_avx512() -> Json {
    fixture("smollm2_q4_1_llamacpp_avx512.json")
}

fn fixture(name: &str) -> Json {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Json) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

#[test]
fn smollm2_gguf_agrees_with_llama_cpp() {
    let reference = reference();
    let path = model_path();
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&path).unwrap()));
    assert_eq!(
        digest, reference["sha256"],
        "the fixture was made from another file"
    );
    let loaded = mistralrs_core::model::load(&path, &LoadOptions::default()).unwrap();

    // Tokenizer and special tokens from the file's metadata.
    for case in reference["tokenization"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        assert_eq!(
            loaded.tokenizer.encode(text, true).unwrap(),
            ids(&case["ids"]),
            "tokens of {text:?}"
        );
    }
    assert_eq!(loaded.eos_token_ids, [2], "<|im_end|> ends a turn");
    assert!(
        loaded.chat_template.is_some(),
        "the template comes from the metadata"
    );

    // Ours against llama.cpp made on each CPU, and llama.cpp's own other
    // settings and other CPU against the same reference: the noise any
    // implementation's rounding makes. Ours may move leads no more than the
    // most llama.cpp does, and a fifth more for another CPU's summation order.
    let passage = ids(&reference["teacher_forced"]["ids"]);
    let logits = teacher_forced(&mut Runner::new(loaded.model), &passage[..256]);
    let made_on_avx512 = reference_made_on_avx512();
    assert_eq!(
        made_on_avx512["sha256"], reference["sha256"],
        "the two fixtures were made from different files"
    );
    for (this, other) in [(&reference, &made_on_avx512), (&made_on_avx512, &reference)] {
        let runs = llama_cpp_runs(this);
        let ours = check_agreement(&runs[0], &logits, "as stored (q4_1)", 94);
        let mut most_lead_change: f64 = 0.0;
        for theirs in runs[1..].iter().chain(&llama_cpp_runs(other)[..1]) {
            let agreement = Agreement::of_run(&runs[0], theirs);
            eprintln!(
                "  llama.cpp, {}: top-1 agreement {}/256, median lead change {:.3}",
                theirs.settings, agreement.same_top1, agreement.median_lead_change
            );
            most_lead_change = most_lead_change.max(agreement.median_lead_change);
        }
        assert!(
            ours.median_lead_change <= 1.2 * most_lead_change,
            "ours moves llama.cpp's leads by {:.3} (median), llama.cpp itself by at most {most_lead_change:.3}",
            ours.median_lead_change
        );
    }

    // Greedy answer to the chat prompt.
    let chat = &reference["chat"];
    let model = mistralrs_core::model::load(&path, &LoadOptions::default()).unwrap();
    let mut runner = Runner::new(model.model);
    let mut next = argmax(&runner.feed(&ids(&chat["prompt_ids"])));
    let mut greedy = vec![next];
    while greedy.len() < ids(&chat["greedy"]).len() {
        next = argmax(&runner.feed(&[next]));
        greedy.push(next);
    }
    let text = model.tokenizer.decode(&greedy, true).unwrap();
    assert!(text.contains("Paris"), "{text:?}");
    assert_eq!(
        greedy,
        ids(&chat["greedy"]),
        "llama.cpp said {:?}",
        chat["greedy_text"]
    );
}

/// llama.cpp's ten likeliest next tokens, with their log-probabilities, at
/// each of the 256 teacher-forced positions: one run of the fixture.
struct LlamaCppRun {
    settings: String,
    top: Vec<Vec<(u32, f64)>>,
}

/// The fixture's runs; the first is the reference (an f32 KV cache without
/// flash attention, as the server computes attention), the others llama.cpp's
/// own defaults, which say how far llama.cpp moves from itself.
fn llama_cpp_runs(reference: &Json) -> Vec<LlamaCppRun> {
    let mut runs = runs_of(&reference["teacher_forced"]["runs"]);
    for run in &mut runs {
        run.settings = format!(
            "{}, made on {}",
            run.settings,
            reference["made_on"].as_str().unwrap()
        );
    }
    runs
}

/// A fixture's list of runs.
fn runs_of(runs: &Json) -> Vec<LlamaCppRun> {
    let pair = |p: &Json| (p[0].as_u64().unwrap() as u32, p[1].as_f64().unwrap());
    runs.as_array()
        .unwrap()
        .iter()
        .map(|run| LlamaCppRun {
            settings: run["settings"].as_str().unwrap().to_owned(),
            top: run["top"]
                .as_array()
                .unwrap()
                .iter()
                .map(|position| position.as_array().unwrap().iter().map(pair).collect())
                .collect(),
        })
        .collect()
}

/// How one run's next-token choices compare with the reference's.
struct Agreement {
    /// Positions where both pick the same token.
    same_top1: usize,
    /// Median over positions of how much the reference's lead (its pick's
    /// log-probability over its runner-up's) changed in the other run.
    median_lead_change: f64,
    /// (position, other's pick, reference's pick, reference's lead) where the
    /// reference led clearly and the other picked differently.
    clear_misses: Vec<(usize, u32, u32, f64)>,
}

impl Agreement {
    /// `top1(i)` is the other run's pick at position `i`; `score(i, token)`
    /// its logit or log-probability for `token`, where it has one.
    fn of(
        reference: &LlamaCppRun,
        top1: impl Fn(usize) -> u32,
        score: impl Fn(usize, u32) -> Option<f64>,
    ) -> Self {
        let (mut same_top1, mut lead_changes, mut clear_misses) = (0, Vec::new(), Vec::new());
        for (i, ranked) in reference.top.iter().enumerate() {
            let ((first, first_lp), (second, second_lp)) = (ranked[0], ranked[1]);
            let lead = first_lp - second_lp;
            if top1(i) == first {
                same_top1 += 1;
            } else if lead > CLEAR_LEAD {
                clear_misses.push((i, top1(i), first, lead));
            }
            if let (Some(a), Some(b)) = (score(i, first), score(i, second)) {
                lead_changes.push((a - b - lead).abs());
            }
        }
        lead_changes.sort_by(f64::total_cmp);
        Self {
            same_top1,
            median_lead_change: lead_changes[lead_changes.len() / 2],
            clear_misses,
        }
    }

    /// Our logits at each position against the reference.
    fn of_logits(reference: &LlamaCppRun, logits: &[Vec<f32>]) -> Self {
        Self::of(
            reference,
            |i| argmax(&logits[i]),
            |i, token| Some(f64::from(logits[i][token as usize])),
        )
    }

    /// Another llama.cpp run of the fixture against the reference.
    fn of_run(reference: &LlamaCppRun, other: &LlamaCppRun) -> Self {
        let score = |i: usize, token: u32| {
            other.top[i]
                .iter()
                .find(|&&(t, _)| t == token)
                .map(|&(_, lp)| lp)
        };
        Self::of(reference, |i| other.top[i][0].0, score)
    }
}

/// Teacher-forced: the engine fed the fixture's passage token by token, its
/// next-token logits at each of 256 positions against llama.cpp's reference
/// run ([`check_agreement`]). Returns the logits and the comparison.
fn agrees_teacher_forced(
    reference: &Json,
    mut runner: Runner,
    what: &str,
    floor: usize,
) -> (Vec<Vec<f32>>, Agreement) {
    let passage = ids(&reference["teacher_forced"]["ids"]);
    let logits = teacher_forced(&mut runner, &passage[..256]);
    let ours = check_agreement(&llama_cpp_runs(reference)[0], &logits, what, floor);
    (logits, ours)
}

/// Where llama.cpp's pick leads its runner-up clearly, ours must be the
/// same; near-ties follow any rounding, so overall top-1 agreement is only
/// required to stay at `floor` percent. Quantized matmuls round their inputs
/// to 8 bits, in llama.cpp as here, and that alone moves leads by ~0.08 (the
/// median against the dequantized f32 run, which rounds no input); any other
/// difference (a summation order, an exp) makes other roundings, so any two
/// implementations differ that much: against its f32 run made on an AVX2
/// CPU, llama.cpp's own f16 KV cache, its flash attention and the same
/// settings on an AVX-512 CPU agree at 246, 243 and 246 of 256 positions.
fn check_agreement(
    reference: &LlamaCppRun,
    logits: &[Vec<f32>],
    what: &str,
    floor: usize,
) -> Agreement {
    let ours = Agreement::of_logits(reference, logits);
    eprintln!(
        "{what}: teacher-forced top-1 agreement with llama.cpp, {}: {}/256, median lead change {:.3}",
        reference.settings, ours.same_top1, ours.median_lead_change
    );
    assert!(
        ours.clear_misses.is_empty(),
        "{what}: (position, ours, llama.cpp, its lead) where llama.cpp was clear: {:?}",
        ours.clear_misses
    );
    assert!(
        ours.same_top1 * 100 >= floor * 256,
        "{what}: top-1 agrees at only {} of 256 positions",
        ours.same_top1
    );
    ours
}

/// The logits after each of `passage`'s tokens, fed one at a time.
fn teacher_forced(runner: &mut Runner, passage: &[u32]) -> Vec<Vec<f32>> {
    passage.iter().map(|&token| runner.feed(&[token])).collect()
}

/// The SmolLM2 file rewritten in each GGUF tensor type the server runs
/// (`common::requantize`), served as stored, against llama.cpp on the same
/// bytes: 64 teacher-forced positions each. Where llama.cpp leads clearly ours
/// picks the same, and ours moves llama.cpp's leads no more than its own f16 KV
/// cache does, with half again for other summation orders (64 positions give
/// a noisy median) and 0.02 for the float types, whose leads barely move.
#[test]
fn every_gguf_tensor_type_agrees_with_llama_cpp() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/smollm2_gguf_types_llamacpp.json");
    let fixture: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let positions = fixture["positions"].as_u64().unwrap() as usize;
    let passage = ids(&reference()["teacher_forced"]["ids"]);
    let files = fixture["files"].as_array().unwrap();
    assert_eq!(
        files
            .iter()
            .map(|f| f["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        requantize::TYPES,
        "the fixture covers another list of types"
    );
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in files {
        let target = file["type"].as_str().unwrap();
        let gguf = dir.path().join(format!("{target}.gguf"));
        requantize::requantize(&model_path(), target, &gguf).unwrap();
        let digest = format!("{:x}", Sha256::digest(std::fs::read(&gguf).unwrap()));
        assert_eq!(
            digest, file["sha256"],
            "{target}: llama.cpp read other bytes: re-run scripts/make_gguf_types_reference.mjs"
        );
        let model = mistralrs_core::model::load(&gguf, &LoadOptions::default()).unwrap();
        std::fs::remove_file(&gguf).unwrap();
        let logits = teacher_forced(&mut Runner::new(model.model), &passage[..positions]);
        let runs = runs_of(&file["runs"]);
        let ours = Agreement::of_logits(&runs[0], &logits);
        let theirs = Agreement::of_run(&runs[0], &runs[1]);
        eprintln!(
            "{target}: top-1 agreement {}/{positions}, median lead change {:.3}; \
             llama.cpp's {}: {}/{positions}, {:.3}",
            ours.same_top1,
            ours.median_lead_change,
            runs[1].settings,
            theirs.same_top1,
            theirs.median_lead_change
        );
        if !ours.clear_misses.is_empty() {
            failures.push(format!("{target}: clear misses {:?}", ours.clear_misses));
        }
        let bound = 1.5 * theirs.median_lead_change + 0.02;
        if ours.median_lead_change > bound {
            failures.push(format!(
                "{target}: median lead change {:.3} > {bound:.3}",
                ours.median_lead_change
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// A Qwen2 GGUF (attention biases, no q/k permutation, a tied head; written
/// by `common::qwen2_gguf` from the small Qwen2 checkpoint, all f32) against
/// llama.cpp on the same bytes: every token's log-probability after each of
/// 24 tokens. Nothing is quantized, so the two differ only by summation order.
#[test]
fn a_qwen2_gguf_matches_llama_cpp() {
    let fixture: Json = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen2_gguf_llamacpp.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("qwen2.gguf");
    qwen2_gguf::write(Path::new(env!("CARGO_MANIFEST_DIR")), &gguf).unwrap();
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&gguf).unwrap()));
    assert_eq!(
        digest, fixture["sha256"],
        "llama.cpp read other bytes: re-run scripts/make_qwen2_gguf_reference.mjs"
    );
    let model = mistralrs_core::model::load(&gguf, &LoadOptions::default()).unwrap();
    let logits = teacher_forced(&mut Runner::new(model.model), &ids(&fixture["ids"]));
    let mut worst: f64 = 0.0;
    for (ours, theirs) in logits.iter().zip(fixture["logprobs"].as_array().unwrap()) {
        let ours: Vec<f64> = ours.iter().map(|&x| f64::from(x)).collect();
        let max = ours.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let log_sum = ours.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
        for (ours, theirs) in ours.iter().zip(theirs.as_array().unwrap()) {
            worst = worst.max((ours - log_sum - theirs.as_f64().unwrap()).abs());
        }
    }
    eprintln!("qwen2 GGUF: worst log-probability difference to llama.cpp {worst:.2e}");
    assert!(worst < 1e-4, "log-probabilities differ by up to {worst}");
}

#[test]
fn requantized_and_dequantized_smollm2_still_agree_with_llama_cpp() {
    let reference = reference();
    let path = model_path();
    let requantized = LoadOptions {
        quantize: Some(Quantization::Q8_0),
        ..LoadOptions::default()
    };
    // A second rounding of every weight moves near-ties: 246 of 256 agreed with
    // the fixture made on an AVX2 CPU, 237-241 with one made on another CPU;
    // the floor is 92 %, and clear leads must still hold.
    let model = mistralrs_core::model::load(&path, &requantized).unwrap();
    agrees_teacher_forced(
        &reference,
        Runner::new(model.model),
        "requantized to q8_0",
        92,
    );
    let dense = LoadOptions::with_dtype(FloatType::F32);
    let model = mistralrs_core::model::load(&path, &dense).unwrap();
    agrees_teacher_forced(
        &reference,
        Runner::new(model.model),
        "dequantized to f32",
        95,
    );
}

/// The server's default f16 KV cache, and the q8_0 one, against an f32 one,
/// position by position. The weights are dequantized: quantized matmuls also
/// round their inputs to 8 bits, which turns any change (f16 or bf16 alike)
/// into logit noise of ~0.6 and would hide what the cache's rounding itself
/// does.
#[test]
fn f16_and_q8_0_kv_caches_stay_close_to_an_f32_one() {
    let reference = reference();
    let path = model_path();
    let dense = LoadOptions::with_dtype(FloatType::F32);
    let load = || mistralrs_core::model::load(&path, &dense).unwrap().model;
    let (f32_logits, _) = agrees_teacher_forced(
        &reference,
        Runner::with_cache_dtype(load(), KvDtype::F32),
        "f32 KV cache",
        95,
    );
    // (cache, least top-1 agreement with llama.cpp in %, largest median and
    // worst logit difference to the f32 cache). When this was written: f16
    // 0.006 and 0.029 with the same top-1 everywhere; q8_0 0.18 and 0.85 with
    // the same top-1 at 253/256, near ties only.
    // llama.cpp's own f16 cache moves 10 near-ties against its f32 one.
    for (dtype, floor, median_bound, worst_bound) in
        [(KvDtype::F16, 93, 0.02, 0.1), (KvDtype::Q8_0, 93, 0.3, 1.2)]
    {
        let (logits, _) = agrees_teacher_forced(
            &reference,
            Runner::with_cache_dtype(load(), dtype),
            &format!("{dtype} KV cache"),
            floor,
        );
        // Per position: the largest logit difference, and whether the top-1
        // moved although the f32 run's lead over its runner-up was clear.
        let mut diffs = Vec::new();
        let mut clear_flips = Vec::new();
        let mut same_top = 0;
        for (i, (a, b)) in f32_logits.iter().zip(&logits).enumerate() {
            diffs.push(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| (x - y).abs())
                    .fold(0.0, f32::max),
            );
            same_top += usize::from(argmax(a) == argmax(b));
            if argmax(a) != argmax(b) && lead(a) > CLEAR_LEAD as f32 {
                clear_flips.push((i, lead(a)));
            }
        }
        diffs.sort_by(f32::total_cmp);
        let (median, worst) = (diffs[diffs.len() / 2], diffs[diffs.len() - 1]);
        eprintln!(
            "{dtype} vs f32 KV cache: max abs logit difference median {median:.3}, \
             worst {worst:.3}; same top-1 at {same_top}/256"
        );
        assert!(
            worst > 0.0,
            "the {dtype} cache changed nothing: was it {dtype}?"
        );
        assert!(
            median < median_bound,
            "{dtype} KV cache: median logit difference {median}"
        );
        assert!(
            worst < worst_bound,
            "{dtype} KV cache: worst logit difference {worst}"
        );
        assert!(
            clear_flips.is_empty(),
            "(position, f32 lead) flipped by {dtype}: {clear_flips:?}"
        );
    }
}

/// How far the top logit leads the runner-up.
fn lead(logits: &[f32]) -> f32 {
    let mut sorted = logits.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    sorted[0] - sorted[1]
}

/// Writes a GGUF file with `metadata` and `tensors`.
fn write_gguf(path: &Path, metadata: &[(&str, Value)], tensors: &[(&str, QTensor)]) {
    let mut file = std::fs::File::create(path).unwrap();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut file, &metadata, &tensors).unwrap();
}

/// A tiny llama's metadata, without `omit`.
fn llama_metadata(omit: &str) -> Vec<(&'static str, Value)> {
    let tokens = ["a", "b", "c", "ab"]
        .map(|t| Value::String(t.into()))
        .to_vec();
    [
        ("general.architecture", Value::String("llama".into())),
        ("llama.block_count", Value::U32(1)),
        ("llama.context_length", Value::U32(64)),
        ("llama.embedding_length", Value::U32(32)),
        ("llama.feed_forward_length", Value::U32(64)),
        ("llama.attention.head_count", Value::U32(2)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.tokens", Value::Array(tokens)),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("a b".into())]),
        ),
    ]
    .into_iter()
    .filter(|(k, _)| *k != omit)
    .collect()
}

fn load_error(path: &Path) -> String {
    mistralrs_core::model::load(path, &LoadOptions::default())
        .err()
        .map(|e| e.to_string())
        .expect("loading must fail")
}

#[test]
fn broken_gguf_files_are_errors_that_name_file_and_problem() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);

    // Truncated: the header of the real model, cut short.
    let bytes = std::fs::read(model_path()).unwrap();
    std::fs::write(file("truncated.gguf"), &bytes[..bytes.len() / 2]).unwrap();
    let err = load_error(&file("truncated.gguf"));
    assert!(
        err.contains("truncated.gguf") && err.contains("tensor"),
        "{err}"
    );

    // Not GGUF at all.
    std::fs::write(file("garbage.gguf"), b"definitely not a model file").unwrap();
    let err = load_error(&file("garbage.gguf"));
    assert!(
        err.contains("garbage.gguf") && err.contains("GGUF"),
        "{err}"
    );

    // An architecture this server does not run.
    write_gguf(
        &file("falcon.gguf"),
        &[("general.architecture", Value::String("falcon".into()))],
        &[],
    );
    let err = load_error(&file("falcon.gguf"));
    assert!(
        err.contains("falcon") && err.contains("llama, qwen2"),
        "{err}"
    );

    // A metadata key missing.
    write_gguf(
        &file("nokey.gguf"),
        &llama_metadata("llama.block_count"),
        &[],
    );
    let err = load_error(&file("nokey.gguf"));
    assert!(
        err.contains("nokey.gguf") && err.contains("llama.block_count"),
        "{err}"
    );

    // A tensor with the wrong shape, and one of a type not run here.
    let wrong = Tensor::zeros((3, 32), DType::F32, &Device::Cpu).unwrap();
    write_gguf(
        &file("shape.gguf"),
        &llama_metadata(""),
        &[(
            "token_embd.weight",
            QTensor::quantize(&wrong, GgmlDType::F32).unwrap(),
        )],
    );
    let err = load_error(&file("shape.gguf"));
    assert!(
        err.contains("token_embd.weight") && err.contains("shape"),
        "{err}"
    );
    let embed = Tensor::zeros((4, 32), DType::F32, &Device::Cpu).unwrap();
    write_gguf(
        &file("q8_1.gguf"),
        &llama_metadata(""),
        &[(
            "token_embd.weight",
            QTensor::quantize(&embed, GgmlDType::Q8_1).unwrap(),
        )],
    );
    let err = load_error(&file("q8_1.gguf"));
    assert!(err.contains("Q8_1") && err.contains("Q4_0"), "{err}");

    // A folder with neither safetensors nor GGUF.
    let empty = tempfile::tempdir().unwrap();
    let err = load_error(empty.path());
    assert!(err.contains("neither"), "{err}");
}

/// The engine's f32 conversion of the GGUF (`--dtype f32`: every tensor
/// dequantized) against transformers' conversion of the same file
/// (`scripts/make_gguf_transformers_reference.py`): every logit within 1e-3.
#[test]
fn f32_conversion_matches_transformers() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smollm2_f32_transformers.json");
    let reference: Json = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let model_path = model_path();
    let digest = format!("{:x}", Sha256::digest(std::fs::read(&model_path).unwrap()));
    assert_eq!(
        digest, reference["sha256"],
        "the fixture was made from another file"
    );
    let model = mistralrs_core::model::load(&model_path, &LoadOptions::with_dtype(FloatType::F32))
        .unwrap()
        .model;
    let mut runner = Runner::new(model);
    let ids = ids(&reference["ids"]);
    let mut fed = 0;
    let mut worst = 0f32;
    for (p, want) in reference["positions"]
        .as_array()
        .unwrap()
        .iter()
        .zip(reference["logits"].as_array().unwrap())
    {
        let p = p.as_u64().unwrap() as usize;
        let got = runner.feed(&ids[fed..=p]);
        fed = p + 1;
        let want: Vec<f32> = want
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(got.len(), want.len());
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        eprintln!("position {p}: max abs logit error {err:.2e}");
        worst = worst.max(err);
    }
    assert!(worst < 1e-3, "max abs logit error {worst}");
}
