//! Connection churn: connections opened at a steady rate that subscribe to two churn channels and a steady
//! channel (half of them with `recover`, mostly from a recent offset, so the missed messages are replayed
//! while publishers keep publishing, and now and then from one the history no longer holds), sometimes
//! publish on a churn channel and wait for `published`, read and check for a while, sometimes unsubscribe,
//! and leave in one of four ways: a close handshake, a dropped socket (FIN), a reset (RST), or, never
//! upgraded, half-way through the HTTP request.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpSocket;

use super::conn::{HubConn, Window};
use super::deliveries::{Expect, Recovery};
use super::Shared;
use crate::client::ClientError;
use crate::scenario::Tasks;

/// How many churn channels there are (`churn:0` ...).
const CHURN_CHANNELS: u64 = 32;
/// How long in-flight churn connections get to finish once the run stops loading.
const FINISH: Duration = Duration::from_secs(60);

/// How much churn.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Churn {
    /// Connections started per second.
    pub(crate) per_second: f64,
    /// Most churn connections open at once; past it, a start is skipped.
    pub(crate) most_open: usize,
}

/// Starts churn connections until the run stops loading, then waits for the last ones.
pub(crate) async fn run(churn: Churn, shared: Rc<Shared>) {
    let open = Rc::new(Cell::new(0usize));
    let mut tasks = Tasks::default();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let started = tokio::time::Instant::now();
    let mut started_count = 0u64;
    while shared.loading() {
        tick.tick().await;
        let owed = (started.elapsed().as_secs_f64() * churn.per_second) as u64;
        while started_count < owed {
            started_count += 1;
            if open.get() >= churn.most_open {
                continue;
            }
            open.set(open.get() + 1);
            let (shared, open) = (shared.clone(), open.clone());
            let id = started_count;
            tasks.spawn(async move {
                if let Err(e) = one(id, &shared).await {
                    shared.endpoint.tally.violation(format!("churn {id}: {e}"));
                }
                open.set(open.get() - 1);
            });
        }
    }
    let stuck = tasks.join(FINISH).await;
    if stuck > 0 {
        shared.endpoint.tally.violation(format!("{stuck} churn connections did not finish within {FINISH:?}"));
    }
}

/// One churn connection's life.
async fn one(id: u64, shared: &Shared) -> Result<(), ClientError> {
    let tally = &shared.endpoint.tally;
    if shared.random(10) == 0 {
        abandon_handshake(shared).await?;
        tally.count(|c| c.churn_abandoned += 1);
        return Ok(());
    }
    let steady = shared.steady();
    let index = shared.random(steady.len() as u64) as usize;
    let channel = &steady[index];
    let (a, b) = (shared.random(CHURN_CHANNELS), shared.random(CHURN_CHANNELS));
    let (a, b) = (format!("churn:{a}"), format!("churn:{}", if a == b { (b + 1) % CHURN_CHANNELS } else { b }));
    let mut conn = HubConn::open(&shared.endpoint, format!("churn {id}"), Window::Normal).await?;
    conn.subscribe(&[(a.clone(), Expect::Unmarked), (b.clone(), Expect::Unmarked)]).await?;
    match shared.epoch(index).filter(|_| shared.random(2) == 0) {
        Some(epoch) => {
            // Mostly from a little before the channel's latest offset (what was published on it so far, less a
            // few), sometimes from further back than its history of 100 reaches, which must be refused whole.
            let back = if shared.random(10) == 0 { 500 } else { 10 + shared.random(60) };
            let offset = shared.ledger.total(index).saturating_sub(back);
            match conn.subscribe_recovering(channel, Expect::MarkedJoined, &epoch, offset).await? {
                Recovery::Recovered => tally.count(|c| c.recovered += 1),
                Recovery::Refused => tally.count(|c| c.recovery_refused += 1),
            }
        }
        None => conn.subscribe(&[(channel.clone(), Expect::MarkedJoined)]).await?,
    }
    if shared.random(2) == 0 {
        conn.send(&json!({"type": "publish", "id": id, "channel": a, "data": {"churn": id}})).await?;
        let published = conn.reply("published").await?;
        if published["id"] != id || !published["offset"].is_u64() {
            return Err(ClientError::Protocol(format!("{published} answered publish {id}")));
        }
    }
    conn.read_for(Duration::from_millis(100 + shared.random(1400))).await?;
    if shared.random(3) == 0 {
        conn.send(&json!({"type": "unsubscribe", "id": id, "channel": b})).await?;
        conn.reply("unsubscribed").await?;
        conn.read_for(Duration::from_millis(shared.random(200))).await?;
    }
    match shared.random(3) {
        0 => {
            conn.into_socket().close(Duration::from_secs(10)).await?;
            tally.count(|c| c.churn_clean += 1);
        }
        1 => {
            drop(conn);
            tally.count(|c| c.churn_dropped += 1);
        }
        _ => {
            conn.into_socket().reset();
            tally.count(|c| c.churn_reset += 1);
        }
    }
    Ok(())
}

/// Connects, sends part of an upgrade request, and drops the connection.
async fn abandon_handshake(shared: &Shared) -> Result<(), ClientError> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(shared.endpoint.sources.next().into(), 0))?;
    let mut stream = socket.connect(shared.endpoint.addr).await?;
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: soak\r\nUpgrade: websocket\r\n").await?;
    tokio::time::sleep(Duration::from_millis(shared.random(100))).await;
    Ok(())
}
