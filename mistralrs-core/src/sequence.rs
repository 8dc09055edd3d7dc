//! One request inside the engine: its tokens, how far the KV cache has computed
//! them, and what happens when a new token arrives (text, stop rules, events).

use std::sync::Arc;
use std::time::Instant;

use mistralrs_paged_attn::SeqId;
use tokio::sync::mpsc::UnboundedSender;

use crate::constraint::ConstrainedOutput;
use crate::metrics::ModelMetrics;
use crate::request::{Completion, Event, Failure, FinishReason, GeneratedToken, Usage};
use crate::sampling::{Sampled, Sampler};
use crate::tokenizer::{IncrementalDecoder, Tokenizer};

/// What shapes a sequence's output besides sampling: stop rules, a grammar,
/// and whether special tokens show as text.
#[derive(Debug, Default)]
pub(crate) struct OutputRules {
    pub(crate) stop: StopRules,
    pub(crate) constraint: Option<ConstrainedOutput>,
    pub(crate) keep_special_tokens: bool,
}

/// When a sequence stops, besides its length limit.
#[derive(Debug, Clone, Default)]
pub(crate) struct StopRules {
    pub(crate) token_ids: Vec<u32>,
    pub(crate) strings: Vec<String>,
}

impl StopRules {
    /// Splits `text` into what may be released now and what must wait because it
    /// could be the start of a stop string; or, when a stop string occurs, the text
    /// before it.
    fn scan(&self, text: &str) -> Scan {
        if let Some(at) = self
            .strings
            .iter()
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            return Scan::Stopped(at);
        }
        let held = self
            .strings
            .iter()
            .flat_map(|stop| {
                (1..stop.len().min(text.len() + 1))
                    .rev()
                    .filter(|&k| {
                        text.is_char_boundary(text.len() - k)
                            && stop.starts_with(&text[text.len() - k..])
                    })
                    .take(1)
            })
            .max()
            .unwrap_or(0);
        Scan::Release(text.len() - held)
    }
}

enum Scan {
    /// Release this many bytes, hold the rest.
    Release(usize),
    /// A stop string starts at this byte.
    Stopped(usize),
}

/// The outcome of adding a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Advance {
    /// Keep generating.
    Continue,
    /// Generation is over.
    Finished(FinishReason),
    /// The caller dropped its stream.
    CallerGone,
    /// The grammar engine failed (logged where it happened).
    Failed,
}

/// A request being served.
#[derive(Debug)]
pub(crate) struct Sequence {
    pub(crate) id: SeqId,
    /// Prompt then output.
    pub(crate) tokens: Vec<u32>,
    pub(crate) prompt_len: usize,
    /// Leading tokens whose keys and values are in the cache.
    pub(crate) num_computed: usize,
    pub(crate) cached_prompt_tokens: usize,
    /// Total length at which generation stops.
    pub(crate) max_len: usize,
    sampler: Sampler,
    constraint: Option<ConstrainedOutput>,
    stop: StopRules,
    decoder: IncrementalDecoder,
    held_back: String,
    events: UnboundedSender<Event>,
    submitted: Instant,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
    metrics: Arc<ModelMetrics>,
}

impl Sequence {
    pub(crate) fn new(
        id: SeqId,
        prompt: Vec<u32>,
        max_len: usize,
        sampler: Sampler,
        output: OutputRules,
        events: UnboundedSender<Event>,
        metrics: Arc<ModelMetrics>,
    ) -> Self {
        Self {
            id,
            prompt_len: prompt.len(),
            tokens: prompt,
            num_computed: 0,
            cached_prompt_tokens: 0,
            max_len,
            sampler,
            constraint: output.constraint,
            stop: output.stop,
            decoder: IncrementalDecoder::new(output.keep_special_tokens),
            held_back: String::new(),
            events,
            submitted: Instant::now(),
            first_token: None,
            last_token: None,
            metrics,
        }
    }

    /// Tokens still to run through the model (at least one while generating).
    pub(crate) fn pending(&self) -> usize {
        self.tokens.len() - self.num_computed
    }

    pub(crate) fn output_len(&self) -> usize {
        self.tokens.len() - self.prompt_len
    }

    /// Whether the caller has dropped its stream.
    pub(crate) fn caller_gone(&self) -> bool {
        self.events.is_closed()
    }

    /// Chooses the next token from `logits` (within the grammar, if any) and
    /// applies it.
    pub(crate) fn sample_and_accept(&mut self, logits: &[f32], tokenizer: &Tokenizer) -> Advance {
        let output_len = self.output_len();
        let Some(constraint) = self.constraint.as_mut() else {
            let sampled = self.sampler.sample(logits, &self.tokens, output_len);
            return self.accept(sampled, tokenizer);
        };
        let mut masked = Ok(());
        let sampled = self
            .sampler
            .sample_within(logits, &self.tokens, output_len, |scores| {
                masked = constraint.mask(scores);
            });
        if let Err(e) = masked.and_then(|()| constraint.accept(sampled.token)) {
            tracing::error!(seq = self.id, "constrained decoding failed: {e}");
            return Advance::Failed;
        }
        let complete = constraint.is_complete();
        match self.accept(sampled, tokenizer) {
            // The grammar allows nothing more: the output is whole.
            Advance::Continue if complete => {
                self.release_held_back();
                Advance::Finished(FinishReason::Stop)
            }
            other => other,
        }
    }

    /// Sends text held back for a stop string that can no longer complete.
    fn release_held_back(&mut self) {
        let text = std::mem::take(&mut self.held_back);
        if !text.is_empty() {
            let _ = self.events.send(Event::Token(GeneratedToken {
                id: *self.tokens.last().unwrap_or(&0),
                text,
                logprob: None,
                top_logprobs: Vec::new(),
            }));
        }
    }

    fn accept(&mut self, sampled: Sampled, tokenizer: &Tokenizer) -> Advance {
        self.record_token_timing();
        self.tokens.push(sampled.token);
        if self.stop.token_ids.contains(&sampled.token) {
            // Stop tokens count as generated but are not shown; text held back for
            // a stop string that never completed is released now.
            let text = std::mem::take(&mut self.held_back);
            if text.is_empty() {
                return Advance::Finished(FinishReason::Stop);
            }
            return self.emit(sampled, text, Some(FinishReason::Stop), tokenizer);
        }
        let piece = match self.decoder.step(tokenizer, sampled.token) {
            Ok(piece) => piece.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(seq = self.id, "detokenization failed: {e}");
                String::new()
            }
        };
        self.held_back.push_str(&piece);
        let at_limit = self.tokens.len() >= self.max_len;
        match self.stop.scan(&self.held_back) {
            Scan::Stopped(at) => {
                let text = self.held_back[..at].to_owned();
                self.held_back.clear();
                self.emit(sampled, text, Some(FinishReason::Stop), tokenizer)
            }
            Scan::Release(_) if at_limit => {
                let text = std::mem::take(&mut self.held_back);
                self.emit(sampled, text, Some(FinishReason::Length), tokenizer)
            }
            Scan::Release(n) => {
                let text: String = self.held_back.drain(..n).collect();
                self.emit(sampled, text, None, tokenizer)
            }
        }
    }

    fn emit(
        &mut self,
        sampled: Sampled,
        text: String,
        finish: Option<FinishReason>,
        tokenizer: &Tokenizer,
    ) -> Advance {
        let top = sampled
            .top
            .iter()
            .map(|&(id, lp)| (id, tokenizer.decode(&[id], false).unwrap_or_default(), lp))
            .collect();
        let token = GeneratedToken {
            id: sampled.token,
            text,
            logprob: sampled.logprob,
            top_logprobs: top,
        };
        if self.events.send(Event::Token(token)).is_err() {
            return Advance::CallerGone;
        }
        finish.map_or(Advance::Continue, Advance::Finished)
    }

    /// Time to first token (and the prompt's tokens, now prefilled) or the gap
    /// since the previous token.
    fn record_token_timing(&mut self) {
        let now = Instant::now();
        match self.last_token {
            None => {
                self.first_token = Some(now);
                self.metrics
                    .time_to_first_token
                    .observe((now - self.submitted).as_secs_f64());
                self.metrics.prompt_tokens.inc_by(self.prompt_len as u64);
            }
            Some(last) => self
                .metrics
                .inter_token_latency
                .observe((now - last).as_secs_f64()),
        }
        self.last_token = Some(now);
        self.metrics.generation_tokens.inc();
    }

    /// Sends the final event.
    pub(crate) fn finish(&self, reason: FinishReason) {
        let now = Instant::now();
        let completion = Completion {
            finish_reason: reason,
            usage: Usage {
                prompt_tokens: self.prompt_len,
                cached_prompt_tokens: self.cached_prompt_tokens,
                completion_tokens: self.output_len(),
            },
            time_to_first_token: self.first_token.map(|t| t - self.submitted),
            duration: now - self.submitted,
        };
        if reason != FinishReason::Cancelled {
            self.metrics
                .request_duration
                .observe(completion.duration.as_secs_f64());
        }
        let _ = self.events.send(Event::Done(completion));
    }

    /// Sends an error as the final event.
    pub(crate) fn fail(&self, failure: Failure) {
        let _ = self.events.send(Event::Error(failure));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(stops: &[&str]) -> StopRules {
        StopRules {
            token_ids: vec![],
            strings: stops.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn released(r: &StopRules, text: &str) -> usize {
        match r.scan(text) {
            Scan::Release(n) => n,
            Scan::Stopped(_) => panic!("unexpected stop"),
        }
    }

    #[test]
    fn holds_back_only_a_possible_stop_prefix() {
        let r = rules(&["STOP", "\n\n"]);
        assert_eq!(released(&r, "hello"), 5);
        assert_eq!(released(&r, "hello ST"), 6);
        assert_eq!(released(&r, "hello\n"), 5);
        assert_eq!(released(&rules(&[]), "anything"), 8);
    }

    #[test]
    fn finds_the_earliest_stop_string() {
        assert!(matches!(rules(&["b", "c"]).scan("xxcxb"), Scan::Stopped(2)));
    }

    #[test]
    fn multibyte_text_is_never_split() {
        let r = rules(&["é!"]);
        assert_eq!(released(&r, "caf\u{e9}"), 3);
    }
}
