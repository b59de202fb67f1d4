//! The load generator's command line: which scenario, against which server, with which sizes; it prints one
//! JSON array of case results on stdout for `cargo xtask bench`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Duration;

use crate::args::Args;
use crate::client::Sources;
use crate::report::CaseResult;
use crate::scenario::{self, churn::Churn, Target};

const USAGE: &str = "\
usage: loadgen --scenario NAME --addr HOST:PORT --target hub|ref|bun [options]

common: --server-pid PID  --warmup-secs S (1)  --samples N (5)  --window-secs S (1)  --sources N (64)
        --ws-path P (/ws)  --echo-path P (/ws for the hub, /echo otherwise)
echo:      --conns N (100)  --size BYTES (20)
room:      --conns N (100)  --size BYTES (20)
broadcast: --conns N (1000)  --rates R,R (10,100)  --size BYTES (100)
idle:      --conns N (19000)  --settle-secs S (2)
channels:  --channels C (100)  --subscribers S (10)  --publishers P (4)  --size BYTES (128)  --in-flight N (16384)
churn:     --population N (10000)  --rates R,R (1000,...)  --step-secs S (2)  --waves N (3)";

/// Runs the load generator with the process's arguments.
pub fn main() -> ExitCode {
    let result = Args::from_env().and_then(|mut args| {
        if args.flag("help")? {
            println!("{USAGE}");
            return Ok(None);
        }
        parse(&mut args).and_then(|run| args.finish().map(|()| Some(run)))
    });
    let run = match result {
        Ok(Some(run)) => run,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
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
}

#[derive(Debug)]
enum Scenario {
    Echo { conns: usize, size: usize },
    Room { conns: usize, size: usize },
    Broadcast { conns: usize, rates: Vec<u32>, size: usize },
    Idle { conns: usize, settle: Duration },
    Channels { channels: usize, subscribers: usize, publishers: usize, size: usize, in_flight: u64 },
    Churn(Churn),
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.0))
}

fn parse(args: &mut Args) -> Result<Run, String> {
    let name: String = args.required("scenario")?;
    let addr: SocketAddr = args.required("addr")?;
    let target_name: String = args.required("target")?;
    let default_echo = if target_name == "hub" { "/ws" } else { "/echo" };
    let target = Target {
        addr,
        pid: args.get::<u32>("server-pid", 0).map(|pid| (pid != 0).then_some(pid))?,
        ws_path: args.get("ws-path", "/ws".to_owned())?,
        echo_path: args.get("echo-path", default_echo.to_owned())?,
        sources: Sources::new(args.get("sources", 64)?),
        warmup: secs(args.get("warmup-secs", 1.0)?),
        samples: args.get("samples", 5usize)?.max(1),
        window: secs(args.get("window-secs", 1.0)?),
        name: target_name,
    };
    let scenario = match name.as_str() {
        "echo" => Scenario::Echo { conns: args.get("conns", 100)?, size: args.get("size", 20)? },
        "room" => Scenario::Room { conns: args.get("conns", 100)?, size: args.get("size", 20)? },
        "broadcast" => Scenario::Broadcast {
            conns: args.get("conns", 1000)?,
            rates: args.list("rates", &[10, 100])?,
            size: args.get("size", 100)?,
        },
        "idle" => Scenario::Idle { conns: args.get("conns", 19_000)?, settle: secs(args.get("settle-secs", 2.0)?) },
        "channels" => {
            let subscribers = args.get("subscribers", 10usize)?.max(1);
            Scenario::Channels {
                channels: args.get("channels", 100usize)?.max(1),
                subscribers,
                publishers: args.get("publishers", 4)?,
                size: args.get("size", 128)?,
                in_flight: args.get("in-flight", 16_384u64)?.max(4 * subscribers as u64),
            }
        }
        "churn" => Scenario::Churn(Churn {
            population: args.get("population", 10_000)?,
            rates: args.list("rates", &[1000, 1500, 2250, 3400, 5000, 7600, 11_400, 17_000, 25_600])?,
            step: secs(args.get("step-secs", 2.0)?),
            waves: args.get("waves", 3)?,
        }),
        other => return Err(format!("unknown scenario `{other}`")),
    };
    Ok(Run { target, scenario })
}

impl Run {
    async fn execute(self) -> Vec<CaseResult> {
        let target = Rc::new(self.target);
        match self.scenario {
            Scenario::Echo { conns, size } => vec![scenario::echo::run(target, conns, size).await],
            Scenario::Room { conns, size } => vec![scenario::room::run(target, conns, size).await],
            Scenario::Broadcast { conns, rates, size } => scenario::broadcast::run(target, conns, &rates, size).await,
            Scenario::Idle { conns, settle } => vec![scenario::idle::run(target, conns, settle).await],
            Scenario::Channels { channels, subscribers, publishers, size, in_flight } => {
                vec![scenario::channels::run(target, channels, subscribers, publishers, size, in_flight).await]
            }
            Scenario::Churn(churn) => vec![scenario::churn::run(target, &churn).await],
        }
    }
}
