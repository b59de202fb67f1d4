//! The load generator's command line: which scenario, against which server, with which sizes; it prints one
//! JSON array of case results on stdout for `cargo xtask bench`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use crate::client::Sources;
use crate::report::CaseResult;
use crate::scenario::{self, churn::Churn, Target};

/// The load generator: runs one scenario against one server and prints its case results as JSON.
///
/// Options that do not apply to the chosen scenario are ignored.
#[derive(Debug, clap::Parser)]
#[command(name = "loadgen")]
struct Cli {
    /// The scenario to run.
    #[arg(long, value_enum)]
    scenario: ScenarioName,
    /// The server's address (for `redis-publish`, the Redis server's).
    #[arg(long)]
    addr: SocketAddr,
    /// Where publishers connect, when not to `--addr`: another node of the cluster (channels, broadcast).
    #[arg(long)]
    publish_addr: Option<SocketAddr>,
    /// Report the results under this scenario name instead of the one run (the cluster cases).
    #[arg(long)]
    report_as: Option<String>,
    /// `hub`, `ref` or `bun`: which server this is (the hub speaks the full protocol on its echo path).
    #[arg(long)]
    target: String,
    /// The server's process id, for its CPU, memory and descriptors; 0 for none.
    #[arg(long, default_value_t = 0)]
    server_pid: u32,
    /// Seconds of warm-up before measuring.
    #[arg(long, default_value_t = 1.0)]
    warmup_secs: f64,
    /// Measuring windows.
    #[arg(long, default_value_t = 5)]
    samples: usize,
    /// Seconds per measuring window.
    #[arg(long, default_value_t = 1.0)]
    window_secs: f64,
    /// Loopback source addresses to spread connections over.
    #[arg(long, default_value_t = 64)]
    sources: u32,
    /// The hub protocol's path.
    #[arg(long, default_value = "/ws")]
    ws_path: String,
    /// The echo path (default `/ws` for the hub, `/echo` otherwise).
    #[arg(long)]
    echo_path: Option<String>,
    /// Connections (echo 100, room 100, broadcast 1000, idle 19000).
    #[arg(long)]
    conns: Option<usize>,
    /// Payload bytes (echo 20, room 20, broadcast 100, channels 128).
    #[arg(long)]
    size: Option<usize>,
    /// Rates per second, comma-separated (broadcast 10,100; churn 1000,...,25600).
    #[arg(long, value_delimiter = ',')]
    rates: Option<Vec<u32>>,
    /// Idle: seconds to let the connections settle before measuring.
    #[arg(long, default_value_t = 2.0)]
    settle_secs: f64,
    /// Channels: how many channels.
    #[arg(long, default_value_t = 100)]
    channels: usize,
    /// Channels: subscribers per channel.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Channels: publishing connections.
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    /// Channels: most publications in flight.
    #[arg(long, default_value_t = 16_384)]
    in_flight: u64,
    /// Channels: publications per second in all, paced; unset: as fast as `--in-flight` allows.
    #[arg(long)]
    rate: Option<u32>,
    /// Churn: most connections open at once, and the size of each wave.
    #[arg(long, default_value_t = 10_000)]
    population: usize,
    /// Churn: seconds per rate step.
    #[arg(long, default_value_t = 2.0)]
    step_secs: f64,
    /// Churn: connect-and-leave waves after the steps.
    #[arg(long, default_value_t = 3)]
    waves: usize,
}

/// The scenarios.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ScenarioName {
    Echo,
    Room,
    Broadcast,
    Idle,
    Channels,
    Churn,
    /// Redis alone: pipelined PUBLISH with subscribers, the cluster scenario's ceiling.
    RedisPublish,
}

/// Runs the load generator with the process's arguments.
pub fn main() -> ExitCode {
    let run = Run::from(<Cli as clap::Parser>::parse());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    let local = tokio::task::LocalSet::new();
    let results = local.block_on(&runtime, run.execute());
    match serde_json::to_string(&results) {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A parsed command line: the target and the scenario with its parameters.
#[derive(Debug)]
struct Run {
    target: Target,
    scenario: Scenario,
    report_as: Option<String>,
}

#[derive(Debug)]
enum Scenario {
    Echo { conns: usize, size: usize },
    Room { conns: usize, size: usize },
    Broadcast { conns: usize, rates: Vec<u32>, size: usize },
    Idle { conns: usize, settle: Duration },
    Channels { channels: usize, subscribers: usize, load: scenario::channels::Load },
    Churn(Churn),
    RedisPublish { channels: usize, publishers: usize, size: usize, in_flight: u64 },
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

impl From<Cli> for Run {
    fn from(cli: Cli) -> Self {
        let default_echo = if cli.target == "hub" { "/ws" } else { "/echo" };
        let target = Target {
            addr: cli.addr,
            publish_addr: cli.publish_addr,
            pid: (cli.server_pid != 0).then_some(cli.server_pid),
            ws_path: cli.ws_path,
            echo_path: cli.echo_path.unwrap_or_else(|| default_echo.to_owned()),
            sources: Sources::new(cli.sources),
            warmup: secs(cli.warmup_secs),
            samples: cli.samples.max(1),
            window: secs(cli.window_secs),
            name: cli.target,
        };
        let (conns, size, rates) = (cli.conns, cli.size, cli.rates);
        let scenario = match cli.scenario {
            ScenarioName::Echo => Scenario::Echo { conns: conns.unwrap_or(100), size: size.unwrap_or(20) },
            ScenarioName::Room => Scenario::Room { conns: conns.unwrap_or(100), size: size.unwrap_or(20) },
            ScenarioName::Broadcast => Scenario::Broadcast {
                conns: conns.unwrap_or(1000),
                rates: rates.unwrap_or_else(|| vec![10, 100]),
                size: size.unwrap_or(100),
            },
            ScenarioName::Idle => Scenario::Idle { conns: conns.unwrap_or(19_000), settle: secs(cli.settle_secs) },
            ScenarioName::Channels => {
                let subscribers = cli.subscribers.max(1);
                Scenario::Channels {
                    channels: cli.channels.max(1),
                    subscribers,
                    load: scenario::channels::Load {
                        publishers: cli.publishers,
                        size: size.unwrap_or(128),
                        in_flight: cli.in_flight.max(4 * subscribers as u64),
                        rate: cli.rate.filter(|r| *r > 0),
                    },
                }
            }
            ScenarioName::Churn => Scenario::Churn(Churn {
                population: cli.population,
                rates: rates.unwrap_or_else(|| vec![1000, 1500, 2250, 3400, 5000, 7600, 11_400, 17_000, 25_600]),
                step: secs(cli.step_secs),
                waves: cli.waves,
            }),
            ScenarioName::RedisPublish => Scenario::RedisPublish {
                channels: cli.channels.max(1),
                publishers: cli.publishers.max(1),
                size: size.unwrap_or(128),
                in_flight: cli.in_flight.max(4),
            },
        };
        Run { target, scenario, report_as: cli.report_as }
    }
}

impl Run {
    async fn execute(self) -> Vec<CaseResult> {
        let target = Rc::new(self.target);
        let mut results = match self.scenario {
            Scenario::Echo { conns, size } => vec![scenario::echo::run(target, conns, size).await],
            Scenario::Room { conns, size } => vec![scenario::room::run(target, conns, size).await],
            Scenario::Broadcast { conns, rates, size } => scenario::broadcast::run(target, conns, &rates, size).await,
            Scenario::Idle { conns, settle } => vec![scenario::idle::run(target, conns, settle).await],
            Scenario::Channels { channels, subscribers, load } => {
                vec![scenario::channels::run(target, channels, subscribers, load).await]
            }
            Scenario::Churn(churn) => vec![scenario::churn::run(target, &churn).await],
            Scenario::RedisPublish { channels, publishers, size, in_flight } => {
                let name = self.report_as.as_deref().unwrap_or("redis_publish");
                vec![scenario::redis::run(target, name, channels, publishers, size, in_flight).await]
            }
        };
        if let Some(name) = self.report_as {
            for r in &mut results {
                r.scenario.clone_from(&name);
            }
        }
        results
    }
}
