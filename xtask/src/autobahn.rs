//! `cargo xtask autobahn`: the Autobahn|Testsuite fuzzing client against ws-transport's echo endpoint.
//!
//! It builds and starts `crates/ws-transport/examples/autobahn_echo.rs` (the production read path and limits on
//! an echo endpoint) on an ephemeral port, installs the `kosoku` runner (the Autobahn cases on Python 3) into a
//! virtual environment under the target directory's `autobahn` if it is not there yet, runs every case except the
//! permessage-deflate groups 12 and 13, and reads the report: the task fails unless every case's behaviour and
//! close behaviour are `OK`, `NON-STRICT` or `INFORMATIONAL`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, ensure, Context as _, Result};

/// The runner, pinned so a new release cannot change the verdicts under us.
const KOSOKU: &str = "kosoku==0.1.0";

/// The permessage-deflate groups: the transport does not negotiate compression.
const EXCLUDED: &[&str] = &["12.*", "13.*"];

/// Verdicts that pass.
const PASSING: &[&str] = &["OK", "NON-STRICT", "INFORMATIONAL"];

/// How many cases run at once.
const PARALLELISM: &str = "4";

/// Runs the suite and fails unless every case passes.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    let target = crate::target_dir::find(root)?;
    let dir = target.join("autobahn");
    let kosoku = install_kosoku(&dir)?;
    let server = EchoServer::start(root, &target)?;
    let report = dir.join("report");
    if report.exists() {
        std::fs::remove_dir_all(&report).with_context(|| format!("removing {}", report.display()))?;
    }
    eprintln!("==> autobahn: running the cases against {}", server.url);
    let mut command = kosoku.command();
    command.arg(&server.url).arg("--parallelism").arg(PARALLELISM).arg("--outdir").arg(&report);
    for group in EXCLUDED {
        command.arg("--exclude").arg(group);
    }
    // kosoku exits non-zero when a case fails; the report says which, so read it either way.
    let status = command.status().context("running kosoku")?;
    drop(server);
    let summary = Summary::read(&report.join("index.json"))?;
    summary.print();
    eprintln!("==> autobahn: report in {} ({:.1?})", report.display(), started.elapsed());
    ensure!(summary.total > 0, "the report holds no cases");
    if !summary.failures.is_empty() {
        bail!("{} of {} autobahn cases failed", summary.failures.len(), summary.total);
    }
    ensure!(status.success(), "kosoku exited with {status} although every case in the report passed");
    Ok(())
}

/// How to run the installed `kosoku`.
enum Kosoku {
    /// A console script in a virtual environment.
    Script(PathBuf),
    /// A `pip install --target` directory, run through `python3` (when the `venv` module is missing).
    Target(PathBuf),
}

impl Kosoku {
    fn command(&self) -> Command {
        match self {
            Self::Script(path) => Command::new(path),
            Self::Target(dir) => {
                let mut command = Command::new("python3");
                command
                    .env("PYTHONPATH", dir)
                    .args(["-c", "import sys; from kosoku._cli import main; sys.exit(main())"]);
                command
            }
        }
    }
}

/// Installs kosoku under `dir` unless it is already there.
fn install_kosoku(dir: &Path) -> Result<Kosoku> {
    let venv = dir.join("venv");
    let script = venv.join("bin").join("kosoku");
    if script.exists() {
        return Ok(Kosoku::Script(script));
    }
    let target = dir.join("pylib");
    if target.join("kosoku").exists() {
        return Ok(Kosoku::Target(target));
    }
    eprintln!("==> autobahn: installing {KOSOKU} into {}", venv.display());
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let venv_made = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().is_ok_and(|s| s.success());
    if venv_made {
        let pip = venv.join("bin").join("pip");
        run_checked(Command::new(pip).args(["install", "--quiet", "--disable-pip-version-check", KOSOKU]))?;
        return Ok(Kosoku::Script(script));
    }
    // Debian without python3-venv: install into a plain directory instead.
    eprintln!("==> autobahn: no venv module; installing into {}", target.display());
    let _ = std::fs::remove_dir_all(&venv);
    run_checked(
        Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"])
            .arg("--target")
            .arg(&target)
            .arg(KOSOKU),
    )
    .context("installing kosoku needs python3 with pip (Debian: python3-pip, or python3-venv)")?;
    Ok(Kosoku::Target(target))
}

fn run_checked(command: &mut Command) -> Result<()> {
    let status = command.status().with_context(|| format!("starting {command:?}"))?;
    ensure!(status.success(), "{command:?} exited with {status}");
    Ok(())
}

/// The echo server, killed when dropped.
struct EchoServer {
    child: Child,
    url: String,
}

impl EchoServer {
    /// Builds the echo example in the workspace at `root` (into `target`) and starts it, and reads the address
    /// it bound.
    fn start(root: &Path, target: &Path) -> Result<Self> {
        eprintln!("==> autobahn: building the echo server");
        run_checked(Command::new(crate::cargo()).current_dir(root).args([
            "build",
            "--quiet",
            "--package",
            "ws-transport",
            "--example",
            "autobahn_echo",
        ]))?;
        let binary = target.join("debug").join("examples").join("autobahn_echo");
        let mut child = Command::new(&binary)
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("the echo server's stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the echo server's address")?;
        // From here on, dropping `server` stops the child.
        let mut server = Self { child, url: String::new() };
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            bail!("the echo server said {line:?} instead of its address");
        };
        server.url = format!("ws://{addr}");
        Ok(server)
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the report says.
#[derive(Debug, Default)]
struct Summary {
    total: usize,
    /// Cases per (behaviour, close behaviour).
    verdicts: BTreeMap<(String, String), usize>,
    /// The failing cases with their verdicts.
    failures: Vec<(String, String, String)>,
}

impl Summary {
    /// Reads kosoku's `index.json`: `{agent: {case: {"behavior", "behaviorClose", ...}}}`.
    fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let index: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let agents = index.as_object().context("the report index is not an object")?;
        let mut summary = Self::default();
        for cases in agents.values() {
            for (case, result) in cases.as_object().context("an agent's cases are not an object")? {
                let verdict = |key: &str| result[key].as_str().unwrap_or("MISSING").to_owned();
                let (behavior, close) = (verdict("behavior"), verdict("behaviorClose"));
                if !PASSING.contains(&behavior.as_str()) || !PASSING.contains(&close.as_str()) {
                    summary.failures.push((case.clone(), behavior.clone(), close.clone()));
                }
                *summary.verdicts.entry((behavior, close)).or_default() += 1;
                summary.total += 1;
            }
        }
        summary.failures.sort_by_key(|f| case_order(&f.0));
        Ok(summary)
    }

    fn print(&self) {
        eprintln!("==> autobahn: {} cases", self.total);
        for ((behavior, close), n) in &self.verdicts {
            eprintln!("    {n:4}  behavior {behavior}, close {close}");
        }
        for (case, behavior, close) in &self.failures {
            eprintln!("    FAILED {case}: behavior {behavior}, close {close}");
        }
    }
}

/// Sorts case ids numerically (`9.10.1` after `9.2.1`).
fn case_order(case: &str) -> Vec<u32> {
    case.split('.').map(|part| part.parse().unwrap_or(u32::MAX)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_verdicts_and_finds_failures() {
        let dir = std::env::temp_dir().join(format!("xtask-autobahn-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let index = dir.join("index.json");
        let report = serde_json::json!({"agent": {
            "1.1.1": {"behavior": "OK", "behaviorClose": "OK"},
            "6.4.3": {"behavior": "NON-STRICT", "behaviorClose": "OK"},
            "9.10.1": {"behavior": "FAILED", "behaviorClose": "OK"},
            "9.2.1": {"behavior": "OK", "behaviorClose": "UNCLEAN"},
        }});
        std::fs::write(&index, report.to_string()).unwrap();
        let summary = Summary::read(&index).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(summary.total, 4);
        let failed: Vec<&str> = summary.failures.iter().map(|f| f.0.as_str()).collect();
        assert_eq!(failed, ["9.2.1", "9.10.1"]);
    }
}
