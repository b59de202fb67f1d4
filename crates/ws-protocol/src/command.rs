//! Client-to-server commands: the types, the simd-json decoder and an encoder for clients.

use std::cell::RefCell;

use bytes::Bytes;
use simd_json::prelude::*;
use simd_json::{Buffers, Tape};

use crate::channel::ChannelName;
use crate::error::DecodeError;
use crate::json::{check_depth, parse_error, Json};
use crate::writer::JsonWriter;

/// The longest string `id`, in bytes.
pub const MAX_ID_LEN: usize = 128;
/// The longest `type`, in bytes.
pub const MAX_TYPE_LEN: usize = 64;
/// The longest `idempotency_key` of a `publish`, in bytes.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 64;

/// A command's `id`: echoed in its reply so clients can match replies to requests.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CommandId {
    /// An integer id.
    Int(i64),
    /// A string id of at most [`MAX_ID_LEN`] bytes.
    Str(Box<str>),
}

impl serde::Serialize for CommandId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Int(n) => s.serialize_i64(*n),
            Self::Str(v) => s.serialize_str(v),
        }
    }
}

impl<'de> serde::Deserialize<'de> for CommandId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Str(String),
        }
        Ok(match Raw::deserialize(d)? {
            Raw::Int(n) => Self::Int(n),
            Raw::Str(s) => Self::Str(s.into()),
        })
    }
}

/// A position in a channel's stream: the epoch and the last offset seen.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct StreamPosition {
    /// The epoch the offset belongs to.
    pub epoch: String,
    /// The last offset seen.
    pub offset: u64,
}

/// One decoded client command, without its `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// `subscribe`, optionally recovering after a stream position.
    Subscribe {
        /// The channel.
        channel: ChannelName,
        /// Where the client left off, for recovery.
        recover: Option<StreamPosition>,
    },
    /// `unsubscribe`.
    Unsubscribe {
        /// The channel.
        channel: ChannelName,
    },
    /// `publish`.
    Publish {
        /// The channel.
        channel: ChannelName,
        /// The payload.
        data: Json,
        /// A repeat with the same key on the same channel within the server's idempotency window publishes
        /// nothing and answers the first offset (at most [`MAX_IDEMPOTENCY_KEY_LEN`] bytes).
        idempotency_key: Option<Box<str>>,
    },
    /// `ping`.
    Ping,
    /// `presence`.
    Presence {
        /// The channel.
        channel: ChannelName,
    },
    /// `history`.
    History {
        /// The channel.
        channel: ChannelName,
        /// At most this many messages.
        limit: Option<u32>,
        /// Only messages after this position.
        since: Option<StreamPosition>,
    },
    /// `echo`.
    Echo {
        /// The payload to send back.
        data: Json,
    },
    /// `status`.
    Status,
    /// A `type` this protocol does not define: an application handler may claim it.
    Custom {
        /// The `type`.
        kind: Box<str>,
    },
}

impl Command {
    /// The wire `type` of the command.
    #[must_use]
    pub fn kind(&self) -> &str {
        match self {
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe { .. } => "unsubscribe",
            Self::Publish { .. } => "publish",
            Self::Ping => "ping",
            Self::Presence { .. } => "presence",
            Self::History { .. } => "history",
            Self::Echo { .. } => "echo",
            Self::Status => "status",
            Self::Custom { kind } => kind,
        }
    }
}

/// A client frame: a command and its optional `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The `id`, echoed in the reply.
    pub id: Option<CommandId>,
    /// The command.
    pub command: Command,
}

/// A frame that could not be decoded, with the `id` when it could be read, so
/// the error reply still echoes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeFailure {
    /// The frame's `id`, when it was present and valid.
    pub id: Option<CommandId>,
    /// What is wrong.
    pub error: DecodeError,
}

struct Scratch {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Tape<'static>,
}

thread_local! {
    // Decoding reuses one parse buffer and one tape per thread, so a steady
    // stream of commands allocates only for the strings it keeps.
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch {
        input: Vec::new(),
        buffers: Buffers::default(),
        tape: Tape::null(),
    });
}

impl ClientFrame {
    /// Decodes one client text frame.
    ///
    /// # Errors
    /// [`DecodeFailure`] carries the error to reply with and the `id` when it was readable.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeFailure> {
        SCRATCH.with(|cell| {
            let mut guard = cell.borrow_mut();
            let Scratch { input, buffers, tape } = &mut *guard;
            input.clear();
            input.extend_from_slice(frame);
            let mut parsed = std::mem::replace(tape, Tape::null()).reset();
            let result = match simd_json::fill_tape(input, buffers, &mut parsed) {
                Ok(()) => decode_tape(&parsed),
                Err(e) => Err(DecodeFailure { id: None, error: parse_error(&e) }),
            };
            *tape = parsed.reset();
            result
        })
    }

    /// Encodes the frame as JSON text, as a client sends it.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        let mut w = JsonWriter::object(self.command.kind());
        if let Some(id) = &self.id {
            w.id(id);
        }
        match &self.command {
            Command::Subscribe { channel, recover } => {
                w.str_field("channel", channel.as_str());
                if let Some(pos) = recover {
                    w.position("recover", pos);
                }
            }
            Command::Unsubscribe { channel } | Command::Presence { channel } => {
                w.str_field("channel", channel.as_str());
            }
            Command::Publish { channel, data, idempotency_key } => {
                w.str_field("channel", channel.as_str());
                w.raw_field("data", data.as_bytes());
                if let Some(key) = idempotency_key {
                    w.str_field("idempotency_key", key);
                }
            }
            Command::History { channel, limit, since } => {
                w.str_field("channel", channel.as_str());
                if let Some(limit) = limit {
                    w.u64_field("limit", u64::from(*limit));
                }
                if let Some(pos) = since {
                    w.position("since", pos);
                }
            }
            Command::Echo { data } => w.raw_field("data", data.as_bytes()),
            Command::Ping | Command::Status | Command::Custom { .. } => {}
        }
        w.finish()
    }
}

type Value<'t, 'i> = simd_json::tape::Value<'t, 'i>;

fn decode_tape(tape: &Tape<'_>) -> Result<ClientFrame, DecodeFailure> {
    let fail = |id: Option<CommandId>, error| Err(DecodeFailure { id, error });
    let root = tape.as_value();
    if root.as_object().is_none() {
        return fail(None, DecodeError::NotObject);
    }
    let id = match read_id(root) {
        Ok(id) => id,
        Err(error) => return fail(None, error),
    };
    // The root object is the first node of the tape; its fields are checked as
    // values of their own, so `data` may nest as deep as `Json::parse` allows.
    if let Err(error) = check_depth(&tape.0[1..]) {
        return fail(id, error);
    }
    match decode_command(root) {
        Ok(command) => Ok(ClientFrame { id, command }),
        Err(error) => fail(id, error),
    }
}

fn read_id(root: Value<'_, '_>) -> Result<Option<CommandId>, DecodeError> {
    let Some(v) = root.get("id") else { return Ok(None) };
    if v.is_null() {
        return Ok(None);
    }
    if let Some(s) = v.as_str() {
        if s.len() > MAX_ID_LEN {
            return Err(DecodeError::BadId);
        }
        return Ok(Some(CommandId::Str(s.into())));
    }
    v.as_i64().map(|n| Some(CommandId::Int(n))).ok_or(DecodeError::BadId)
}

fn decode_command(root: Value<'_, '_>) -> Result<Command, DecodeError> {
    let kind = match root.get("type") {
        None => return Err(DecodeError::Missing("type")),
        Some(v) => v.into_string().ok_or(DecodeError::WrongType { field: "type", expected: "a string" })?,
    };
    Ok(match kind {
        "subscribe" => Command::Subscribe { channel: channel(root)?, recover: position(root, "recover")? },
        "unsubscribe" => Command::Unsubscribe { channel: channel(root)? },
        "publish" => {
            Command::Publish { channel: channel(root)?, data: data(root)?, idempotency_key: idempotency_key(root)? }
        }
        "ping" => Command::Ping,
        "presence" => Command::Presence { channel: channel(root)? },
        "history" => Command::History {
            channel: channel(root)?,
            limit: optional_u32(root, "limit")?,
            since: position(root, "since")?,
        },
        "echo" => Command::Echo { data: data(root)? },
        "status" => Command::Status,
        other if other.len() > MAX_TYPE_LEN => return Err(DecodeError::TypeTooLong),
        other => Command::Custom { kind: other.into() },
    })
}

fn idempotency_key(root: Value<'_, '_>) -> Result<Option<Box<str>>, DecodeError> {
    const WRONG: DecodeError =
        DecodeError::WrongType { field: "idempotency_key", expected: "a string of 1 to 64 bytes" };
    match root.get("idempotency_key") {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY_LEN => Ok(Some(s.into())),
            _ => Err(WRONG),
        },
    }
}

fn channel(root: Value<'_, '_>) -> Result<ChannelName, DecodeError> {
    let v = root.get("channel").ok_or(DecodeError::Missing("channel"))?;
    let s = v.as_str().ok_or(DecodeError::WrongType { field: "channel", expected: "a string" })?;
    ChannelName::new(s).map_err(DecodeError::BadChannel)
}

fn data(root: Value<'_, '_>) -> Result<Json, DecodeError> {
    let v = root.get("data").ok_or(DecodeError::Missing("data"))?;
    let mut out = Vec::with_capacity(64);
    // Writing into a Vec cannot fail; the tape was depth-checked, so the
    // writer's recursion is bounded.
    v.write(&mut out).map_err(|_| DecodeError::NotJson)?;
    Ok(Json::from_trusted(Bytes::from(out)))
}

fn optional_u32(root: Value<'_, '_>, field: &'static str) -> Result<Option<u32>, DecodeError> {
    match root.get(field) {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v.as_u32().map(Some).ok_or(DecodeError::WrongType { field, expected: "a non-negative integer" }),
    }
}

fn position(root: Value<'_, '_>, field: &'static str) -> Result<Option<StreamPosition>, DecodeError> {
    let Some(v) = root.get(field) else { return Ok(None) };
    if v.is_null() {
        return Ok(None);
    }
    let expected = "an object with string `epoch` and integer `offset`";
    let wrong = DecodeError::WrongType { field, expected };
    if v.as_object().is_none() {
        return Err(wrong);
    }
    let epoch = v.get("epoch").and_then(ValueIntoString::into_string).ok_or(wrong)?;
    let offset = v.get("offset").and_then(|o| o.as_u64()).ok_or(wrong)?;
    if epoch.len() > MAX_ID_LEN {
        return Err(wrong);
    }
    Ok(Some(StreamPosition { epoch: epoch.to_owned(), offset }))
}
