//! Child processes the tasks run: `cargo` commands, and servers (`ws-server`, `ref-server`, `redis-server`)
//! started on a free port, waited for until they listen, logged to a file, and killed when dropped.
//!
//! `cargo xtask bench` and `cargo xtask soak` both start their servers through [`Server::spawn`].

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

/// How long a server may take to listen, and a cluster node to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

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

/// A port nobody listens on now.
pub(crate) fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A loopback address with a port nobody listens on now.
pub(crate) fn free_addr() -> Result<SocketAddr> {
    Ok(SocketAddr::from(([127, 0, 0, 1], free_port()?)))
}

/// Waits until `addr` answers `GET /readyz` with 200 (a node has reached its Redis), for at most 20 s.
pub(crate) fn wait_ready(addr: SocketAddr) -> Result<()> {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let answer = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).and_then(|mut s| {
            s.set_read_timeout(Some(Duration::from_secs(1)))?;
            s.write_all(b"GET /readyz HTTP/1.1\r\nHost: xtask\r\nConnection: close\r\n\r\n")?;
            let mut head = [0u8; 12];
            s.read_exact(&mut head)?;
            Ok(head)
        });
        if answer.is_ok_and(|head| head.ends_with(b"200")) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the node on {addr} was not ready within {START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A server process, killed when dropped.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `cmd` (program and arguments) with `env`, its stdout and stderr going to `log`, and waits until it
    /// listens on `addr`; fails, with the end of the log, when it exits first or does not listen within 20 s.
    pub(crate) fn spawn(cmd: &[String], env: &[(&str, String)], log: PathBuf, addr: SocketAddr) -> Result<Self> {
        let Some((program, args)) = cmd.split_first() else { bail!("an empty server command") };
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", cmd.join(" ")))?;
        // From here on, dropping `server` stops the child.
        let mut server = Self { child, log };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                bail!("{program} exited with {status} at start:\n{}", server.tail());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                bail!("{program} did not listen on {addr} within {START_TIMEOUT:?}:\n{}", server.tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, when the process has exited.
    pub(crate) fn check_alive(&mut self, what: &str) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{what} exited with {status}:\n{}", self.tail());
        }
        Ok(())
    }

    /// The last 15 lines of the server's log.
    pub(crate) fn tail(&self) -> String {
        tail(&self.log)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last 15 lines of the file at `path` (empty when it cannot be read).
pub(crate) fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
