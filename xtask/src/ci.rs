//! `cargo xtask ci`: every check CI runs, as a list of steps run in order until one fails.
//!
//! `.ci/run` prepares the machine and then runs exactly this, so a green `cargo xtask ci` on a developer's machine
//! means the same checks passed. Add a step by adding a line to [`STEPS`].

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::tidy;

/// One check of the CI run.
#[derive(Debug)]
struct Step {
    /// A short name for progress and failure messages.
    name: &'static str,
    /// What the step runs.
    action: Action,
}

/// What a [`Step`] runs.
#[derive(Debug)]
enum Action {
    /// `cargo <args>` from the workspace root, with extra environment variables.
    Cargo { args: &'static [&'static str], env: &'static [(&'static str, &'static str)] },
    /// A script of the repository, run with bash from the workspace root.
    Script(&'static str),
    /// The tidy checks, in this process.
    Tidy,
}

/// The CI run, in order. Cheap checks come first so that they fail fast.
const STEPS: &[Step] = &[
    Step { name: "setup", action: Action::Script(".ci/setup") },
    Step { name: "fmt", action: Action::Cargo { args: &["fmt", "--all", "--", "--check"], env: &[] } },
    Step {
        name: "clippy",
        action: Action::Cargo {
            args: &["clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"],
            env: &[],
        },
    },
    Step { name: "test", action: Action::Cargo { args: &["test", "--workspace", "--all-features"], env: &[] } },
    Step {
        name: "autobahn",
        action: Action::Cargo { args: &["run", "--quiet", "--package", "xtask", "--", "autobahn"], env: &[] },
    },
    Step {
        name: "doc",
        action: Action::Cargo {
            args: &["doc", "--workspace", "--no-deps", "--all-features"],
            env: &[("RUSTDOCFLAGS", "-D warnings")],
        },
    },
    Step { name: "tidy", action: Action::Tidy },
    // Every fuzz target for 20 s, after one build of them all without a sanitizer (about four minutes on two cores);
    // one line and a pass where there is no nightly toolchain.
    Step {
        name: "fuzz",
        action: Action::Cargo {
            args: &["run", "--quiet", "--package", "xtask", "--", "fuzz", "--secs", "20", "--sanitizer", "none"],
            env: &[],
        },
    },
    // The performance gate, short: builds in release and runs every scenario against ws-server and the reference.
    Step {
        name: "bench",
        action: Action::Cargo { args: &["run", "--quiet", "--package", "xtask", "--", "bench", "--quick"], env: &[] },
    },
    // The soak, short: 40 s of churn, publishes, slow consumers and kicks at once against a release ws-server on
    // two worker threads, then every delivery, descriptor, close count and the memory checked.
    Step {
        name: "soak",
        action: Action::Cargo {
            args: &["run", "--quiet", "--package", "xtask", "--", "soak", "--secs", "40"],
            env: &[],
        },
    },
];

/// Runs every step from the workspace at `root`, printing each, and stops at the first failure.
pub(crate) fn run(root: &Path) -> Result<()> {
    let started = Instant::now();
    for (index, step) in STEPS.iter().enumerate() {
        eprintln!("==> ci step {}/{} {}: {}", index + 1, STEPS.len(), step.name, step.action);
        let step_started = Instant::now();
        step.action.run(root).with_context(|| format!("ci step `{}` failed", step.name))?;
        eprintln!("==> ci step {} passed in {:.1?}", step.name, step_started.elapsed());
    }
    eprintln!("==> ci: all {} steps passed in {:.1?}", STEPS.len(), started.elapsed());
    Ok(())
}

impl Action {
    fn run(&self, root: &Path) -> Result<()> {
        match self {
            Self::Cargo { args, env } => {
                let status = Command::new(crate::cargo())
                    .current_dir(root)
                    .args(*args)
                    .envs(env.iter().copied())
                    .status()
                    .with_context(|| format!("starting `{self}`"))?;
                if !status.success() {
                    bail!("`{self}` exited with {status}");
                }
                Ok(())
            }
            Self::Script(path) => {
                let status = Command::new("bash")
                    .current_dir(root)
                    .arg(path)
                    .status()
                    .with_context(|| format!("starting `{self}`"))?;
                if !status.success() {
                    bail!("`{self}` exited with {status}");
                }
                Ok(())
            }
            Self::Tidy => tidy::run_and_report(root),
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Cargo { args, env } => {
                for (key, value) in *env {
                    write!(f, "{key}={value:?} ")?;
                }
                write!(f, "cargo {}", args.join(" "))
            }
            Self::Script(path) => write!(f, "bash {path}"),
            Self::Tidy => f.write_str("cargo xtask tidy"),
        }
    }
}
