//! The hub endpoint end to end: every command of PROTOCOL.md over a real socket with an independent client,
//! publications between clients, ordering, subprotocol selection, and the plain HTTP routes.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use common::{connect, connect_hub, next_json, raw_http, request, send_json, try_connect_with, TestServer};
use futures_util::SinkExt as _;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;
use ws_core::{Hub, HubConfig, NamespaceConfig, Namespaces};
use ws_transport::{HttpHandler, SystemClock, TransportConfig};

/// A hub with a presence namespace (`room:`) and a history namespace (`hist:`).
fn hub() -> Hub {
    let namespaces = Namespaces::default()
        .with("room", NamespaceConfig::default().presence(true))
        .with("hist", NamespaceConfig::default().history(10, 0));
    Hub::builder(Arc::new(SystemClock)).config(HubConfig::default().namespaces(namespaces)).build()
}

async fn every_command_gets_its_reply() {
    let server = TestServer::with_hub(hub(), TransportConfig::default()).await;
    let (mut ws, welcome) = connect_hub(&server).await;
    let conn_id = welcome["conn_id"].as_str().expect("conn_id").to_owned();
    assert_eq!(conn_id.len(), 16);
    assert_eq!(
        (&welcome["user_id"], &welcome["heartbeat_ms"], &welcome["version"]),
        (&json!(null), &json!(25_000), &json!(1))
    );

    assert_eq!(request(&mut ws, &json!({"type": "ping", "id": 1})).await, json!({"type": "pong", "id": 1}));
    assert_eq!(
        request(&mut ws, &json!({"type": "echo", "id": "e", "data": {"a": [1, 2]}})).await,
        json!({"type": "echo", "id": "e", "data": {"a": [1, 2]}})
    );

    let subscribed = request(&mut ws, &json!({"type": "subscribe", "id": 2, "channel": "news"})).await;
    assert_eq!(
        (&subscribed["type"], &subscribed["id"], &subscribed["channel"]),
        (&json!("subscribed"), &json!(2), &json!("news"))
    );
    assert_eq!(subscribed["offset"], 0);
    assert!(subscribed["epoch"].is_string());

    send_json(&mut ws, &json!({"type": "publish", "id": 3, "channel": "news", "data": "hello"})).await;
    assert_eq!(next_json(&mut ws).await, json!({"type": "message", "channel": "news", "offset": 1, "data": "hello"}));
    assert_eq!(next_json(&mut ws).await, json!({"type": "published", "id": 3, "channel": "news", "offset": 1}));

    request(&mut ws, &json!({"type": "subscribe", "channel": "room:a"})).await;
    let presence = request(&mut ws, &json!({"type": "presence", "id": 4, "channel": "room:a"})).await;
    assert_eq!(
        presence,
        json!({"type": "presence", "id": 4, "channel": "room:a", "clients": [{"conn_id": conn_id, "user_id": null}]})
    );

    send_json(&mut ws, &json!({"type": "publish", "channel": "hist:a", "data": 1})).await;
    send_json(&mut ws, &json!({"type": "publish", "channel": "hist:a", "data": 2})).await;
    let history = request(&mut ws, &json!({"type": "history", "id": 5, "channel": "hist:a", "limit": 10})).await;
    assert_eq!((&history["type"], &history["offset"]), (&json!("history"), &json!(2)));
    let data: Vec<&Value> = history["messages"].as_array().expect("messages").iter().map(|m| &m["data"]).collect();
    assert_eq!(data, [&json!(1), &json!(2)]);

    let status = request(&mut ws, &json!({"type": "status", "id": 6})).await;
    assert_eq!((&status["conn_id"], &status["channels"]), (&json!(conn_id), &json!(["news", "room:a"])));
    assert!(status["connected_ms"].is_u64());

    assert_eq!(
        request(&mut ws, &json!({"type": "unsubscribe", "id": 7, "channel": "news"})).await,
        json!({"type": "unsubscribed", "id": 7, "channel": "news"})
    );

    let unknown = request(&mut ws, &json!({"type": "teleport", "id": 8})).await;
    assert_eq!(
        (&unknown["type"], &unknown["code"], &unknown["id"]),
        (&json!("error"), &json!("unknown_type"), &json!(8))
    );

    let bad = {
        ws.send(Message::text("not json")).await.expect("send");
        next_json(&mut ws).await
    };
    assert_eq!((&bad["type"], &bad["code"]), (&json!("error"), &json!("bad_request")));

    ws.send(Message::Binary(Bytes::from_static(b"\x00\x01"))).await.expect("send");
    let binary = next_json(&mut ws).await;
    assert_eq!((&binary["type"], &binary["code"]), (&json!("error"), &json!("unsupported_frame")));

    // The connection is still open after every error.
    assert_eq!(request(&mut ws, &json!({"type": "ping", "id": 9})).await, json!({"type": "pong", "id": 9}));
}

async fn clients_see_each_others_publications() {
    let server = TestServer::start(TransportConfig::default()).await;
    let (mut alice, _) = connect_hub(&server).await;
    let (mut bob, _) = connect_hub(&server).await;
    for ws in [&mut alice, &mut bob] {
        request(ws, &json!({"type": "subscribe", "id": 1, "channel": "chat"})).await;
    }
    send_json(&mut alice, &json!({"type": "publish", "channel": "chat", "data": {"from": "alice"}})).await;
    send_json(&mut bob, &json!({"type": "publish", "channel": "chat", "data": {"from": "bob"}})).await;
    for ws in [&mut alice, &mut bob] {
        let mut from: Vec<Value> = Vec::new();
        for _ in 0..2 {
            let message = next_json(ws).await;
            assert_eq!(message["type"], "message");
            from.push(message["data"]["from"].clone());
        }
        from.sort_by_key(ToString::to_string);
        assert_eq!(from, [json!("alice"), json!("bob")]);
    }
}

async fn order_is_preserved_per_channel() {
    const N: u64 = 1000;
    let server = TestServer::start(TransportConfig::default().rate_limit(None)).await;
    let (mut publisher, _) = connect_hub(&server).await;
    let (mut subscriber, _) = connect_hub(&server).await;
    request(&mut subscriber, &json!({"type": "subscribe", "id": 1, "channel": "seq"})).await;
    let messages: Vec<Result<Message, _>> = (1..=N)
        .map(|i| Ok(Message::text(json!({"type": "publish", "channel": "seq", "data": i}).to_string())))
        .collect();
    publisher.send_all(&mut futures_util::stream::iter(messages)).await.expect("send all");
    for i in 1..=N {
        let message = next_json(&mut subscriber).await;
        assert_eq!((&message["offset"], &message["data"]), (&json!(i), &json!(i)), "message {i} in order");
    }
}

async fn subprotocol_is_selected_only_when_offered() {
    let server = TestServer::start(TransportConfig::default()).await;
    let (_, response) =
        try_connect_with(&server, "/ws", &[("sec-websocket-protocol", "other, wshub.v1")]).await.expect("connect");
    assert_eq!(response.headers()["sec-websocket-protocol"], ws_transport::SUBPROTOCOL);
    let (_, response) = try_connect_with(&server, "/ws", &[]).await.expect("connect");
    assert!(response.headers().get("sec-websocket-protocol").is_none());
}

async fn permessage_deflate_is_not_negotiated() {
    let server = TestServer::start(TransportConfig::default()).await;
    let request = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                   Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
                   Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";
    let response = raw_http(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 101, "{}", response.head);
    assert!(!response.head.to_ascii_lowercase().contains("sec-websocket-extensions"), "{}", response.head);
}

#[derive(Debug)]
struct Hello;

#[async_trait::async_trait]
impl HttpHandler for Hello {
    async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
        let body = format!("hello {} from {}", request.uri().path(), peer.ip());
        Response::new(Full::new(Bytes::from(body)))
    }
}

async fn plain_http_routes_are_served() {
    let server = TestServer::start(TransportConfig::default()).await;
    let health = raw_http(server.addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok"[..]));
    let missing = raw_http(server.addr, b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(missing.status, 404);
    let json: Value = serde_json::from_slice(&missing.body).expect("JSON");
    assert_eq!(json["error"], "not_found");
    // A plain GET on the WebSocket path is told to upgrade.
    let plain = raw_http(server.addr, b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(plain.status, 426);

    let server = TestServer::start(TransportConfig::default().http_handler(Some(Arc::new(Hello)))).await;
    let page = raw_http(server.addr, b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!((page.status, page.body.as_slice()), (200, &b"hello /page from 127.0.0.1"[..]));
    // The WebSocket endpoints stay the transport's.
    let _ = connect(&server, "/ws").await;
}

common::on_both_runtimes!(
    every_command_gets_its_reply,
    clients_see_each_others_publications,
    order_is_preserved_per_channel,
    subprotocol_is_selected_only_when_offered,
    permessage_deflate_is_not_negotiated,
    plain_http_routes_are_served,
);
