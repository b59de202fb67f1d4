//! Criterion benches of the hub's hot paths: fan-out to many subscribers, many
//! single-subscriber channels, and subscribe/unsubscribe churn.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ws_core::test_util::ManualClock;
use ws_core::{Conn, ConnId, Hub, Identity, SendError};
use ws_protocol::{ChannelName, Json};

/// An in-memory connection that counts what it is sent and drops it: it
/// measures the hub, not a queue.
#[derive(Debug)]
struct CountingConn {
    id: ConnId,
    sent: AtomicU64,
}

impl Conn for CountingConn {
    fn id(&self) -> ConnId {
        self.id
    }
    fn try_send(&self, _frame: &Bytes) -> Result<(), SendError> {
        self.sent.fetch_add(1, Relaxed);
        Ok(())
    }
    fn try_send_all(&self, frames: &[Bytes]) -> Result<(), SendError> {
        self.sent.fetch_add(frames.len() as u64, Relaxed);
        Ok(())
    }
    fn close(&self, _code: u16, _reason: &str) {}
    fn disconnect(&self, _code: u16, _reason: &str, _notice: Bytes) {}
}

fn hub_with(conns: usize) -> (Hub, Vec<ConnId>) {
    let hub = Hub::builder(ManualClock::new(0)).build();
    let ids = (0..conns)
        .map(|_| {
            let id = hub.next_conn_id();
            hub.register(Arc::new(CountingConn { id, sent: AtomicU64::new(0) }), Identity::anonymous(), None).unwrap();
            id
        })
        .collect();
    (hub, ids)
}

fn publish_fan_out(c: &mut Criterion) {
    let mut group = c.benchmark_group("publish_one_channel");
    let data = Json::parse(r#"{"text":"hello, subscribers"}"#).unwrap();
    for subscribers in [1usize, 1_000, 100_000] {
        let (hub, ids) = hub_with(subscribers);
        let channel = ChannelName::new("room").unwrap();
        for id in &ids {
            hub.subscribe(*id, &channel).unwrap();
        }
        // Throughput in deliveries: criterion's elements/s, and time per
        // iteration divided by subscribers is ns per delivery.
        group.throughput(Throughput::Elements(subscribers as u64));
        group.bench_function(format!("{subscribers}_subscribers"), |b| b.iter(|| hub.publish(&channel, data.clone())));
    }
    group.finish();
}

fn many_channels(c: &mut Criterion) {
    const CHANNELS: usize = 100_000;
    let (hub, ids) = hub_with(CHANNELS);
    let channels: Vec<ChannelName> = (0..CHANNELS).map(|i| ChannelName::new(&format!("user:{i}")).unwrap()).collect();
    for (id, ch) in ids.iter().zip(&channels) {
        hub.subscribe(*id, ch).unwrap();
    }
    let data = Json::parse(r#"{"n":1}"#).unwrap();
    let mut group = c.benchmark_group("many_channels");
    group.throughput(Throughput::Elements(CHANNELS as u64));
    group.bench_function("100000_channels_one_subscriber_each", |b| {
        b.iter(|| {
            for ch in &channels {
                hub.publish(ch, data.clone());
            }
        });
    });
    group.finish();
}

fn churn(c: &mut Criterion) {
    let (hub, ids) = hub_with(1_000);
    let busy = ChannelName::new("busy").unwrap();
    for id in &ids[1..] {
        hub.subscribe(*id, &busy).unwrap();
    }
    let lone = ChannelName::new("lone").unwrap();
    let mut group = c.benchmark_group("churn");
    group.throughput(Throughput::Elements(1));
    group.bench_function("subscribe_unsubscribe_busy_channel", |b| {
        b.iter(|| {
            hub.subscribe(ids[0], &busy).unwrap();
            hub.unsubscribe(ids[0], &busy);
        });
    });
    group.bench_function("subscribe_unsubscribe_new_channel", |b| {
        b.iter(|| {
            hub.subscribe(ids[0], &lone).unwrap();
            hub.unsubscribe(ids[0], &lone);
        });
    });
    group.bench_function("connect_disconnect", |b| {
        b.iter_batched(
            || hub.next_conn_id(),
            |id| {
                hub.register(Arc::new(CountingConn { id, sent: AtomicU64::new(0) }), Identity::anonymous(), None)
                    .unwrap();
                hub.unregister(id, &ws_core::DisconnectReason::new(1000, "bench"));
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// The thread counts the scaling benches run with: 1, 2, and every core when the machine has more.
fn thread_counts() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let mut counts = vec![1, 2];
    if cores > 2 {
        counts.push(cores);
    }
    counts
}

/// Publishing from several threads to distinct channels: no lock or counter in common, so the rate should
/// grow with the threads (up to the cores there are). Elements are publications; `iters` is per thread.
fn threads(c: &mut Criterion) {
    let data = Json::parse(r#"{"n":1}"#).unwrap();
    let mut group = c.benchmark_group("threads");
    for threads in thread_counts() {
        let (hub, ids) = hub_with(threads);
        let channels: Vec<ChannelName> = (0..threads).map(|i| ChannelName::new(&format!("own:{i}")).unwrap()).collect();
        for (id, ch) in ids.iter().zip(&channels) {
            hub.subscribe(*id, ch).unwrap();
        }
        group.throughput(Throughput::Elements(threads as u64));
        group.bench_function(format!("publish_distinct_channels/{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = std::sync::Barrier::new(threads + 1);
                std::thread::scope(|scope| {
                    let workers: Vec<_> = channels
                        .iter()
                        .map(|ch| {
                            let (hub, start) = (&hub, &start);
                            scope.spawn(move || {
                                // Its own payload: a shared one would put every thread on one refcount.
                                let data = Json::parse(r#"{"n":1}"#).unwrap();
                                start.wait();
                                for _ in 0..iters {
                                    hub.publish(ch, data.clone());
                                }
                            })
                        })
                        .collect();
                    start.wait();
                    let began = std::time::Instant::now();
                    for worker in workers {
                        worker.join().unwrap();
                    }
                    began.elapsed()
                })
            });
        });
    }
    // One hot channel with 100 subscribers: its publisher's rate while other threads subscribe and unsubscribe
    // on the same channel (their work takes the channel's lock too, briefly).
    for threads in thread_counts() {
        let (hub, ids) = hub_with(100 + threads);
        let hot = ChannelName::new("hot").unwrap();
        for id in &ids[..100] {
            hub.subscribe(*id, &hot).unwrap();
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("hot_channel_publish_with_churn/{threads}"), |b| {
            b.iter_custom(|iters| {
                let stop = std::sync::atomic::AtomicBool::new(false);
                std::thread::scope(|scope| {
                    for id in &ids[100..100 + threads - 1] {
                        let (hub, hot, stop) = (&hub, &hot, &stop);
                        scope.spawn(move || {
                            while !stop.load(Relaxed) {
                                hub.subscribe(*id, hot).unwrap();
                                hub.unsubscribe(*id, hot);
                            }
                        });
                    }
                    let began = std::time::Instant::now();
                    for _ in 0..iters {
                        hub.publish(&hot, data.clone());
                    }
                    let took = began.elapsed();
                    stop.store(true, Relaxed);
                    took
                })
            });
        });
    }
    group.finish();
}

criterion_group!(benches, publish_fan_out, many_channels, churn, threads);
criterion_main!(benches);
