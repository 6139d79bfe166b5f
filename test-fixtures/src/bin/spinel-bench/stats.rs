//! Latency samples and their summary line.

use std::time::Duration;

/// Samples of one measurement.
#[derive(Default)]
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn push(&mut self, d: Duration) {
        self.0.push(d);
    }

    pub fn extend(&mut self, more: impl IntoIterator<Item = Duration>) {
        self.0.extend(more);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The `p`-quantile (0.0..=1.0) of the samples by nearest rank: the
    /// smallest sample with at least a share `p` of the samples at or
    /// below it (`p = 0` gives the minimum).
    pub fn quantile(&self, p: f64) -> Duration {
        let mut sorted = self.0.clone();
        sorted.sort();
        if sorted.is_empty() {
            return Duration::ZERO;
        }
        let rank = (sorted.len() as f64 * p).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }

    /// [`Self::quantile`] in milliseconds.
    pub fn ms(&self, p: f64) -> f64 {
        self.quantile(p).as_secs_f64() * 1e3
    }

    /// `n samples: min, p50, p99, max` in milliseconds.
    pub fn summary(&self) -> String {
        format!(
            "{} samples: min {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.0.len(),
            self.ms(0.0),
            self.ms(0.5),
            self.ms(0.99),
            self.ms(1.0)
        )
    }
}

/// Whether a smaller or a larger value of a result is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// Prints a machine-readable result line, `result: NAME VALUE UNIT
/// lower|higher` (what `compare` reads from each row it runs).
pub fn result(name: &str, value: f64, unit: &str, better: Better) {
    let better = match better {
        Better::Lower => "lower",
        Better::Higher => "higher",
    };
    println!("result: {name} {value} {unit} {better}");
}
