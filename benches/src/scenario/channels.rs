//! Many channels: 4 publishers spread messages over C channels of S subscribers each (1 x 1000, 100 x 10,
//! 1000 x 1). Deliveries per second and per second of server CPU. As fast as flow control lets them, or, with
//! a rate, paced at that many publications per second in all (for latency at a given load).

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::Notify;

use super::{SeqCheck, Stats, Target};
use crate::client::{ClientError, WsConn};
use crate::marker::{self, Marker, Template, SEQ_MASK};
use crate::report::CaseResult;
use crate::wire::MaskedFrame;

/// Most frames a publisher writes at once.
const BATCH: usize = 64;

/// The publishers' flow control: deliveries in flight stay under a limit, so that the run measures throughput
/// rather than how fast queues grow.
#[derive(Debug)]
pub(crate) struct Credit {
    pub(crate) in_flight_limit: u64,
    pub(crate) waiting: Cell<bool>,
    pub(crate) wake: Notify,
}

impl Credit {
    pub(crate) fn in_flight(stats: &Stats) -> u64 {
        stats.expected.get().saturating_sub(stats.delivered.get())
    }

    /// Stops the publishers (`publishing` off, waiters woken) and waits up to 10 s for the deliveries still
    /// in flight; a shortfall is an error in `stats`.
    pub(crate) async fn stop(&self, stats: &Stats, publishing: &Cell<bool>) {
        publishing.set(false);
        self.wake.notify_waiters();
        if !super::wait_until(Duration::from_secs(10), || stats.delivered.get() >= stats.expected.get()).await {
            stats.error("deliveries still missing 10 s after the publishers stopped");
        }
    }

    /// Called by subscribers after each read: wakes blocked publishers once half the window is free.
    pub(crate) fn delivered(&self, stats: &Stats) {
        if self.waiting.get() && Self::in_flight(stats) <= self.in_flight_limit / 2 {
            self.waiting.set(false);
            self.wake.notify_waiters();
        }
    }
}

/// How `run` publishes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Load {
    /// Publishing connections.
    pub(crate) publishers: usize,
    /// Payload bytes.
    pub(crate) size: usize,
    /// Most deliveries outstanding.
    pub(crate) in_flight: u64,
    /// Publications per second over all publishers; `None`: as fast as `in_flight` allows.
    pub(crate) rate: Option<u32>,
}

/// Runs `channels` x `subscribers` subscriber connections and `load.publishers` publishers.
pub(crate) async fn run(target: Rc<Target>, channels: usize, subscribers: usize, load: Load) -> CaseResult {
    let Load { publishers, size, in_flight, rate } = load;
    let stats = Stats::new();
    // Subscribers read until `running` ends; publishers stop earlier, when `publishing` does.
    let running = Rc::new(Cell::new(true));
    let publishing = Rc::new(Cell::new(true));
    let credit = Rc::new(Credit { in_flight_limit: in_flight, waiting: Cell::new(false), wake: Notify::new() });
    let path = target.ws_path.clone();
    let receivers = channels * subscribers;
    let channel_of = move |i: usize| vec![format!("m:{}", i % channels)];
    let mut tasks = super::open_all(&target, &stats, receivers, &path, 64 * 1024, channel_of, {
        let (stats, running, credit, target) = (stats.clone(), running.clone(), credit.clone(), target.clone());
        move |i, mut conn| {
            let (stats, running, credit, target) = (stats.clone(), running.clone(), credit.clone(), target.clone());
            async move {
                let mut check = SeqCheck::new(publishers);
                let offsets = target.checks_offsets();
                while running.get() {
                    let read = conn.read_data(|payload, received| {
                        if let Some(m) = check.check(payload, offsets, &stats) {
                            stats.latency(marker::elapsed_us(m.sent_us, received));
                            Stats::add(&stats.ops, 1);
                        }
                    });
                    if let Err(e) = read.await {
                        if running.get() {
                            stats.error(format!("subscriber {i}: {e}"));
                        }
                        return;
                    }
                    credit.delivered(&stats);
                }
            }
        }
    })
    .await;
    let mut pubs = Vec::new();
    for p in 0..publishers {
        match target.open_publisher(&path, 4096).await {
            Ok(conn) => pubs.push(conn),
            Err(e) => stats.error(format!("publisher {p}: {e}")),
        }
    }
    let samples = if stats.failed() {
        Vec::new()
    } else {
        for (p, conn) in pubs.into_iter().enumerate() {
            let (stats, publishing, credit) = (stats.clone(), publishing.clone(), credit.clone());
            tasks.spawn(async move {
                let pace = rate.map(|r| f64::from(r) / publishers as f64);
                if let Err(e) =
                    publish(p, conn, channels, subscribers as u64, size, pace, &stats, &publishing, &credit).await
                {
                    stats.error(format!("publisher {p}: {e}"));
                }
            });
        }
        super::measure(&target, &stats, |_| {}).await
    };
    credit.stop(&stats, &publishing).await;
    running.set(false);
    let _ = tasks.join(Duration::from_millis(100)).await;
    let case = match rate {
        None => format!("{channels}x{subscribers}"),
        Some(r) => format!("{channels}x{subscribers}_{r}hz"),
    };
    CaseResult::new("channels", case, &target.name, samples, stats.final_checks())
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    sender: usize,
    mut conn: WsConn,
    channels: usize,
    subscribers: u64,
    size: usize,
    pace: Option<f64>,
    stats: &Stats,
    running: &Cell<bool>,
    credit: &Credit,
) -> Result<(), ClientError> {
    let templates: Vec<Template> = (0..channels).map(|c| Template::publish(&format!("m:{c}"), size)).collect();
    let mut frames: Vec<MaskedFrame> = templates.iter().map(|t| MaskedFrame::text(&t.payload)).collect();
    let mut seqs = vec![0u32; channels];
    // Publishers start at different channels so that they do not move in lockstep.
    let mut next = sender * channels / 4 % channels.max(1);
    let mut out = Vec::with_capacity(BATCH * (size + 64));
    let on_data = |payload: &[u8], _: u32| stats.error(format!("publisher got {}", crate::client::excerpt(payload)));
    // Paced: every millisecond, the publications owed since the start.
    let started = tokio::time::Instant::now();
    let mut paced = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    while running.get() {
        let free = credit.in_flight_limit.saturating_sub(Credit::in_flight(stats));
        let mut batch = ((free / subscribers) as usize).min(BATCH);
        if let Some(per_second) = pace {
            let owed = (started.elapsed().as_secs_f64() * per_second) as u64 - paced;
            if owed == 0 {
                tokio::select! {
                    _ = tick.tick() => {}
                    readable = conn.readable() => {
                        readable?;
                        conn.poll_data(on_data).await?;
                    }
                }
                continue;
            }
            batch = batch.min(owed as usize);
        }
        if batch == 0 {
            credit.waiting.set(true);
            tokio::select! {
                () = credit.wake.notified() => {}
                readable = conn.readable() => {
                    readable?;
                    conn.poll_data(on_data).await?;
                }
            }
            continue;
        }
        out.clear();
        let sent_us = marker::now_us();
        for _ in 0..batch {
            let c = next;
            next = (next + 1) % channels;
            let seq = seqs[c];
            seqs[c] = (seq + 1) & SEQ_MASK;
            frames[c].patch(templates[c].marker_at, &Marker { sender: sender as u32, seq, sent_us }.encode());
            out.extend_from_slice(frames[c].bytes());
        }
        Stats::add(&stats.expected, batch as u64 * subscribers);
        paced += batch as u64;
        conn.send(&out).await?;
        conn.poll_data(on_data).await?;
    }
    Ok(())
}
