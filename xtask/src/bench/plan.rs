//! What `cargo xtask bench` runs: the scenarios' cases in quick and full mode, as load-generator arguments,
//! and how long each may take.

use std::time::Duration;

use anyhow::{bail, Result};

/// Quick (CI, about two minutes) or full (about twelve minutes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Small N, short windows.
    Quick,
    /// The sizes.
    Full,
}

impl Mode {
    /// The mode's name, as the baseline file keys it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Quick => "quick",
            Self::Full => "full",
        }
    }
}

/// Every scenario, in run order. `core` is the criterion micro-benches; the others run servers.
pub(crate) const SCENARIOS: &[&str] = &["core", "echo", "room", "broadcast", "idle", "channels", "churn", "cluster"];

/// How a case's servers are set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Setup {
    /// One server per target, pinned to its own core.
    Single,
    /// One server per target with this many worker threads, nothing pinned: the scaling run, reported with
    /// the cores the machine had.
    Workers(usize),
    /// The hub target is two `ws-server` nodes over a `redis-server` of their own, publishers on one node and
    /// subscribers on the other; the reference is what `Reference` says. Nothing is pinned: three servers
    /// and the load generator share the cores.
    Cluster(Reference),
}

/// What a cluster case compares the two nodes with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reference {
    /// Redis alone, driven by the load generator with these arguments instead of the case's: the ceiling of
    /// pipelined PUBLISH with subscribers.
    Redis(Vec<String>),
    /// One hub, no Redis, with the case's arguments: the single-node path.
    OneNode,
}

/// One case: one load-generator run against a fresh server process, once per target.
#[derive(Debug, Clone)]
pub(crate) struct Case {
    /// The scenario.
    pub(crate) scenario: &'static str,
    /// A label for logs and progress, unique in the run.
    pub(crate) label: String,
    /// The load generator's arguments (scenario, sizes, sampling), without the target's.
    pub(crate) loadgen: Vec<String>,
    /// The servers' heartbeat interval.
    pub(crate) heartbeat_ms: u64,
    /// How long the load generator may run before it is killed and the case fails.
    pub(crate) timeout: Duration,
    /// How the servers are set up.
    pub(crate) setup: Setup,
}

/// Warm-up, number and length of the measuring windows.
#[derive(Debug, Clone, Copy)]
struct Sampling {
    warmup: f64,
    samples: u32,
    window: f64,
}

impl Sampling {
    fn args(self) -> Vec<String> {
        vec![
            "--warmup-secs".into(),
            self.warmup.to_string(),
            "--samples".into(),
            self.samples.to_string(),
            "--window-secs".into(),
            self.window.to_string(),
        ]
    }

    fn secs(self) -> f64 {
        self.warmup + f64::from(self.samples) * self.window
    }
}

/// The default heartbeat (the hub's default interval).
const HEARTBEAT_MS: u64 = 25_000;

fn case(scenario: &'static str, label: &str, args: &[&str], sampling: Sampling, extra_secs: f64) -> Case {
    let mut loadgen = vec!["--scenario".to_owned(), scenario.to_owned()];
    loadgen.extend(args.iter().map(|a| (*a).to_owned()));
    loadgen.extend(sampling.args());
    Case {
        scenario,
        label: format!("{scenario}-{label}"),
        loadgen,
        heartbeat_ms: HEARTBEAT_MS,
        timeout: Duration::from_secs_f64(sampling.secs() + extra_secs + 60.0),
        setup: Setup::Single,
    }
}

/// The cluster scenario's cases: throughput across two nodes against Redis alone, then publish-to-receipt
/// latency across two nodes against one node at each of `rates` (publications per second).
fn cluster(sampling: Sampling, rates: &[u32]) -> Vec<Case> {
    let shape = ["--channels", "100", "--subscribers", "1", "--publishers", "4", "--size", "128"];
    let mut throughput = case("channels", "", &shape, sampling, 10.0);
    throughput.loadgen.extend(["--report-as".to_owned(), "cluster".to_owned()]);
    throughput.label = "cluster-100x1".into();
    throughput.scenario = "cluster";
    let mut redis = vec!["--scenario".to_owned(), "redis-publish".to_owned()];
    redis.extend(shape.iter().map(|a| (*a).to_owned()));
    redis.extend(sampling.args());
    redis.extend(["--report-as".to_owned(), "cluster".to_owned()]);
    throughput.setup = Setup::Cluster(Reference::Redis(redis));
    let mut cases = vec![throughput];
    for rate in rates {
        let mut latency = case("channels", "", &shape, sampling, 10.0);
        latency.loadgen.extend(["--rate".to_owned(), rate.to_string()]);
        latency.loadgen.extend(["--report-as".to_owned(), "cluster_latency".to_owned()]);
        latency.label = format!("cluster-latency-{rate}hz");
        latency.scenario = "cluster";
        latency.setup = Setup::Cluster(Reference::OneNode);
        cases.push(latency);
    }
    cases
}

/// The cases of `mode`, limited to the scenarios in `only` when it is not empty (`core` has no cases).
pub(crate) fn cases(mode: Mode, only: &[String]) -> Result<Vec<Case>> {
    for name in only {
        if !SCENARIOS.contains(&name.as_str()) {
            bail!("unknown scenario `{name}`; the scenarios are {}", SCENARIOS.join(", "));
        }
    }
    let all = match mode {
        Mode::Quick => quick(),
        Mode::Full => full(),
    };
    Ok(all.into_iter().filter(|c| only.is_empty() || only.iter().any(|s| s == c.scenario)).collect())
}

fn quick() -> Vec<Case> {
    let short = Sampling { warmup: 0.5, samples: 5, window: 0.6 };
    let mut idle =
        case("idle", "n2000", &["--conns", "2000", "--settle-secs", "1"], Sampling { window: 1.0, ..short }, 5.0);
    // A short heartbeat, so that the short window sees pings.
    idle.heartbeat_ms = 1_000;
    vec![
        case("echo", "100x20B", &["--conns", "100", "--size", "20"], short, 0.0),
        case("echo", "200x16KiB", &["--conns", "200", "--size", "16384"], short, 0.0),
        case("room", "n100", &["--conns", "100", "--size", "20"], short, 0.0),
        case("broadcast", "n1000", &["--conns", "1000", "--rates", "100", "--size", "100"], short, 20.0),
        idle,
        case("channels", "100x10", &["--channels", "100", "--subscribers", "10"], short, 10.0),
        case(
            "churn",
            "p2000",
            &["--population", "2000", "--rates", "2000,4000,8000,16000", "--step-secs", "0.5", "--waves", "2"],
            Sampling { warmup: 0.0, samples: 1, window: 0.0 },
            60.0,
        ),
    ]
    .into_iter()
    .chain(cluster(short, &[20_000]))
    .collect()
}

fn full() -> Vec<Case> {
    let std = Sampling { warmup: 1.0, samples: 5, window: 1.0 };
    let mut cases = vec![
        case("echo", "100x20B", &["--conns", "100", "--size", "20"], std, 0.0),
        case("echo", "100x512B", &["--conns", "100", "--size", "512"], std, 0.0),
        case("echo", "500x1KiB", &["--conns", "500", "--size", "1024"], std, 0.0),
        case("echo", "200x16KiB", &["--conns", "200", "--size", "16384"], std, 0.0),
    ];
    for n in ["16", "100", "320", "1000"] {
        cases.push(case("room", &format!("n{n}"), &["--conns", n, "--size", "20"], std, 0.0));
    }
    // Two rates per server: 10 per second needs longer windows to hold enough messages.
    let broadcast = Sampling { warmup: 1.0, samples: 5, window: 2.0 };
    // The fan-out pairs (1 -> 1,000 at 100/s, 1 -> 5,000 at 20/s), then the large audiences.
    for (n, rates) in [("1000", "10,100"), ("5000", "20"), ("10000", "10,100"), ("19000", "10,100")] {
        let args = ["--conns", n, "--rates", rates, "--size", "100"];
        cases.push(case("broadcast", &format!("n{n}"), &args, broadcast, broadcast.secs() + 60.0));
    }
    // Five 12 s windows: the 60 s steady window.
    let idle = Sampling { warmup: 0.0, samples: 5, window: 12.0 };
    cases.push(case("idle", "n19000", &["--conns", "19000", "--settle-secs", "2"], idle, 60.0));
    for (c, s) in [("1", "1000"), ("100", "10"), ("1000", "1")] {
        cases.push(case("channels", &format!("{c}x{s}"), &["--channels", c, "--subscribers", s], std, 10.0));
    }
    // Rates step by 1.25 until a step fails; a step is 1 s of opening connections.
    let rates: Vec<String> = (0..16).map(|i| (2000.0 * 1.25f64.powi(i)).round().to_string()).collect();
    let rates = rates.join(",");
    cases.push(case(
        "churn",
        "p10000",
        &["--population", "10000", "--rates", &rates, "--step-secs", "1", "--waves", "3"],
        Sampling { warmup: 0.0, samples: 1, window: 0.0 },
        240.0,
    ));
    cases.extend(cluster(std, &[20_000, 50_000, 140_000]));
    // The room again on every core (one worker per core, nothing pinned), so a bigger machine shows the curve.
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut workers = case("room", "n320", &["--conns", "320", "--size", "20"], std, 0.0);
    workers.loadgen.extend(["--report-as".to_owned(), "room_workers".to_owned()]);
    workers.label = format!("room-n320-{cores}-workers");
    workers.setup = Setup::Workers(cores);
    cases.push(workers);
    cases
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_but_core_has_cases_in_both_modes() {
        for mode in [Mode::Quick, Mode::Full] {
            let cases = cases(mode, &[]).unwrap();
            for scenario in &SCENARIOS[1..] {
                assert!(cases.iter().any(|c| c.scenario == *scenario), "{mode:?} has no {scenario}");
            }
            let mut labels: Vec<_> = cases.iter().map(|c| c.label.clone()).collect();
            labels.dedup();
            assert_eq!(labels.len(), cases.len(), "labels are unique");
        }
        assert!(cases(Mode::Quick, &["nope".to_owned()]).is_err());
        assert_eq!(cases(Mode::Quick, &["room".to_owned()]).unwrap().len(), 1);
    }
}
