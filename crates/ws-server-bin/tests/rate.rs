//! The default per-connection rate limit through the real server: ordinary bursts (a thousand commands back to
//! back, a resubscribe to every channel a connection may hold) pass untouched; a sustained flood is stopped.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{config, next_json, start, ws_connect, Ws};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

/// How long any one wait may take before the test is declared stuck.
const GUARD: Duration = Duration::from_secs(30);

async fn connected(addr: std::net::SocketAddr) -> Ws {
    let mut ws = ws_connect(addr, "/ws", &[]).await.expect("the connection opens");
    assert_eq!(next_json(&mut ws).await["type"], "welcome");
    ws
}

/// Sends `commands` back to back, never waiting for a reply, while reading the replies; returns one reply per
/// command (or fails if the server closes the connection first) and the connection, still open.
async fn burst(ws: Ws, commands: Vec<Value>) -> (Vec<Value>, Ws) {
    let expected = commands.len();
    let (mut tx, mut rx) = ws.split();
    let writer = tokio::spawn(async move {
        for command in commands {
            tx.feed(Message::Text(command.to_string().into())).await.expect("send");
        }
        tx.flush().await.expect("flush");
        tx
    });
    let mut replies = Vec::with_capacity(expected);
    while replies.len() < expected {
        let frame = tokio::time::timeout(GUARD, rx.next()).await.expect("a reply in time");
        match frame.expect("the socket is open").expect("a valid frame") {
            Message::Text(text) => replies.push(serde_json::from_str::<Value>(&text).expect("JSON")),
            Message::Close(close) => {
                panic!("closed with {close:?} after {} replies; the last: {:?}", replies.len(), replies.last())
            }
            _ => {}
        }
    }
    let tx = writer.await.expect("the writer");
    (replies, tx.reunite(rx).expect("the two halves of one socket"))
}

fn errors(replies: &[Value]) -> Vec<&Value> {
    replies.iter().filter(|r| r["type"] == "error").collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_commands_back_to_back_on_a_default_server_are_all_answered() {
    let server = start(config()).await;
    let ws = connected(server.addr).await;
    let commands: Vec<Value> = (0..1000)
        .map(|i| match i % 3 {
            0 => json!({"type": "ping", "id": i}),
            1 => json!({"type": "echo", "id": i, "data": {"n": i}}),
            _ => json!({"type": "publish", "id": i, "channel": "burst", "data": i}),
        })
        .collect();
    let (replies, _ws) = burst(ws, commands).await;
    assert_eq!(errors(&replies), Vec::<&Value>::new(), "no command of an ordinary burst is refused");
    let ids: Vec<u64> = replies.iter().map(|r| r["id"].as_u64().expect("every reply echoes its id")).collect();
    assert_eq!(ids, (0..1000).collect::<Vec<u64>>(), "every command is answered, in order");
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubscribing_at_once_to_as_many_channels_as_allowed_gets_no_rate_limited_error() {
    let config = config();
    let max = config.limits.max_channels_per_conn;
    let server = start(config).await;
    let ws = connected(server.addr).await;
    let commands: Vec<Value> =
        (0..max).map(|i| json!({"type": "subscribe", "id": i, "channel": format!("room:{i}")})).collect();
    let (replies, _ws) = burst(ws, commands).await;
    assert_eq!(errors(&replies), Vec::<&Value>::new());
    assert!(replies.iter().all(|r| r["type"] == "subscribed"), "every channel is subscribed");
    assert_eq!(server.hub.stats().subscriptions, max as u64);
    server.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sustained_flood_on_a_default_server_is_rate_limited_then_closed_4003() {
    // Commands sent and not yet answered. The flooder reads its replies, keeping this many in flight at most:
    // one that never read them would be closed as a slow consumer (4000) before it was found abusive.
    const IN_FLIGHT: usize = 256;
    let server = start(config()).await;
    let (mut tx, mut rx) = connected(server.addr).await.split();
    let window = Arc::new(Semaphore::new(IN_FLIGHT));
    let permits = Arc::clone(&window);
    // Pings as fast as the window allows (thousands a second, far over the sustained rate), until the server
    // closes the connection.
    let writer = tokio::spawn(async move {
        for i in 0u64.. {
            let Ok(permit) = permits.acquire().await else { return };
            permit.forget();
            if tx.send(Message::Text(json!({"type": "ping", "id": i}).to_string().into())).await.is_err() {
                return;
            }
        }
    });
    let (mut pongs, mut limited) = (0usize, 0usize);
    let code = loop {
        let frame = tokio::time::timeout(GUARD, rx.next()).await.expect("the flood is stopped in time");
        match frame.expect("the socket is open until the close frame").expect("a valid frame") {
            Message::Text(text) => {
                let reply: Value = serde_json::from_str(&text).unwrap();
                match (reply["type"].as_str(), reply["code"].as_str()) {
                    (Some("pong"), _) => pongs += 1,
                    (Some("error"), Some("rate_limited")) => limited += 1,
                    (Some("disconnect"), _) => assert_eq!(reply["code"], 4003, "{reply}"),
                    _ => panic!("unexpected {reply}"),
                }
                window.add_permits(1);
            }
            Message::Close(close) => break close.map(|c| u16::from(c.code)),
            _ => {}
        }
    };
    writer.abort();
    assert!(pongs >= 2048, "the burst allowance was served first: {pongs} pongs");
    assert!(limited >= 1, "messages over the limit were answered rate_limited");
    assert_eq!(code, Some(4003));
    server.shutdown().await.unwrap();
}
