//! Wire types and the JSON codec of the ws-hub protocol, version 1.
//!
//! This crate does no IO. Client commands are decoded into [`ClientFrame`]s whose
//! errors map onto the protocol's error codes and name the field at fault; server
//! messages are encoded straight into [`bytes::Bytes`], once, so a publication's
//! frame can be shared by every subscriber.
//!
//! A command's `data` is never re-encoded: after validation (JSON, Unicode, at most
//! [`MAX_DEPTH`] levels deep) it is passed on byte for byte as the publisher wrote
//! it, from a client's frame or a backend's API request alike, so integers beyond
//! 64 bits, `1e400`, escapes and key order reach every subscriber unchanged.
//! (simd-json is not used for this reason: it refuses numbers outside the 64-bit
//! and `f64` ranges, and it would have to re-encode what it parsed.)
//!
//! ```
//! use ws_protocol::{ChannelName, ClientFrame, Command, Json, ServerMessage, encode_message};
//!
//! let frame = ClientFrame::decode(br#"{"type":"publish","id":7,"channel":"chat:lobby","data":{"text":"hi"}}"#)
//!     .expect("a valid command");
//! let Command::Publish { channel, data, .. } = frame.command else { panic!("not a publish") };
//! assert_eq!(channel.namespace(), "chat");
//!
//! // The hub encodes the `message` frame once and shares the bytes.
//! let bytes = encode_message(&channel, 1, None, &data);
//! assert_eq!(&bytes[..], br#"{"type":"message","channel":"chat:lobby","offset":1,"data":{"text":"hi"}}"#);
//!
//! // Clients decode it back.
//! let ServerMessage::Message(p) = ServerMessage::decode(&bytes).unwrap() else { panic!() };
//! assert_eq!(p.data, Json::parse(r#"{"text":"hi"}"#).unwrap());
//!
//! // A malformed command names the field at fault.
//! let err = ClientFrame::decode(br#"{"type":"subscribe","id":"a","channel":"bad name"}"#).unwrap_err();
//! assert_eq!(err.error.to_string(), "field `channel` is invalid: channel name has a character outside A-Z a-z 0-9 _ - . : @ / = #");
//! ```
//!
//! # Process streaming
//!
//! A process's output and state go to its channel `process:{id}` as `message` frames with an `event`:
//!
//! | `event` | `data` |
//! | --- | --- |
//! | `process_output` | `{"line": string, "stream": "stdout" \| "stderr"}`, one line without its line ending, at most 64 KiB |
//! | `process_status` | `{"state": "running" \| "exited" \| "failed", "code": number, "reason": string, "at_ms": number}`; `code` (the exit code) and `reason` only when known; `at_ms` is the wall-clock time of the change in Unix milliseconds, from the server |
//!
//! Clients decode `data` into [`ProcessOutput`] and [`ProcessStatus`]; backends build a ready publication with
//! [`ProcessEvent`] (the hub's `send_process_output` and `send_process_status` do it for them, and `ws-server`
//! takes `POST /api/process/{id}/output` and `/status`). In `ws-server`'s default configuration the `process`
//! namespace keeps recent output as history, so a client that joins late asks `history` for it, and only
//! backends may publish there.

mod channel;
mod command;
mod error;
mod json;
mod process;
mod scan;
mod server;
mod writer;

pub use channel::{validate as validate_channel, ChannelName, ChannelNameError, MAX_CHANNEL_LEN};
pub use command::{
    ClientFrame, Command, CommandId, DecodeFailure, StreamPosition, MAX_IDEMPOTENCY_KEY_LEN, MAX_ID_LEN, MAX_TYPE_LEN,
};
pub use error::{DecodeError, ErrorCode};
pub use json::{Json, MAX_DEPTH};
pub use process::{
    process_channel, ProcessError, ProcessEvent, ProcessOutput, ProcessState, ProcessStatus, ProcessStream,
    MAX_PROCESS_ID_BYTES, MAX_PROCESS_LINE_BYTES, MAX_PROCESS_REASON_BYTES, PROCESS_NAMESPACE, PROCESS_OUTPUT_EVENT,
    PROCESS_STATUS_EVENT,
};
pub use server::{
    encode_message, ClientInfo, Publication, ServerDecodeError, ServerMessage, UnsubscribeReason, PROTOCOL_VERSION,
};

/// WebSocket close codes of the protocol (PROTOCOL.md, "Close codes").
pub mod close {
    /// Normal close.
    pub const NORMAL: u16 = 1000;
    /// Server going away (shutdown or drain).
    pub const GOING_AWAY: u16 = 1001;
    /// Protocol error.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// Text frame not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// Policy: token expired, or kicked by the API.
    pub const POLICY: u16 = 1008;
    /// Message over the size limit.
    pub const TOO_BIG: u16 = 1009;
    /// Server fault.
    pub const INTERNAL: u16 = 1011;
    /// Server overloaded.
    pub const OVERLOADED: u16 = 1013;
    /// Slow consumer: the send queue overflowed.
    pub const SLOW_CONSUMER: u16 = 4000;
    /// Heartbeat timeout.
    pub const HEARTBEAT_TIMEOUT: u16 = 4001;
    /// Rate limit abused repeatedly.
    pub const RATE_LIMITED: u16 = 4003;
    /// Disconnected by the application (`POST /api/disconnect`): do not reconnect on its own.
    pub const APP_DISCONNECT: u16 = 4004;
}
