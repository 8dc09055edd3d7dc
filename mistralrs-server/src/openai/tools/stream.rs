//! Reading tool calls out of a stream of text pieces: text that can't be part
//! of a call goes out at once, text that may start one is held, and each call
//! goes out whole as soon as the format shows where it ends (Hermes'
//! `</tool_call>`), else when the answer ends.

use super::parser::{ParsedCall, ToolParser};

/// What a stream releases.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPiece {
    /// Answer text.
    Content(String),
    /// A complete call.
    Call(ParsedCall),
}

/// Splits a streamed answer into text and calls.
#[derive(Debug)]
pub struct ToolCallStream {
    parser: ToolParser,
    pending: String,
    in_call: bool,
    released_any: bool,
    calls_seen: bool,
    failures: usize,
}

impl ToolCallStream {
    /// A stream read in `parser`'s format.
    pub fn new(parser: ToolParser) -> Self {
        Self {
            parser,
            pending: String::new(),
            in_call: false,
            released_any: false,
            calls_seen: false,
            failures: 0,
        }
    }

    /// Takes the next piece of the answer; returns what can be released.
    pub fn push(&mut self, text: &str) -> Vec<StreamPiece> {
        self.pending.push_str(text);
        let mut out = Vec::new();
        loop {
            if !self.in_call {
                match self.parser.hold_from(&self.pending, !self.released_any) {
                    None => {
                        let text = std::mem::take(&mut self.pending);
                        self.content(&mut out, text);
                        break;
                    }
                    Some(at) => {
                        let text: String = self.pending.drain(..at).collect();
                        self.content(&mut out, text);
                        if !self.parser.starts_call(&self.pending) {
                            break;
                        }
                        self.in_call = true;
                    }
                }
            }
            let Some(end) = self.parser.call_end(&self.pending) else {
                break;
            };
            let block: String = self.pending.drain(..end).collect();
            self.in_call = false;
            self.parsed(&mut out, &block);
        }
        out
    }

    /// The end of the answer: whatever was held, read; and how many begun
    /// calls could not be read (they went out as text).
    pub fn finish(mut self) -> (Vec<StreamPiece>, usize) {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        if self.in_call {
            self.parsed(&mut out, &rest);
        } else {
            self.content(&mut out, rest);
        }
        (out, self.failures)
    }

    fn parsed(&mut self, out: &mut Vec<StreamPiece>, block: &str) {
        let parsed = self.parser.parse(block);
        self.failures += parsed.failures;
        if !parsed.content.is_empty() {
            self.content(out, parsed.content);
        }
        self.calls_seen |= !parsed.calls.is_empty();
        out.extend(parsed.calls.into_iter().map(StreamPiece::Call));
    }

    /// Text goes out, except the whitespace between calls.
    fn content(&mut self, out: &mut Vec<StreamPiece>, text: String) {
        if text.is_empty() || (self.calls_seen && text.trim().is_empty()) {
            return;
        }
        self.released_any = true;
        out.push(StreamPiece::Content(text));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Feeds `text` a few characters at a time.
    fn run(parser: ToolParser, text: &str, step: usize) -> (Vec<StreamPiece>, usize) {
        let mut stream = ToolCallStream::new(parser);
        let chars: Vec<char> = text.chars().collect();
        let mut out = Vec::new();
        for piece in chars.chunks(step) {
            out.extend(stream.push(&piece.iter().collect::<String>()));
        }
        let (rest, failures) = stream.finish();
        out.extend(rest);
        (out, failures)
    }

    fn text_of(pieces: &[StreamPiece]) -> String {
        pieces
            .iter()
            .filter_map(|p| match p {
                StreamPiece::Content(t) => Some(t.as_str()),
                StreamPiece::Call(_) => None,
            })
            .collect()
    }

    fn calls_of(pieces: &[StreamPiece]) -> Vec<ParsedCall> {
        pieces
            .iter()
            .filter_map(|p| match p {
                StreamPiece::Call(c) => Some(c.clone()),
                StreamPiece::Content(_) => None,
            })
            .collect()
    }

    #[test]
    fn calls_come_out_whole_and_text_at_once_whatever_the_pieces() {
        let text = "Checking <b>both</b>.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"</tool\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"g\", \"arguments\": {}}\n</tool_call>";
        for step in [1, 2, 3, 7, 200] {
            let (pieces, failures) = run(ToolParser::Hermes, text, step);
            assert_eq!(failures, 0);
            assert_eq!(text_of(&pieces), "Checking <b>both</b>.\n", "step {step}");
            assert_eq!(
                calls_of(&pieces),
                vec![
                    ParsedCall {
                        name: "f".into(),
                        arguments: json!({"a": "</tool"})
                    },
                    ParsedCall {
                        name: "g".into(),
                        arguments: json!({})
                    },
                ],
                "step {step}"
            );
        }
        // The first call goes out before the second is written.
        let mut stream = ToolCallStream::new(ToolParser::Hermes);
        let first =
            stream.push("<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>\n<tool_ca");
        assert_eq!(calls_of(&first).len(), 1);
    }

    #[test]
    fn text_without_calls_streams_unchanged() {
        let text = "a < b and [TOOL] {x} <tool> done";
        for parser in [ToolParser::Hermes, ToolParser::Mistral] {
            let (pieces, _) = run(parser, text, 2);
            assert_eq!(text_of(&pieces), text);
        }
        let (pieces, _) = run(ToolParser::Llama3Json, "No call: {x}", 1);
        assert_eq!(text_of(&pieces), "No call: {x}");
    }

    #[test]
    fn an_unfinished_call_is_text_and_a_failure() {
        let text = "<tool_call>{\"name\": \"f\", \"argu";
        let (pieces, failures) = run(ToolParser::Hermes, text, 4);
        assert_eq!((text_of(&pieces).as_str(), failures), (text, 1));
    }

    #[test]
    fn llama3_and_mistral_calls_are_read_at_the_end() {
        let (pieces, _) = run(
            ToolParser::Llama3Json,
            "{\"name\": \"f\", \"parameters\": {\"a\": 1}}",
            3,
        );
        assert_eq!(
            calls_of(&pieces),
            vec![ParsedCall {
                name: "f".into(),
                arguments: json!({"a": 1})
            }]
        );
        let (pieces, _) = run(
            ToolParser::Mistral,
            "Sure. [TOOL_CALLS][{\"name\": \"f\", \"arguments\": {}}]",
            5,
        );
        assert_eq!(text_of(&pieces), "Sure. ");
        assert_eq!(calls_of(&pieces).len(), 1);
    }
}
