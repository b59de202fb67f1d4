//! The criterion micro-benches: runs them through cargo and reads criterion's `estimates.json` files.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

use super::plan::Mode;

/// One micro-bench figure.
#[derive(Debug, Clone)]
pub(crate) struct Micro {
    /// The criterion benchmark id, e.g. `publish_one_channel/100000_subscribers`.
    pub(crate) id: &'static str,
    /// What the figure is, for the report.
    pub(crate) what: &'static str,
    /// The figure: criterion's mean time per iteration divided by `per_iteration`, in ns.
    pub(crate) ns: f64,
}

/// A criterion benchmark to run and read.
struct Bench {
    package: &'static str,
    bench: &'static str,
    id: &'static str,
    what: &'static str,
    /// Units of work per iteration (deliveries for fan-out).
    per_iteration: f64,
}

const BENCHES: &[Bench] = &[
    Bench {
        package: "ws-core",
        bench: "fanout",
        id: "publish_one_channel/100000_subscribers",
        what: "core: publish to 100,000 subscribers, ns per delivery",
        per_iteration: 100_000.0,
    },
    Bench {
        package: "ws-protocol",
        bench: "codec",
        id: "decode/publish",
        what: "codec: decode a publish command, ns",
        per_iteration: 1.0,
    },
    Bench {
        package: "ws-protocol",
        bench: "codec",
        id: "encode_message/64B",
        what: "codec: encode a 64 B message, ns",
        per_iteration: 1.0,
    },
];

/// Runs the micro-benches (shortened in quick mode) and returns their figures.
pub(crate) fn run(root: &Path, target_dir: &Path, mode: Mode) -> Result<Vec<Micro>> {
    let timing: &[&str] = match mode {
        Mode::Quick => &["--warm-up-time", "0.5", "--measurement-time", "1", "--sample-size", "10"],
        Mode::Full => &["--warm-up-time", "1", "--measurement-time", "3"],
    };
    let mut runs: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for bench in BENCHES {
        match runs.iter_mut().find(|(p, b, _)| *p == bench.package && *b == bench.bench) {
            Some((_, _, ids)) => ids.push(bench.id),
            None => runs.push((bench.package, bench.bench, vec![bench.id])),
        }
    }
    for (package, bench, ids) in &runs {
        // Criterion takes one filter, a regex; anchor each id so that `100000` does not match `1000000`.
        let filter = ids.iter().map(|id| format!("^{id}$")).collect::<Vec<_>>().join("|");
        let mut args = vec!["bench", "-p", package, "--bench", bench, "--", "--noplot"];
        args.extend_from_slice(timing);
        args.push(&filter);
        crate::process::cargo(root, &args, "the criterion micro-benches failed")?;
    }
    let criterion = target_dir.join("criterion");
    BENCHES
        .iter()
        .map(|bench| {
            let path = criterion.join(bench.id).join("new/estimates.json");
            let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            let estimates: Value =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
            let mean = estimates["mean"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("no mean.point_estimate in {}", path.display()))?;
            Ok(Micro { id: bench.id, what: bench.what, ns: mean / bench.per_iteration })
        })
        .collect()
}
