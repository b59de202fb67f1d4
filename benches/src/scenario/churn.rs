//! Churn: connections that connect, upgrade, subscribe and close, opened at stepped rates until they fail or
//! their p99 setup time passes 100 ms; then waves of a whole population that connects and leaves, after which
//! the server must hold no more file descriptors than before and about the same memory.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::{Stats, Target};
use crate::marker;
use crate::procstat::{self, CpuMark, Pid};
use crate::report::{self, CaseResult, Sample};

/// A step passes while its p99 connect-to-subscribed time stays at or under this.
const P99_LIMIT_US: u64 = 100_000;
/// How long closed connections get to leave the server's descriptor table.
const FD_SETTLE: Duration = Duration::from_secs(15);

/// The churn parameters.
#[derive(Debug, Clone)]
pub(crate) struct Churn {
    /// Most connections open at once, and the size of each wave.
    pub(crate) population: usize,
    /// Connection rates to step through, per second.
    pub(crate) rates: Vec<u32>,
    /// How long each step opens connections.
    pub(crate) step: Duration,
    /// Connect-and-leave waves after the steps.
    pub(crate) waves: usize,
}

/// Runs the stepped rates, then the waves.
pub(crate) async fn run(target: Rc<Target>, churn: &Churn) -> CaseResult {
    let stats = Stats::new();
    let server = target.pid.map(Pid::Other);
    let fds = move || server.and_then(|pid| procstat::fd_count(pid).ok()).unwrap_or(0);
    let rss = move || server.and_then(|pid| procstat::rss_bytes(pid).ok()).unwrap_or(0) as f64;
    let fds_before = fds();
    let rss_before = rss();

    let mut samples = Vec::new();
    let mut best = 0.0f64;
    let mut best_p99 = 0.0;
    for &rate in &churn.rates {
        let sample = step(&target, churn, rate).await;
        let passed = sample["failures"] == 0.0 && sample["lat_p99_us"] <= P99_LIMIT_US as f64;
        let achieved = sample["rate"];
        samples.push(sample);
        if !passed {
            break;
        }
        if achieved > best {
            best = achieved;
            best_p99 = samples.last().map_or(0.0, |s| s["lat_p99_us"]);
        }
    }

    // Waves: the whole population connects and subscribes, then leaves.
    let mut rss_after = Vec::new();
    let mut fds_after = fds_before;
    for wave in 0..churn.waves {
        if let Err(e) = self::wave(&target, churn.population, wave).await {
            stats.error(format!("wave {wave}: {e}"));
            break;
        }
        super::wait_until(FD_SETTLE, || fds() <= fds_before).await;
        fds_after = fds();
        rss_after.push(rss());
    }
    if fds_after > fds_before {
        stats.error(format!("the server holds {} more descriptors than before the waves", fds_after - fds_before));
    }
    // The first wave sets the allocator's high-water mark; later waves must not grow past it by more than 10 %.
    let growth = match (rss_after.first(), rss_after.last()) {
        (Some(&first), Some(&last)) if first > 0.0 => last / first - 1.0,
        _ => 0.0,
    };
    // Allocators keep freed memory, so RSS growth is reported (and compared with the reference), not checked.
    let mut result =
        CaseResult::new("churn", format!("p{}", churn.population), &target.name, samples, stats.final_checks())
            .total("upgrades_per_s", best)
            .total("upgrades_p99_us", best_p99)
            .total("fds_before", fds_before as f64)
            .total("fds_leaked", fds_after.saturating_sub(fds_before) as f64)
            .total("rss_before_bytes", rss_before)
            .total("rss_growth_pct", growth * 100.0);
    for (i, bytes) in rss_after.iter().enumerate() {
        result = result.total(&format!("rss_after_wave{}_bytes", i + 1), *bytes);
    }
    result
}

/// One step: opens connections at `rate` per second for `churn.step`, each going through connect, upgrade,
/// subscribe and close; returns the achieved rate, setup latency and failures.
async fn step(target: &Rc<Target>, churn: &Churn, rate: u32) -> Sample {
    let latency = Rc::new(std::cell::RefCell::new(report::latency_histogram()));
    let open = Rc::new(Cell::new(0usize));
    let done = Rc::new(Cell::new(0u64));
    let failures = Rc::new(Cell::new(0u64));
    let first_error = Rc::new(std::cell::RefCell::new(None::<String>));
    let tick = Duration::from_millis(5);
    let per_tick = f64::from(rate) * tick.as_secs_f64();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = tokio::time::Instant::now();
    let cpu_start = CpuMark::now(target.pid);
    let mut owed = 0.0;
    let mut launched = 0u64;
    let mut skipped = 0u64;
    let mut tasks = super::Tasks::default();
    while started.elapsed() < churn.step {
        ticks.tick().await;
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            if open.get() >= churn.population {
                skipped += 1;
                continue;
            }
            open.set(open.get() + 1);
            launched += 1;
            let (target, latency, open, done, failures, first_error) =
                (target.clone(), latency.clone(), open.clone(), done.clone(), failures.clone(), first_error.clone());
            let id = launched;
            tasks.spawn(async move {
                let start = marker::now_us();
                let result = match target.open(&target.ws_path, 1024, &[format!("c:{id}")]).await {
                    Ok(conn) => {
                        latency.borrow_mut().saturating_record(marker::elapsed_us(start, marker::now_us()).max(1));
                        conn.close(Duration::from_secs(5)).await
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => done.set(done.get() + 1),
                    Err(e) => {
                        failures.set(failures.get() + 1);
                        first_error.borrow_mut().get_or_insert_with(|| e.to_string());
                    }
                }
                open.set(open.get() - 1);
            });
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stuck = tasks.join(Duration::from_secs(10)).await;
    let cpu = cpu_start.until(&CpuMark::now(target.pid));
    let mut sample = Sample::new();
    sample.insert("server_cpu_pct".to_owned(), cpu.server_pct);
    sample.insert("loadgen_cpu_pct".to_owned(), cpu.loadgen_pct);
    sample.insert("target_rate".to_owned(), f64::from(rate));
    sample.insert("launched".to_owned(), launched as f64);
    sample.insert("rate".to_owned(), launched.min(done.get()) as f64 / elapsed);
    sample.insert("failures".to_owned(), (failures.get() + stuck as u64 + skipped) as f64);
    report::put_latency(&mut sample, "lat", &latency.borrow());
    sample.entry("lat_p99_us".to_owned()).or_insert(f64::INFINITY);
    if let Some(e) = first_error.borrow().as_ref() {
        eprintln!("churn at {rate}/s: first failure: {e}");
    }
    sample
}

/// One wave: `population` connections open (bounded concurrency), each subscribed, then all close.
async fn wave(target: &Rc<Target>, population: usize, wave: usize) -> Result<(), String> {
    let stats = Stats::new();
    let conns = Rc::new(std::cell::RefCell::new(Vec::with_capacity(population)));
    let path = target.ws_path.clone();
    let channel = move |i: usize| vec![format!("w{wave}:{i}")];
    let tasks = super::open_all(target, &stats, population, &path, 1024, channel, {
        let conns = conns.clone();
        move |_, conn| {
            let conns = conns.clone();
            async move { conns.borrow_mut().push(conn) }
        }
    })
    .await;
    tasks.join(Duration::from_secs(1)).await;
    if let Some(e) = stats.checks.borrow().errors.first() {
        return Err(e.clone());
    }
    let limit = super::setup_limit();
    let mut closing = super::Tasks::default();
    let failures = Rc::new(Cell::new(0usize));
    for conn in conns.borrow_mut().drain(..) {
        let (limit, failures) = (limit.clone(), failures.clone());
        closing.spawn(async move {
            let _permit = limit.acquire().await.expect("the semaphore is never closed");
            if conn.close(Duration::from_secs(5)).await.is_err() {
                failures.set(failures.get() + 1);
            }
        });
    }
    closing.join(Duration::from_secs(30)).await;
    match failures.get() {
        0 => Ok(()),
        n => Err(format!("{n} connections did not close cleanly")),
    }
}
