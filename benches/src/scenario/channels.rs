//! Many channels: 4 publishers spread messages over C channels of S subscribers each (1 x 1000, 100 x 10,
//! 1000 x 1). Deliveries per second and per second of server CPU.

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

    /// Called by subscribers after each read: wakes blocked publishers once half the window is free.
    pub(crate) fn delivered(&self, stats: &Stats) {
        if self.waiting.get() && Self::in_flight(stats) <= self.in_flight_limit / 2 {
            self.waiting.set(false);
            self.wake.notify_waiters();
        }
    }
}

/// Runs `channels` x `subscribers` subscriber connections and `publishers` publishers of `size`-byte messages,
/// with at most `in_flight` deliveries outstanding.
pub(crate) async fn run(
    target: Rc<Target>,
    channels: usize,
    subscribers: usize,
    publishers: usize,
    size: usize,
    in_flight: u64,
) -> CaseResult {
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
                if let Err(e) = publish(p, conn, channels, subscribers as u64, size, &stats, &publishing, &credit).await
                {
                    stats.error(format!("publisher {p}: {e}"));
                }
            });
        }
        super::measure(&target, &stats, |_| {}).await
    };
    publishing.set(false);
    credit.wake.notify_waiters();
    if !super::wait_until(Duration::from_secs(10), || stats.delivered.get() >= stats.expected.get()).await {
        stats.error("deliveries still missing 10 s after the publishers stopped");
    }
    running.set(false);
    let _ = tasks.join(Duration::from_millis(100)).await;
    let case = format!("{channels}x{subscribers}");
    CaseResult::new("channels", case, &target.name, samples, stats.final_checks())
}

#[allow(clippy::too_many_arguments)]
async fn publish(
    sender: usize,
    mut conn: WsConn,
    channels: usize,
    subscribers: u64,
    size: usize,
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
    while running.get() {
        let free = credit.in_flight_limit.saturating_sub(Credit::in_flight(stats));
        let batch = ((free / subscribers) as usize).min(BATCH);
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
        conn.send(&out).await?;
        conn.poll_data(on_data).await?;
    }
    Ok(())
}
