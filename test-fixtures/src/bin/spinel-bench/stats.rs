//! Latency samples and their summary line.

use std::time::Duration;

/// Samples of one measurement.
#[derive(Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    /// The `p`-quantile (0.0..=1.0) of the samples, nearest rank.
    pub fn quantile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[i.min(sorted.len() - 1)]
    }

    /// `n samples: min, p50, p99, max` in milliseconds.
    pub fn summary(&self) -> String {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        format!(
            "{} samples: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.0.len(),
            ms(self.quantile(0.0)),
            ms(self.quantile(0.5)),
            ms(self.quantile(0.99)),
            ms(self.quantile(1.0))
        )
    }
}
