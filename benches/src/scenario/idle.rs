//! Idle capacity: N connections, each subscribed to a personal channel and to one group channel of 10, doing
//! nothing but answering the server's heartbeats. Server memory and CPU per connection.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::{Stats, Target};
use crate::procstat::{self, CpuMark, Pid};
use crate::report::CaseResult;

/// Runs `n` idle connections; `settle` is the pause between the last connection and the first window.
pub(crate) async fn run(target: Rc<Target>, n: usize, settle: Duration) -> CaseResult {
    let stats = Stats::new();
    let server = target.pid.map(Pid::Other);
    let rss = move || server.and_then(|pid| procstat::rss_bytes(pid).ok()).unwrap_or(0) as f64;
    let rss_empty = rss();
    let running = Rc::new(Cell::new(true));
    let pings = Rc::new(Cell::new(0u64));
    let channels = |i: usize| vec![format!("p:{i}"), format!("g:{}", i / 10)];
    let path = target.ws_path.clone();
    let tasks = super::open_all(&target, &stats, n, &path, 512, channels, {
        let (stats, running, pings) = (stats.clone(), running.clone(), pings.clone());
        move |i, mut conn| {
            let (stats, running, pings) = (stats.clone(), running.clone(), pings.clone());
            async move {
                let mut seen = 0;
                while running.get() {
                    let polled = match conn.readable().await {
                        Ok(()) => {
                            conn.poll_data(|payload, _| {
                                stats.error(format!("idle connection {i} got {}", crate::client::excerpt(payload)));
                            })
                            .await
                        }
                        Err(e) => Err(e.into()),
                    };
                    if let Err(e) = polled {
                        if running.get() {
                            stats.error(format!("idle connection {i}: {e}"));
                        }
                        return;
                    }
                    Stats::add(&pings, conn.pings - seen);
                    seen = conn.pings;
                }
            }
        }
    })
    .await;
    tokio::time::sleep(settle).await;
    let rss_connected = rss();
    let per_conn = n.max(1) as f64;
    let start = CpuMark::now(target.pid);
    let samples = if stats.failed() {
        Vec::new()
    } else {
        super::measure(&target, &stats, |sample| {
            sample.insert("rss_per_conn_bytes".to_owned(), (rss() - rss_empty) / per_conn);
            sample.insert("pings".to_owned(), pings.get() as f64);
        })
        .await
    };
    // Heartbeats come every interval, not every window: CPU is taken over the whole steady window.
    let cpu = start.until(&CpuMark::now(target.pid));
    running.set(false);
    let _ = tasks.join(Duration::from_millis(100)).await;
    let mut samples = samples;
    for sample in &mut samples {
        for noise in ["ops", "rate", "ops_per_server_cpu_s"] {
            sample.remove(noise);
        }
    }
    CaseResult::new("idle", format!("n{n}"), &target.name, samples, stats.final_checks())
        .total("connections", n as f64)
        .total("rss_empty_bytes", rss_empty)
        .total("rss_connected_bytes", rss_connected)
        .total("pings", pings.get() as f64)
        .total("window_secs", cpu.secs)
        .total("server_cpu_pct", cpu.server_pct)
        .total("loadgen_cpu_pct", cpu.loadgen_pct)
        .total("cpu_us_per_conn_s", cpu.server_ns as f64 / 1e3 / cpu.secs / per_conn)
}
