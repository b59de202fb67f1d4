//! A connection's life after the upgrade: heartbeats, token expiry, kicks, slow consumers, and shutdown.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{connect, connect_hub, expect_close, next_json, request, RawClient, TestServer, GUARD};
use futures_util::StreamExt as _;
use parking_lot::Mutex;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use ws_core::{AuthError, AuthRequest, Authenticator, Clock, ConnId, ConnInfo, DisconnectReason, Hooks, Hub, Identity};
use ws_protocol::{ChannelName, Json};
use ws_transport::{SystemClock, TransportConfig};

fn heartbeat_config() -> TransportConfig {
    TransportConfig::default().heartbeat_interval(Duration::from_millis(100)).pong_timeout(Duration::from_secs(1))
}

async fn a_silent_client_is_pinged_then_closed_4001() {
    let server = TestServer::start(heartbeat_config()).await;
    let mut c = RawClient::connect(server.addr, "/ws").await;
    let mut pings = 0;
    // Never answer, never send.
    let code = loop {
        let frame = c.read_frame().await.expect("a frame");
        match frame.opcode {
            0x9 => pings += 1,
            0x8 => break u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
            _ => {}
        }
    };
    assert!(pings >= 1, "the server pinged before giving up");
    assert_eq!(code, 4001);
}

async fn a_client_that_answers_pings_stays_connected() {
    let server = TestServer::start(heartbeat_config()).await;
    let (mut ws, welcome) = connect_hub(&server).await;
    assert_eq!(welcome["heartbeat_ms"], 100);
    // More pings than fit in the pong timeout; tungstenite answers each as it reads it.
    let mut pings = 0;
    while pings < 15 {
        match tokio::time::timeout(GUARD, ws.next()).await.expect("a ping in time") {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert_eq!(request(&mut ws, &json!({"type": "ping", "id": 1})).await["type"], "pong");
}

/// Gives every connection a token that expires shortly.
#[derive(Debug)]
struct Expiring;

#[async_trait::async_trait]
impl Authenticator for Expiring {
    async fn authenticate(&self, _request: &AuthRequest) -> Result<Identity, AuthError> {
        Ok(Identity::user("bob").with_expiry(SystemClock.now_ms() + 200))
    }
}

async fn an_expired_token_closes_1008() {
    let server = TestServer::start(TransportConfig::default().authenticator(Arc::new(Expiring))).await;
    let (mut ws, welcome) = connect_hub(&server).await;
    assert_eq!(welcome["user_id"], "bob");
    let (code, reason, before) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "token expired"));
    assert_eq!(before.last().expect("a disconnect notice")["type"], "disconnect");
}

async fn a_kick_through_the_hub_sends_disconnect_and_closes() {
    let server = TestServer::start(TransportConfig::default()).await;
    let (mut ws, welcome) = connect_hub(&server).await;
    let id: ConnId = welcome["conn_id"].as_str().expect("conn_id").parse().expect("hex id");
    assert!(server.hub.disconnect(id, 1008, "kicked", 0));
    let (code, reason, before) = expect_close(&mut ws).await;
    assert_eq!((code, reason.as_str()), (1008, "kicked"));
    assert_eq!(before, [json!({"type": "disconnect", "code": 1008, "reason": "kicked", "reconnect_after_ms": 0})]);
}

/// Records every disconnect the hub hears about.
#[derive(Debug, Default)]
struct Recorder(Mutex<Vec<(ConnId, DisconnectReason)>>);

impl Hooks for Recorder {
    fn on_disconnect(&self, info: &ConnInfo, reason: &DisconnectReason) {
        self.0.lock().push((info.id, reason.clone()));
    }
}

async fn a_slow_consumer_is_closed_4000_while_others_keep_receiving() {
    let recorder = Arc::new(Recorder::default());
    let hub = Hub::builder(Arc::new(SystemClock)).hooks(recorder.clone()).build();
    let config = TransportConfig::default()
        .queue_messages(16)
        .queue_bytes(256 * 1024)
        .close_timeout(Duration::from_millis(100))
        .rate_limit(None);
    let server = TestServer::with_hub(hub, config).await;
    let channel = ChannelName::new("feed").expect("valid");

    // The slow client has a tiny receive buffer and stops reading after subscribing.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("buffer size");
    let stream = socket.connect(server.addr).await.expect("connect");
    let (mut slow, _) = tokio_tungstenite::client_async(server.url("/ws"), stream).await.expect("handshake");
    let slow_id: ConnId = next_json_plain(&mut slow).await["conn_id"].as_str().expect("id").parse().expect("hex");
    slow_subscribe(&mut slow).await;

    let (mut fast, _) = connect_hub(&server).await;
    request(&mut fast, &json!({"type": "subscribe", "id": 1, "channel": "feed"})).await;

    let data = Json::encode(&"x".repeat(16 * 1024)).expect("a JSON string");
    let mut offset = 0u64;
    while server.hub.stats().drops_slow_consumer == 0 {
        assert!(offset < 20_000, "the slow consumer's queue never overflowed");
        offset = server.hub.publish(&channel, data.clone());
        // The fast client keeps up: every message arrives, in order.
        assert_eq!(next_json(&mut fast).await["offset"], offset);
    }
    // The slow connection ends with 4000 (once its close handshake gives up on a peer that reads nothing).
    let deadline = tokio::time::Instant::now() + GUARD;
    let code = loop {
        if let Some(code) = recorder.0.lock().iter().find(|(id, _)| *id == slow_id).map(|(_, r)| r.code) {
            break code;
        }
        assert!(tokio::time::Instant::now() < deadline, "the slow consumer was never unregistered");
        offset = server.hub.publish(&channel, data.clone());
        assert_eq!(next_json(&mut fast).await["offset"], offset);
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(code, 4000);
    for _ in 0..10 {
        offset = server.hub.publish(&channel, data.clone());
        assert_eq!(next_json(&mut fast).await["offset"], offset);
    }
    assert_eq!(server.hub.subscriber_count(&channel), 1);
    assert!(server.hub.stats().drops_slow_consumer >= 1);
}

async fn a_peer_that_stops_reading_is_dropped_after_the_write_timeout() {
    let recorder = Arc::new(Recorder::default());
    let hub = Hub::builder(Arc::new(SystemClock)).hooks(recorder.clone()).build();
    // A queue big enough never to overflow here: only the write timeout can end the connection.
    let config = TransportConfig::default()
        .queue_messages(1 << 20)
        .queue_bytes(1 << 30)
        .write_timeout(Duration::from_millis(200))
        .rate_limit(None);
    let server = TestServer::with_hub(hub, config).await;
    let mut stuck = RawClient::connect(server.addr, "/ws").await;
    let welcome = stuck.read_frame().await.expect("welcome");
    let welcome: serde_json::Value = serde_json::from_slice(&welcome.payload).expect("JSON");
    let id: ConnId = welcome["conn_id"].as_str().expect("id").parse().expect("hex");
    // Far more than the socket buffers hold, and then the client reads nothing.
    let data = Json::encode(&"y".repeat(64 * 1024)).expect("a JSON string");
    let frame = ws_protocol::encode_message(&ChannelName::new("direct").expect("valid"), 1, None, &data);
    for _ in 0..1000 {
        server.hub.send(id, &frame).expect("queued");
    }
    let deadline = tokio::time::Instant::now() + GUARD;
    let reason = loop {
        if let Some((_, reason)) = recorder.0.lock().iter().find(|(c, _)| *c == id) {
            break reason.clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "the stuck connection was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!((reason.code, reason.reason.as_str()), (1006, "write timeout"));
}

/// A client that reads its welcome, then nothing more, while `count` copies of `frame` are queued for it: it
/// returns once the server's writes to it have stalled with a write in flight.
async fn stuck_client(
    server: &TestServer,
    stats: &ws_transport::TransportStats,
    frame: &bytes::Bytes,
    count: usize,
) -> (RawClient, ConnId) {
    let mut client = RawClient::connect(server.addr, "/ws").await;
    let welcome = client.read_frame().await.expect("welcome");
    let welcome: serde_json::Value = serde_json::from_slice(&welcome.payload).expect("JSON");
    let id: ConnId = welcome["conn_id"].as_str().expect("id").parse().expect("hex");
    let before = stats.snapshot().bytes_out;
    for _ in 0..count {
        server.hub.send(id, frame).expect("queued");
    }
    let mut last = stats.snapshot().bytes_out;
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stats.snapshot().bytes_out;
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last - before < (count * frame.len()) as u64, "the socket took everything; nothing is in flight");
    (client, id)
}

async fn a_kicked_client_whose_socket_is_busy_still_gets_its_notice_and_close_frame() {
    let recorder = Arc::new(Recorder::default());
    let hub = Hub::builder(Arc::new(SystemClock)).hooks(recorder.clone()).build();
    let config = TransportConfig::default()
        .queue_messages(1 << 20)
        .queue_bytes(1 << 30)
        .close_timeout(Duration::from_millis(500))
        .rate_limit(None);
    let stats = Arc::clone(&config.stats);
    let server = TestServer::with_hub(hub, config).await;
    let data = Json::encode(&"k".repeat(64 * 1024)).expect("a JSON string");
    let frame = ws_protocol::encode_message(&ChannelName::new("direct").expect("valid"), 1, None, &data);
    let messages = 200;
    let (mut busy, id) = stuck_client(&server, &stats, &frame, messages).await;
    assert!(server.hub.disconnect(id, 4004, "kicked", 0));
    // The client reads again: everything queued, then the notice, then the close frame.
    let (code, texts) = busy.read_close().await;
    assert_eq!(code, Some(4004), "a close frame, not a dropped socket");
    assert_eq!(texts.len(), messages + 1);
    let notice: serde_json::Value = serde_json::from_str(texts.last().expect("the notice")).expect("JSON");
    assert_eq!((notice["type"].as_str(), notice["code"].as_u64()), (Some("disconnect"), Some(4004)));

    // One that never reads again is dropped once the close timeout has passed.
    let (mut never, id) = stuck_client(&server, &stats, &frame, messages).await;
    assert!(server.hub.disconnect(id, 4004, "kicked", 0));
    let deadline = tokio::time::Instant::now() + GUARD;
    while !recorder.0.lock().iter().any(|(c, _)| *c == id) {
        assert!(tokio::time::Instant::now() < deadline, "the kicked connection was never dropped");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (code, _) = never.read_close().await;
    assert_eq!(code, None, "dropped mid-stream: no close frame could follow");
}

/// The next text message of a client on a plain TCP stream.
async fn next_json_plain<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let message = tokio::time::timeout(GUARD, ws.next()).await.expect("in time").expect("open").expect("valid");
        if let Message::Text(text) = message {
            return serde_json::from_str(&text).expect("JSON");
        }
    }
}

async fn slow_subscribe<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures_util::SinkExt as _;
    let subscribe = json!({"type": "subscribe", "id": 1, "channel": "feed"}).to_string();
    ws.send(Message::text(subscribe)).await.expect("send");
    assert_eq!(next_json_plain(ws).await["type"], "subscribed");
}

async fn shutdown_sends_disconnect_then_1001_and_serve_returns() {
    let config = TransportConfig::default()
        .shutdown_reconnect_after(Duration::from_millis(1000))
        .shutdown_reconnect_spread(Duration::from_millis(1000));
    let mut server = TestServer::start(config).await;
    let (mut a, _) = connect_hub(&server).await;
    let (mut b, _) = connect_hub(&server).await;
    let mut relay = connect(&server, "/relay/lobby").await;
    let addr = server.addr;
    server.trigger_shutdown();

    let mut delays = Vec::new();
    for ws in [&mut a, &mut b] {
        let (code, reason, before) = expect_close(ws).await;
        assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
        let [notice] = before.as_slice() else { panic!("expected one disconnect notice, got {before:?}") };
        assert_eq!((&notice["type"], &notice["code"]), (&json!("disconnect"), &json!(1001)));
        assert_eq!(notice["reason"], "server shutting down");
        delays.push(notice["reconnect_after_ms"].as_u64().expect("a delay"));
    }
    delays.sort_unstable();
    assert_eq!(delays, [1000, 1500], "the delays are spread over the window");
    // The relay gets the close with no notice: the server sends nothing of its own there.
    let (code, _, before) = expect_close(&mut relay).await;
    assert_eq!((code, before.len()), (1001, 0));
    for ws in [&mut a, &mut b, &mut relay] {
        // Let tungstenite finish the close handshake.
        while let Ok(Some(_)) = tokio::time::timeout(GUARD, ws.next()).await {}
    }

    server.shutdown().await.expect("serve returns Ok");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens any more");
}

async fn shutdown_drops_connections_that_do_not_close_by_the_deadline() {
    let config = TransportConfig::default().drain_timeout(Duration::from_millis(200));
    let server = TestServer::start(config).await;
    // A raw client that never answers the close.
    let mut silent = RawClient::connect(server.addr, "/ws").await;
    let _ = silent.read_frame().await.expect("welcome");
    server.shutdown().await.expect("serve returns Ok after the deadline");
    let (code, _) = silent.read_close().await;
    assert_eq!(code, Some(1001));
    assert!(silent.read_frame().await.is_none(), "the connection was dropped");
}

common::on_both_runtimes!(
    a_silent_client_is_pinged_then_closed_4001,
    a_client_that_answers_pings_stays_connected,
    an_expired_token_closes_1008,
    a_kick_through_the_hub_sends_disconnect_and_closes,
    a_kicked_client_whose_socket_is_busy_still_gets_its_notice_and_close_frame,
    a_slow_consumer_is_closed_4000_while_others_keep_receiving,
    a_peer_that_stops_reading_is_dropped_after_the_write_timeout,
    shutdown_sends_disconnect_then_1001_and_serve_returns,
    shutdown_drops_connections_that_do_not_close_by_the_deadline,
);
