//! The demo model is reproducible, and chat templates render as transformers does.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use mistralrs_core::chat_template::ChatTemplate;
use mistralrs_core::tokenizer::{IncrementalDecoder, Tokenizer};
use serde_json::Value;

fn reference_chat() -> Value {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reference.json");
    let reference: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    reference["demo"]["chat"].clone()
}

#[test]
fn same_seed_writes_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    mistralrs_core::demo::write_demo_model(a.path()).unwrap();
    mistralrs_core::demo::write_demo_model(b.path()).unwrap();
    let mut names: Vec<_> = std::fs::read_dir(a.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names.len(), 5, "{names:?}");
    for name in names {
        let (x, y) = (
            std::fs::read(a.path().join(&name)).unwrap(),
            std::fs::read(b.path().join(&name)).unwrap(),
        );
        assert!(x == y, "{name:?} differs between two generations");
    }
}

#[test]
fn chat_template_renders_like_transformers() {
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    let tokenizer = Tokenizer::from_folder(dir.path()).unwrap();
    let template = ChatTemplate::from_folder(dir.path(), &tokenizer)
        .unwrap()
        .expect("demo has a template");
    let chat = reference_chat();
    let messages = chat["messages"].as_array().unwrap();
    let tools = chat["tools"].as_array().unwrap();
    let with_tools = template.render(messages, Some(tools), true).unwrap();
    assert_eq!(with_tools, chat["rendered_with_tools"].as_str().unwrap());
    let plain = template.render::<_, Value>(messages, None, false).unwrap();
    assert_eq!(plain, chat["rendered_plain"].as_str().unwrap());
}

#[test]
fn template_errors_are_reported_not_panicked() {
    let bad = ChatTemplate::new("{% if %}".into(), None, None);
    assert!(bad.is_err());
    let raising = ChatTemplate::new(
        "{{ raise_exception('roles must alternate') }}".into(),
        None,
        None,
    )
    .unwrap();
    let err = raising.render::<Value, Value>(&[], None, true).unwrap_err();
    assert!(err.to_string().contains("roles must alternate"), "{err}");
}

#[test]
fn incremental_decoding_never_splits_a_character() {
    let dir = tempfile::tempdir().unwrap();
    mistralrs_core::demo::write_demo_model(dir.path()).unwrap();
    let tokenizer = Tokenizer::from_folder(dir.path()).unwrap();
    let text = "Café 東京 — ñandú and more";
    let ids = tokenizer.encode(text, false).unwrap();
    let mut decoder = IncrementalDecoder::default();
    let mut pieces = Vec::new();
    for id in ids {
        if let Some(piece) = decoder.step(&tokenizer, id).unwrap() {
            assert!(
                !piece.contains('\u{FFFD}'),
                "piece {piece:?} holds half a character"
            );
            pieces.push(piece);
        }
    }
    assert!(pieces.len() > 5, "streamed in several pieces: {pieces:?}");
    assert_eq!(pieces.concat(), text);
}
