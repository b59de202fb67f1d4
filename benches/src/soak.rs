//! The soak driver (the `soak` binary, which `cargo xtask soak` runs against a fresh `ws-server`): every kind
//! of load at once for minutes, then proof that the server let go of all of it.
//!
//! At once, on the driver's one thread: steady subscribers that check every delivery of the steady channels
//! (`steady`), publishers over WebSocket and the HTTP API (`publishers`), connection churn (`churn`), slow
//! consumers the server must close with 4000 (`slow`), and kicks through `POST /api/disconnect` (`kicks`).
//! Afterwards: every steady subscriber received every publication; the server's descriptors are back to the
//! count before the load; `/api/stats` shows no connection and no subscription left; the server's close
//! counts match what the driver saw; and its resident memory is within [`RSS_BOUND_MIB`] of the start.

mod api;
mod churn;
mod conn;
mod deliveries;
mod kicks;
mod publishers;
mod run;
mod slow;
mod steady;
mod summary;
mod tally;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::process::ExitCode;

use conn::Endpoint;
use tally::Ledger;

/// How far above its size before the load the server's resident memory may be once the load is over, in MiB.
///
/// Measured (README.md, "Soak"): the server starts at about 7 MiB, peaks about 5 MiB higher under this load,
/// and ends 3 to 4.5 MiB above the start, as much after 20 s as after 300 s: what stays is the steady
/// channels' history (8 channels x 100 messages, about 100 KiB), tables that keep their grown capacity
/// (tokio's, the sharded maps'), and mostly memory the allocator keeps: glibc's malloc gives each thread
/// that allocates (two workers, blocking threads) its own arena and returns freed chunks to the system only
/// from the top of a heap, so after a peak much of it stays resident though free. That retention is at most
/// the peak's excess. 16 MiB is three times the measured peak excess; a leak of 1.5 KiB per connection, or of
/// 10 bytes per delivery, over a 300 s run (about 11,700 connections, 1.7 million deliveries) would break it.
pub const RSS_BOUND_MIB: u64 = 16;

/// The soak driver: all the load at once against one `ws-server`, then the checks. Exits 1 on any failure.
#[derive(Debug, clap::Parser)]
#[command(name = "soak")]
struct Cli {
    /// The server's address.
    #[arg(long)]
    addr: SocketAddr,
    /// The server's process id, for its descriptors and memory.
    #[arg(long)]
    server_pid: u32,
    /// A key the server's API accepts.
    #[arg(long)]
    api_key: String,
    /// Seconds of load.
    #[arg(long, default_value_t = 120)]
    secs: u64,
    /// Steady channels (`soak:s0` ...); the server keeps history in the `soak` namespace.
    #[arg(long, default_value_t = 8)]
    channels: usize,
    /// Steady subscribers, each on two steady channels.
    #[arg(long, default_value_t = 24)]
    steady: usize,
    /// Publishers over WebSocket.
    #[arg(long, default_value_t = 4)]
    ws_publishers: usize,
    /// Publications per second of each WebSocket publisher.
    #[arg(long, default_value_t = 100.0)]
    ws_rate: f64,
    /// Publishers over the HTTP API.
    #[arg(long, default_value_t = 2)]
    http_publishers: usize,
    /// Publications per second of each HTTP publisher.
    #[arg(long, default_value_t = 40.0)]
    http_rate: f64,
    /// Churn connections started per second.
    #[arg(long, default_value_t = 40.0)]
    churn_rate: f64,
    /// Most churn connections open at once.
    #[arg(long, default_value_t = 150)]
    churn_max: usize,
    /// A connection to kick is started every this many milliseconds.
    #[arg(long, default_value_t = 400)]
    kick_every_ms: u64,
    /// A slow consumer is started every this many milliseconds.
    #[arg(long, default_value_t = 2500)]
    slow_every_ms: u64,
    /// How far above the start the server's RSS may end, in MiB.
    #[arg(long, default_value_t = RSS_BOUND_MIB)]
    rss_bound_mib: u64,
    /// Seed of the random choices (lifetimes, channels, how connections end).
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// What every task of the run shares: where to connect, the counters, the ledger, and the run's phase.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    pub(crate) ledger: Ledger,
    pub(crate) api_key: String,
    steady: Vec<String>,
    epochs: RefCell<Vec<String>>,
    loading: Cell<bool>,
    publishing: Cell<bool>,
    final_offsets: RefCell<Option<Vec<u64>>>,
    rng: Cell<u64>,
}

impl Shared {
    /// The steady channels' names.
    pub(crate) fn steady(&self) -> &[String] {
        &self.steady
    }

    /// The epoch of steady channel `index`, once the run has asked the server (before the load starts).
    pub(crate) fn epoch(&self, index: usize) -> Option<String> {
        self.epochs.borrow().get(index).cloned()
    }

    /// Records the epoch of the next steady channel.
    fn add_epoch(&self, epoch: &str) {
        self.epochs.borrow_mut().push(epoch.to_owned());
    }

    /// Whether churn, kicks and slow consumers still start new connections.
    pub(crate) fn loading(&self) -> bool {
        self.loading.get()
    }

    /// Churn, kicks and slow consumers start no more connections.
    fn stop_loading(&self) {
        self.loading.set(false);
    }

    /// Whether the publishers still publish.
    pub(crate) fn publishing(&self) -> bool {
        self.publishing.get()
    }

    /// The publishers stop.
    fn stop_publishing(&self) {
        self.publishing.set(false);
    }

    /// Each steady channel's last offset, once publishing has stopped and the server was asked.
    pub(crate) fn final_offsets(&self) -> Option<Vec<u64>> {
        self.final_offsets.borrow().clone()
    }

    /// Tells the steady subscribers where their channels ended, so they catch up and check.
    fn set_final_offsets(&self, finals: Vec<u64>) {
        *self.final_offsets.borrow_mut() = Some(finals);
    }

    /// A pseudo-random number below `n` (xorshift64*: reproducible from the seed, and enough for choices).
    pub(crate) fn random(&self, n: u64) -> u64 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Runs the soak with the process's arguments; prints the summary on stdout.
pub fn main() -> ExitCode {
    let cli = <Cli as clap::Parser>::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let summary = local.block_on(&runtime, run::run(cli));
    print!("{summary}");
    let failures = summary.failures();
    if failures.is_empty() {
        println!("soak: passed");
        return ExitCode::SUCCESS;
    }
    for failure in &failures {
        println!("soak: FAILED: {failure}");
    }
    ExitCode::FAILURE
}

/// The shared state for a run with `cli`'s sizes.
fn shared(cli: &Cli, tally: std::rc::Rc<tally::Tally>) -> Shared {
    let senders = cli.ws_publishers + cli.http_publishers;
    Shared {
        endpoint: Endpoint { addr: cli.addr, sources: crate::client::Sources::new(16), senders, tally },
        ledger: Ledger::new(senders, cli.channels.max(2)),
        api_key: cli.api_key.clone(),
        steady: (0..cli.channels.max(2)).map(|c| format!("soak:s{c}")).collect(),
        epochs: RefCell::new(Vec::new()),
        loading: Cell::new(true),
        publishing: Cell::new(true),
        final_offsets: RefCell::new(None),
        rng: Cell::new(cli.seed.max(1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
    }
}

/// Starts `one(id, shared)` every `every`, at most `most_open` at a time, until the run stops loading; then
/// gives those still open `finish` to end. A failed one, and each that did not end in time, is a violation,
/// named with `what` (singular) and `whats` (plural).
pub(crate) async fn every<F, Fut>(
    every: std::time::Duration,
    most_open: usize,
    finish: std::time::Duration,
    shared: &std::rc::Rc<Shared>,
    (what, whats): (&str, &str),
    one: F,
) where
    F: Fn(u64, std::rc::Rc<Shared>) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + 'static,
{
    let open = std::rc::Rc::new(Cell::new(0usize));
    let mut tasks = crate::scenario::Tasks::default();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut id = 0u64;
    while shared.loading() {
        tick.tick().await;
        if open.get() >= most_open {
            continue;
        }
        id += 1;
        open.set(open.get() + 1);
        let (run, shared, open, what) = (one(id, shared.clone()), shared.clone(), open.clone(), what.to_owned());
        tasks.spawn(async move {
            if let Err(e) = run.await {
                shared.endpoint.tally.violation(format!("{what} {id}: {e}"));
            }
            open.set(open.get() - 1);
        });
    }
    let stuck = tasks.join(finish).await;
    if stuck > 0 {
        shared.endpoint.tally.violation(format!("{stuck} {whats} did not finish within {finish:?}"));
    }
}
