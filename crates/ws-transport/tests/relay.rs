//! The relay endpoint: raw frames forwarded unchanged to the other members of a room, and only that room.

mod common;

use bytes::Bytes;
use common::{connect, next_message, raw_http, RawClient, TestServer};
use futures_util::SinkExt as _;
use tokio_tungstenite::tungstenite::Message;
use ws_transport::TransportConfig;

async fn frames_go_unchanged_to_the_other_members_of_the_room_only() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut a = connect(&server, "/relay/lobby").await;
    let mut b = connect(&server, "/relay/lobby").await;
    // A client is in its room once its handshake completes.
    let mut other = connect(&server, "/relay/elsewhere").await;

    a.send(Message::text("not json, and that is fine")).await.expect("send");
    a.send(Message::Binary(Bytes::from_static(&[0, 159, 146, 150]))).await.expect("send");
    // The first frame b sees is a's: no welcome on the relay.
    assert_eq!(next_message(&mut b).await, Message::text("not json, and that is fine"));
    assert_eq!(next_message(&mut b).await, Message::Binary(Bytes::from_static(&[0, 159, 146, 150])));

    b.send(Message::text("back")).await.expect("send");
    // a gets b's message and not its own.
    assert_eq!(next_message(&mut a).await, Message::text("back"));
    // The other room heard nothing: the next thing it sees is its own room's traffic.
    let mut other2 = connect(&server, "/relay/elsewhere").await;
    other2.send(Message::text("second room")).await.expect("send");
    assert_eq!(next_message(&mut other).await, Message::text("second room"));
}

async fn with_relay_echo_the_sender_gets_its_own_frames() {
    let server = TestServer::start(TransportConfig::default().relay_echo(true)).await;
    let mut a = connect(&server, "/relay/echo-room").await;
    a.send(Message::text("hello me")).await.expect("send");
    assert_eq!(next_message(&mut a).await, Message::text("hello me"));
}

async fn a_member_leaving_is_seen_by_no_one_and_the_room_carries_on() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut a = connect(&server, "/relay/r").await;
    let b = connect(&server, "/relay/r").await;
    drop(b);
    let mut c = connect(&server, "/relay/r").await;
    a.send(Message::text("ping")).await.expect("send");
    assert_eq!(next_message(&mut c).await, Message::text("ping"));
}

async fn the_relay_enforces_the_same_limits() {
    let server = TestServer::start(TransportConfig::default().max_message_size(100)).await;
    let mut raw = RawClient::connect(server.addr, "/relay/limits").await;
    raw.send(true, 0x1, &[b'a'; 101]).await;
    assert_eq!(raw.read_close().await.0, Some(1009));
    let mut raw = RawClient::connect(server.addr, "/relay/limits").await;
    raw.send_raw(&RawClient::frame(true, 0x2, b"unmasked", false)).await;
    assert_eq!(raw.read_close().await.0, Some(1002));
}

async fn a_bad_room_name_is_refused_before_the_upgrade() {
    let server = TestServer::start(TransportConfig::default()).await;
    let response = raw_http(server.addr, b"GET /relay/ HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 400);
    let response = raw_http(server.addr, b"GET /relay/a%20b HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(response.status, 400);
}

common::on_both_runtimes!(
    frames_go_unchanged_to_the_other_members_of_the_room_only,
    with_relay_echo_the_sender_gets_its_own_frames,
    a_member_leaving_is_seen_by_no_one_and_the_room_carries_on,
    the_relay_enforces_the_same_limits,
    a_bad_room_name_is_refused_before_the_upgrade,
);
