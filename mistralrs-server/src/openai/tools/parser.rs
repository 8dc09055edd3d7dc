//! The formats models write tool calls in, and turning generated text back
//! into calls and content.
//!
//! - `hermes` (Hermes, Qwen 2/2.5/3, SmolLM2): `<tool_call>{"name": ..,
//!   "arguments": {..}}</tool_call>`, one block per call; SmolLM2 also writes a
//!   JSON list of calls inside one block.
//! - `llama3_json` (Llama 3.1-3.3): the whole answer is `{"name": ..,
//!   "parameters": {..}}`, optionally after `<|python_tag|>`, several joined by `;`.
//! - `mistral`: `[TOOL_CALLS][{"name": .., "arguments": {..}}, ..]`, or the newer
//!   `[TOOL_CALLS]name[ARGS]{..}` per call.
//!
//! Text before, between and after calls is kept as content.

use serde_json::{Value, json};

/// A tool-call format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[value(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum ToolParser {
    /// `<tool_call>{...}</tool_call>` (Hermes, Qwen, SmolLM2).
    Hermes,
    /// `{"name": ..., "parameters": ...}` (Llama 3.x).
    Llama3Json,
    /// `[TOOL_CALLS]` (Mistral).
    Mistral,
}

/// A call as the model wrote it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedCall {
    /// The function's name.
    pub name: String,
    /// Its arguments (a JSON object).
    pub arguments: Value,
}

/// Generated text taken apart.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOutput {
    /// The text outside any call.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ParsedCall>,
    /// Calls that were begun but could not be read (kept in `content`).
    pub failures: usize,
}

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";
const PYTHON_TAG: &str = "<|python_tag|>";
const MISTRAL_CALLS: &str = "[TOOL_CALLS]";
const MISTRAL_ARGS: &str = "[ARGS]";

impl ToolParser {
    /// The format a chat template's text shows, Hermes when it shows none
    /// (templates without tool support get Hermes instructions from us).
    pub fn detect(template: Option<&str>) -> Self {
        match template {
            Some(t) if t.contains(MISTRAL_CALLS) => Self::Mistral,
            Some(t) if t.contains(PYTHON_TAG) || t.contains("ipython") => Self::Llama3Json,
            _ => Self::Hermes,
        }
    }

    /// The name in `--tool-parser` and in metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Hermes => "hermes",
            Self::Llama3Json => "llama3_json",
            Self::Mistral => "mistral",
        }
    }

    /// Whether the output text needs special tokens kept to show the calls.
    pub fn needs_special_tokens(self) -> bool {
        matches!(self, Self::Llama3Json | Self::Mistral)
    }

    /// Where a call begins in `text`, or the byte from which `text` could
    /// still become the start of one (what a stream must hold back).
    /// `at_start`: nothing of the answer has been released yet (a bare Llama 3
    /// JSON call is only a call at the start of the answer).
    pub fn hold_from(self, text: &str, at_start: bool) -> Option<usize> {
        let marker = match self {
            Self::Hermes => HERMES_OPEN,
            Self::Mistral => MISTRAL_CALLS,
            Self::Llama3Json => {
                let start = text.len() - text.trim_start().len();
                if at_start && text[start..].starts_with('{') {
                    return Some(start);
                }
                PYTHON_TAG
            }
        };
        if let Some(at) = text.find(marker) {
            return Some(at);
        }
        (1..marker.len().min(text.len() + 1))
            .rev()
            .find(|&k| {
                text.is_char_boundary(text.len() - k) && marker.starts_with(&text[text.len() - k..])
            })
            .map(|k| text.len() - k)
    }

    /// Whether `text` begins with a call (not just with part of a marker).
    pub fn starts_call(self, text: &str) -> bool {
        match self {
            Self::Hermes => text.starts_with(HERMES_OPEN),
            Self::Mistral => text.starts_with(MISTRAL_CALLS),
            Self::Llama3Json => text.trim_start().starts_with('{') || text.starts_with(PYTHON_TAG),
        }
    }

    /// The end of the first complete call block in `text` (which starts with
    /// a call), when the format marks where a call ends.
    pub fn call_end(self, text: &str) -> Option<usize> {
        match self {
            Self::Hermes => text.find(HERMES_CLOSE).map(|at| at + HERMES_CLOSE.len()),
            Self::Llama3Json | Self::Mistral => None,
        }
    }

    /// Takes `text` apart into content and calls.
    pub fn parse(self, text: &str) -> ParsedOutput {
        match self {
            Self::Hermes => parse_hermes(text),
            Self::Llama3Json => parse_llama3(text),
            Self::Mistral => parse_mistral(text),
        }
    }

    /// `calls` written the way this format's model writes them, for earlier
    /// assistant turns in templates that know nothing of `tool_calls`.
    pub fn render(self, calls: &[ParsedCall]) -> String {
        match self {
            Self::Hermes => calls
                .iter()
                .map(|c| {
                    format!(
                        "{HERMES_OPEN}\n{}\n{HERMES_CLOSE}",
                        call_json(c, "arguments")
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Self::Llama3Json => calls
                .iter()
                .map(|c| call_json(c, "parameters").to_string())
                .collect::<Vec<_>>()
                .join("; "),
            Self::Mistral => {
                let list: Vec<Value> = calls.iter().map(|c| call_json(c, "arguments")).collect();
                format!("{MISTRAL_CALLS}{}", Value::Array(list))
            }
        }
    }
}

fn call_json(call: &ParsedCall, arguments_key: &str) -> Value {
    json!({"name": call.name, arguments_key: call.arguments})
}

/// A call object: `name` and `arguments` (or `parameters`), arguments an object
/// (or a string holding one, as some models write).
fn call_of(value: &Value) -> Option<ParsedCall> {
    let name = value.get("name")?.as_str()?.to_owned();
    let arguments = match value.get("arguments").or_else(|| value.get("parameters")) {
        None => json!({}),
        Some(Value::String(s)) => serde_json::from_str(s).ok().filter(Value::is_object)?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return None,
    };
    Some(ParsedCall { name, arguments })
}

/// One call object or a list of them.
fn calls_of(value: &Value) -> Option<Vec<ParsedCall>> {
    match value {
        Value::Array(items) if !items.is_empty() => items.iter().map(call_of).collect(),
        Value::Object(_) => call_of(value).map(|c| vec![c]),
        _ => None,
    }
}

/// Appends `piece` to the content, one space between pieces around calls.
fn push_content(content: &mut String, piece: &str) {
    let piece = piece.trim();
    if piece.is_empty() {
        return;
    }
    if !content.is_empty() {
        content.push('\n');
    }
    content.push_str(piece);
}

fn parse_hermes(text: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    let mut rest = text;
    while let Some(open) = rest.find(HERMES_OPEN) {
        push_content(&mut out.content, &rest[..open]);
        let body_start = open + HERMES_OPEN.len();
        let (body, next) = match rest[body_start..].find(HERMES_CLOSE) {
            Some(close) => (
                &rest[body_start..body_start + close],
                &rest[body_start + close + HERMES_CLOSE.len()..],
            ),
            None => (&rest[body_start..], ""),
        };
        match serde_json::from_str::<Value>(body.trim())
            .ok()
            .as_ref()
            .and_then(calls_of)
        {
            Some(calls) => out.calls.extend(calls),
            None => {
                out.failures += 1;
                push_content(&mut out.content, &rest[open..rest.len() - next.len()]);
            }
        }
        rest = next;
    }
    push_content(&mut out.content, rest);
    out
}

fn parse_llama3(text: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    let (before, body) = match text.find(PYTHON_TAG) {
        Some(at) => (&text[..at], &text[at + PYTHON_TAG.len()..]),
        None if text.trim_start().starts_with('{') => ("", text),
        None => {
            out.content = text.trim().to_owned();
            return out;
        }
    };
    push_content(&mut out.content, before);
    let calls: Option<Vec<ParsedCall>> =
        split_json_values(body.trim(), ';').and_then(|values| values.iter().map(call_of).collect());
    match calls {
        Some(calls) if !calls.is_empty() => out.calls = calls,
        _ => {
            out.failures += 1;
            push_content(&mut out.content, body);
        }
    }
    out
}

/// JSON values separated by `separator` (and whitespace).
fn split_json_values(text: &str, separator: char) -> Option<Vec<Value>> {
    let mut values = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let mut stream = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
        values.push(stream.next()?.ok()?);
        rest = rest[stream.byte_offset()..].trim_start();
        match rest.strip_prefix(separator) {
            Some(after) => rest = after.trim_start(),
            None if rest.is_empty() => {}
            None => return None,
        }
    }
    Some(values)
}

fn parse_mistral(text: &str) -> ParsedOutput {
    let mut out = ParsedOutput::default();
    let Some(first) = text.find(MISTRAL_CALLS) else {
        out.content = text.trim().to_owned();
        return out;
    };
    push_content(&mut out.content, &text[..first]);
    for block in text[first + MISTRAL_CALLS.len()..].split(MISTRAL_CALLS) {
        let parsed = match block.split_once(MISTRAL_ARGS) {
            // `name[ARGS]{...}`
            Some((name, arguments)) => serde_json::from_str::<Value>(arguments.trim())
                .ok()
                .filter(Value::is_object)
                .map(|arguments| {
                    vec![ParsedCall {
                        name: name.trim().to_owned(),
                        arguments,
                    }]
                }),
            None => serde_json::from_str::<Value>(block.trim())
                .ok()
                .as_ref()
                .and_then(calls_of),
        };
        match parsed {
            Some(calls) => out.calls.extend(calls),
            None => {
                out.failures += 1;
                push_content(&mut out.content, &format!("{MISTRAL_CALLS}{block}"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, arguments: Value) -> ParsedCall {
        ParsedCall {
            name: name.into(),
            arguments,
        }
    }

    #[test]
    fn hermes_calls_and_the_text_around_them() {
        let text = "Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>{\"name\": \"get_time\", \"arguments\": \"{\\\"zone\\\": \\\"CET\\\"}\"}</tool_call> done";
        let out = ToolParser::Hermes.parse(text);
        assert_eq!(
            out.calls,
            vec![
                call("get_weather", json!({"city": "Paris"})),
                call("get_time", json!({"zone": "CET"}))
            ]
        );
        assert_eq!(out.content, "Let me look.\ndone");
        assert_eq!(out.failures, 0);
    }

    #[test]
    fn smollm2_writes_a_list_in_one_block_and_may_omit_the_close() {
        let text = "<tool_call>[{\"name\": \"a\", \"arguments\": {}}, {\"name\": \"b\", \"arguments\": {\"x\": 1}}]";
        let out = ToolParser::Hermes.parse(text);
        assert_eq!(
            out.calls,
            vec![call("a", json!({})), call("b", json!({"x": 1}))]
        );
        assert_eq!(out.content, "");
    }

    #[test]
    fn a_broken_call_stays_content_and_counts() {
        let text = "Sure <tool_call>{\"name\": \"a\", \"arguments\": {</tool_call>";
        let out = ToolParser::Hermes.parse(text);
        assert!(out.calls.is_empty());
        assert_eq!(out.failures, 1);
        assert_eq!(out.content, format!("Sure\n{}", &text[5..]));
        let no_name = ToolParser::Hermes.parse("<tool_call>{\"arguments\": {}}</tool_call>");
        assert_eq!((no_name.calls.len(), no_name.failures), (0, 1));
    }

    #[test]
    fn llama3_json_answers_are_calls() {
        let out = ToolParser::Llama3Json.parse(
            " {\"name\": \"f\", \"parameters\": {\"a\": 1}}; {\"name\": \"g\", \"parameters\": {}}",
        );
        assert_eq!(
            out.calls,
            vec![call("f", json!({"a": 1})), call("g", json!({}))]
        );
        let tagged =
            ToolParser::Llama3Json.parse("<|python_tag|>{\"name\": \"f\", \"parameters\": {}}");
        assert_eq!(tagged.calls, vec![call("f", json!({}))]);
        let plain = ToolParser::Llama3Json.parse("The answer is 4.");
        assert_eq!(
            (plain.calls.len(), plain.content.as_str()),
            (0, "The answer is 4.")
        );
    }

    #[test]
    fn mistral_both_generations() {
        let old = ToolParser::Mistral
            .parse("Hm. [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {\"a\": 1}}]");
        assert_eq!(old.calls, vec![call("f", json!({"a": 1}))]);
        assert_eq!(old.content, "Hm.");
        let new = ToolParser::Mistral.parse("[TOOL_CALLS]f[ARGS]{\"a\": 1}[TOOL_CALLS]g[ARGS]{}");
        assert_eq!(
            new.calls,
            vec![call("f", json!({"a": 1})), call("g", json!({}))]
        );
    }

    #[test]
    fn streams_hold_back_only_what_may_start_a_call() {
        let p = ToolParser::Hermes;
        assert_eq!(p.hold_from("Hello", true), None);
        assert_eq!(p.hold_from("Hello <tool", true), Some(6));
        assert_eq!(p.hold_from("Hello <tool_call>{", true), Some(6));
        assert_eq!(p.hold_from("a < b", true), None);
        assert_eq!(ToolParser::Llama3Json.hold_from("  {\"na", true), Some(2));
        assert_eq!(ToolParser::Llama3Json.hold_from("{\"na", false), None);
        assert_eq!(ToolParser::Llama3Json.hold_from("Sure, {", true), None);
        assert_eq!(ToolParser::Mistral.hold_from("ok [TOOL", true), Some(3));
    }

    #[test]
    fn rendered_calls_parse_back() {
        let calls = vec![call("f", json!({"a": [1, 2]})), call("g", json!({}))];
        for p in [
            ToolParser::Hermes,
            ToolParser::Llama3Json,
            ToolParser::Mistral,
        ] {
            assert_eq!(p.parse(&p.render(&calls)).calls, calls, "{p:?}");
        }
    }

    #[test]
    fn the_template_names_the_format() {
        assert_eq!(
            ToolParser::detect(Some("{{ '[TOOL_CALLS]' }}")),
            ToolParser::Mistral
        );
        assert_eq!(
            ToolParser::detect(Some("<|python_tag|>")),
            ToolParser::Llama3Json
        );
        assert_eq!(ToolParser::detect(Some("<tool_call>")), ToolParser::Hermes);
        assert_eq!(ToolParser::detect(None), ToolParser::Hermes);
    }
}
