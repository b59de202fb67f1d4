//! The run's phases: measure the idle server, start every workload, stop them in order (new connections, then
//! publishing, then the steady subscribers once they caught up), and measure the server again once it settled.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api::Api;
use super::churn::{self, Churn};
use super::summary::{Left, Summary};
use super::tally::Tally;
use super::{kicks, publishers, slow, steady, Cli};
use crate::procstat::{self, Pid};

/// How long the server may take, once the load is over, to close what is left and sweep idle channels.
const SETTLE: Duration = Duration::from_secs(60);
/// How often the server's memory is sampled, and progress reported.
const SAMPLE: Duration = Duration::from_millis(500);
const PROGRESS: Duration = Duration::from_secs(10);
/// Most kick connections and slow consumers at once.
const MOST_KICKS: usize = 8;
const MOST_SLOW: usize = 3;

/// Runs the whole soak and returns what it found.
pub(super) async fn run(cli: Cli) -> Summary {
    let pid = Pid::Other(cli.server_pid);
    let tally = Rc::new(Tally::default());
    let shared = Rc::new(super::shared(&cli, tally.clone()));
    let mut summary = Summary {
        rss_bound: cli.rss_bound_mib << 20,
        steady_channels: shared.steady().len() as u64,
        ..Summary::default()
    };
    summary.fds_before = idle_fds(pid).await;
    summary.rss_start = procstat::rss_bytes(pid).unwrap_or(0);
    let peak = Rc::new(Cell::new(summary.rss_start));
    let sampling = Rc::new(Cell::new(true));
    let sampler = tokio::task::spawn_local(sample(pid, peak.clone(), sampling.clone(), tally.clone()));

    // The steady subscribers come first, so that they see every publication.
    let mut steady_tasks = Vec::new();
    for index in 0..cli.steady {
        match steady::open(index, &shared).await {
            Ok(conn) => steady_tasks.push(tokio::task::spawn_local(steady::run(index, conn, shared.clone()))),
            Err(e) => tally.violation(format!("steady {index}: {e}")),
        }
    }
    // The steady channels' epochs, for the churn's recovering subscribes.
    let mut api = Api::new(cli.addr, &cli.api_key);
    for channel in shared.steady() {
        match api.get_json(&format!("/api/history/{channel}?limit=0")).await {
            Ok(history) => shared.add_epoch(history["epoch"].as_str().unwrap_or_default()),
            Err(e) => tally.violation(format!("the history of {channel}: {e}")),
        }
    }
    let started = Instant::now();
    let mut publisher_tasks: Vec<JoinHandle<()>> = Vec::new();
    for sender in 0..cli.ws_publishers {
        let label = format!("websocket publisher {sender}");
        match super::conn::HubConn::open(&shared.endpoint, label, super::conn::Window::Normal).await {
            Ok(conn) => publisher_tasks.push(tokio::task::spawn_local(publishers::websocket(
                sender,
                conn,
                cli.ws_rate,
                shared.clone(),
            ))),
            Err(e) => tally.violation(format!("websocket publisher {sender}: {e}")),
        }
    }
    for sender in cli.ws_publishers..cli.ws_publishers + cli.http_publishers {
        publisher_tasks.push(tokio::task::spawn_local(publishers::http(sender, cli.http_rate, shared.clone())));
    }
    let churn = Churn { per_second: cli.churn_rate, most_open: cli.churn_max };
    let loaders = [
        tokio::task::spawn_local(churn::run(churn, shared.clone())),
        tokio::task::spawn_local(kicks::run(Duration::from_millis(cli.kick_every_ms), MOST_KICKS, shared.clone())),
        tokio::task::spawn_local(slow::run(Duration::from_millis(cli.slow_every_ms), MOST_SLOW, shared.clone())),
    ];

    tokio::time::sleep(Duration::from_secs(cli.secs)).await;
    summary.secs = started.elapsed().as_secs_f64();
    eprintln!("soak: load over after {:.0} s; finishing the connections in flight", summary.secs);
    shared.stop_loading();
    join_all(loaders).await;
    shared.stop_publishing();
    join_all(publisher_tasks).await;

    let mut finals = Vec::new();
    for (index, channel) in shared.steady().iter().enumerate() {
        let offset = match api.get_json(&format!("/api/history/{channel}?limit=0")).await {
            Ok(history) => history["offset"].as_u64().unwrap_or(0),
            Err(e) => {
                tally.violation(format!("the history of {channel}: {e}"));
                0
            }
        };
        if offset != shared.ledger.total(index) {
            let made = shared.ledger.total(index);
            tally.violation(format!("{channel} ended at offset {offset}, but {made} publications were made on it"));
        }
        finals.push(offset);
    }
    shared.set_final_offsets(finals);
    join_all(steady_tasks).await;

    match api.get_text("/metrics").await {
        Ok(metrics) => {
            summary.server_closed_slow = disconnections(&metrics, super::slow::SLOW_CONSUMER);
            summary.server_closed_kicked = disconnections(&metrics, 4004);
        }
        Err(e) => tally.violation(format!("the metrics: {e}")),
    }
    settle(&mut api, pid, &mut summary, &tally).await;
    summary.rss_end = procstat::rss_bytes(pid).unwrap_or(0);
    sampling.set(false);
    let _ = sampler.await;
    summary.rss_peak = peak.get().max(summary.rss_end);
    summary.counts = tally.counts();
    summary.violations = tally.violation_count();
    summary.first_violations = tally.violations();
    summary
}

/// Waits (at most [`SETTLE`]) until the hub holds no connection, subscription or idle channel and the server's
/// descriptors are back to the count before the load; records what it last saw.
async fn settle(api: &mut Api, pid: Pid, summary: &mut Summary, tally: &Tally) {
    let deadline = Instant::now() + SETTLE;
    let clean = Left { connections: 0, subscriptions: 0, channels: summary.steady_channels };
    loop {
        match api.get_json("/api/stats").await {
            Ok(stats) => {
                let field = |name: &str| stats[name].as_u64().unwrap_or(u64::MAX);
                summary.left = Left {
                    connections: field("connections"),
                    subscriptions: field("subscriptions"),
                    channels: field("channels"),
                };
            }
            Err(e) => tally.violation(format!("the stats: {e}")),
        }
        // Our own API connection is closed before the descriptors are counted.
        api.disconnect();
        tokio::time::sleep(Duration::from_millis(200)).await;
        summary.fds_after = procstat::fd_count(pid).unwrap_or(0);
        if (summary.left == clean && summary.fds_after == summary.fds_before) || Instant::now() > deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The server's descriptor count once it holds still (two readings 200 ms apart agree, for at most 5 s): the
/// probe that saw it listen may still be closing.
async fn idle_fds(pid: Pid) -> usize {
    let mut last = procstat::fd_count(pid).unwrap_or(0);
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = procstat::fd_count(pid).unwrap_or(0);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// `ws_disconnections_total{code="CODE"}` in the server's metrics.
fn disconnections(metrics: &str, code: u16) -> u64 {
    let prefix = format!("ws_disconnections_total{{code=\"{code}\"}} ");
    metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

async fn join_all(tasks: impl IntoIterator<Item = JoinHandle<()>>) {
    for task in tasks {
        let _ = task.await;
    }
}

/// Samples the server's RSS into `peak` until `sampling` ends, with a progress line now and then.
async fn sample(pid: Pid, peak: Rc<Cell<u64>>, sampling: Rc<Cell<bool>>, tally: Rc<Tally>) {
    let started = Instant::now();
    let mut next_progress = started + PROGRESS;
    while sampling.get() {
        let rss = procstat::rss_bytes(pid).unwrap_or(0);
        peak.set(peak.get().max(rss));
        if Instant::now() >= next_progress {
            next_progress += PROGRESS;
            let c = tally.counts();
            eprintln!(
                "soak: {:>4.0} s: {} connections, {} deliveries checked, {} kicks, {} slow consumers closed, \
                 RSS {:.1} MiB, {} fds, {} violations",
                started.elapsed().as_secs_f64(),
                c.connections,
                c.deliveries,
                c.kicks,
                c.slow_closed,
                rss as f64 / 1048576.0,
                procstat::fd_count(pid).unwrap_or(0),
                tally.violation_count()
            );
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnections_are_read_by_code() {
        let metrics = "# TYPE ws_disconnections counter\nws_disconnections_total{code=\"1000\"} 7\n\
                       ws_disconnections_total{code=\"4000\"} 12\n";
        assert_eq!((disconnections(metrics, 4000), disconnections(metrics, 4004)), (12, 0));
    }
}
