//! Fuzz target `command`: `ClientFrame::decode` on any bytes, and the round trip of what it accepts.
//!
//! Checked for every input: decoding never panics and gives the same answer twice (it reuses a per-thread tape);
//! a failure echoes only a valid `id`; an accepted frame holds a valid channel name and valid JSON `data`, and its
//! client encoding decodes back to the same frame.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ws_protocol::{ChannelName, ClientFrame, Command, CommandId, ErrorCode, Json, MAX_ID_LEN, MAX_TYPE_LEN};

fuzz_target!(|input: &[u8]| {
    let decoded = ClientFrame::decode(input);
    assert_eq!(ClientFrame::decode(input), decoded, "decoding the same frame twice differs");
    match decoded {
        Ok(frame) => check_accepted(&frame),
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
