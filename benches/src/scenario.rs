//! What every scenario shares: the target's description, per-window counters and histograms, delivery checks,
//! connection setup with bounded concurrency, and the warm-up-then-samples measuring loop.

pub(crate) mod broadcast;
pub(crate) mod channels;
pub(crate) mod churn;
pub(crate) mod echo;
pub(crate) mod idle;
pub(crate) mod redis;
pub(crate) mod room;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::sync::Semaphore;

use crate::client::{self, ClientError, Sources, WsConn};
use crate::marker::{self, Marker, SEQ_MASK};
use crate::procstat::{CpuMark, CpuUse};
use crate::report::{self, Checks, Sample};

/// How long a connection's setup (connect, upgrade, welcome, subscribe replies) may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The server under test and how to measure it.
#[derive(Debug)]
pub(crate) struct Target {
    /// The server's address.
    pub(crate) addr: SocketAddr,
    /// Where publishers connect, when not to `addr`: another node of a cluster.
    pub(crate) publish_addr: Option<SocketAddr>,
    /// `hub`, `ref` or `bun`: a label for the report, and `hub` turns the `offset` checks on.
    pub(crate) name: String,
    /// The server's pid, for its CPU, memory and descriptors; `None` measures nothing on the server side.
    pub(crate) pid: Option<u32>,
    /// The hub-protocol path (`/ws`): welcome, subscribe, publish, echo.
    pub(crate) ws_path: String,
    /// The path the echo scenario uses (the hub's `/ws`, the reference's `/echo`).
    pub(crate) echo_path: String,
    /// Loopback source addresses for client sockets.
    pub(crate) sources: Sources,
    /// Warm-up before the first sample.
    pub(crate) warmup: Duration,
    /// Number of measuring windows.
    pub(crate) samples: usize,
    /// Length of each window.
    pub(crate) window: Duration,
}

impl Target {
    /// Whether the target numbers messages with the hub's per-channel `offset`.
    pub(crate) fn checks_offsets(&self) -> bool {
        self.name == "hub"
    }

    /// Opens a connection on `path` and waits for the welcome (on the hub-protocol path) and one `subscribed`
    /// reply per channel in `subscribe`.
    pub(crate) async fn open(&self, path: &str, buf: usize, subscribe: &[String]) -> Result<WsConn, ClientError> {
        self.open_at(self.addr, path, buf, subscribe).await
    }

    /// Opens a publishing connection: on `publish_addr` when there is one, else as [`Target::open`] does.
    pub(crate) async fn open_publisher(&self, path: &str, buf: usize) -> Result<WsConn, ClientError> {
        self.open_at(self.publish_addr.unwrap_or(self.addr), path, buf, &[]).await
    }

    async fn open_at(
        &self,
        addr: SocketAddr,
        path: &str,
        buf: usize,
        subscribe: &[String],
    ) -> Result<WsConn, ClientError> {
        let setup = async {
            let mut conn = client::connect(addr, self.sources.next(), path, buf).await?;
            if path == self.ws_path {
                conn.expect(b"\"type\":\"welcome\"", 1, SETUP_TIMEOUT).await?;
            }
            if !subscribe.is_empty() {
                let mut frames = Vec::new();
                for channel in subscribe {
                    crate::wire::put_masked(&mut frames, crate::wire::OP_TEXT, &marker::subscribe(channel));
                }
                conn.send(&frames).await?;
                conn.expect(b"\"type\":\"subscribed\"", subscribe.len(), SETUP_TIMEOUT).await?;
            }
            Ok(conn)
        };
        tokio::time::timeout(SETUP_TIMEOUT, setup).await.map_err(|_| ClientError::Timeout("connection setup"))?
    }
}

/// Counters, histograms and checks shared by a scenario's tasks (one thread, so `Cell` and `RefCell`).
#[derive(Debug)]
pub(crate) struct Stats {
    /// Operations completed in the current window (round trips, deliveries).
    pub(crate) ops: Cell<u64>,
    /// Deliveries the run expects so far (sent messages times their recipients), for the loss check.
    pub(crate) expected: Cell<u64>,
    /// Deliveries over the whole run, for the loss check.
    pub(crate) delivered: Cell<u64>,
    /// Latency of each operation in the current window, µs.
    pub(crate) latency: RefCell<Histogram<u64>>,
    /// A second latency in the current window (publish to last receipt), µs.
    pub(crate) latency_last: RefCell<Histogram<u64>>,
    /// The delivery checks.
    pub(crate) checks: RefCell<Checks>,
}

impl Stats {
    /// Empty stats.
    pub(crate) fn new() -> Rc<Self> {
        Rc::new(Self {
            ops: Cell::new(0),
            expected: Cell::new(0),
            delivered: Cell::new(0),
            latency: RefCell::new(report::latency_histogram()),
            latency_last: RefCell::new(report::latency_histogram()),
            checks: RefCell::new(Checks::default()),
        })
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get() + n);
    }

    /// Fills in the loss and duplicate counts from the expected and delivered totals, and returns the checks.
    pub(crate) fn final_checks(&self) -> Checks {
        let mut checks = self.checks.borrow().clone();
        checks.expected = self.expected.get();
        checks.delivered = self.delivered.get();
        checks.lost = checks.expected.saturating_sub(checks.delivered);
        checks.duplicated += checks.delivered.saturating_sub(checks.expected);
        checks
    }

    /// Records one error.
    pub(crate) fn error(&self, message: impl Into<String>) {
        self.checks.borrow_mut().error(message);
    }

    /// Whether any error was recorded.
    pub(crate) fn failed(&self) -> bool {
        self.checks.borrow().error_count > 0
    }

    /// Records a latency in µs.
    pub(crate) fn latency(&self, us: u64) {
        // Saturate rather than panic on an out-of-range value (a wrapped clock, a stalled run).
        self.latency.borrow_mut().saturating_record(us.max(1));
    }

    /// Starts a new window: counters and histograms to zero.
    pub(crate) fn reset_window(&self) {
        self.ops.set(0);
        self.latency.borrow_mut().reset();
        self.latency_last.borrow_mut().reset();
    }

    /// Ends a window: its figures as a sample, and a new window started.
    pub(crate) fn take_window(&self, cpu: &CpuUse) -> Sample {
        let mut sample = Sample::new();
        let ops = self.ops.get() as f64;
        sample.insert("ops".to_owned(), ops);
        sample.insert("rate".to_owned(), ops / cpu.secs);
        sample.insert("server_cpu_pct".to_owned(), cpu.server_pct);
        sample.insert("loadgen_cpu_pct".to_owned(), cpu.loadgen_pct);
        if cpu.server_ns > 0 {
            sample.insert("ops_per_server_cpu_s".to_owned(), ops / (cpu.server_ns as f64 / 1e9));
        }
        report::put_latency(&mut sample, "lat", &self.latency.borrow());
        report::put_latency(&mut sample, "last", &self.latency_last.borrow());
        self.reset_window();
        sample
    }
}

/// Per-receiver ordering check: every sender's sequence numbers arrive as 0, 1, 2, ... on this receiver, and on
/// the hub the channel's `offset`s are consecutive.
///
/// It assumes a receiver gets each sender's messages through one channel only, which holds for every scenario.
#[derive(Debug)]
pub(crate) struct SeqCheck {
    next: Vec<u32>,
    last_offset: Option<u64>,
}

impl SeqCheck {
    /// A check for senders `0..senders`.
    pub(crate) fn new(senders: usize) -> Self {
        Self { next: vec![0; senders], last_offset: None }
    }

    /// Checks one delivered payload; returns its marker when it had one. Failures are counted in `stats`.
    pub(crate) fn check(&mut self, payload: &[u8], offsets: bool, stats: &Stats) -> Option<Marker> {
        let Some(m) = marker::find_marker(payload) else {
            stats.error(format!("frame without a marker: {}", client::excerpt(payload)));
            return None;
        };
        match self.next.get_mut(m.sender as usize) {
            Some(next) if *next == m.seq => *next = (*next + 1) & SEQ_MASK,
            Some(next) => {
                stats.checks.borrow_mut().out_of_order += 1;
                *next = (m.seq + 1) & SEQ_MASK;
            }
            None => stats.error(format!("unknown sender {}", m.sender)),
        }
        if offsets {
            match marker::find_offset(payload) {
                Some(offset) => {
                    if self.last_offset.is_some_and(|last| offset != last + 1) {
                        stats.checks.borrow_mut().offset_gaps += 1;
                    }
                    self.last_offset = Some(offset);
                }
                None => stats.error(format!("hub message without an offset: {}", client::excerpt(payload))),
            }
        }
        stats.delivered.set(stats.delivered.get() + 1);
        Some(m)
    }
}

/// Bounded concurrency for connection setup: a server's listen backlog and the load generator's CPU both suffer
/// from thousands of simultaneous handshakes.
pub(crate) fn setup_limit() -> Rc<Semaphore> {
    Rc::new(Semaphore::new(256))
}

/// Waits the warm-up, then measures `target.samples` windows; `during` adds figures to each sample at its end.
pub(crate) async fn measure(target: &Target, stats: &Stats, mut during: impl FnMut(&mut Sample)) -> Vec<Sample> {
    tokio::time::sleep(target.warmup).await;
    stats.reset_window();
    let mut samples = Vec::with_capacity(target.samples);
    for _ in 0..target.samples {
        let start = CpuMark::now(target.pid);
        tokio::time::sleep(target.window).await;
        let cpu = start.until(&CpuMark::now(target.pid));
        let mut sample = stats.take_window(&cpu);
        during(&mut sample);
        samples.push(sample);
        if stats.failed() {
            break;
        }
    }
    samples
}

/// Waits until `done()` is true, checking every 10 ms, for at most `within`; returns whether it became true.
pub(crate) async fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A scenario's connection tasks, on the current thread's `LocalSet`.
#[derive(Debug, Default)]
pub(crate) struct Tasks(Vec<tokio::task::JoinHandle<()>>);

impl Tasks {
    /// Spawns a task.
    pub(crate) fn spawn(&mut self, task: impl std::future::Future<Output = ()> + 'static) {
        self.0.push(tokio::task::spawn_local(task));
    }

    /// Waits for every task, for at most `within` in all; aborts those still running then and returns how many.
    pub(crate) async fn join(self, within: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + within;
        let mut stuck = 0;
        for mut handle in self.0 {
            if stuck > 0 || tokio::time::timeout_at(deadline, &mut handle).await.is_err() {
                handle.abort();
                stuck += 1;
            }
        }
        stuck
    }
}

/// Opens `count` connections with [`Target::open`], `setup_limit` at a time, each on `path` and subscribed to
/// `channels(i)`, and hands each to `run(i, conn)` as a task. Returns the tasks once every connection is set up
/// or has failed (failures are recorded in `stats`).
pub(crate) async fn open_all<F, Fut>(
    target: &Rc<Target>,
    stats: &Rc<Stats>,
    count: usize,
    path: &str,
    buf: usize,
    channels: impl Fn(usize) -> Vec<String>,
    run: F,
) -> Tasks
where
    F: Fn(usize, WsConn) -> Fut + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let limit = setup_limit();
    let ready = Rc::new(Cell::new(0usize));
    let run = Rc::new(run);
    let mut tasks = Tasks::default();
    for i in 0..count {
        let (target, stats, limit, ready, run) =
            (target.clone(), stats.clone(), limit.clone(), ready.clone(), run.clone());
        let path = path.to_owned();
        let subscribe = channels(i);
        tasks.spawn(async move {
            let permit = limit.acquire().await.expect("the semaphore is never closed");
            let opened = target.open(&path, buf, &subscribe).await;
            drop(permit);
            ready.set(ready.get() + 1);
            match opened {
                Ok(conn) => run(i, conn).await,
                Err(e) => stats.error(format!("connection {i}: {e}")),
            }
        });
    }
    while ready.get() < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tasks
}
