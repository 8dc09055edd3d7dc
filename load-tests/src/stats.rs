//! Percentiles of latency samples.

use serde::Serialize;

/// p50/p95/p99 and mean of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: usize,
    pub(crate) mean_ms: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p95_ms: f64,
    pub(crate) p99_ms: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (seconds).
    pub(crate) fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            samples[((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1] * 1e3
        };
        Self {
            count: samples.len(),
            mean_ms: samples.iter().sum::<f64>() / samples.len() as f64 * 1e3,
            p50_ms: rank(0.50),
            p95_ms: rank(0.95),
            p99_ms: rank(0.99),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let p = Percentiles::of((1..=100).map(|i| i as f64 / 1000.0).collect());
        assert_eq!(
            (p.count, p.p50_ms, p.p95_ms, p.p99_ms),
            (100, 50.0, 95.0, 99.0)
        );
        assert!((p.mean_ms - 50.5).abs() < 1e-9);
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }
}
