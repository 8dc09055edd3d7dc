//! Reading tool calls out of a stream of text pieces: text that can't be part
//! of a call goes out at once, text that may start one is held, and each call
//! goes out as soon as the format shows where it ends (Hermes'
//! `</tool_call>`), else when the answer ends. Read `incremental`ly, a Hermes
//! call written name first goes out as it is written: its name once known, then
//! its arguments piece by piece, as OpenAI streams them.

use super::parser::{ParsedCall, ToolParser};

/// What a stream releases.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamPiece {
    /// Answer text.
    Content(String),
    /// A complete call.
    Call(ParsedCall),
    /// The start of a call whose arguments follow in pieces.
    CallStart(String),
    /// The next piece of the started call's arguments (JSON text).
    Arguments(String),
}

/// A Hermes call being streamed: how far its arguments have been scanned and
/// sent in the pending text, and where they end.
#[derive(Debug, Default)]
struct OpenCall {
    scanner: JsonScanner,
    scanned: usize,
    sent: usize,
    ended: Option<usize>,
}

/// Finds where a JSON object ends: depth outside strings.
#[derive(Debug, Default)]
struct JsonScanner {
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl JsonScanner {
    /// Takes one byte; true when it closed the outermost object.
    fn step(&mut self, byte: u8) -> bool {
        if self.in_string {
            match (self.escaped, byte) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_string = false,
                _ => {}
            }
            return false;
        }
        match byte {
            b'"' => self.in_string = true,
            b'{' | b'[' => self.depth += 1,
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                return self.depth == 0;
            }
            _ => {}
        }
        false
    }
}

/// `{"name": "<name>", "arguments": ` after the block's opening: the name and
/// where the arguments begin; `Err` when the block is not written that way
/// (read whole instead), `Ok(None)` while it may still be.
fn hermes_header(block: &str) -> Result<Option<(String, usize)>, ()> {
    const OPEN: &str = "<tool_call>";
    let mut at = OPEN.len();
    let skip_ws = |at: &mut usize| {
        while block
            .as_bytes()
            .get(*at)
            .is_some_and(u8::is_ascii_whitespace)
        {
            *at += 1;
        }
    };
    let expect = |at: &mut usize, literal: &str| -> Result<bool, ()> {
        skip_ws(at);
        let rest = &block[*at..];
        if rest.starts_with(literal) {
            *at += literal.len();
            Ok(true)
        } else if literal.starts_with(rest) {
            Ok(false)
        } else {
            Err(())
        }
    };
    for literal in ["{", "\"name\"", ":"] {
        if !expect(&mut at, literal)? {
            return Ok(None);
        }
    }
    skip_ws(&mut at);
    let mut stream = serde_json::Deserializer::from_str(&block[at..]).into_iter::<String>();
    let name = match stream.next() {
        Some(Ok(name)) => name,
        Some(Err(e)) if e.is_eof() => return Ok(None),
        None => return Ok(None),
        Some(Err(_)) => return Err(()),
    };
    at += stream.byte_offset();
    for literal in [",", "\"arguments\"", ":"] {
        if !expect(&mut at, literal)? {
            return Ok(None);
        }
    }
    skip_ws(&mut at);
    match block.as_bytes().get(at) {
        None => Ok(None),
        Some(b'{') => Ok(Some((name, at))),
        Some(_) => Err(()),
    }
}

/// Splits a streamed answer into text and calls.
#[derive(Debug)]
pub struct ToolCallStream {
    parser: ToolParser,
    incremental: bool,
    open: Option<OpenCall>,
    /// The block being held is read whole (not written name first).
    whole: bool,
    pending: String,
    in_call: bool,
    released_any: bool,
    /// A call just went out: whitespace after it is not content.
    after_call: bool,
    failures: usize,
}

impl ToolCallStream {
    /// A stream read in `parser`'s format; `incremental`: Hermes calls go out
    /// as they are written.
    pub fn new(parser: ToolParser, incremental: bool) -> Self {
        Self {
            parser,
            incremental: incremental && parser == ToolParser::Hermes,
            open: None,
            whole: false,
            pending: String::new(),
            in_call: false,
            released_any: false,
            after_call: false,
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
            let end = self.parser.call_end(&self.pending);
            if self.incremental && !self.whole {
                self.stream_open_call(&mut out, end);
            }
            let Some(end) = end else {
                break;
            };
            let block: String = self.pending.drain(..end).collect();
            self.in_call = false;
            self.whole = false;
            match self.open.take() {
                Some(open) => self.closed(&block, open),
                None => self.parsed(&mut out, &block),
            }
        }
        out
    }

    /// Sends what is new of the call being written: its start once the name
    /// is known, then its arguments as far as they go.
    fn stream_open_call(&mut self, out: &mut Vec<StreamPiece>, end: Option<usize>) {
        let limit = end.unwrap_or(self.pending.len());
        if self.open.is_none() {
            match hermes_header(&self.pending[..limit]) {
                Ok(Some((name, arguments_at))) => {
                    out.push(StreamPiece::CallStart(name));
                    self.open = Some(OpenCall {
                        scanned: arguments_at,
                        sent: arguments_at,
                        ..OpenCall::default()
                    });
                }
                Ok(None) => return,
                Err(()) => {
                    self.whole = true;
                    return;
                }
            }
        }
        let Some(open) = self.open.as_mut() else {
            return;
        };
        let bytes = self.pending.as_bytes();
        while open.ended.is_none() && open.scanned < limit {
            if open.scanner.step(bytes[open.scanned]) {
                open.ended = Some(open.scanned + 1);
            }
            open.scanned += 1;
        }
        let upto = open.ended.unwrap_or(open.scanned);
        // Never split a character: send up to the last boundary.
        let upto = (open.sent..=upto)
            .rev()
            .find(|&i| self.pending.is_char_boundary(i))
            .unwrap_or(open.sent);
        if upto > open.sent {
            out.push(StreamPiece::Arguments(
                self.pending[open.sent..upto].to_owned(),
            ));
            open.sent = upto;
        }
    }

    /// A streamed call's block is complete: count it, or count a failure when
    /// it does not read as a call after all.
    fn closed(&mut self, block: &str, open: OpenCall) {
        let parsed = self.parser.parse(block);
        if open.ended.is_none() || parsed.calls.len() != 1 {
            self.failures += 1;
        }
        self.after_call = true;
    }

    /// The end of the answer: whatever was held, read; and how many begun
    /// calls could not be read (they went out as text).
    pub fn finish(mut self) -> (Vec<StreamPiece>, usize) {
        let mut out = Vec::new();
        let rest = std::mem::take(&mut self.pending);
        if let Some(open) = self.open.take() {
            // A streamed call the answer cut off: its start and arguments so
            // far are out; it counts as a failure.
            self.closed(&rest, open);
        } else if self.in_call {
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
        self.after_call = !parsed.calls.is_empty();
        out.extend(parsed.calls.into_iter().map(StreamPiece::Call));
    }

    /// Text goes out, except the whitespace that follows a call.
    fn content(&mut self, out: &mut Vec<StreamPiece>, text: String) {
        let text = if self.after_call {
            text.trim_start().to_owned()
        } else {
            text
        };
        if text.is_empty() {
            return;
        }
        self.after_call = false;
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
        let mut stream = ToolCallStream::new(parser, false);
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
                _ => None,
            })
            .collect()
    }

    fn calls_of(pieces: &[StreamPiece]) -> Vec<ParsedCall> {
        pieces
            .iter()
            .filter_map(|p| match p {
                StreamPiece::Call(c) => Some(c.clone()),
                _ => None,
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
        let mut stream = ToolCallStream::new(ToolParser::Hermes, false);
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

    #[test]
    fn incremental_calls_go_out_name_first_then_arguments_in_pieces() {
        let text = "Sure.\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": \"x}y\\\"\", \"b\": [1, {\"c\": 2}]}}\n</tool_call>\nDone.";
        for step in [1, 2, 5, 300] {
            let mut stream = ToolCallStream::new(ToolParser::Hermes, true);
            let mut pieces = Vec::new();
            let chars: Vec<char> = text.chars().collect();
            for piece in chars.chunks(step) {
                pieces.extend(stream.push(&piece.iter().collect::<String>()));
            }
            let (rest, failures) = stream.finish();
            pieces.extend(rest);
            assert_eq!(failures, 0, "step {step}");
            let start = pieces
                .iter()
                .position(|p| *p == StreamPiece::CallStart("f".into()))
                .unwrap();
            let arguments: String = pieces
                .iter()
                .filter_map(|p| match p {
                    StreamPiece::Arguments(a) => Some(a.as_str()),
                    _ => None,
                })
                .collect();
            assert_eq!(
                arguments, "{\"a\": \"x}y\\\"\", \"b\": [1, {\"c\": 2}]}",
                "step {step}"
            );
            let first_arguments = pieces
                .iter()
                .position(|p| matches!(p, StreamPiece::Arguments(_)))
                .unwrap();
            assert!(start < first_arguments);
            if step == 1 {
                let count = pieces
                    .iter()
                    .filter(|p| matches!(p, StreamPiece::Arguments(_)))
                    .count();
                assert!(
                    count > 10,
                    "arguments go out as they are written: {count} pieces"
                );
            }
            assert_eq!(text_of(&pieces), "Sure.\nDone.", "step {step}");
        }
    }

    #[test]
    fn calls_not_written_name_first_are_read_whole() {
        let text = "<tool_call>{\"arguments\": {}, \"name\": \"g\"}</tool_call>";
        let mut stream = ToolCallStream::new(ToolParser::Hermes, true);
        let mut pieces = stream.push(text);
        pieces.extend(stream.finish().0);
        assert_eq!(
            calls_of(&pieces),
            vec![ParsedCall {
                name: "g".into(),
                arguments: json!({})
            }]
        );
    }

    #[test]
    fn a_streamed_call_cut_off_counts_as_a_failure() {
        let mut stream = ToolCallStream::new(ToolParser::Hermes, true);
        let pieces = stream.push("<tool_call>{\"name\": \"f\", \"arguments\": {\"a\": 1");
        assert_eq!(pieces[0], StreamPiece::CallStart("f".into()));
        assert_eq!(stream.finish().1, 1);
    }
}
