//! The ceiling the cluster scenario is measured against: Redis alone, on the same machine. Publishers pipeline
//! PUBLISH commands carrying the channels scenario's payloads over their own connections, with the same flow
//! control (deliveries in flight stay under a limit), and two subscriber connections share the channels, as a
//! hub node's two pub/sub connections do. Deliveries per second and publish-to-receipt latency.

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::Notify;

use super::channels::Credit;
use super::{SeqCheck, Stats, Target};
use crate::marker::{self, Marker, Template, SEQ_MASK};
use crate::report::CaseResult;

/// Most PUBLISH commands in one pipeline.
const BATCH: usize = 64;

/// Subscriber connections, as many as a hub node's default `pubsub_connections`.
const SUBSCRIBERS: usize = 2;

/// Runs `publishers` publishers over `channels` channels of `size`-byte payloads against the Redis at
/// `target.addr`, with at most `in_flight` deliveries outstanding; reports as `scenario`/`case`.
pub(crate) async fn run(
    target: Rc<Target>,
    scenario: &str,
    channels: usize,
    publishers: usize,
    size: usize,
    in_flight: u64,
) -> CaseResult {
    let stats = Stats::new();
    let case = format!("{channels}x1");
    let result =
        |stats: &Stats, samples| CaseResult::new(scenario, case.clone(), &target.name, samples, stats.final_checks());
    let client = match redis::Client::open(format!("redis://{}", target.addr)) {
        Ok(c) => c,
        Err(e) => {
            stats.error(format!("redis: {e}"));
            return result(&stats, Vec::new());
        }
    };
    let running = Rc::new(Cell::new(true));
    let credit = Rc::new(Credit { in_flight_limit: in_flight, waiting: Cell::new(false), wake: Notify::new() });
    let mut tasks = super::Tasks::default();
    for s in 0..SUBSCRIBERS {
        let names: Vec<String> = (0..channels).filter(|c| c % SUBSCRIBERS == s).map(|c| format!("m:{c}")).collect();
        let subscribed = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&names).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        let pubsub = match subscribed.await {
            Ok(p) => p,
            Err(e) => {
                stats.error(format!("subscriber {s}: {e}"));
                return result(&stats, Vec::new());
            }
        };
        let (stats, running, credit) = (stats.clone(), running.clone(), credit.clone());
        tasks.spawn(async move {
            let mut checks: HashMap<String, SeqCheck> = HashMap::new();
            let mut messages = pubsub.into_on_message();
            while running.get() {
                let next = tokio::time::timeout(Duration::from_millis(100), messages.next()).await;
                let Ok(next) = next else { continue };
                let Some(msg) = next else {
                    stats.error(format!("subscriber {s}: the connection closed"));
                    return;
                };
                let received = marker::now_us();
                let check =
                    checks.entry(msg.get_channel_name().to_owned()).or_insert_with(|| SeqCheck::new(publishers));
                if let Some(m) = check.check(msg.get_payload_bytes(), false, &stats) {
                    stats.latency(marker::elapsed_us(m.sent_us, received));
                    Stats::add(&stats.ops, 1);
                }
                credit.delivered(&stats);
            }
        });
    }
    let publishing = Rc::new(Cell::new(true));
    for p in 0..publishers {
        let conn = match client.get_multiplexed_async_connection().await {
            Ok(c) => c,
            Err(e) => {
                stats.error(format!("publisher {p}: {e}"));
                break;
            }
        };
        let (stats, publishing, credit) = (stats.clone(), publishing.clone(), credit.clone());
        tasks.spawn(async move {
            if let Err(e) = publish(p, conn, channels, size, &stats, &publishing, &credit).await {
                stats.error(format!("publisher {p}: {e}"));
            }
        });
    }
    let samples = if stats.failed() { Vec::new() } else { super::measure(&target, &stats, |_| {}).await };
    credit.stop(&stats, &publishing).await;
    running.set(false);
    let _ = tasks.join(Duration::from_millis(300)).await;
    result(&stats, samples)
}

async fn publish(
    sender: usize,
    mut conn: redis::aio::MultiplexedConnection,
    channels: usize,
    size: usize,
    stats: &Stats,
    running: &Cell<bool>,
    credit: &Credit,
) -> redis::RedisResult<()> {
    let names: Vec<String> = (0..channels).map(|c| format!("m:{c}")).collect();
    let mut templates: Vec<Template> = names.iter().map(|n| Template::publish(n, size)).collect();
    let mut seqs = vec![0u32; channels];
    let mut next = sender * channels / 4 % channels.max(1);
    while running.get() {
        let free = credit.in_flight_limit.saturating_sub(Credit::in_flight(stats));
        let batch = (free as usize).min(BATCH);
        if batch == 0 {
            credit.waiting.set(true);
            let _ = tokio::time::timeout(Duration::from_millis(1), credit.wake.notified()).await;
            continue;
        }
        let mut pipe = redis::pipe();
        let sent_us = marker::now_us();
        for _ in 0..batch {
            let c = next;
            next = (next + 1) % channels;
            let seq = seqs[c];
            seqs[c] = (seq + 1) & SEQ_MASK;
            let t = &mut templates[c];
            let at = t.marker_at;
            t.payload[at..at + marker::MARKER_LEN]
                .copy_from_slice(&Marker { sender: sender as u32, seq, sent_us }.encode());
            pipe.cmd("PUBLISH").arg(&names[c]).arg(&t.payload).ignore();
        }
        Stats::add(&stats.expected, batch as u64);
        pipe.query_async::<()>(&mut conn).await?;
    }
    Ok(())
}
