//! `cargo xtask fuzz`: builds the cargo-fuzz targets in `fuzz/` and runs each for a fixed time.
//!
//! The targets need a nightly toolchain (libFuzzer's instrumentation and the sanitizers are nightly-only), so
//! without one the task prints one line saying so and succeeds: the stable build and the tests do not depend on
//! it. With one, it installs cargo-fuzz if it is missing, builds every target once, then runs each in turn from
//! its working corpus (`fuzz/corpus/<target>`, not committed) and its committed seeds (`fuzz/seeds/<target>`).
//! A crash fails the task once every target has run, naming the input libFuzzer saved under `fuzz/artifacts/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// `cargo xtask fuzz`'s usage.
pub(crate) const USAGE: &str = "\
usage: cargo xtask fuzz [--secs N] [--target NAME]... [--sanitizer address|none]

  --secs N            run each target for N seconds (default 60), after one build of them all
  --target NAME       run only this target (repeatable); `cargo +nightly fuzz list` in fuzz/ lists them
  --sanitizer SAN     `address` (the default: AddressSanitizer, for the unsafe code of dependencies such as
                      simd-json) or `none` (builds in less than half the time and runs 4 to 7 times as many
                      inputs; what CI runs)

Needs a nightly toolchain; without one it prints why it skips and succeeds. Installs cargo-fuzz when missing.";

/// The cargo-fuzz release installed when none is, pinned so a new release cannot change the build under us.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// The toolchain the targets build with.
const NIGHTLY: &str = "nightly";

/// The parsed command line.
#[derive(Debug, PartialEq, Eq)]
struct Options {
    secs: u64,
    targets: Vec<String>,
    /// cargo-fuzz's `--sanitizer`.
    sanitizer: &'static str,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self { secs: 60, targets: Vec::new(), sanitizer: "address" };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            match arg.as_str() {
                "--secs" => match args.next().map(|n| n.parse::<u64>()) {
                    Some(Ok(secs)) if secs > 0 => options.secs = secs,
                    _ => bail!("--secs needs a number of seconds, at least 1\n{USAGE}"),
                },
                "--target" => match args.next() {
                    Some(name) => options.targets.push(name.clone()),
                    None => bail!("--target needs a name\n{USAGE}"),
                },
                "--sanitizer" => match args.next().map(String::as_str) {
                    Some("address") => options.sanitizer = "address",
                    Some("none") => options.sanitizer = "none",
                    other => bail!("--sanitizer takes `address` or `none`, got {other:?}\n{USAGE}"),
                },
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// What one target's run gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// Inputs run (libFuzzer's `stat::number_of_executed_units`).
    runs: u64,
    /// Inputs added to the working corpus.
    new_units: u64,
    /// The saved input that crashed the target, when one did.
    artifact: Option<PathBuf>,
}

impl Outcome {
    /// Reads libFuzzer's output: the final statistics (`-print_final_stats=1`) and the line that names a saved
    /// crashing input, `... Test unit written to <path>`, relative to `dir`, where the target ran.
    fn parse(output: &str, dir: &Path) -> Self {
        let stat = |name: &str| {
            output.lines().filter_map(|line| line.strip_prefix(name)?.trim().parse().ok()).next_back().unwrap_or(0)
        };
        let artifact = output
            .lines()
            .filter_map(|line| line.split_once("Test unit written to ").map(|(_, path)| dir.join(path.trim())))
            .next_back();
        Self { runs: stat("stat::number_of_executed_units:"), new_units: stat("stat::new_units_added:"), artifact }
    }
}

/// Runs the targets for `args` (after `fuzz`) from the workspace at `root`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    if let Some(why) = missing_nightly() {
        eprintln!("==> fuzz: skipped: {why}");
        return Ok(());
    }
    let dir = root.join("fuzz");
    ensure_cargo_fuzz(&dir)?;
    let all = list_targets(&dir)?;
    let targets = if options.targets.is_empty() { all.clone() } else { options.targets };
    if let Some(unknown) = targets.iter().find(|t| !all.contains(t)) {
        bail!("no fuzz target `{unknown}`; the targets are {}", all.join(", "));
    }

    let started = Instant::now();
    eprintln!("==> fuzz: building {} (sanitizer: {})", all.join(", "), options.sanitizer);
    let sanitizer = ["--sanitizer", options.sanitizer];
    let status = cargo_fuzz(&dir, &["build"]).args(sanitizer).status().context("running cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build exited with {status} (libFuzzer needs a C++ compiler: apt-get install g++)");
    }
    let built = started.elapsed();

    let mut crashes = Vec::new();
    for target in &targets {
        let (outcome, took) = run_target(&dir, target, options.secs, options.sanitizer)?;
        let verdict = match &outcome.artifact {
            Some(path) => format!("CRASH, input saved to {}", path.display()),
            None => "no crash".to_owned(),
        };
        eprintln!(
            "==> fuzz {target}: {} runs in {took:.0?} ({:.0}/s), {} new corpus inputs, {verdict}",
            outcome.runs,
            outcome.runs as f64 / took.as_secs_f64().max(0.001),
            outcome.new_units
        );
        if let Some(path) = outcome.artifact {
            crashes.push(format!(
                "{target}: {} (reproduce: cd fuzz && cargo +nightly fuzz run --sanitizer {} {target} {})",
                path.display(),
                options.sanitizer,
                path.strip_prefix(&dir).unwrap_or(&path).display()
            ));
        }
    }
    eprintln!("==> fuzz: built in {built:.0?}; {} target(s) run, {:.0?} in all", targets.len(), started.elapsed());
    if !crashes.is_empty() {
        bail!("{} fuzz target(s) crashed:\n  {}", crashes.len(), crashes.join("\n  "));
    }
    Ok(())
}

/// Why the nightly toolchain cannot be used, or `None` when it can.
///
/// The toolchain list is read rather than `cargo +nightly` tried, because rustup may install a toolchain it is
/// asked for, which CI must not do behind the step's back.
fn missing_nightly() -> Option<String> {
    let output = match Command::new("rustup").args(["toolchain", "list"]).output() {
        Ok(output) if output.status.success() => output,
        Ok(output) => return Some(format!("`rustup toolchain list` exited with {}", output.status)),
        Err(_) => return Some("rustup is not installed, so there is no nightly toolchain".to_owned()),
    };
    let listed = String::from_utf8_lossy(&output.stdout);
    // `nightly-<host>`, not a dated `nightly-2026-01-01-<host>`, which `+nightly` does not name.
    let has_nightly = listed.lines().any(|line| {
        line.strip_prefix(NIGHTLY)
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_ascii_digit()))
    });
    (!has_nightly).then(|| "no nightly toolchain (`rustup toolchain install nightly` adds one)".to_owned())
}

/// `cargo +nightly <args>` in `dir`, through rustup, with none of the outer build's settings: the fuzz crate is
/// its own workspace with its own target directory (`fuzz/target`).
fn nightly_cargo(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new("rustup");
    command
        .current_dir(dir)
        .args(["run", NIGHTLY, "cargo"])
        .args(args)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO");
    command
}

/// `cargo +nightly fuzz <args>` in `dir`.
fn cargo_fuzz(dir: &Path, args: &[&str]) -> Command {
    let mut command = nightly_cargo(dir, &["fuzz"]);
    command.args(args);
    command
}

/// Installs cargo-fuzz with the nightly toolchain unless `cargo +nightly fuzz` already runs.
fn ensure_cargo_fuzz(dir: &Path) -> Result<()> {
    let found = cargo_fuzz(dir, &["--version"]).stdout(Stdio::null()).stderr(Stdio::null()).status();
    if found.is_ok_and(|status| status.success()) {
        return Ok(());
    }
    eprintln!("==> fuzz: installing cargo-fuzz {CARGO_FUZZ_VERSION}");
    let status = nightly_cargo(dir, &["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked"])
        .status()
        .context("running cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz exited with {status}");
    }
    Ok(())
}

/// The fuzz targets, as `cargo fuzz list` prints them.
fn list_targets(dir: &Path) -> Result<Vec<String>> {
    let output = cargo_fuzz(dir, &["list"]).output().context("running cargo fuzz list")?;
    if !output.status.success() {
        bail!("cargo fuzz list exited with {}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    let targets: Vec<String> = String::from_utf8_lossy(&output.stdout).split_whitespace().map(str::to_owned).collect();
    if targets.is_empty() {
        bail!("cargo fuzz list found no targets in {}", dir.display());
    }
    Ok(targets)
}

/// Runs `target`, built with `sanitizer`, for `secs` seconds; its output goes to `fuzz/target/logs/<target>.log`, and on a crash the end
/// of it is printed too.
fn run_target(dir: &Path, target: &str, secs: u64, sanitizer: &str) -> Result<(Outcome, Duration)> {
    let corpus = format!("corpus/{target}");
    let seeds = format!("seeds/{target}");
    std::fs::create_dir_all(dir.join(&corpus)).with_context(|| format!("creating fuzz/{corpus}"))?;
    let max_time = format!("-max_total_time={secs}");
    eprintln!("==> fuzz {target}: running for {secs} s");
    let started = Instant::now();
    let args = ["run", "--sanitizer", sanitizer, target, &corpus, &seeds, "--", &max_time, "-print_final_stats=1"];
    let output = cargo_fuzz(dir, &args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running cargo fuzz run {target}"))?;
    let took = started.elapsed();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let logs = dir.join("target").join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let log = logs.join(format!("{target}.log"));
    std::fs::write(&log, &text).with_context(|| format!("writing {}", log.display()))?;
    let outcome = Outcome::parse(&text, dir);
    if outcome.artifact.is_none() && !output.status.success() {
        bail!("cargo fuzz run {target} exited with {} and saved no input; see {}", output.status, log.display());
    }
    if outcome.artifact.is_some() {
        // The panic message and the backtrace's top, past libFuzzer's progress lines.
        let tail: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        eprintln!("{}\n(whole output in {})", tail[tail.len().saturating_sub(60)..].join("\n"), log.display());
    }
    Ok((outcome, took))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn options_take_seconds_and_targets() {
        assert_eq!(Options::parse(&[]).unwrap(), Options { secs: 60, targets: vec![], sanitizer: "address" });
        let parsed = Options::parse(&args("--secs 20 --target frame --target config --sanitizer none")).unwrap();
        let want = Options { secs: 20, targets: vec!["frame".into(), "config".into()], sanitizer: "none" };
        assert_eq!(parsed, want);
        for bad in ["--secs", "--secs 0", "--secs x", "--target", "--fast", "--sanitizer", "--sanitizer memory"] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn outcome_reads_the_final_stats_and_the_saved_input() {
        let clean = "#1024\tpulse  cov: 10 ft: 12 corp: 3/40b exec/s: 512 rss: 40Mb\n\
            Done 2048 runs in 2 second(s)\n\
            stat::number_of_executed_units: 2048\n\
            stat::average_exec_per_sec:     1024\n\
            stat::new_units_added:          7\n";
        let dir = Path::new("/w/fuzz");
        assert_eq!(Outcome::parse(clean, dir), Outcome { runs: 2048, new_units: 7, artifact: None });
        let crashed = "thread '<unnamed>' panicked at fuzz_targets/frame.rs:3:5:\n\
            ==1== ERROR: libFuzzer: deadly signal\n\
            MS: 1 ChangeBit-; base unit: 0000\n\
            artifact_prefix='/w/fuzz/artifacts/frame/'; Test unit written to /w/fuzz/artifacts/frame/crash-ab12\n\
            stat::number_of_executed_units: 99\n";
        let outcome = Outcome::parse(crashed, dir);
        assert_eq!(outcome.runs, 99);
        assert_eq!(outcome.artifact.as_deref(), Some(Path::new("/w/fuzz/artifacts/frame/crash-ab12")));
    }
}
