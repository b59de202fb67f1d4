//! Room, all to all: N clients in one channel each publish one message per round and wait until all N x N
//! deliveries of the round have arrived before the next round starts. Deliveries per second.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::sync::watch;

use super::{SeqCheck, Stats, Target};
use crate::client::{ClientError, WsConn};
use crate::marker::{self, Marker, Template, SEQ_MASK};
use crate::report::CaseResult;
use crate::wire::MaskedFrame;

/// A round that takes longer than this lost a delivery.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);

/// What the clients do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Wait: not every client is connected yet.
    Setup,
    /// Publish for this round.
    Round(u32),
    /// Stop: the run is over.
    Stop,
}

/// The barrier between rounds: the last client to finish a round starts the next one (or stops the run).
#[derive(Debug)]
struct Rounds {
    clients: usize,
    finished: Cell<usize>,
    completed: Cell<u64>,
    stop: Cell<bool>,
    phase: watch::Sender<Phase>,
}

impl Rounds {
    fn finish(&self, round: u32) {
        self.finished.set(self.finished.get() + 1);
        if self.finished.get() == self.clients {
            self.finished.set(0);
            self.completed.set(self.completed.get() + 1);
            let next = if self.stop.get() { Phase::Stop } else { Phase::Round(round.wrapping_add(1) & SEQ_MASK) };
            self.phase.send_replace(next);
        }
    }
}

/// Runs `n` clients in one channel publishing `size`-byte messages.
pub(crate) async fn run(target: Rc<Target>, n: usize, size: usize) -> CaseResult {
    let stats = Stats::new();
    let (phase, _) = watch::channel(Phase::Setup);
    let rounds =
        Rc::new(Rounds { clients: n, finished: Cell::new(0), completed: Cell::new(0), stop: Cell::new(false), phase });
    // A round brings each client n frames of about 90 bytes; read them in few syscalls.
    let buf = (n * (size + 96)).clamp(16 * 1024, 256 * 1024);
    let path = target.ws_path.clone();
    let tasks = super::open_all(&target, &stats, n, &path, buf, |_| vec!["room".to_owned()], {
        let (stats, rounds, target) = (stats.clone(), rounds.clone(), target.clone());
        move |i, mut conn| {
            let (stats, rounds, target) = (stats.clone(), rounds.clone(), target.clone());
            async move {
                if let Err(e) = client(i, &mut conn, &target, size, &stats, &rounds).await {
                    stats.error(format!("client {i}: {e}"));
                }
            }
        }
    })
    .await;
    let samples = if stats.failed() {
        Vec::new()
    } else {
        rounds.phase.send_replace(Phase::Round(0));
        super::measure(&target, &stats, |_| {}).await
    };
    rounds.stop.set(true);
    if stats.failed() {
        rounds.phase.send_replace(Phase::Stop);
    }
    let stuck = tasks.join(ROUND_TIMEOUT + Duration::from_secs(2)).await;
    if stuck > 0 {
        stats.error(format!("{stuck} clients did not finish their last round"));
    }
    let n64 = n as u64;
    stats.expected.set(rounds.completed.get() * n64 * n64);
    let result = CaseResult::new("room", format!("n{n}"), &target.name, samples, stats.final_checks());
    result.total("rounds", rounds.completed.get() as f64)
}

async fn client(
    i: usize,
    conn: &mut WsConn,
    target: &Target,
    size: usize,
    stats: &Stats,
    rounds: &Rounds,
) -> Result<(), ClientError> {
    let template = Template::publish("room", size);
    let mut frame = MaskedFrame::text(&template.payload);
    let mut check = SeqCheck::new(rounds.clients);
    let offsets = target.checks_offsets();
    let mut phase = rounds.phase.subscribe();
    loop {
        let round = match *phase.borrow_and_update() {
            Phase::Setup => None,
            Phase::Round(r) => Some(r),
            Phase::Stop => return Ok(()),
        };
        if let Some(round) = round {
            let sent_us = marker::now_us();
            frame.patch(template.marker_at, &Marker { sender: i as u32, seq: round, sent_us }.encode());
            conn.send(frame.bytes()).await?;
            let mut got = 0;
            let receive = async {
                while got < rounds.clients {
                    got += conn
                        .read_data(|payload, received| {
                            if let Some(m) = check.check(payload, offsets, stats) {
                                stats.latency(marker::elapsed_us(m.sent_us, received));
                                Stats::add(&stats.ops, 1);
                            }
                        })
                        .await?;
                }
                Ok::<(), ClientError>(())
            };
            match tokio::time::timeout(ROUND_TIMEOUT, receive).await {
                Ok(result) => result?,
                Err(_) => return Err(ClientError::Timeout("every delivery of a round")),
            }
            rounds.finish(round);
        }
        if phase.changed().await.is_err() {
            return Ok(());
        }
    }
}
