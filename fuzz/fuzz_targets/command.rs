//! Fuzz target `command`: `ClientFrame::decode` on any bytes, and the round trip of what it accepts.
//!
//! Checked for every input: decoding never panics and gives the same answer twice (it reuses a per-thread tape);
//! a failure echoes only a valid `id`; an accepted frame holds a valid channel name and valid JSON `data`, and its
//! client encoding decodes back to the same frame. The command scanner and `Json::parse` are our own code, so their
//! verdicts are held to serde_json's: nothing serde_json refuses is accepted, and valid JSON no deeper than the
//! limit (with strings that are Unicode) is not refused.

#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::IgnoredAny;
use serde_json::Value;
use ws_protocol::{ChannelName, ClientFrame, Command, CommandId, ErrorCode, Json, MAX_ID_LEN, MAX_TYPE_LEN};

fuzz_target!(|input: &[u8]| {
    check_json_verdict(input);
    let decoded = ClientFrame::decode(input);
    assert_eq!(ClientFrame::decode(input), decoded, "decoding the same frame twice differs");
    match decoded {
        Ok(frame) => {
            assert!(serde_json::from_slice::<IgnoredAny>(input).is_ok(), "accepted a frame serde_json refuses");
            check_accepted(&frame);
        }
        Err(failure) => {
            check_id(failure.id.as_ref());
            assert_eq!(failure.error.code(), ErrorCode::BadRequest);
            assert!(!failure.error.to_string().is_empty());
        }
    }
});

fn check_accepted(frame: &ClientFrame) {
    check_id(frame.id.as_ref());
    match &frame.command {
        Command::Subscribe { channel, .. }
        | Command::Unsubscribe { channel }
        | Command::Presence { channel }
        | Command::History { channel, .. } => check_channel(channel),
        Command::Publish { channel, data, idempotency_key } => {
            check_channel(channel);
            check_json(data);
            if let Some(key) = idempotency_key {
                assert!((1..=64).contains(&key.len()), "idempotency key of {} bytes", key.len());
            }
        }
        Command::Echo { data } => check_json(data),
        Command::Custom { kind } => assert!(kind.len() <= MAX_TYPE_LEN, "type of {} bytes", kind.len()),
        _ => {}
    }
    let encoded = frame.encode();
    match ClientFrame::decode(&encoded) {
        Ok(again) => assert_eq!(&again, frame, "re-encoded as {}", String::from_utf8_lossy(&encoded)),
        Err(failure) => panic!("re-encoded frame {} fails: {failure:?}", String::from_utf8_lossy(&encoded)),
    }
}

fn check_id(id: Option<&CommandId>) {
    if let Some(CommandId::Str(id)) = id {
        assert!(id.len() <= MAX_ID_LEN, "id of {} bytes", id.len());
    }
}

fn check_channel(channel: &ChannelName) {
    assert!(ChannelName::new(channel.as_str()).is_ok(), "invalid channel {channel:?}");
}

fn check_json(data: &Json) {
    if let Err(error) = Json::parse(data.as_bytes().to_vec()) {
        panic!("data {data} is not valid JSON: {error}");
    }
}

/// `Json::parse` against serde_json: never more permissive than its syntax check, and never stricter than its full
/// parse (which decodes strings, so refuses lone surrogates, and refuses numbers out of `f64` range) within the
/// depth limit.
fn check_json_verdict(input: &[u8]) {
    let ours = Json::parse(input.to_vec()).is_ok();
    if ours {
        assert!(serde_json::from_slice::<IgnoredAny>(input).is_ok(), "Json::parse accepted what serde_json refuses");
    }
    if let Ok(value) = serde_json::from_slice::<Value>(input) {
        if depth(&value) <= ws_protocol::MAX_DEPTH {
            assert!(ours, "Json::parse refused valid JSON serde_json reads");
        }
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}
