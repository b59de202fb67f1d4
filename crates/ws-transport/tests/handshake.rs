//! The upgrade: authentication, origin policy, connection caps, and the handshake limits (timeout, header
//! size), each checked by its exact HTTP status and body over a real socket; every refusal reported to the hooks.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::{connect, next_json, raw_http, refusal, try_connect_with, RawClient, TestServer, GUARD};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use ws_core::{AuthError, AuthRequest, Authenticator, Hooks, Hub, Identity, RefusalReason, UpgradeRefusal};
use ws_transport::{SystemClock, TransportConfig};

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

/// Hooks that record every refused upgrade.
#[derive(Debug, Default)]
struct Refusals(parking_lot::Mutex<Vec<UpgradeRefusal>>);

impl Hooks for Refusals {
    fn on_upgrade_refused(&self, refusal: &UpgradeRefusal) {
        self.0.lock().push(refusal.clone());
    }
}

impl Refusals {
    fn take(&self) -> Vec<UpgradeRefusal> {
        std::mem::take(&mut *self.0.lock())
    }
}

/// Sends a raw upgrade request for `target` with `extra` header lines; returns the status and the client's
/// own address, which the server sees as the peer.
async fn raw_upgrade(addr: SocketAddr, target: &str, extra: &str) -> (u16, SocketAddr) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let local = stream.local_addr().unwrap();
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        let n = tokio::time::timeout(GUARD, stream.read(&mut byte)).await.expect("a status line in time").unwrap();
        assert_eq!(n, 1, "the server closed before answering");
        head.push(byte[0]);
    }
    let status = String::from_utf8_lossy(&head).split(' ').nth(1).unwrap().parse().unwrap();
    (status, local)
}

async fn every_refused_upgrade_reaches_the_hooks_with_its_reason_peer_and_path_but_never_the_token() {
    const SECRET: &str = "s3cret-token-0123";
    let hooks = Arc::new(Refusals::default());
    let hub = Hub::builder(Arc::new(SystemClock)).hooks(hooks.clone()).build();
    let config = auth_config().allowed_origins(vec!["https://app.example".into()]).max_connections_per_ip(1);
    let server = TestServer::with_hub(hub, config).await;
    let v13 = "Sec-WebSocket-Version: 13\r\n";
    let cases: Vec<(String, String, u16, RefusalReason, &str)> = vec![
        (format!("/ws?token={SECRET}&x=1"), v13.into(), 401, RefusalReason::Unauthorized, "/ws"),
        (
            "/relay/room-1".into(),
            format!("Authorization: Bearer {SECRET}\r\n{v13}"),
            401,
            RefusalReason::Unauthorized,
            "/relay/room-1",
        ),
        ("/ws".into(), v13.into(), 401, RefusalReason::Unauthorized, "/ws"),
        ("/ws?token=down".into(), v13.into(), 503, RefusalReason::Unavailable, "/ws"),
        ("/ws?token=good".into(), format!("Origin: http://evil.example\r\n{v13}"), 403, RefusalReason::Origin, "/ws"),
        ("/ws?token=good".into(), "Sec-WebSocket-Version: 8\r\n".into(), 400, RefusalReason::BadRequest, "/ws"),
        ("/relay/bad%20room?token=good".into(), v13.into(), 400, RefusalReason::BadRequest, "/relay/bad%20room"),
    ];
    let mut seen = Vec::new();
    for (target, extra, status, reason, path) in &cases {
        let (got, local) = raw_upgrade(server.addr, target, extra).await;
        assert_eq!(got, *status, "{target}");
        let refusals = hooks.take();
        assert_eq!(refusals, vec![UpgradeRefusal::new(*reason, local, path)], "{target} {extra}");
        seen.extend(refusals);
    }
    // The per-address cap: one connection is in, the next is refused.
    let _in = connect(&server, "/ws?token=good").await;
    let (got, local) = raw_upgrade(server.addr, "/ws?token=good", v13).await;
    assert_eq!(got, 503);
    let refusals = hooks.take();
    assert_eq!(refusals, vec![UpgradeRefusal::new(RefusalReason::Capacity, local, "/ws")]);
    seen.extend(refusals);
    // Nothing the hooks were given carries the token, though two of the requests did.
    assert!(!format!("{seen:?}").contains(SECRET), "{seen:?}");
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
    every_refused_upgrade_reaches_the_hooks_with_its_reason_peer_and_path_but_never_the_token,
);
