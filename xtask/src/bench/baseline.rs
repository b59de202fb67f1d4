//! The committed baseline (`benches/baseline.json`): the gated figures of a run on this machine, per mode, each
//! with its tolerance; the comparison that fails the gate, and `--save-baseline`.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_json::{json, Map, Value};

use super::metrics::{Better, Row};
use super::plan::Mode;

/// The baseline file, relative to the workspace root.
pub(crate) const PATH: &str = "benches/baseline.json";

/// How a gated figure compares with the baseline.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// Within tolerance (or better).
    Pass {
        /// The baseline's figure.
        baseline: f64,
    },
    /// Worse than the baseline by more than the tolerance.
    Regressed {
        /// The baseline's figure.
        baseline: f64,
        /// The tolerance, a fraction of the baseline.
        tolerance: f64,
    },
    /// The baseline has no figure for it yet.
    New,
    /// Not gated, or the run has no figure for it.
    NotGated,
}

/// Loads the baseline; a missing file is an empty baseline.
pub(crate) fn load(root: &Path) -> Result<Value> {
    let path = root.join(PATH);
    match fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The default tolerance of a figure: how far (a fraction of the baseline) it may get worse before the gate
/// fails. Quick runs are short and CI machines noisy, so quick tolerances only catch gross regressions.
pub(crate) fn default_tolerance(mode: Mode, row: &Row) -> f64 {
    let (quick, full) = match (row.scenario.as_str(), row.better) {
        ("core", _) => (1.5, 0.5),
        ("broadcast", _) => (3.0, 1.0),
        ("churn", _) => (0.6, 0.35),
        (_, Better::Lower) => (0.5, 0.25),
        (_, Better::Higher) => (0.5, 0.2),
    };
    match mode {
        Mode::Quick => quick,
        Mode::Full => full,
    }
}

/// Compares a row with the baseline of `mode`.
pub(crate) fn verdict(baseline: &Value, mode: Mode, row: &Row) -> Verdict {
    let Some(current) = row.gated() else { return Verdict::NotGated };
    let entry = &baseline[mode.name()]["metrics"][&row.key];
    let Some(base) = entry["value"].as_f64() else { return Verdict::New };
    let tolerance = entry["tolerance"].as_f64().unwrap_or_else(|| default_tolerance(mode, row));
    let regressed = match row.better {
        Better::Higher => current < base * (1.0 - tolerance),
        Better::Lower => current > base * (1.0 + tolerance),
    };
    if regressed {
        Verdict::Regressed { baseline: base, tolerance }
    } else {
        Verdict::Pass { baseline: base }
    }
}

/// Writes this run's gated figures into the baseline's `mode` section, keeping figures of scenarios this run
/// did not measure and tolerances someone tuned by hand.
pub(crate) fn save(root: &Path, mut baseline: Value, mode: Mode, rows: &[Row], note: &str) -> Result<PathBuf> {
    if !baseline.is_object() {
        baseline = json!({});
    }
    baseline["about"] = json!(
        "cargo xtask bench compares each gated figure (hub/ref ratios; micro-benches in ns) with this file and \
         fails when one is worse by more than its tolerance (a fraction of the value). \
         Update with `cargo xtask bench [--quick] --save-baseline` on the benchmark machine."
    );
    let section = &mut baseline[mode.name()];
    if !section.is_object() {
        *section = json!({});
    }
    section["recorded"] = json!(note);
    if !section["metrics"].is_object() {
        section["metrics"] = json!({});
    }
    let metrics: &mut Map<String, Value> = section["metrics"].as_object_mut().expect("just made an object");
    for row in rows {
        let Some(value) = row.gated() else { continue };
        let tolerance = metrics
            .get(&row.key)
            .and_then(|old| old["tolerance"].as_f64())
            .unwrap_or_else(|| default_tolerance(mode, row));
        let figures: Map<String, Value> =
            row.figures.iter().map(|(target, f)| (target.clone(), json!(round(f.median)))).collect();
        metrics.insert(
            row.key.clone(),
            json!({
                "value": round(value),
                "tolerance": tolerance,
                "better": match row.better { Better::Higher => "higher", Better::Lower => "lower" },
                "what": row.label,
                "figures": figures,
            }),
        );
    }
    let path = root.join(PATH);
    let text = serde_json::to_string_pretty(&baseline)? + "\n";
    fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Four significant figures are plenty for a noisy benchmark and keep the file's diffs readable.
fn round(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    let digits = 4 - value.abs().log10().ceil() as i32;
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::bench::metrics::Gate;

    fn row(ratio: f64) -> Row {
        Row {
            key: "echo/100x20B/rate".to_owned(),
            scenario: "echo".to_owned(),
            case: "100x20B".to_owned(),
            label: "round trips/s",
            better: Better::Higher,
            gate: Gate::Ratio,
            goal: None,
            figures: BTreeMap::new(),
            ratio: Some(ratio),
        }
    }

    #[test]
    fn a_ratio_fails_only_past_its_tolerance() {
        let baseline = json!({"full": {"metrics": {"echo/100x20B/rate": {"value": 0.9, "tolerance": 0.1}}}});
        assert_eq!(verdict(&baseline, Mode::Full, &row(0.82)), Verdict::Pass { baseline: 0.9 });
        assert_eq!(verdict(&baseline, Mode::Full, &row(0.80)), Verdict::Regressed { baseline: 0.9, tolerance: 0.1 });
        assert_eq!(verdict(&baseline, Mode::Quick, &row(0.1)), Verdict::New);
    }

    #[test]
    fn rounding_keeps_four_significant_figures() {
        assert_eq!(round(0.123_456), 0.1235);
        assert_eq!(round(3_521_234.0), 3_521_000.0);
    }
}
