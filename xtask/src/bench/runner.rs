//! Running cases: building the binaries, starting a fresh pinned server per case and target, running the load
//! generator against it on the other core, and collecting its JSON.

use std::fs::{self, File};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::Value;

use super::plan::{Case, Reference, Setup};
use crate::process::{cargo, free_addr, tail, wait_ready, Server};

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
    /// `redis-server`, for the cluster cases.
    redis: Option<PathBuf>,
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

/// Builds the load generator, the reference server and the hub as `hub` says, in release (into `target_dir`);
/// finds Bun when `with_bun` asks for it.
pub(crate) fn build(root: &Path, target_dir: &Path, hub: Hub, with_bun: bool) -> Result<Programs> {
    let release = target_dir.join("release");
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
    let bun = if with_bun { find_bun(root).or_else(|| install_bun(root)) } else { None };
    if with_bun && bun.is_none() {
        eprintln!("==> bun is not installed and npm could not install it (`npm ci --prefix benches/peers`); skipping the bun peer");
    }
    let redis = on_path("redis-server");
    let (pin_server, pin_loadgen) = pinning();
    if pin_server.is_empty() {
        eprintln!("==> warning: cannot pin (needs `taskset` and 2 cores); server and load generator share cores");
    }
    let logs = target_dir.join("bench/logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    Ok(Programs {
        loadgen: release.join("loadgen"),
        reference: release.join("ref-server"),
        hub,
        bun,
        redis,
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
    let bun = installed.into_iter().find(|path| path.is_file()).or_else(|| on_path("bun"))?;
    Some((bun, script))
}

/// Installs the Bun pinned by `benches/peers/package-lock.json` with `npm ci`, when npm is there.
fn install_bun(root: &Path) -> Option<(PathBuf, PathBuf)> {
    on_path("npm")?;
    eprintln!("==> installing the pinned Bun for the bun peer: npm ci --prefix benches/peers");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--prefix"])
        .arg(root.join("benches/peers"))
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    find_bun(root)
}

/// A program on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
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

impl Programs {
    fn server_command(&self, target: Target, addr: SocketAddr, case: &Case, pinned: bool) -> Result<Vec<String>> {
        let heartbeat = case.heartbeat_ms.to_string();
        let workers = match case.setup {
            Setup::Workers(n) => n.to_string(),
            _ => "1".to_owned(),
        };
        let mut cmd = if pinned { self.pin_server.clone() } else { Vec::new() };
        let path = |p: &Path| p.display().to_string();
        match target {
            Target::Reference => {
                cmd.push(path(&self.reference));
                cmd.extend(["--listen".into(), addr.to_string(), "--workers".into(), workers]);
                cmd.extend(["--heartbeat-ms".into(), heartbeat]);
            }
            Target::Hub => {
                let Some(hub) = &self.hub else { bail!("no hub binary") };
                cmd.push(path(hub));
                cmd.extend(["--listen".into(), addr.to_string(), "--workers".into(), workers]);
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

    fn start(&self, target: Target, case: &Case, pinned: bool) -> Result<(Server, SocketAddr)> {
        let addr = free_addr()?;
        let cmd = self.server_command(target, addr, case, pinned)?;
        let server = self.spawn(&cmd, &[], &format!("{}-{}", case.label, target.name()), addr)?;
        Ok((server, addr))
    }

    /// Starts `cmd` with `env`, logging to `<log>.server.log`, and waits until it listens on `addr`.
    fn spawn(&self, cmd: &[String], env: &[(&str, String)], log: &str, addr: SocketAddr) -> Result<Server> {
        Server::spawn(cmd, env, self.logs.join(format!("{log}.server.log")), addr)
    }

    /// Runs `case` against a fresh `target` server (or, for a cluster case, what its setup says); returns the
    /// load generator's results (one per case it reports), each with `"target"` set.
    pub(crate) fn run_case(&self, case: &Case, target: Target) -> Result<Vec<Value>> {
        match &case.setup {
            Setup::Single => {
                let (mut server, addr) = self.start(target, case, true)?;
                self.drive(case, target, &case.loadgen, addr, None, true, &mut [&mut server])
            }
            Setup::Workers(_) => {
                let (mut server, addr) = self.start(target, case, false)?;
                self.drive(case, target, &case.loadgen, addr, None, false, &mut [&mut server])
            }
            Setup::Cluster(reference) => self.run_cluster_case(case, target, reference),
        }
    }

    /// A cluster case: two hub nodes over a Redis of their own, or the reference the case names.
    fn run_cluster_case(&self, case: &Case, target: Target, reference: &Reference) -> Result<Vec<Value>> {
        let Some(redis_bin) = &self.redis else {
            eprintln!("==> redis-server is not installed (apt-get install redis-server); skipping {}", case.label);
            return Ok(Vec::new());
        };
        let redis = |name: &str| -> Result<(Server, SocketAddr)> {
            let addr = free_addr()?;
            let port = addr.port().to_string();
            let cmd: Vec<String> = [redis_bin.display().to_string()]
                .into_iter()
                .chain(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"].map(String::from))
                .collect();
            Ok((self.spawn(&cmd, &[], &format!("{}-{name}-redis", case.label), addr)?, addr))
        };
        match (target, reference) {
            (Target::Bun, _) => Ok(Vec::new()),
            (Target::Reference, Reference::Redis(args)) => {
                let (mut redis, addr) = redis("ref")?;
                self.drive(case, target, args, addr, None, false, &mut [&mut redis])
            }
            (Target::Reference, Reference::OneNode) => {
                let addr = free_addr()?;
                let cmd = self.server_command(Target::Hub, addr, case, false)?;
                let mut hub = self.spawn(&cmd, &[], &format!("{}-ref", case.label), addr)?;
                self.drive(case, target, &case.loadgen, addr, None, false, &mut [&mut hub])
            }
            (Target::Hub, _) => {
                let (mut redis, redis_addr) = redis("hub")?;
                let env = [("WS_SERVER_BROKER__REDIS_URL", format!("redis://{redis_addr}"))];
                let node = |name: &str| -> Result<(Server, SocketAddr)> {
                    let addr = free_addr()?;
                    let cmd = self.server_command(Target::Hub, addr, case, false)?;
                    let server = self.spawn(&cmd, &env, &format!("{}-hub-{name}", case.label), addr)?;
                    wait_ready(addr)?;
                    Ok((server, addr))
                };
                let (mut publishing, publish_addr) = node("a")?;
                let (mut subscribing, addr) = node("b")?;
                // The subscribers' node is the one measured (CPU, memory): the first server passed.
                let servers: &mut [&mut Server] = &mut [&mut subscribing, &mut publishing, &mut redis];
                self.drive(case, target, &case.loadgen, addr, Some(publish_addr), false, servers)
            }
        }
    }

    /// Runs the load generator with `args` against `addr` (publishers on `publish_addr` when given), pinned
    /// when `pinned`, measuring `servers[0]`; fails when a server died meanwhile.
    #[allow(clippy::too_many_arguments)]
    fn drive(
        &self,
        case: &Case,
        target: Target,
        args: &[String],
        addr: SocketAddr,
        publish_addr: Option<SocketAddr>,
        pinned: bool,
        servers: &mut [&mut Server],
    ) -> Result<Vec<Value>> {
        let mut cmd = if pinned { self.pin_loadgen.clone() } else { Vec::new() };
        cmd.push(self.loadgen.display().to_string());
        cmd.extend(args.iter().cloned());
        cmd.extend(["--addr".into(), addr.to_string(), "--target".into(), target.name().into()]);
        if let Some(publish_addr) = publish_addr {
            cmd.extend(["--publish-addr".into(), publish_addr.to_string()]);
        }
        cmd.extend(["--server-pid".into(), servers[0].pid().to_string()]);
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
        if !status.success() {
            bail!("the load generator exited with {status}:\n{}", tail(&err_path));
        }
        for server in servers.iter_mut() {
            server.check_alive(&format!("a {} server, during the case,", target.name()))?;
        }
        let text = fs::read_to_string(&out_path)?;
        let results: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("reading the load generator's output {}", out_path.display()))?;
        Ok(results)
    }
}
