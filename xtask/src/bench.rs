//! `cargo xtask bench`: the performance gate. Runs the criterion micro-benches, then every end-to-end scenario
//! against the hub (`ws-server`) and the reference server (`ref-server`, the same stack with no hub) in the
//! same run, prints a table, writes `bench/report.{json,md}` in the target directory, and fails when a hub/ref
//! ratio (or a micro-bench time) got worse than the committed baseline (`benches/baseline.json`) by more than
//! its tolerance, or when any delivery check failed.
//!
//! Method: a fresh server process per case, pinned to core 0 (`taskset -c 0`, one worker thread); the load
//! generator (`benches`' `loadgen`) pinned to core 1; a warm-up, then at least 5 measuring windows; median and
//! spread, with server and load-generator CPU beside each figure.

mod baseline;
mod metrics;
mod micro;
mod plan;
mod report;
mod runner;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::{json, Value};

use baseline::Verdict;
use plan::Mode;
use runner::Target;

/// `cargo xtask bench`'s usage.
pub(crate) const USAGE: &str = "\
usage: cargo xtask bench [--quick] [--scenario NAME]... [--save-baseline] [--peer bun] [--ref-only] [--hub-bin PATH]

  --quick          a short run (about two minutes; CI runs it) with small N and short windows
  --scenario NAME  run only this scenario (repeatable): core, echo, room, broadcast, idle, channels, churn, cluster
  --save-baseline  write this run's figures to benches/baseline.json (for the mode run)
  --peer bun       also measure Bun (benches/peers, pinned by its package-lock.json); full runs always do
  --ref-only       measure the reference server alone (no ws-server needed); gates nothing
  --hub-bin PATH   run this ws-server binary instead of building ws-server-bin (to compare builds)";

/// The parsed command line.
#[derive(Debug, Default)]
struct Options {
    quick: bool,
    scenarios: Vec<String>,
    save_baseline: bool,
    bun: bool,
    ref_only: bool,
    hub_bin: Option<PathBuf>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self::default();
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--quick" => options.quick = true,
                "--save-baseline" => options.save_baseline = true,
                "--ref-only" => options.ref_only = true,
                "--scenario" => match args.next() {
                    Some(name) => options.scenarios.push(name.clone()),
                    None => bail!("--scenario needs a name\n{USAGE}"),
                },
                "--hub-bin" => match args.next() {
                    Some(path) => options.hub_bin = Some(PathBuf::from(path)),
                    None => bail!("--hub-bin needs a path\n{USAGE}"),
                },
                "--peer" => match args.next().map(String::as_str) {
                    Some("bun") => options.bun = true,
                    other => bail!("--peer takes `bun`, got {other:?}\n{USAGE}"),
                },
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        if options.save_baseline && options.ref_only {
            bail!("--save-baseline needs the hub: the baseline holds hub/ref ratios");
        }
        Ok(options)
    }
}

/// Runs the gate with `args` (after `bench`) from the workspace at `root`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let started = Instant::now();
    let mode = if options.quick { Mode::Quick } else { Mode::Full };
    let cases = plan::cases(mode, &options.scenarios)?;
    let with_core = options.scenarios.is_empty() || options.scenarios.iter().any(|s| s == "core");

    let hub = match (&options.hub_bin, options.ref_only) {
        (_, true) => runner::Hub::None,
        (Some(path), false) => runner::Hub::Prebuilt(path.clone()),
        (None, false) => runner::Hub::Build,
    };
    let target_dir = crate::target_dir::find(root)?;
    // Bun is part of every full run (the targets are ratios against it); quick runs take it on request.
    let programs = runner::build(root, &target_dir, hub, options.bun || mode == Mode::Full)?;
    let micro = if with_core { micro::run(root, &target_dir, mode)? } else { Vec::new() };

    let targets = programs.targets();
    let mut results: Vec<Value> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        for &target in &targets {
            eprintln!("==> bench {}/{}: {} on {}", i + 1, cases.len(), case.label, target.name());
            match programs.run_case(case, target) {
                Ok(found) => {
                    for result in &found {
                        if result["ok"] != Value::Bool(true) {
                            failures.push(format!(
                                "{} {} on {}: delivery checks failed: {}",
                                result["scenario"].as_str().unwrap_or("?"),
                                result["case"].as_str().unwrap_or("?"),
                                target.name(),
                                result["checks"]
                            ));
                        }
                    }
                    results.extend(found);
                }
                Err(e) => failures.push(format!("{} on {}: {e:#}", case.label, target.name())),
            }
        }
    }

    let rows = metrics::rows(&results, &micro);
    let stored = baseline::load(root)?;
    let gated = !options.ref_only;
    let verdicts: Vec<Verdict> =
        rows.iter().map(|row| if gated { baseline::verdict(&stored, mode, row) } else { Verdict::NotGated }).collect();
    for (row, verdict) in rows.iter().zip(&verdicts) {
        if let Verdict::Regressed { baseline, tolerance } = verdict {
            failures.push(format!(
                "{} regressed: {:.4} against the baseline's {baseline:.4} (tolerance {:.0} %)",
                row.key,
                row.gated().unwrap_or(f64::NAN),
                tolerance * 100.0
            ));
        }
    }

    let peers: Vec<String> = targets.iter().filter(|t| **t == Target::Bun).map(|t| t.name().to_owned()).collect();
    report::print(&rows, &verdicts, &peers);
    let recorded = format!(
        "{} ({} mode, {}, {} cores{})",
        now(),
        mode.name(),
        std::env::consts::ARCH,
        std::thread::available_parallelism().map_or(0, usize::from),
        if programs.pinned() { ", pinned with taskset" } else { ", not pinned" }
    );
    let summary = json!({
        "mode": mode.name(),
        "recorded": recorded,
        "duration_s": started.elapsed().as_secs(),
        "pinned": programs.pinned(),
        "targets": targets.iter().map(|t| t.name()).collect::<Vec<_>>(),
    });
    let dir = target_dir.join("bench");
    let (json_path, md_path) = report::write(&dir, &summary, &results, &rows, &verdicts, &peers, &failures)?;
    eprintln!("==> reports: {} and {}", json_path.display(), md_path.display());
    if options.save_baseline {
        if failures.iter().any(|f| !f.contains(" regressed: ")) {
            bail!("not saving the baseline: the run had failures:\n{}", failures.join("\n"));
        }
        let path = baseline::save(root, stored, mode, &rows, &recorded)?;
        eprintln!("==> saved the baseline to {}", path.display());
        return Ok(());
    }
    if !failures.is_empty() {
        bail!("bench: {} failure(s):\n{}", failures.len(), failures.join("\n"));
    }
    eprintln!("==> bench: passed in {:.0?}", started.elapsed());
    Ok(())
}

/// The current UTC time, from `date`, for the baseline's record; "unknown" without it.
fn now() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%MZ"])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map_or_else(|| "unknown".to_owned(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options_parse() {
        let o = parse(&["--quick", "--scenario", "echo", "--scenario", "room", "--peer", "bun"]).unwrap();
        assert!(o.quick && o.bun && !o.save_baseline);
        assert_eq!(o.scenarios, ["echo", "room"]);
        assert!(parse(&["--peer", "node"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
        assert!(parse(&["--ref-only", "--save-baseline"]).is_err());
    }
}
