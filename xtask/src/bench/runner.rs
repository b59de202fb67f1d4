//! Running cases: building the binaries, starting a fresh pinned server per case and target, running the load
//! generator against it on the other core, and collecting its JSON.

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::plan::Case;

/// A server the scenarios run against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `ref-server`: the stack with no hub.
    Reference,
    /// `ws-server`: the hub.
    Hub,
    /// Bun (uWebSockets), an outside reference.
    Bun,
}

impl Target {
    /// The name the load generator and the reports use.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Reference => "ref",
            Self::Hub => "hub",
            Self::Bun => "bun",
        }
    }
}

/// Flags the hub gets in every scenario: one worker like the reference, limits out of the way (the benchmark
/// measures throughput, not the limits), and quiet logs.
const HUB_FLAGS: &[&str] = &[
    "--workers",
    "1",
    "--log-level",
    "warn",
    "--max-connections",
    "100000",
    "--max-connections-per-ip",
    "100000",
    "--rate-per-sec",
    "1000000000",
    "--rate-burst",
    "1000000000",
    "--queue-messages",
    "1000000",
    "--queue-bytes",
    "1073741824",
];

/// The built programs.
#[derive(Debug)]
pub(crate) struct Programs {
    loadgen: PathBuf,
    reference: PathBuf,
    hub: Option<PathBuf>,
    bun: Option<(PathBuf, PathBuf)>,
    /// The command prefixes that pin the server and the load generator (`taskset -c N`), empty when pinning is
    /// not possible here.
    pin_server: Vec<String>,
    pin_loadgen: Vec<String>,
    logs: PathBuf,
}

impl Programs {
    /// Whether the server and load generator are pinned to separate cores.
    pub(crate) fn pinned(&self) -> bool {
        !self.pin_server.is_empty()
    }

    /// The targets this run has, reference first.
    pub(crate) fn targets(&self) -> Vec<Target> {
        let mut targets = vec![Target::Reference];
        if self.hub.is_some() {
            targets.push(Target::Hub);
        }
        if self.bun.is_some() {
            targets.push(Target::Bun);
        }
        targets
    }
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from)
}

/// Runs `cargo <args>` from `root`, failing with `what` if it fails.
pub(crate) fn cargo(root: &Path, args: &[&str], what: &str) -> Result<()> {
    eprintln!("==> cargo {}", args.join(" "));
    let status = Command::new(crate::cargo())
        .current_dir(root)
        .args(args)
        .status()
        .with_context(|| format!("starting cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("{what}: `cargo {}` exited with {status}", args.join(" "));
    }
    Ok(())
}

/// Where the hub comes from.
#[derive(Debug, Clone)]
pub(crate) enum Hub {
    /// No hub: the reference alone.
    None,
    /// `cargo build --release -p ws-server-bin`.
    Build,
    /// A `ws-server` binary built elsewhere.
    Prebuilt(PathBuf),
}

/// Builds the load generator, the reference server and the hub as `hub` says, in release; finds Bun when
/// `with_bun` asks for it.
pub(crate) fn build(root: &Path, hub: Hub, with_bun: bool) -> Result<Programs> {
    let release = target_dir(root).join("release");
    cargo(root, &["build", "--release", "-p", "ws-benches", "--bins"], "building the load generator failed")?;
    let hub = if let Hub::Prebuilt(path) = hub {
        if !path.is_file() {
            bail!("--hub-bin {}: no such file", path.display());
        }
        Some(path)
    } else if matches!(hub, Hub::Build) {
        if !root.join("crates/ws-server-bin/Cargo.toml").is_file() {
            bail!(
                "the hub scenarios need `ws-server`, but crates/ws-server-bin is not in the workspace yet; \
                 run `cargo xtask bench --ref-only` to measure the reference server alone"
            );
        }
        cargo(
            root,
            &["build", "--release", "-p", "ws-server-bin"],
            "the hub scenarios need target/release/ws-server, and building ws-server-bin failed",
        )?;
        let path = release.join("ws-server");
        if !path.is_file() {
            bail!("`cargo build --release -p ws-server-bin` built no {}", path.display());
        }
        Some(path)
    } else {
        None
    };
    let bun = if with_bun { find_bun(root) } else { None };
    if with_bun && bun.is_none() {
        eprintln!(
            "==> bun is not installed (`npm install @oven/bun-linux-x64`, or bun on PATH); skipping the bun peer"
        );
    }
    let (pin_server, pin_loadgen) = pinning();
    if pin_server.is_empty() {
        eprintln!("==> warning: cannot pin (needs `taskset` and 2 cores); server and load generator share cores");
    }
    let logs = target_dir(root).join("bench/logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    Ok(Programs {
        loadgen: release.join("loadgen"),
        reference: release.join("ref-server"),
        hub,
        bun,
        pin_server,
        pin_loadgen,
        logs,
    })
}

/// Bun's binary (on PATH, or from the npm package in the workspace) and the peer script.
fn find_bun(root: &Path) -> Option<(PathBuf, PathBuf)> {
    let script = root.join("benches/peers/bun-server.js");
    let installed = [
        root.join("node_modules/@oven/bun-linux-x64/bin/bun"),
        root.join("benches/peers/node_modules/@oven/bun-linux-x64/bin/bun"),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).map(|dir| dir.join("bun")).collect::<Vec<_>>())
        .unwrap_or_default();
    let bun = installed.into_iter().chain(on_path).find(|path| path.is_file())?;
    Some((bun, script))
}

/// `taskset -c 0` for the server and `taskset -c 1` for the load generator, when both work here.
fn pinning() -> (Vec<String>, Vec<String>) {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let taskset = Command::new("taskset").arg("-V").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if cores >= 2 && taskset.is_ok_and(|s| s.success()) {
        let pin = |core: &str| vec!["taskset".to_owned(), "-c".to_owned(), core.to_owned()];
        (pin("0"), pin("1"))
    } else {
        (Vec::new(), Vec::new())
    }
}

/// A port nobody listens on now.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A server process, killed when dropped.
struct Server {
    child: Child,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

impl Programs {
    fn server_command(&self, target: Target, addr: SocketAddr, case: &Case) -> Result<Vec<String>> {
        let heartbeat = case.heartbeat_ms.to_string();
        let mut cmd = self.pin_server.clone();
        let path = |p: &Path| p.display().to_string();
        match target {
            Target::Reference => {
                cmd.push(path(&self.reference));
                cmd.extend(["--listen".into(), addr.to_string(), "--workers".into(), "1".into()]);
                cmd.extend(["--heartbeat-ms".into(), heartbeat]);
            }
            Target::Hub => {
                let Some(hub) = &self.hub else { bail!("no hub binary") };
                cmd.push(path(hub));
                cmd.extend(["--listen".into(), addr.to_string()]);
                cmd.extend(HUB_FLAGS.iter().map(|f| (*f).to_owned()));
                let pong_timeout = (case.heartbeat_ms * 3).max(60_000).to_string();
                cmd.extend(["--heartbeat-ms".into(), heartbeat, "--pong-timeout-ms".into(), pong_timeout]);
            }
            Target::Bun => {
                let Some((bun, script)) = &self.bun else { bail!("no bun") };
                cmd.extend([path(bun), path(script), "--port".into(), addr.port().to_string()]);
                cmd.extend(["--heartbeat-ms".into(), heartbeat]);
            }
        }
        Ok(cmd)
    }

    fn start(&self, target: Target, case: &Case) -> Result<(Server, SocketAddr)> {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let cmd = self.server_command(target, addr, case)?;
        let log = self.logs.join(format!("{}-{}.server.log", case.label, target.name()));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", cmd.join(" ")))?;
        let mut server = Server { child, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{} exited with {status} at start:\n{}", target.name(), tail(&server.log));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok((server, addr));
            }
            if Instant::now() > deadline {
                bail!("{} did not listen on {addr} within 20 s:\n{}", target.name(), tail(&server.log));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `case` against a fresh `target` server; returns the load generator's results (one per case it
    /// reports), each with `"target"` set.
    pub(crate) fn run_case(&self, case: &Case, target: Target) -> Result<Vec<Value>> {
        let (mut server, addr) = self.start(target, case)?;
        let mut cmd = self.pin_loadgen.clone();
        cmd.push(self.loadgen.display().to_string());
        cmd.extend(case.loadgen.iter().cloned());
        cmd.extend(["--addr".into(), addr.to_string(), "--target".into(), target.name().into()]);
        cmd.extend(["--server-pid".into(), server.child.id().to_string()]);
        let stem = format!("{}-{}", case.label, target.name());
        let out_path = self.logs.join(format!("{stem}.json"));
        let err_path = self.logs.join(format!("{stem}.loadgen.log"));
        let mut loadgen = Command::new(&cmd[0])
            .args(&cmd[1..])
            .stdin(Stdio::null())
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .spawn()
            .with_context(|| format!("starting {}", cmd.join(" ")))?;
        let deadline = Instant::now() + case.timeout;
        let status = loop {
            if let Some(status) = loadgen.try_wait()? {
                break status;
            }
            if Instant::now() > deadline {
                let _ = loadgen.kill();
                let _ = loadgen.wait();
                bail!("the load generator took over {:?}; see {}", case.timeout, err_path.display());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let server_alive = server.child.try_wait()?.is_none();
        if !status.success() {
            bail!("the load generator exited with {status}:\n{}", tail(&err_path));
        }
        if !server_alive {
            bail!("{} died during the case:\n{}", target.name(), tail(&server.log));
        }
        drop(server);
        let text = fs::read_to_string(&out_path)?;
        let results: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("reading the load generator's output {}", out_path.display()))?;
        Ok(results)
    }
}
