//! `cargo xtask soak`: minutes of every kind of load at once against a real release `ws-server`, then proof
//! that the server let go of all of it.
//!
//! This task builds `ws-server` and the `soak` driver (the `benches` crate, beside the load generator whose
//! client it reuses) in release, starts the server on a free port with the soak's configuration ([`CONFIG`]:
//! the API on, history on the steady channels, presence for the slow consumers, limits out of the way) and
//! `--workers` worker threads, and runs the driver against it. The driver runs the load, checks every
//! delivery and the server's descriptors, hub and memory afterwards, and prints the summary; the task fails
//! when the driver reports a failure or the server died.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context as _, Result};

use crate::process::{self, Server};

/// `cargo xtask soak`'s usage.
pub(crate) const USAGE: &str = "\
usage: cargo xtask soak [--secs N] [--workers N]

  --secs N     seconds of load (default 120; CI runs 40)
  --workers N  the server's worker threads (default 2)";

/// The API key the driver uses.
const API_KEY: &str = "soak";

/// The server's configuration for the soak (flags add the address and the workers).
const CONFIG: &str = r#"# Written by `cargo xtask soak`.
[api]
keys = ["soak"]

# The steady channels keep history (a day: longer than any soak), so they stay with their offsets throughout.
[namespaces.soak]
history_size = 100
history_ttl_ms = 86400000

# Each slow consumer has a presence channel here, so the driver sees when the hub let go of it.
[namespaces.slow]
presence = true

# The soak checks that resources come back, not the limits: connections come from 16 loopback addresses,
# and publishers publish faster than a client may by default.
[limits]
max_connections_per_ip = 100000
rate_per_sec = 1000000
rate_burst = 1000000

[log]
level = "warn"
"#;

/// The parsed command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Options {
    secs: u64,
    workers: usize,
}

impl Options {
    fn parse(args: &[String]) -> Result<Self> {
        let mut options = Self { secs: 120, workers: 2 };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut number = |name: &str| -> Result<u64> {
                let value = args.next().with_context(|| format!("{name} needs a number\n{USAGE}"))?;
                value.parse().with_context(|| format!("{name} {value}: not a number\n{USAGE}"))
            };
            match arg.as_str() {
                "--secs" => options.secs = number("--secs")?,
                "--workers" => options.workers = number("--workers")? as usize,
                other => bail!("unknown option `{other}`\n{USAGE}"),
            }
        }
        if options.secs == 0 || options.workers == 0 {
            bail!("--secs and --workers must be at least 1\n{USAGE}");
        }
        Ok(options)
    }
}

/// Runs the soak with `args` (after `soak`) from the workspace at `root`.
pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(args)?;
    let started = Instant::now();
    let target = crate::target_dir::find(root)?;
    // Built as `cargo xtask bench` builds them, package by package: built together, cargo would unify their
    // dependencies' features differently and rebuild what the bench just built.
    process::cargo(root, &["build", "--release", "-p", "ws-benches", "--bins"], "building the soak driver failed")?;
    process::cargo(root, &["build", "--release", "-p", "ws-server-bin"], "building ws-server failed")?;
    let release = target.join("release");
    let dir = target.join("soak");
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let config = dir.join("ws-server.toml");
    fs::write(&config, CONFIG).with_context(|| format!("writing {}", config.display()))?;

    let addr = process::free_addr()?;
    let cmd: Vec<String> = vec![
        release.join("ws-server").display().to_string(),
        "--config".into(),
        config.display().to_string(),
        "--listen".into(),
        addr.to_string(),
        "--workers".into(),
        options.workers.to_string(),
    ];
    let mut server = Server::spawn(&cmd, &[], dir.join("ws-server.log"), addr)?;
    eprintln!(
        "==> soak: {} s against ws-server on {addr} (pid {}, worker threads: {}); its log is {}",
        options.secs,
        server.pid(),
        options.workers,
        dir.join("ws-server.log").display()
    );
    let driver = release.join("soak");
    let status = Command::new(&driver)
        .args(["--addr", &addr.to_string(), "--server-pid", &server.pid().to_string(), "--api-key", API_KEY])
        .args(["--secs", &options.secs.to_string()])
        .status()
        .with_context(|| format!("starting {}", driver.display()))?;
    server.check_alive("ws-server, during the soak,")?;
    drop(server);
    if !status.success() {
        bail!("the soak failed ({status}); the summary above says why");
    }
    eprintln!("==> soak: passed in {:.0?}", started.elapsed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Options> {
        Options::parse(&args.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>())
    }

    #[test]
    fn options_parse() {
        assert_eq!(parse(&[]).unwrap(), Options { secs: 120, workers: 2 });
        assert_eq!(parse(&["--secs", "40", "--workers", "1"]).unwrap(), Options { secs: 40, workers: 1 });
        assert!(parse(&["--secs"]).is_err());
        assert!(parse(&["--secs", "x"]).is_err());
        assert!(parse(&["--workers", "0"]).is_err());
        assert!(parse(&["--frobnicate"]).is_err());
    }

    #[test]
    fn the_server_accepts_the_drivers_key() {
        assert!(CONFIG.contains(&format!("keys = [\"{API_KEY}\"]")));
    }
}
