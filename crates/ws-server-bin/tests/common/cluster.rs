//! Real processes for the cluster tests: a `redis-server` of the test's own on a free port, and `ws-server`
//! nodes joined to it (started from the binary Cargo built for these tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{http, next_json, ws_connect, HttpResponse, Ws};

/// The API key every node accepts.
pub const KEY: &str = "apikey cluster-test-key";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A `redis-server` of this test's own.
pub struct Redis {
    pub port: u16,
    /// Extra `redis-server` arguments (TLS, users).
    args: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A server with extra arguments; it still answers plain RESP on `port`, for the test's own commands.
    pub fn start_with(args: &[&str]) -> Self {
        let mut redis = Self { port: free_port(), args: args.iter().map(|a| (*a).to_owned()).collect(), child: None };
        redis.spawn();
        redis
    }

    pub fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (install it: .ci/setup does)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server on port {} does not answer", self.port);
    }

    pub fn ping(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    /// A Redis on a given port that may not be running yet.
    pub fn unstarted(port: u16) -> Self {
        Self { port, args: Vec::new(), child: None }
    }

    /// Runs one command over RESP and returns the raw reply.
    pub fn cmd(&self, args: &[&[u8]]) -> Vec<u8> {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("redis is up");
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let mut req = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            req.extend_from_slice(a);
            req.extend_from_slice(b"\r\n");
        }
        s.write_all(&req).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).unwrap_or(0);
        buf.truncate(n);
        buf
    }

    /// Sends SIGSTOP (`pause`) or SIGCONT to the server.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill").args([signal, &pid]).status().unwrap().success();
        assert!(ok, "kill {signal} {pid}");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A `ws-server` process joined to the cluster.
pub struct Node {
    child: Child,
    pub addr: SocketAddr,
    _config: TempFile,
}

struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Node {
    /// A node on a free port.
    pub fn start(redis: &Redis) -> Self {
        Self::start_on(redis, "127.0.0.1:0".parse().unwrap())
    }

    /// A node listening on `listen` (a fixed port, to restart a node where it was).
    pub fn start_on(redis: &Redis, listen: SocketAddr) -> Self {
        Self::start_with(&format!("redis_url = {:?}", redis.url()), listen)
    }

    /// A node whose `[broker]` section names its Redis with `redis` (TOML lines such as `redis_url = "..."`).
    pub fn start_with(redis: &str, listen: SocketAddr) -> Self {
        Self::start_configured(redis, "", listen)
    }

    /// A `ws-server` process on its own, no Redis, with `extra` appended to its configuration.
    pub fn start_single(extra: &str, listen: SocketAddr) -> Self {
        Self::start_configured("", extra, listen)
    }

    fn start_configured(redis: &str, extra: &str, listen: SocketAddr) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "ws-cluster-test-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let config = format!(
            r#"
[limits]
rate_per_sec = 100000
rate_burst = 100000

[api]
keys = ["cluster-test-key"]

[namespace]
history_size = 1000
history_ttl_ms = 600000
presence = true
join_leave = true

[broker]
{redis}
presence_lease_ms = 2000
command_timeout_ms = 1500
probe_interval_ms = 500
{extra}
"#
        );
        std::fs::write(&path, config).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_ws-server"))
            .args(["--listen", &listen.to_string(), "--log-format", "json", "--config"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ws-server starts");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            assert!(Instant::now() < deadline, "ws-server did not log `listening`");
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
                let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
                if v["message"] == "listening" {
                    break v["addr"].as_str().unwrap().parse().unwrap();
                }
            }
        };
        Self { child, addr, _config: TempFile(path) }
    }

    pub async fn ready(&self) -> bool {
        http(self.addr, "GET", "/readyz", &[], b"").await.status == 200
    }

    pub async fn wait_ready(&self, ready: bool) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.ready().await != ready {
            assert!(Instant::now() < deadline, "readyz never became {ready}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn api(&self, method: &str, path: &str, body: Value) -> HttpResponse {
        let body = if body.is_null() { Vec::new() } else { body.to_string().into_bytes() };
        http(self.addr, method, path, &[("Authorization", KEY), ("Content-Type", "application/json")], &body).await
    }

    /// A client connection; returns it with its `conn_id`.
    pub async fn connect(&self) -> (Ws, String) {
        let mut ws = ws_connect(self.addr, "/ws", &[]).await.expect("websocket opens");
        let welcome = next_json(&mut ws).await;
        assert_eq!(welcome["type"], "welcome");
        (ws, welcome["conn_id"].as_str().unwrap().to_owned())
    }
}

impl Node {
    /// The value of a metric line of `/metrics` (the first sample whose line starts with `prefix`).
    pub async fn metric(&self, prefix: &str) -> Option<f64> {
        let text = http(self.addr, "GET", "/metrics", &[], b"").await.text();
        text.lines().find(|l| l.starts_with(prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// Sends SIGTERM (a drain) and waits for the process to exit; true when it exited with 0.
    pub fn terminate(mut self) -> bool {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        self.child.wait().unwrap().success()
    }

    /// Kills the process with SIGKILL: no drain, no close frames.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
