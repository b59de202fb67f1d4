//! Every per-message limit and protocol rule, each broken over a real socket by a raw-frame client and checked
//! by the exact close code the server sends.

mod common;

use common::{RawClient, TestServer};
use serde_json::{json, Value};
use ws_transport::{RateLimit, TransportConfig};

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A raw client on `/ws` past its welcome.
async fn client(server: &TestServer) -> RawClient {
    let mut client = RawClient::connect(server.addr, "/ws").await;
    let welcome = client.read_frame().await.expect("welcome");
    assert_eq!(welcome.opcode, TEXT);
    client
}

/// The next text frame, parsed.
async fn next_json(client: &mut RawClient) -> Value {
    loop {
        let frame = client.read_frame().await.expect("a frame");
        if frame.opcode == TEXT {
            return serde_json::from_slice(&frame.payload).expect("JSON");
        }
    }
}

/// Reads to the close frame and returns its code.
async fn close_code(client: &mut RawClient) -> Option<u16> {
    client.read_close().await.0
}

fn small_limits() -> TransportConfig {
    TransportConfig::default().max_message_size(1024)
}

async fn a_single_frame_over_the_size_limit_closes_1009_from_its_header() {
    let server = TestServer::start(small_limits()).await;
    let mut c = client(&server).await;
    // Only the header of a 100,000-byte frame: the server must not wait for (or buffer) the payload.
    let frame = RawClient::frame(true, TEXT, &vec![b'a'; 100_000], true);
    c.send_raw(&frame[..14]).await;
    assert_eq!(close_code(&mut c).await, Some(1009));
}

async fn a_message_over_the_size_limit_across_fragments_closes_1009() {
    let server = TestServer::start(small_limits()).await;
    let mut c = client(&server).await;
    c.send(false, TEXT, &[b'a'; 800]).await;
    c.send(true, CONTINUATION, &[b'a'; 800]).await;
    assert_eq!(close_code(&mut c).await, Some(1009));
}

async fn the_fragment_cap_allows_128_and_closes_1009_past_it() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    // 128 fragments: the command, then 127 empty continuations.
    c.send(false, TEXT, br#"{"type":"ping","id":1}"#).await;
    for i in 1..128 {
        c.send(i == 127, CONTINUATION, b"").await;
    }
    assert_eq!(next_json(&mut c).await, json!({"type": "pong", "id": 1}));
    // 129 fragments.
    c.send(false, TEXT, br#"{"type":"ping","id":2}"#).await;
    for i in 1..129 {
        c.send(i == 128, CONTINUATION, b"").await;
    }
    assert_eq!(close_code(&mut c).await, Some(1009));
}

async fn an_unmasked_client_frame_closes_1002() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    c.send_raw(&RawClient::frame(true, TEXT, br#"{"type":"ping"}"#, false)).await;
    assert_eq!(close_code(&mut c).await, Some(1002));
}

async fn a_control_frame_over_125_bytes_closes_1002() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    c.send(true, PING, &[0; 126]).await;
    assert_eq!(close_code(&mut c).await, Some(1002));
}

async fn a_fragmented_control_frame_closes_1002() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    c.send(false, PING, b"a").await;
    assert_eq!(close_code(&mut c).await, Some(1002));
}

async fn reserved_bits_and_unknown_opcodes_close_1002() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    let mut frame = RawClient::frame(true, TEXT, b"{}", true);
    frame[0] |= 0x40;
    c.send_raw(&frame).await;
    assert_eq!(close_code(&mut c).await, Some(1002));

    let mut c = client(&server).await;
    c.send(true, 0x3, b"").await;
    assert_eq!(close_code(&mut c).await, Some(1002));
}

async fn invalid_utf8_closes_1007() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    c.send(true, TEXT, &[0xC3, 0x28]).await;
    assert_eq!(close_code(&mut c).await, Some(1007));
}

async fn invalid_utf8_split_across_fragments_closes_1007() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    // A character split across fragments is fine.
    let text = r#"{"type":"echo","id":1,"data":"€"}"#.as_bytes();
    let cut = text.iter().position(|&b| b == 0xE2).expect("the euro sign") + 1;
    c.send(false, TEXT, &text[..cut]).await;
    c.send(true, CONTINUATION, &text[cut..]).await;
    assert_eq!(next_json(&mut c).await, json!({"type": "echo", "id": 1, "data": "€"}));
    // The start of a 3-byte character, then a byte that cannot continue it.
    c.send(false, TEXT, &[b'"', 0xE2, 0x82]).await;
    c.send(true, CONTINUATION, &[0x28, b'"']).await;
    assert_eq!(close_code(&mut c).await, Some(1007));
}

async fn pings_get_pongs_and_a_close_gets_its_answer() {
    let server = TestServer::start(TransportConfig::default()).await;
    let mut c = client(&server).await;
    c.send(true, PING, b"hi").await;
    let pong = c.read_frame().await.expect("pong");
    assert_eq!((pong.opcode, pong.payload.as_slice()), (PONG, &b"hi"[..]));
    c.send(true, CLOSE, &[0x03, 0xE8]).await;
    assert_eq!(close_code(&mut c).await, Some(1000));
    assert!(c.read_frame().await.is_none(), "the server closes the TCP connection after the handshake");
}

async fn rate_limit_errors_then_closes_4003() {
    let config = TransportConfig::default().rate_limit(Some(RateLimit::new(1, 5).max_violations(3)));
    let server = TestServer::start(config).await;
    let mut c = client(&server).await;
    let burst: Vec<u8> = (0..20)
        .flat_map(|i| RawClient::frame(true, TEXT, json!({"type": "ping", "id": i}).to_string().as_bytes(), true))
        .collect();
    c.send_raw(&burst).await;
    let (code, texts) = c.read_close().await;
    let replies: Vec<Value> = texts.iter().map(|t| serde_json::from_str(t).expect("JSON")).collect();
    let pongs = replies.iter().filter(|r| r["type"] == "pong").count();
    let limited = replies.iter().filter(|r| r["type"] == "error" && r["code"] == "rate_limited").count();
    assert_eq!((pongs, limited), (5, 2), "{replies:?}");
    let disconnect = replies.last().expect("a disconnect notice");
    assert_eq!((&disconnect["type"], &disconnect["code"]), (&json!("disconnect"), &json!(4003)));
    assert_eq!(code, Some(4003));
}

async fn binary_frames_within_limits_pass_on_the_echo_endpoint() {
    let config = small_limits().echo_path(Some("/echo".into()));
    let server = TestServer::start(config).await;
    let mut c = RawClient::connect(server.addr, "/echo").await;
    c.send(false, BINARY, &[1; 500]).await;
    c.send(true, CONTINUATION, &[2; 524]).await;
    let echoed = c.read_frame().await.expect("echo");
    assert_eq!((echoed.opcode, echoed.payload.len()), (BINARY, 1024));
    c.send(true, BINARY, &[0; 1025]).await;
    assert_eq!(close_code(&mut c).await, Some(1009));
}

common::on_both_runtimes!(
    a_single_frame_over_the_size_limit_closes_1009_from_its_header,
    a_message_over_the_size_limit_across_fragments_closes_1009,
    the_fragment_cap_allows_128_and_closes_1009_past_it,
    an_unmasked_client_frame_closes_1002,
    a_control_frame_over_125_bytes_closes_1002,
    a_fragmented_control_frame_closes_1002,
    reserved_bits_and_unknown_opcodes_close_1002,
    invalid_utf8_closes_1007,
    invalid_utf8_split_across_fragments_closes_1007,
    pings_get_pongs_and_a_close_gets_its_answer,
    rate_limit_errors_then_closes_4003,
    binary_frames_within_limits_pass_on_the_echo_endpoint,
);
