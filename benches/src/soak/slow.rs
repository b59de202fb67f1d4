//! Slow consumers: connections with a 4 KiB receive window that subscribe to every steady channel, to the bulk
//! channel and to a presence channel of their own, then stop reading. The server must close them as slow
//! consumers (4000): each must leave its presence channel (the hub unregistered it) and its socket must end;
//! the run's end compares how many the server counted under close code 4000 with how many there were.
//!
//! The bulk channel carries 16 KiB messages, 100 a second, while slow consumers run: the kernel lets a
//! server's socket buffer several MiB on loopback, which the steady channels alone would take a minute to fill
//! before the server's queue can overflow; the bulk channel fills it in seconds.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::json;

use super::api::Api;
use super::conn::{HubConn, Window};
use super::deliveries::Expect;
use super::Shared;

/// The close code of a slow consumer.
pub(crate) const SLOW_CONSUMER: u16 = 4000;
/// The namespace of the slow consumers' presence channels; the server's configuration turns presence on in it.
pub(crate) const PRESENCE_NAMESPACE: &str = "slow";
/// How long the server may take to unregister a consumer that stopped reading.
const UNREGISTERED_WITHIN: Duration = Duration::from_secs(60);
/// How often the presence channel is asked.
const POLL: Duration = Duration::from_millis(250);
/// How long in-flight slow consumers get to finish once the run stops loading.
const FINISH: Duration = Duration::from_secs(120);
/// The channel of the bulk messages, and their size and pace.
const BULK_CHANNEL: &str = "slow:bulk";
const BULK_BYTES: usize = 16 * 1024;
const BULK_EVERY: Duration = Duration::from_millis(10);

/// Starts a slow consumer every `every`, at most `most_open` at a time, until the run stops loading.
pub(crate) async fn run(every: Duration, most_open: usize, shared: Rc<Shared>) {
    let bulk_on = Rc::new(Cell::new(true));
    let bulk = tokio::task::spawn_local(bulk(shared.clone(), bulk_on.clone()));
    let slow = ("slow consumer", "slow consumers");
    super::every(every, most_open, FINISH, &shared, slow, |id, shared| async move { one(id, &shared).await }).await;
    bulk_on.set(false);
    let _ = bulk.await;
}

/// Publishes the bulk messages while `on`, then closes cleanly.
async fn bulk(shared: Rc<Shared>, on: Rc<Cell<bool>>) {
    let tally = &shared.endpoint.tally;
    let publish = json!({"type": "publish", "channel": BULK_CHANNEL, "data": "b".repeat(BULK_BYTES)});
    let result = async {
        let mut conn = HubConn::open(&shared.endpoint, "bulk publisher".to_owned(), Window::Normal).await?;
        let mut tick = tokio::time::interval(BULK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while on.get() {
            tick.tick().await;
            conn.send(&publish).await?;
            // Nothing is expected back; whatever came is an error reply.
            conn.pump_until(Instant::now()).await?;
            if let Some(frame) = conn.take_other() {
                return Err(crate::client::ClientError::Protocol(format!("the bulk publisher got {frame}")));
            }
        }
        conn.into_socket().close(Duration::from_secs(10)).await
    };
    if let Err(e) = result.await {
        tally.violation(format!("bulk publisher: {e}"));
    }
}

/// One slow consumer: subscribe, stop reading, wait for the server to unregister it, then read to the end.
async fn one(id: u64, shared: &Shared) -> Result<(), String> {
    let presence = format!("{PRESENCE_NAMESPACE}:{id}");
    let mut conn =
        HubConn::open(&shared.endpoint, format!("slow {id}"), Window::Small).await.map_err(|e| e.to_string())?;
    let mut channels = vec![(presence.clone(), Expect::Unmarked), (BULK_CHANNEL.to_owned(), Expect::Unmarked)];
    channels.extend(shared.steady().iter().map(|c| (c.clone(), Expect::MarkedJoined)));
    conn.subscribe(&channels).await.map_err(|e| e.to_string())?;

    // From here on nothing is read: the server's queue for this connection fills up.
    let mut api = Api::new(shared.endpoint.addr, &shared.api_key);
    let deadline = Instant::now() + UNREGISTERED_WITHIN;
    let path = format!("/api/presence/{presence}");
    loop {
        let answer = api.get_json(&path).await?;
        shared.endpoint.tally.count(|c| c.api_requests += 1);
        match answer["clients"].as_array() {
            Some(clients) if clients.is_empty() => break,
            Some(_) => {}
            None => return Err(format!("GET {path} answered {answer}")),
        }
        if Instant::now() > deadline {
            return Err(format!("still registered {UNREGISTERED_WITHIN:?} after it stopped reading"));
        }
        tokio::time::sleep(POLL).await;
    }
    drop(api);

    // What the socket still holds is read to its end. The server drops a slow consumer's queue and, since its
    // writes are stuck, the socket too, without a close frame; a close frame, if one came, must say 4000.
    let socket = conn.into_socket();
    let ended = tokio::time::timeout(Duration::from_secs(30), drain(socket)).await;
    match ended {
        Ok(None | Some(SLOW_CONSUMER)) => {}
        Ok(Some(code)) => return Err(format!("closed with {code}, not {SLOW_CONSUMER}")),
        Err(_) => return Err("the socket did not end within 30 s of leaving the hub".to_owned()),
    }
    shared.endpoint.tally.count(|c| c.slow_closed += 1);
    Ok(())
}

/// Reads everything to the end of the connection, unchecked (the queue was dropped, so gaps are expected);
/// returns the close code if a close frame came.
async fn drain(mut socket: crate::client::WsConn) -> Option<u16> {
    loop {
        match socket.read_data(|_, _| {}).await {
            Ok(_) => {}
            Err(crate::client::ClientError::Closed(code)) => return code,
            Err(_) => return None,
        }
    }
}
