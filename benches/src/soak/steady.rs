//! Steady subscribers: connections that stay for the whole run on two steady channels each, subscribed before
//! anyone publishes, so that they must receive every publication of those channels: consecutive offsets up to
//! the channel's last, and each publisher's messages all, once, in the order it made them.

use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use super::conn::HubConn;
use super::deliveries::Expect;
use super::Shared;
use crate::client::ClientError;

/// How long a steady subscriber may take to receive the last publications once publishing has stopped.
const CATCH_UP: Duration = Duration::from_secs(30);
/// How often a steady subscriber looks whether the run has ended while nothing arrives.
const LOOK: Duration = Duration::from_millis(100);

/// The steady channels (indexes into [`Shared::steady`]) subscriber `index` of `count` listens to: two
/// different ones (given at least two channels), spread so that every channel gets about as many subscribers.
pub(crate) fn channels_of(index: usize, count: usize) -> [usize; 2] {
    let first = index % count;
    [first, (first + 1 + (index / count) % (count - 1).max(1)) % count]
}

/// Opens steady subscriber `index` and subscribes it.
pub(crate) async fn open(index: usize, shared: &Shared) -> Result<HubConn, ClientError> {
    let mut conn = HubConn::open(&shared.endpoint, format!("steady {index}"), super::conn::Window::Normal).await?;
    let steady = shared.steady();
    let channels = channels_of(index, steady.len()).map(|c| (steady[c].clone(), Expect::MarkedFromStart));
    conn.subscribe(&channels).await?;
    Ok(conn)
}

/// Reads and checks until the run publishes its final offsets, catches up with them, checks that nothing is
/// missing, and closes cleanly.
pub(crate) async fn run(index: usize, mut conn: HubConn, shared: Rc<Shared>) {
    let tally = &shared.endpoint.tally;
    let steady = shared.steady();
    let mine = channels_of(index, steady.len());
    let caught_up = |conn: &HubConn, finals: &[u64]| {
        mine.iter().all(|&c| conn.deliveries().last_offset(&steady[c]).is_some_and(|last| last >= finals[c]))
    };
    let result: Result<(), ClientError> = async {
        let finals = loop {
            if let Some(finals) = shared.final_offsets() {
                break finals;
            }
            conn.pump_until(Instant::now() + LOOK).await?;
            if let Some(frame) = conn.take_other() {
                return Err(ClientError::Protocol(format!("unexpected {frame}")));
            }
        };
        let deadline = Instant::now() + CATCH_UP;
        while !caught_up(&conn, &finals) && conn.pump_until(deadline).await? {}
        for c in mine {
            conn.deliveries().verify_complete(&steady[c], c, finals[c], &shared.ledger);
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => {
            if let Err(e) = conn.into_socket().close(Duration::from_secs(10)).await {
                tally.violation(format!("steady {index}: closing: {e}"));
            }
        }
        Err(e) => tally.violation(format!("steady {index}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_subscriber_gets_two_different_channels_and_the_channels_are_shared_evenly() {
        let mut per_channel = [0; 8];
        for index in 0..24 {
            let [a, b] = channels_of(index, 8);
            assert_ne!(a, b);
            per_channel[a] += 1;
            per_channel[b] += 1;
        }
        assert_eq!(per_channel, [6; 8]);
    }
}
