//! What the load generator reports: one [`CaseResult`] per case, printed as JSON for `cargo xtask bench`.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// One measuring window's figures, by name (`rate`, `p99_us`, `server_cpu_pct`, ...).
pub(crate) type Sample = BTreeMap<String, f64>;

/// The median and spread of one figure over the samples.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Stat {
    /// The median sample.
    pub(crate) median: f64,
    /// The smallest sample.
    pub(crate) min: f64,
    /// The largest sample.
    pub(crate) max: f64,
}

/// What the delivery checks found.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Checks {
    /// Deliveries the scenario expected.
    pub(crate) expected: u64,
    /// Deliveries that arrived.
    pub(crate) delivered: u64,
    /// Expected deliveries that never arrived.
    pub(crate) lost: u64,
    /// Deliveries beyond the expected count.
    pub(crate) duplicated: u64,
    /// Deliveries whose sequence number was not the next one from their sender (a gap, a repeat or a swap).
    pub(crate) out_of_order: u64,
    /// Hub messages whose `offset` was not the previous one plus 1.
    pub(crate) offset_gaps: u64,
    /// How many errors there were (connections that failed or saw something unexpected).
    pub(crate) error_count: u64,
    /// The first few errors, verbatim.
    pub(crate) errors: Vec<String>,
}

impl Checks {
    /// Records an error; only the first 10 are kept verbatim.
    pub(crate) fn error(&mut self, message: impl Into<String>) {
        self.error_count += 1;
        if self.errors.len() < 10 {
            self.errors.push(message.into());
        }
    }

    /// Whether every check passed.
    pub(crate) fn passed(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && self.out_of_order == 0
            && self.offset_gaps == 0
            && self.error_count == 0
    }
}

/// The result of one case of one scenario against one target.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseResult {
    /// The scenario (`echo`, `room`, ...).
    pub(crate) scenario: String,
    /// The case within it (`100x20B`, `n100`, ...).
    pub(crate) case: String,
    /// The target (`hub`, `ref`, `bun`).
    pub(crate) target: String,
    /// Whether every check passed.
    pub(crate) ok: bool,
    /// Every measuring window's figures.
    pub(crate) samples: Vec<Sample>,
    /// Median and spread of each figure.
    pub(crate) summary: BTreeMap<String, Stat>,
    /// Figures measured once for the whole case (RSS, leaked fds, ...).
    pub(crate) totals: BTreeMap<String, f64>,
    /// The delivery checks.
    pub(crate) checks: Checks,
}

impl CaseResult {
    /// A result from samples and checks; the summary is computed here.
    pub(crate) fn new(scenario: &str, case: String, target: &str, samples: Vec<Sample>, checks: Checks) -> Self {
        let summary = summarize(&samples);
        Self {
            scenario: scenario.to_owned(),
            case,
            target: target.to_owned(),
            ok: checks.passed(),
            samples,
            summary,
            totals: BTreeMap::new(),
            checks,
        }
    }

    /// Adds a whole-case figure.
    pub(crate) fn total(mut self, name: &str, value: f64) -> Self {
        self.totals.insert(name.to_owned(), value);
        self
    }
}

/// Median, minimum and maximum of each figure that appears in the samples.
pub(crate) fn summarize(samples: &[Sample]) -> BTreeMap<String, Stat> {
    let mut by_name: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for sample in samples {
        for (name, value) in sample {
            by_name.entry(name.clone()).or_default().push(*value);
        }
    }
    by_name
        .into_iter()
        .map(|(name, mut values)| {
            values.sort_by(f64::total_cmp);
            let n = values.len();
            let median = if n % 2 == 1 { values[n / 2] } else { (values[n / 2 - 1] + values[n / 2]) / 2.0 };
            (name, Stat { median, min: values[0], max: values[n - 1] })
        })
        .collect()
}

/// A latency histogram in microseconds, 1 µs to 100 s at 3 significant figures.
pub(crate) fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 100_000_000, 3).expect("valid histogram bounds")
}

/// Adds `{prefix}_p50_us`, `_p99_us`, `_p999_us`, `_max_us` (and `_count`) from `h` to `sample`; nothing when it
/// is empty.
pub(crate) fn put_latency(sample: &mut Sample, prefix: &str, h: &Histogram<u64>) {
    if h.is_empty() {
        return;
    }
    sample.insert(format!("{prefix}_p50_us"), h.value_at_quantile(0.50) as f64);
    sample.insert(format!("{prefix}_p99_us"), h.value_at_quantile(0.99) as f64);
    sample.insert(format!("{prefix}_p999_us"), h.value_at_quantile(0.999) as f64);
    sample.insert(format!("{prefix}_max_us"), h.max() as f64);
    sample.insert(format!("{prefix}_count"), h.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_median_and_spread() {
        let samples: Vec<Sample> =
            [3.0, 1.0, 2.0, 10.0].iter().map(|v| Sample::from([("rate".to_owned(), *v)])).collect();
        let s = summarize(&samples)["rate"];
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
    }
}
