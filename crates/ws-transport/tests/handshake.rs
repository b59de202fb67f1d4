//! The upgrade: authentication, origin policy, connection caps, and the handshake limits (timeout, header
//! size), each checked by its exact HTTP status and body over a real socket.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{connect, next_json, raw_http, refusal, try_connect_with, RawClient, TestServer, GUARD};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use ws_core::{AuthError, AuthRequest, Authenticator, Identity};
use ws_transport::TransportConfig;

/// Accepts the token `good` as alice, answers `down` as an unavailable backend, refuses anything else.
#[derive(Debug)]
struct TestAuth;

#[async_trait::async_trait]
impl Authenticator for TestAuth {
    async fn authenticate(&self, request: &AuthRequest) -> Result<Identity, AuthError> {
        assert!(request.peer.is_some_and(|p| p.ip().is_loopback()), "the peer address is passed on");
        match request.token.as_deref() {
            Some("good") => Ok(Identity::user("alice")),
            Some("down") => Err(AuthError::Unavailable("backend down".into())),
            Some(_) => Err(AuthError::Unauthorized("bad token".into())),
            None => Err(AuthError::Unauthorized("token required".into())),
        }
    }
}

fn auth_config() -> TransportConfig {
    TransportConfig::default().authenticator(Arc::new(TestAuth))
}

async fn a_valid_token_from_header_or_query_authenticates() {
    let server = TestServer::start(auth_config()).await;
    let (mut ws, _) = try_connect_with(&server, "/ws", &[("authorization", "Bearer good")]).await.expect("accepted");
    let welcome = next_json(&mut ws).await;
    assert_eq!((&welcome["type"], &welcome["user_id"]), (&json!("welcome"), &json!("alice")));
    let mut ws = connect(&server, "/ws?token=good").await;
    assert_eq!(next_json(&mut ws).await["user_id"], "alice");
}

async fn a_bad_or_missing_token_is_refused_with_401() {
    let server = TestServer::start(auth_config()).await;
    let error = try_connect_with(&server, "/ws", &[("authorization", "Bearer nope")]).await.expect_err("refused");
    let (status, _, body) = refusal(error);
    assert_eq!((status, body), (401, json!({"error": "unauthorized", "message": "bad token"})));
    let (status, _, body) = refusal(try_connect_with(&server, "/ws", &[]).await.expect_err("refused"));
    assert_eq!((status, &body["error"]), (401, &json!("unauthorized")));
    // The relay endpoint authenticates the same way.
    let (status, _, _) = refusal(try_connect_with(&server, "/relay/r", &[]).await.expect_err("refused"));
    assert_eq!(status, 401);
}

async fn an_unavailable_authenticator_gives_503() {
    let server = TestServer::start(auth_config()).await;
    let (status, retry_after, body) =
        refusal(try_connect_with(&server, "/ws?token=down", &[]).await.expect_err("refused"));
    assert_eq!((status, retry_after.as_deref(), &body["error"]), (503, Some("5"), &json!("unavailable")));
}

async fn a_foreign_origin_is_refused_with_403() {
    let server = TestServer::start(TransportConfig::default()).await;
    let error = try_connect_with(&server, "/ws", &[("origin", "http://evil.example")]).await.expect_err("refused");
    let (status, _, body) = refusal(error);
    assert_eq!((status, body), (403, json!({"error": "forbidden", "message": "origin not allowed"})));
    // The same host is allowed by default.
    let same = format!("http://{}", server.addr);
    assert!(try_connect_with(&server, "/ws", &[("origin", &same)]).await.is_ok());

    let listed = TransportConfig::default().allowed_origins(vec!["https://app.example".into()]);
    let server = TestServer::start(listed).await;
    assert!(try_connect_with(&server, "/ws", &[("origin", "https://app.example")]).await.is_ok());
    let error = try_connect_with(&server, "/ws", &[("origin", &format!("http://{}", server.addr))]).await;
    assert_eq!(refusal(error.expect_err("not on the list")).0, 403);
}

async fn the_global_cap_refuses_with_503_and_retry_after_until_a_slot_frees() {
    let server = TestServer::start(TransportConfig::default().max_connections(1)).await;
    let first = connect(&server, "/ws").await;
    let (status, retry_after, body) = refusal(try_connect_with(&server, "/ws", &[]).await.expect_err("refused"));
    assert_eq!((status, retry_after.as_deref()), (503, Some("5")));
    assert_eq!(body, json!({"error": "overloaded", "message": "the server is at its connection limit"}));
    drop(first);
    // The slot frees once the server sees the connection end.
    let deadline = tokio::time::Instant::now() + GUARD;
    while try_connect_with(&server, "/ws", &[]).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn the_per_ip_cap_refuses_with_503() {
    let server = TestServer::start(TransportConfig::default().max_connections_per_ip(2)).await;
    let _a = connect(&server, "/ws").await;
    let _b = connect(&server, "/relay/room").await;
    let (status, retry_after, body) = refusal(try_connect_with(&server, "/ws", &[]).await.expect_err("refused"));
    assert_eq!((status, retry_after.is_some()), (503, true));
    assert_eq!(body["message"], "too many connections from this address");
}

async fn a_slow_partial_handshake_is_dropped() {
    let config = TransportConfig::default().handshake_timeout(Duration::from_millis(500));
    let server = TestServer::start(config).await;
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    // Half a request head, and then nothing.
    stream.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n").await.expect("write");
    let mut buf = Vec::new();
    let read = tokio::time::timeout(GUARD, stream.read_to_end(&mut buf)).await.expect("the server drops it");
    assert!(read.is_err() || !String::from_utf8_lossy(&buf).contains("101"), "no upgrade: {buf:?}");
    // A connection that sends nothing at all is dropped too.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let n = tokio::time::timeout(GUARD, idle.read(&mut [0u8; 64])).await.expect("the server drops it");
    assert!(matches!(n, Ok(0) | Err(_)));
    // A prompt client still gets in.
    let _ = RawClient::connect(server.addr, "/ws").await;
}

async fn an_oversized_request_head_gets_431() {
    let server = TestServer::start(TransportConfig::default()).await;
    let big = "a".repeat(20 * 1024);
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Big: {big}\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let response = raw_http(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 431, "{}", response.head);
    // Within the limit, the same request upgrades.
    let server = TestServer::start(TransportConfig::default().max_header_bytes(32 * 1024)).await;
    let response = raw_http(server.addr, request.as_bytes()).await;
    assert_eq!(response.status, 101, "{}", response.head);
}

common::on_both_runtimes!(
    a_valid_token_from_header_or_query_authenticates,
    a_bad_or_missing_token_is_refused_with_401,
    an_unavailable_authenticator_gives_503,
    a_foreign_origin_is_refused_with_403,
    the_global_cap_refuses_with_503_and_retry_after_until_a_slot_frees,
    the_per_ip_cap_refuses_with_503,
    a_slow_partial_handshake_is_dropped,
    an_oversized_request_head_gets_431,
);
