//! Fuzz target `envelope`: ws-redis's envelope decoder on any bytes, and the round trip of the envelopes nodes send.
//!
//! The input is decoded twice over: as bytes a node receives from Redis, and (through `arbitrary`) as the node ids,
//! clients and control commands of a join/leave and a control envelope.
//! Checked: decoding never panics; accepted publications are at least one, each with valid JSON data, and their
//! offsets (and the one after the last) fit in a `u64`; and what one node encodes another decodes to the same value,
//! while its origin drops it as its own echo.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use ws_core::{ConnId, Control};
use ws_protocol::{ClientInfo, Json};
use ws_redis::fuzzing::{decode_envelope, encode_control, encode_join_leave, DecodedEnvelope};

fuzz_target!(|input: &[u8]| {
    if let Ok(DecodedEnvelope::Publications { offset, items, .. }) = decode_envelope(input, "node-b") {
        assert!(!items.is_empty(), "an envelope of no publications");
        // The pub/sub task numbers them with `offset..`, which steps one past the last.
        let past_last = offset.checked_add(items.len() as u64);
        assert!(past_last.is_some(), "{} publications from offset {offset} overflow", items.len());
        for (_, data) in &items {
            assert!(Json::parse(data.as_bytes().to_vec()).is_ok(), "publication data {data} is not valid JSON");
        }
    }
    let _ = round_trip(&mut Unstructured::new(input));
});

/// Encodes a join/leave and a control envelope from `u` as one node, and decodes them as another and as itself.
fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let origin: String = u.arbitrary()?;
    let other: String = u.arbitrary()?;
    let client = ClientInfo { conn_id: u.arbitrary()?, user_id: u.arbitrary()? };
    let joined: bool = u.arbitrary()?;
    let text = encode_join_leave(&origin, joined, &client);
    check_decodes(&text, &origin, &other, &DecodedEnvelope::JoinLeave { joined, client });

    let command = match u.int_in_range(0..=3u8)? {
        0 => Control::DisconnectUser { user_id: u.arbitrary()?, code: u.arbitrary()?, reason: u.arbitrary()? },
        1 => Control::DisconnectConn {
            conn_id: ConnId::new(u.arbitrary()?),
            code: u.arbitrary()?,
            reason: u.arbitrary()?,
        },
        2 => Control::SendToUser { user_id: u.arbitrary()?, frame: Bytes::from(u.arbitrary::<Vec<u8>>()?) },
        _ => Control::Broadcast { frame: Bytes::from(u.arbitrary::<Vec<u8>>()?) },
    };
    let frame = match &command {
        Control::SendToUser { frame, .. } | Control::Broadcast { frame } => Some(frame),
        _ => None,
    };
    match encode_control(&origin, &command) {
        Some(text) => check_decodes(&text, &origin, &other, &DecodedEnvelope::Control(command)),
        // Frames travel as JSON strings, so only text frames can; the hub only sends text.
        None => assert!(frame.is_some_and(|f| std::str::from_utf8(f).is_err()), "{command:?} was not encoded"),
    }
    Ok(())
}

fn check_decodes(text: &str, origin: &str, other: &str, want: &DecodedEnvelope) {
    if other != origin {
        assert_eq!(decode_envelope(text.as_bytes(), other).as_ref(), Ok(want), "node {origin:?} sent {text}");
    }
    assert_eq!(decode_envelope(text.as_bytes(), origin), Err("own_echo"), "node {origin:?} sent {text}");
}
