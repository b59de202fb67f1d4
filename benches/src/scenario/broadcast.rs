//! Broadcast latency, 1 -> N: one publisher connection publishes on one channel at a fixed rate through the hub
//! protocol; N subscribers receive. Latency to each receipt, and from publish to the last receipt.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use super::{SeqCheck, Stats, Target};
use crate::client::{ClientError, WsConn};
use crate::marker::{self, Marker, Template, SEQ_MASK};
use crate::report::CaseResult;
use crate::wire::MaskedFrame;

/// Receipt counts are kept for this many recent messages (a power of two).
const RING: usize = 1 << 16;

/// How long to wait for the last deliveries after the publisher stops.
const DRAIN: Duration = Duration::from_secs(20);

/// Receipts per message, to see when the last subscriber has one.
#[derive(Debug)]
struct Receipts {
    subscribers: u32,
    counts: RefCell<Vec<u32>>,
}

/// Runs `n` subscribers and one publisher of `size`-byte messages, at each rate of `rates` in turn.
pub(crate) async fn run(target: Rc<Target>, n: usize, rates: &[u32], size: usize) -> Vec<CaseResult> {
    let stats = Stats::new();
    let receipts = Rc::new(Receipts { subscribers: n as u32, counts: RefCell::new(vec![0; RING]) });
    let running = Rc::new(Cell::new(true));
    let path = target.ws_path.clone();
    let tasks = super::open_all(&target, &stats, n, &path, 16 * 1024, |_| vec!["bcast".to_owned()], {
        let (stats, receipts, target, running) = (stats.clone(), receipts.clone(), target.clone(), running.clone());
        move |i, mut conn| {
            let (stats, receipts, target, running) = (stats.clone(), receipts.clone(), target.clone(), running.clone());
            async move {
                let mut check = SeqCheck::new(1);
                let offsets = target.checks_offsets();
                while running.get() {
                    let read = conn.read_data(|payload, received| {
                        if let Some(m) = check.check(payload, offsets, &stats) {
                            stats.latency(marker::elapsed_us(m.sent_us, received));
                            let mut counts = receipts.counts.borrow_mut();
                            let count = &mut counts[m.seq as usize % RING];
                            *count += 1;
                            if *count == receipts.subscribers {
                                stats
                                    .latency_last
                                    .borrow_mut()
                                    .saturating_record(marker::elapsed_us(m.sent_us, received).max(1));
                                Stats::add(&stats.ops, 1);
                            }
                        }
                    });
                    if let Err(e) = read.await {
                        if running.get() {
                            stats.error(format!("subscriber {i}: {e}"));
                        }
                        return;
                    }
                }
            }
        }
    })
    .await;
    let mut results = Vec::new();
    let publisher = match target.open_publisher(&target.ws_path, 4096).await {
        Ok(conn) => Some(conn),
        Err(e) => {
            stats.error(format!("publisher: {e}"));
            None
        }
    };
    if let (Some(conn), false) = (publisher, stats.failed()) {
        let (rate_tx, rate_rx) = watch::channel(0u32);
        let published = Rc::new(Cell::new(0u64));
        let publisher = tokio::task::spawn_local(publish(
            conn,
            rate_rx,
            size,
            published.clone(),
            receipts.clone(),
            stats.clone(),
            n as u64,
        ));
        for &rate in rates {
            rate_tx.send_replace(rate);
            let samples = super::measure(&target, &stats, |_| {}).await;
            rate_tx.send_replace(0);
            let drained = super::wait_until(DRAIN, || stats.delivered.get() >= stats.expected.get()).await;
            if !drained {
                stats.error(format!("at {rate}/s, deliveries still missing {DRAIN:?} after the last publish"));
            }
            let case = format!("n{n}_{rate}hz");
            results.push(
                CaseResult::new("broadcast", case, &target.name, samples, stats.final_checks())
                    .total("published", published.get() as f64),
            );
            if stats.failed() {
                break;
            }
        }
        drop(rate_tx);
        let _ = publisher.await;
    } else {
        for &rate in rates {
            results.push(CaseResult::new(
                "broadcast",
                format!("n{n}_{rate}hz"),
                &target.name,
                Vec::new(),
                stats.final_checks(),
            ));
        }
    }
    running.set(false);
    // Subscribers wait for messages that will not come; the server's exit ends them, so do not wait long.
    let _ = tasks.join(Duration::from_millis(100)).await;
    results
}

/// The publisher: publishes at the rate `rate` says (0 pauses), until `rate`'s sender is dropped.
async fn publish(
    mut conn: WsConn,
    mut rate: watch::Receiver<u32>,
    size: usize,
    published: Rc<Cell<u64>>,
    receipts: Rc<Receipts>,
    stats: Rc<Stats>,
    subscribers: u64,
) {
    let template = Template::publish("bcast", size);
    let mut frame = MaskedFrame::text(&template.payload);
    let mut seq = 0u32;
    loop {
        let per_second = *rate.borrow_and_update();
        if per_second == 0 {
            if rate.changed().await.is_err() {
                return;
            }
            continue;
        }
        let mut ticks = tokio::time::interval(Duration::from_secs(1) / per_second);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    receipts.counts.borrow_mut()[seq as usize % RING] = 0;
                    let sent_us = marker::now_us();
                    frame.patch(template.marker_at, &Marker { sender: 0, seq, sent_us }.encode());
                    if let Err(e) = conn.send(frame.bytes()).await {
                        stats.error(format!("publisher: {e}"));
                        return;
                    }
                    seq = (seq + 1) & SEQ_MASK;
                    Stats::add(&published, 1);
                    Stats::add(&stats.expected, subscribers);
                }
                changed = rate.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    break;
                }
                readable = conn.readable() => {
                    let polled = match readable {
                        Ok(()) => conn.poll_data(|payload, _| stats.error(format!("publisher got {}", crate::client::excerpt(payload)))).await,
                        Err(e) => Err(ClientError::Io(e)),
                    };
                    if let Err(e) = polled {
                        stats.error(format!("publisher: {e}"));
                        return;
                    }
                }
            }
        }
    }
}
