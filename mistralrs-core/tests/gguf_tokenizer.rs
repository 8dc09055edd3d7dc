//! SentencePiece tokenizers from GGUF metadata (`tokenizer.ggml.model = llama`:
//! Llama 1/2, Mistral, Phi-3, ...) against llama.cpp.
//!
//! `tests/fixtures/llama_spm/` holds llama.cpp's own vocabulary test file
//! `ggml-vocab-llama-spm.gguf` (Llama 2's vocabulary, no weights) with its test
//! vectors (`.inp` texts, `.out` token ids, which llama.cpp checks against the
//! original tokenizer), and `llamacpp_special.json`: texts with special tokens
//! tokenized by llama.cpp (`scripts/make_spm_reference.mjs`, node-llama-cpp 3.21.1).
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use common::Runner;
use mistralrs_core::model::LoadOptions;
use mistralrs_core::tokenizer::Tokenizer;
use serde_json::{Value as Json, json};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llama_spm")
}

fn vocabulary() -> PathBuf {
    fixtures().join("ggml-vocab-llama-spm.gguf")
}

/// llama.cpp's test vectors: each text with its token ids (no BOS).
fn test_vectors() -> Vec<(String, Vec<u32>)> {
    let inputs = std::fs::read_to_string(fixtures().join("ggml-vocab-llama-spm.gguf.inp")).unwrap();
    let outputs =
        std::fs::read_to_string(fixtures().join("ggml-vocab-llama-spm.gguf.out")).unwrap();
    let texts: Vec<&str> = inputs.split("\n__ggml_vocab_test__\n").collect();
    let ids: Vec<&str> = outputs.split('\n').collect();
    assert_eq!(texts.len(), ids.len(), "one line of ids per text");
    texts
        .into_iter()
        .zip(ids)
        .filter(|(text, ids)| !(text.is_empty() && ids.is_empty()))
        .map(|(text, ids)| {
            let ids = ids
                .split_whitespace()
                .map(|id| id.parse().unwrap())
                .collect();
            (text.to_owned(), ids)
        })
        .collect()
}

#[test]
fn llama_spm_tokenizes_as_llama_cpps_test_vectors() {
    let tokenizer = Tokenizer::from_gguf(&vocabulary()).unwrap();
    let vectors = test_vectors();
    assert!(vectors.len() >= 40, "{} test vectors", vectors.len());
    let wrong: Vec<_> = vectors
        .iter()
        .filter_map(|(text, want)| {
            let got = tokenizer.encode(text, false).unwrap();
            (&got != want).then(|| format!("{text:?}: got {got:?}, llama.cpp {want:?}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {}:\n{}",
        wrong.len(),
        vectors.len(),
        wrong.join("\n")
    );
}

#[test]
fn special_tokens_and_chat_prompts_tokenize_as_llama_cpp() {
    let tokenizer = Tokenizer::from_gguf(&vocabulary()).unwrap();
    let reference: Json = serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("llamacpp_special.json")).unwrap(),
    )
    .unwrap();
    for case in reference["cases"].as_array().unwrap() {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
        assert_eq!(tokenizer.encode(text, false).unwrap(), want, "{text:?}");
    }
}

#[test]
fn plain_prompts_get_bos_and_text_decodes_back() {
    let tokenizer = Tokenizer::from_gguf(&vocabulary()).unwrap();
    assert_eq!(tokenizer.bos_token(), Some("<s>"));
    assert_eq!(tokenizer.eos_token(), Some("</s>"));
    for (text, ids) in test_vectors() {
        // `tokenizer.ggml.add_bos_token` is true: a plain prompt starts with <s>.
        let mut with_bos = vec![1];
        with_bos.extend(&ids);
        assert_eq!(tokenizer.encode(&text, true).unwrap(), with_bos, "{text:?}");
        // Byte-fallback pieces join back into characters; the space prefix goes.
        assert_eq!(tokenizer.decode(&ids, true).unwrap(), text, "{ids:?}");
    }
}

/// The vocabulary file's metadata with a one-layer llama around it (random
/// weights), Llama 2's chat template, and `change` applied.
fn tiny_model_file(
    dir: &Path,
    name: &str,
    change: impl FnOnce(&mut Vec<(String, Value)>),
) -> PathBuf {
    let mut file = std::fs::File::open(vocabulary()).unwrap();
    let vocab = gguf_file::Content::read(&mut file).unwrap();
    let mut metadata: Vec<(String, Value)> = vocab
        .metadata
        .into_iter()
        .filter(|(k, _)| k.starts_with("tokenizer."))
        .collect();
    let vocab_size = 32_000;
    let (hidden, ffn) = (32, 64);
    metadata.extend([
        ("general.architecture".into(), Value::String("llama".into())),
        ("llama.block_count".into(), Value::U32(1)),
        ("llama.context_length".into(), Value::U32(256)),
        ("llama.embedding_length".into(), Value::U32(hidden as u32)),
        ("llama.feed_forward_length".into(), Value::U32(ffn as u32)),
        ("llama.attention.head_count".into(), Value::U32(2)),
        ("llama.attention.layer_norm_rms_epsilon".into(), Value::F32(1e-5)),
        (
            "tokenizer.chat_template".into(),
            Value::String(
                "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% else %}{{ ' ' + m['content'] + eos_token }}{% endif %}{% endfor %}".into(),
            ),
        ),
    ]);
    change(&mut metadata);
    let random = |rows: usize, cols: usize| {
        let t = Tensor::randn(0f32, 0.1, (rows, cols), &Device::Cpu).unwrap();
        QTensor::quantize(&t, GgmlDType::Q8_0).unwrap()
    };
    let ones = |n: usize| {
        QTensor::quantize(
            &Tensor::ones(n, candle_core::DType::F32, &Device::Cpu).unwrap(),
            GgmlDType::F32,
        )
        .unwrap()
    };
    let tensors = [
        ("token_embd.weight", random(vocab_size, hidden)),
        ("output_norm.weight", ones(hidden)),
        ("blk.0.attn_norm.weight", ones(hidden)),
        ("blk.0.ffn_norm.weight", ones(hidden)),
        ("blk.0.attn_q.weight", random(hidden, hidden)),
        ("blk.0.attn_k.weight", random(hidden, hidden)),
        ("blk.0.attn_v.weight", random(hidden, hidden)),
        ("blk.0.attn_output.weight", random(hidden, hidden)),
        ("blk.0.ffn_gate.weight", random(ffn, hidden)),
        ("blk.0.ffn_up.weight", random(ffn, hidden)),
        ("blk.0.ffn_down.weight", random(hidden, ffn)),
    ];
    let path = dir.join(name);
    let mut out = std::fs::File::create(&path).unwrap();
    let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensors: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (*k, v)).collect();
    gguf_file::write(&mut out, &metadata, &tensors).unwrap();
    path
}

#[test]
fn a_gguf_model_with_a_sentencepiece_vocabulary_loads_and_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = tiny_model_file(dir.path(), "tiny-spm.gguf", |_| {});
    let loaded = mistralrs_core::model::load(&path, &LoadOptions::default()).unwrap();
    // The metadata's chat template and tokenizer make the prompt llama.cpp makes.
    let template = loaded.chat_template.as_ref().unwrap();
    let messages = [json!({"role": "user", "content": "What is the capital of France?"})];
    let prompt = template.render::<_, Json>(&messages, None, true).unwrap();
    assert_eq!(prompt, "<s>[INST] What is the capital of France? [/INST]");
    let ids = loaded.tokenizer.encode(&prompt, false).unwrap();
    assert_eq!(
        ids,
        [
            1, 518, 25580, 29962, 1724, 338, 278, 7483, 310, 3444, 29973, 518, 29914, 25580, 29962
        ]
    );
    assert_eq!(loaded.eos_token_ids, [2]);
    let logits = Runner::new(loaded.model).feed(&ids);
    assert_eq!(logits.len(), 32_000);
    assert!(logits.iter().all(|x| x.is_finite()));
}

#[test]
fn broken_sentencepiece_metadata_is_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let load_error = |path: PathBuf| {
        mistralrs_core::model::load(&path, &LoadOptions::default())
            .err()
            .map(|e| e.to_string())
            .expect("loading must fail")
    };
    let path = tiny_model_file(dir.path(), "noscores.gguf", |m| {
        m.retain(|(k, _)| k != "tokenizer.ggml.scores")
    });
    let err = load_error(path);
    assert!(
        err.contains("noscores.gguf") && err.contains("tokenizer.ggml.scores"),
        "{err}"
    );

    let path = tiny_model_file(dir.path(), "fewscores.gguf", |m| {
        for (k, v) in m.iter_mut() {
            if k == "tokenizer.ggml.scores" {
                *v = Value::Array(vec![Value::F32(0.0); 10]);
            }
        }
    });
    let err = load_error(path);
    assert!(err.contains("10 scores for 32000 tokens"), "{err}");

    let path = tiny_model_file(dir.path(), "bert.gguf", |m| {
        for (k, v) in m.iter_mut() {
            if k == "tokenizer.ggml.model" {
                *v = Value::String("bert".into());
            }
        }
    });
    let err = load_error(path);
    assert!(
        err.contains("`bert`") && err.contains("gpt2, llama"),
        "{err}"
    );
}

#[test]
fn constrained_output_reads_sentencepiece_pieces() {
    use mistralrs_core::constraint::{Grammars, OutputConstraint};
    let tokenizer = Tokenizer::from_gguf(&vocabulary()).unwrap();
    let grammars = Grammars::new(&tokenizer, 32_000, &[2]).unwrap();
    let schema =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    let mut output = grammars
        .compile(&OutputConstraint::JsonSchema(schema))
        .unwrap();
    // Spell the target with the longest allowed piece each step; `▁` is a space
    // to the grammar, so `▁{` (a space before the object) is not allowed, and
    // the forced `{"` comes as its own piece.
    let target = r#"{"city":"Rio de Janeiro"}"#;
    let mut written = String::new();
    let mut first = true;
    while !output.is_complete() {
        let mut scores = vec![0f32; 32_000];
        output.mask(&mut scores).unwrap();
        if first {
            let allowed = |t: &str| scores[tokenizer.token_id(t).unwrap() as usize].is_finite();
            assert!(allowed("{\"") && !allowed("▁{"));
            first = false;
        }
        let rest = &target[written.len()..];
        let (id, piece) = (0..32_000u32)
            .filter(|&id| scores[id as usize].is_finite() && id != 2)
            .filter_map(|id| Some((id, tokenizer.token_text(id)?.replace('▁', " "))))
            .filter(|(_, piece)| !piece.is_empty() && rest.starts_with(piece.as_str()))
            .max_by_key(|(_, piece)| piece.len())
            .unwrap_or_else(|| panic!("no allowed piece continues {rest:?}"));
        output.accept(id).unwrap();
        written.push_str(&piece);
        if written == target {
            let mut scores = vec![0f32; 32_000];
            output.mask(&mut scores).unwrap();
            assert!(scores[2].is_finite(), "the object is complete: EOS allowed");
            break;
        }
    }
    assert_eq!(written, target);
}
