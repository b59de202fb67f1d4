//! `ws-client`: a command-line client for testing a ws-hub deployment from a terminal.
//!
//! `ws-client subscribe URL CHANNEL...` prints every message as one JSON line on stdout (`channel`,
//! `offset`, `event`, `data`) and keeps reconnecting and recovering until interrupted; status and reconnect
//! notices go to stderr. `ws-client publish URL CHANNEL JSON` publishes once and prints the offset.
//!
//! Exit codes: 0 done (or interrupted), 1 the server refused the request, 2 bad arguments,
//! 3 the connection could not be made or was closed for good.

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use ws_client::{Client, Error, Event};

#[derive(Parser)]
#[command(name = "ws-client", version, about = "A command-line client for ws-hub")]
struct Cli {
    /// A token, sent as `Authorization: Bearer`.
    #[arg(long, global = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Subscribe and print every message as a JSON line, reconnecting until interrupted.
    Subscribe {
        /// The hub URL, e.g. ws://127.0.0.1:8080/ws.
        url: String,
        /// The channels.
        #[arg(required = true)]
        channels: Vec<String>,
    },
    /// Publish one message and print its offset.
    Publish {
        /// The hub URL.
        url: String,
        /// The channel.
        channel: String,
        /// The data, as JSON.
        json: String,
    },
}

const REFUSED: u8 = 1;
const USAGE: u8 = 2;
const CONNECTION: u8 = 3;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let builder = |url: &str| {
        let b = Client::builder(url);
        match &cli.token {
            Some(t) => b.token(t.clone()),
            None => b,
        }
    };
    match cli.command {
        Cmd::Publish { ref url, ref channel, ref json } => {
            let data: serde_json::Value = match serde_json::from_str(json) {
                Ok(d) => d,
                Err(e) => {
                    eprintln!("ws-client: JSON is not valid: {e}");
                    return ExitCode::from(USAGE);
                }
            };
            let client =
                builder(url).backoff(ws_client::Backoff { max_attempts: Some(0), ..Default::default() }).connect();
            if client.wait_for(ws_client::State::Connected).await != ws_client::State::Connected {
                eprintln!("ws-client: could not connect to {url}");
                return ExitCode::from(CONNECTION);
            }
            let result = client.publish(channel, &data).await;
            client.close().await;
            match result {
                Ok(offset) => {
                    println!("{}", serde_json::json!({"channel": channel, "offset": offset}));
                    ExitCode::SUCCESS
                }
                Err(Error::Server { code, message }) => {
                    eprintln!("ws-client: {code}: {message}");
                    ExitCode::from(REFUSED)
                }
                Err(e) => {
                    eprintln!("ws-client: {e}");
                    ExitCode::from(CONNECTION)
                }
            }
        }
        Cmd::Subscribe { ref url, ref channels } => {
            let client = builder(url).connect();
            let mut events = client.events();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            for channel in channels {
                match client.subscribe(channel).await {
                    Ok(mut sub) => {
                        let tx = tx.clone();
                        tokio::spawn(async move {
                            while let Some(m) = sub.recv().await {
                                let _ = tx.send(m);
                            }
                        });
                    }
                    Err(Error::Server { code, message }) => {
                        eprintln!("ws-client: subscribe {channel}: {code}: {message}");
                        return ExitCode::from(REFUSED);
                    }
                    Err(e) => {
                        eprintln!("ws-client: subscribe {channel}: {e}");
                        return ExitCode::from(CONNECTION);
                    }
                }
            }
            loop {
                tokio::select! {
                    m = rx.recv() => {
                        let Some(m) = m else { return ExitCode::SUCCESS };
                        println!("{}", serde_json::json!({"channel": m.channel, "offset": m.offset, "event": m.event, "data": m.data}));
                    }
                    e = events.recv() => match e {
                        Ok(Event::Closed { reason }) => {
                            eprintln!("ws-client: closed: {reason}");
                            return ExitCode::from(CONNECTION);
                        }
                        Ok(Event::Reconnecting { attempt, delay }) => {
                            eprintln!("ws-client: reconnecting (attempt {attempt}) in {}", humanize(delay));
                        }
                        Ok(e) => eprintln!("ws-client: {e:?}"),
                        Err(_) => {}
                    },
                    _ = tokio::signal::ctrl_c() => {
                        client.close().await;
                        return ExitCode::SUCCESS;
                    }
                }
            }
        }
    }
}

fn humanize(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
