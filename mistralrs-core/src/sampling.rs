//! Choosing the next token from logits: penalties, temperature, top-k, top-p,
//! min-p, a per-request seed, and log-probabilities for the caller.
//!
//! Penalties follow vLLM: the repetition penalty (Hugging Face's, divides positive
//! logits and multiplies negative ones) covers prompt and output; presence and
//! frequency penalties (OpenAI's, subtracted) cover the output only.
//! Log-probabilities are those of the model's raw distribution.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

use crate::{Error, Result};

/// How a request wants its tokens chosen. The default is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 is greedy; higher flattens the distribution. OpenAI's range, 0 to 2.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (`None`: all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of tokens whose probability reaches `top_p` (1: all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely one (0: none).
    pub min_p: f32,
    /// Hugging Face repetition penalty over prompt and output (1: off).
    pub repetition_penalty: f32,
    /// Subtracted once from every token already in the output (-2 to 2).
    pub presence_penalty: f32,
    /// Subtracted per occurrence in the output (-2 to 2).
    pub frequency_penalty: f32,
    /// Seed of the request's random stream; the same seed gives the same output.
    pub seed: Option<u64>,
    /// Return the log-probability of each chosen token and of this many
    /// alternatives (at most 20, like OpenAI).
    pub logprobs: Option<usize>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: None,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            logprobs: None,
        }
    }
}

/// Most alternatives a request may ask log-probabilities for.
pub const MAX_TOP_LOGPROBS: usize = 20;

impl SamplingParams {
    /// Checks every field's range, naming the first one out of it.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, range: &str| {
            Err(Error::InvalidRequest(format!("`{field}` must be {range}")))
        };
        if !(0.0..=2.0).contains(&self.temperature) {
            return bad("temperature", "between 0 and 2");
        }
        if self.top_k == Some(0) {
            return bad("top_k", "at least 1");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "between 0 and 1");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "a positive number");
        }
        if !(-2.0..=2.0).contains(&self.presence_penalty) {
            return bad("presence_penalty", "between -2 and 2");
        }
        if !(-2.0..=2.0).contains(&self.frequency_penalty) {
            return bad("frequency_penalty", "between -2 and 2");
        }
        if self.logprobs.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
            return bad("top_logprobs", "at most 20");
        }
        Ok(())
    }
}

/// A chosen token with its log-probability and the top alternatives, when asked.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The token.
    pub token: u32,
    /// Its log-probability under the model, when logprobs were asked for.
    pub logprob: Option<f32>,
    /// The most likely tokens and their log-probabilities, best first.
    pub top: Vec<(u32, f32)>,
}

/// Per-request sampling state: the parameters and the seeded random stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl Sampler {
    /// A sampler seeded with `params.seed`, or from the OS when unset.
    pub fn new(params: SamplingParams) -> Self {
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::from_os_rng(),
        };
        Self { params, rng }
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Chooses the next token. `context` is prompt then output; the output is its
    /// last `output_len` tokens.
    pub fn sample(&mut self, logits: &[f32], context: &[u32], output_len: usize) -> Sampled {
        self.sample_within(logits, context, output_len, |_| {})
    }

    /// [`Self::sample`] after `restrict` has set the scores of forbidden tokens
    /// to -inf (a grammar's mask); log-probabilities stay the model's own.
    pub fn sample_within(
        &mut self,
        logits: &[f32],
        context: &[u32],
        output_len: usize,
        restrict: impl FnOnce(&mut [f32]),
    ) -> Sampled {
        let (logprob, top) = match self.params.logprobs {
            Some(n) => (true, n),
            None => (false, 0),
        };
        let raw_logprobs = logprob.then(|| log_softmax(logits));
        let mut scores = logits.to_vec();
        self.apply_penalties(&mut scores, context, output_len);
        restrict(&mut scores);
        let token = if self.params.temperature == 0.0 || self.params.top_k == Some(1) {
            argmax(&scores)
        } else {
            self.draw(&scores)
        };
        match raw_logprobs {
            None => Sampled {
                token,
                logprob: None,
                top: Vec::new(),
            },
            Some(lp) => Sampled {
                token,
                logprob: Some(lp[token as usize]),
                top: top_n(&lp, top),
            },
        }
    }

    fn apply_penalties(&self, scores: &mut [f32], context: &[u32], output_len: usize) {
        let p = &self.params;
        if p.repetition_penalty != 1.0 {
            let mut seen = vec![false; scores.len()];
            for &t in context {
                if let Some(s) = seen.get_mut(t as usize) {
                    *s = true;
                }
            }
            for (score, _) in scores.iter_mut().zip(seen).filter(|(_, s)| *s) {
                *score = if *score > 0.0 {
                    *score / p.repetition_penalty
                } else {
                    *score * p.repetition_penalty
                };
            }
        }
        if p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
            let mut counts = std::collections::HashMap::<u32, f32>::new();
            for &t in &context[context.len().saturating_sub(output_len)..] {
                *counts.entry(t).or_default() += 1.0;
            }
            for (t, count) in counts {
                if let Some(score) = scores.get_mut(t as usize) {
                    *score -= p.presence_penalty + p.frequency_penalty * count;
                }
            }
        }
    }

    /// Draws from the tempered distribution after top-k, top-p and min-p.
    fn draw(&mut self, scores: &[f32]) -> u32 {
        let p = &self.params;
        let tempered: Vec<f32> = scores.iter().map(|s| s / p.temperature).collect();
        let probs = softmax(&tempered);
        // Most likely first; ties by token id, so a seed always replays the same way.
        let mut order: Vec<u32> = (0..probs.len() as u32).collect();
        order.sort_by(|&a, &b| {
            probs[b as usize]
                .total_cmp(&probs[a as usize])
                .then(a.cmp(&b))
        });
        let mut keep = p.top_k.unwrap_or(order.len()).min(order.len());
        let mut cumulative = 0.0;
        for (i, &t) in order[..keep].iter().enumerate() {
            cumulative += probs[t as usize];
            if cumulative >= p.top_p {
                keep = i + 1;
                break;
            }
        }
        let floor = p.min_p * probs[order[0] as usize];
        let kept: Vec<u32> = order[..keep]
            .iter()
            .copied()
            .filter(|&t| probs[t as usize] >= floor)
            .collect();
        let total: f32 = kept.iter().map(|&t| probs[t as usize]).sum();
        let mut target = self.uniform() * total;
        for &t in &kept {
            target -= probs[t as usize];
            if target <= 0.0 {
                return t;
            }
        }
        *kept.last().unwrap_or(&order[0])
    }

    /// Uniform in `[0, 1)` from 24 random bits.
    fn uniform(&mut self) -> f32 {
        (self.rng.next_u32() >> 8) as f32 / (1u32 << 24) as f32
    }
}

fn argmax(xs: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in xs.iter().enumerate() {
        if *x > xs[best] {
            best = i;
        }
    }
    best as u32
}

fn softmax(xs: &[f32]) -> Vec<f32> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = xs.iter().map(|x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

fn log_softmax(xs: &[f32]) -> Vec<f32> {
    let max = xs.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let log_sum = xs.iter().map(|x| (x - max).exp()).sum::<f32>().ln() + max;
    xs.iter().map(|x| x - log_sum).collect()
}

fn top_n(logprobs: &[f32], n: usize) -> Vec<(u32, f32)> {
    let mut order: Vec<u32> = (0..logprobs.len() as u32).collect();
    order.sort_by(|&a, &b| {
        logprobs[b as usize]
            .total_cmp(&logprobs[a as usize])
            .then(a.cmp(&b))
    });
    order
        .into_iter()
        .take(n)
        .map(|t| (t, logprobs[t as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
        let mut p = SamplingParams {
            seed: Some(7),
            ..Default::default()
        };
        f(&mut p);
        p
    }

    const LOGITS: [f32; 5] = [1.0, 3.0, 2.0, 0.5, 2.9];

    fn histogram(p: SamplingParams, draws: usize) -> [usize; 5] {
        let mut s = Sampler::new(p);
        let mut h = [0; 5];
        for _ in 0..draws {
            h[s.sample(&LOGITS, &[], 0).token as usize] += 1;
        }
        h
    }

    #[test]
    fn greedy_takes_the_argmax() {
        assert_eq!(
            Sampler::new(params(|_| {})).sample(&LOGITS, &[], 0).token,
            1
        );
    }

    #[test]
    fn same_seed_same_tokens_different_seed_different_tokens() {
        let p = params(|p| p.temperature = 1.0);
        let run = |p: SamplingParams| {
            let mut s = Sampler::new(p);
            (0..64)
                .map(|_| s.sample(&LOGITS, &[], 0).token)
                .collect::<Vec<_>>()
        };
        assert_eq!(run(p.clone()), run(p.clone()));
        assert_ne!(run(p.clone()), run(SamplingParams { seed: Some(8), ..p }));
    }

    #[test]
    fn top_k_top_p_min_p_restrict_the_support() {
        let h = histogram(params(|p| (p.temperature, p.top_k) = (1.0, Some(2))), 500);
        assert_eq!(h[0] + h[2] + h[3], 0, "top_k=2 keeps tokens 1 and 4: {h:?}");
        assert!(h[1] > 0 && h[4] > 0);
        // p(1) ~ 0.39, p(4) ~ 0.35: top_p 0.5 needs both, 0.3 only the first.
        let h = histogram(params(|p| (p.temperature, p.top_p) = (1.0, 0.3)), 200);
        assert_eq!(h[1], 200, "{h:?}");
        // Against the best token, token 4 has probability ratio 0.90, token 2 0.37,
        // tokens 0 and 3 0.14 and 0.08.
        let h = histogram(params(|p| (p.temperature, p.min_p) = (1.0, 0.5)), 500);
        assert_eq!(
            h[0] + h[2] + h[3],
            0,
            "min_p 0.5 keeps tokens 1 and 4: {h:?}"
        );
        let h = histogram(params(|p| (p.temperature, p.min_p) = (1.0, 0.3)), 500);
        assert_eq!(h[0] + h[3], 0, "min_p 0.3 drops tokens 0 and 3: {h:?}");
        assert!(h[2] > 0, "min_p 0.3 keeps token 2: {h:?}");
    }

    #[test]
    fn temperature_follows_the_distribution() {
        let h = histogram(params(|p| p.temperature = 1.0), 4000);
        let probs = softmax(&LOGITS);
        for (count, p) in h.iter().zip(probs) {
            let freq = *count as f32 / 4000.0;
            assert!(
                (freq - p).abs() < 0.03,
                "frequency {freq} vs probability {p}"
            );
        }
    }

    #[test]
    fn penalties_change_the_choice() {
        // Token 1 repeated in the output: frequency penalty pushes it under token 4.
        let mut s = Sampler::new(params(|p| p.frequency_penalty = 0.1));
        assert_eq!(s.sample(&LOGITS, &[1, 1], 2).token, 4);
        let mut s = Sampler::new(params(|p| p.presence_penalty = 0.2));
        assert_eq!(s.sample(&LOGITS, &[1], 1).token, 4);
        // Presence counts the output only: the same token in the prompt is free.
        assert_eq!(s.sample(&LOGITS, &[1], 0).token, 1);
        let mut s = Sampler::new(params(|p| p.repetition_penalty = 1.2));
        assert_eq!(
            s.sample(&LOGITS, &[1], 0).token,
            4,
            "repetition covers the prompt"
        );
    }

    #[test]
    fn logprobs_are_normalized_and_ranked() {
        let mut s = Sampler::new(params(|p| p.logprobs = Some(3)));
        let out = s.sample(&LOGITS, &[], 0);
        let total: f32 = log_softmax(&LOGITS).iter().map(|l| l.exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert_eq!(
            out.top.iter().map(|t| t.0).collect::<Vec<_>>(),
            vec![1, 4, 2]
        );
        assert_eq!(out.logprob, Some(out.top[0].1));
    }

    #[test]
    fn out_of_range_parameters_are_named() {
        for (p, field) in [
            (params(|p| p.temperature = 3.0), "temperature"),
            (params(|p| p.top_p = 0.0), "top_p"),
            (params(|p| p.top_k = Some(0)), "top_k"),
            (params(|p| p.min_p = 1.5), "min_p"),
            (params(|p| p.presence_penalty = -3.0), "presence_penalty"),
            (params(|p| p.frequency_penalty = 2.5), "frequency_penalty"),
            (params(|p| p.repetition_penalty = 0.0), "repetition_penalty"),
            (params(|p| p.logprobs = Some(21)), "top_logprobs"),
        ] {
            let err = p.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
        assert!(params(|_| {}).validate().is_ok());
    }
}
