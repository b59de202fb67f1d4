//! Client-to-server commands: the types, the decoder and an encoder for clients.

use std::borrow::Cow;

use bytes::Bytes;

use crate::channel::ChannelName;
use crate::error::DecodeError;
use crate::json::{Json, MAX_DEPTH};
use crate::scan::{self, NotObject};
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

impl ClientFrame {
    /// Decodes one client text frame.
    ///
    /// # Errors
    /// [`DecodeFailure`] carries the error to reply with and the `id` when it was readable.
    pub fn decode(frame: &[u8]) -> Result<Self, DecodeFailure> {
        Self::decode_in(frame, None)
    }

    /// Decodes one client text frame held in shared bytes, as [`Self::decode`] does, but an `echo`'s `data`
    /// is a slice of `frame` instead of a copy: it keeps `frame`'s whole buffer alive, so reply with it and
    /// drop it. A `publish`'s `data` is still copied, because a publication is kept (in history, in a queue).
    ///
    /// # Errors
    /// As [`Self::decode`].
    pub fn decode_shared(frame: &Bytes) -> Result<Self, DecodeFailure> {
        Self::decode_in(frame, Some(frame))
    }

    fn decode_in(frame: &[u8], shared: Option<&Bytes>) -> Result<Self, DecodeFailure> {
        let fail = |id, error| Err(DecodeFailure { id, error });
        let fields = match Fields::scan(frame) {
            Ok(fields) => fields,
            Err(error) => return fail(None, error),
        };
        let id = match fields.id.map(read_id).transpose() {
            Ok(id) => id.flatten(),
            Err(error) => return fail(None, error),
        };
        if fields.too_deep {
            return fail(id, DecodeError::TooDeep);
        }
        match fields.command(shared) {
            Ok(command) => Ok(ClientFrame { id, command }),
            Err(error) => fail(id, error),
        }
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

/// The top-level fields of a command frame, each as the raw text the client sent.
///
/// The scanner (`scan.rs`) validates the whole frame in one pass without recursion, whatever its depth, and
/// reports each value's depth, so `too_deep` can still be answered with the frame's `id`. Fields the protocol
/// does not know are validated and skipped. A repeated key keeps its first value.
#[derive(Default)]
struct Fields<'a> {
    kind: Option<&'a [u8]>,
    id: Option<&'a [u8]>,
    channel: Option<&'a [u8]>,
    data: Option<&'a [u8]>,
    recover: Option<&'a [u8]>,
    since: Option<&'a [u8]>,
    limit: Option<&'a [u8]>,
    idempotency_key: Option<&'a [u8]>,
    too_deep: bool,
}

impl<'a> Fields<'a> {
    fn scan(frame: &'a [u8]) -> Result<Self, DecodeError> {
        let mut object = match scan::Object::new(frame) {
            Ok(object) => object,
            Err(NotObject::NotJson) => return Err(DecodeError::NotJson),
            // Valid JSON of another shape.
            Err(NotObject::Other { depth }) if depth > MAX_DEPTH => return Err(DecodeError::TooDeep),
            Err(NotObject::Other { .. }) => return Err(DecodeError::NotObject),
        };
        let mut fields = Fields::default();
        while let Some(member) = object.next_member()? {
            fields.too_deep |= member.depth > MAX_DEPTH;
            // A key is matched as it was sent; only one with an escape in it is unescaped first.
            let raw_key = &member.key[1..member.key.len() - 1];
            let unescaped = if raw_key.contains(&b'\\') { string(member.key) } else { None };
            let slot = match unescaped.as_deref().map_or(raw_key, str::as_bytes) {
                b"type" => &mut fields.kind,
                b"id" => &mut fields.id,
                b"channel" => &mut fields.channel,
                b"data" => &mut fields.data,
                b"recover" => &mut fields.recover,
                b"since" => &mut fields.since,
                b"limit" => &mut fields.limit,
                b"idempotency_key" => &mut fields.idempotency_key,
                _ => continue,
            };
            slot.get_or_insert(member.value);
        }
        Ok(fields)
    }
}

/// The text of a raw value that is a JSON string, unescaped; `None` when it is another kind of value. The raw
/// value has been validated (UTF-8 included).
fn string(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    // Validated JSON: a string without a backslash is its own text.
    if !inner.contains(&b'\\') {
        return std::str::from_utf8(inner).ok().map(Cow::Borrowed);
    }
    serde_json::from_slice(raw).ok()
}

/// A validated raw value's text.
fn text(raw: &[u8]) -> &str {
    std::str::from_utf8(raw).unwrap_or_default()
}

fn is_null(raw: &[u8]) -> bool {
    raw == b"null"
}

/// The field when it is present and not `null`.
fn present(raw: Option<&[u8]>) -> Option<&[u8]> {
    raw.filter(|r| !is_null(r))
}

fn read_id(raw: &[u8]) -> Result<Option<CommandId>, DecodeError> {
    if is_null(raw) {
        return Ok(None);
    }
    if let Some(s) = string(raw) {
        if s.len() > MAX_ID_LEN {
            return Err(DecodeError::BadId);
        }
        return Ok(Some(CommandId::Str(s.into())));
    }
    // JSON integers are a subset of what `parse` reads; a fraction or an exponent fails, as it should.
    text(raw).parse::<i64>().map(|n| Some(CommandId::Int(n))).map_err(|_| DecodeError::BadId)
}

impl Fields<'_> {
    fn command(&self, shared: Option<&Bytes>) -> Result<Command, DecodeError> {
        let kind = self.kind.ok_or(DecodeError::Missing("type"))?;
        let kind = string(kind).ok_or(DecodeError::WrongType { field: "type", expected: "a string" })?;
        Ok(match &*kind {
            "subscribe" => Command::Subscribe { channel: self.channel()?, recover: position(self.recover, "recover")? },
            "unsubscribe" => Command::Unsubscribe { channel: self.channel()? },
            "publish" => Command::Publish {
                channel: self.channel()?,
                data: self.data(None)?,
                idempotency_key: self.idempotency_key()?,
            },
            "ping" => Command::Ping,
            "presence" => Command::Presence { channel: self.channel()? },
            "history" => Command::History {
                channel: self.channel()?,
                limit: optional_u32(self.limit, "limit")?,
                since: position(self.since, "since")?,
            },
            // The reply is written from it at once: it may share the frame's buffer.
            "echo" => Command::Echo { data: self.data(shared)? },
            "status" => Command::Status,
            other if other.len() > MAX_TYPE_LEN => return Err(DecodeError::TypeTooLong),
            other => Command::Custom { kind: other.into() },
        })
    }

    fn channel(&self) -> Result<ChannelName, DecodeError> {
        let raw = self.channel.ok_or(DecodeError::Missing("channel"))?;
        let s = string(raw).ok_or(DecodeError::WrongType { field: "channel", expected: "a string" })?;
        ChannelName::new(&s).map_err(DecodeError::BadChannel)
    }

    /// `data` exactly as the client wrote it (the scanner validated it): a slice of `shared` when given, the
    /// frame the fields were scanned from, else a copy.
    fn data(&self, shared: Option<&Bytes>) -> Result<Json, DecodeError> {
        let raw = self.data.ok_or(DecodeError::Missing("data"))?;
        Ok(Json::from_trusted(match shared {
            Some(frame) => frame.slice_ref(raw),
            None => Bytes::copy_from_slice(raw),
        }))
    }

    fn idempotency_key(&self) -> Result<Option<Box<str>>, DecodeError> {
        const WRONG: DecodeError =
            DecodeError::WrongType { field: "idempotency_key", expected: "a string of 1 to 64 bytes" };
        let Some(raw) = present(self.idempotency_key) else { return Ok(None) };
        match string(raw) {
            Some(s) if !s.is_empty() && s.len() <= MAX_IDEMPOTENCY_KEY_LEN => Ok(Some(s.into())),
            _ => Err(WRONG),
        }
    }
}

fn optional_u32(raw: Option<&[u8]>, field: &'static str) -> Result<Option<u32>, DecodeError> {
    let Some(raw) = present(raw) else { return Ok(None) };
    text(raw).parse::<u32>().map(Some).map_err(|_| DecodeError::WrongType { field, expected: "a non-negative integer" })
}

fn position(raw: Option<&[u8]>, field: &'static str) -> Result<Option<StreamPosition>, DecodeError> {
    #[derive(serde::Deserialize)]
    struct Raw<'a> {
        #[serde(borrow)]
        epoch: Cow<'a, str>,
        offset: u64,
    }
    let Some(raw) = present(raw) else { return Ok(None) };
    let wrong = DecodeError::WrongType { field, expected: "an object with string `epoch` and integer `offset`" };
    if !raw.starts_with(b"{") {
        return Err(wrong);
    }
    let pos: Raw<'_> = serde_json::from_slice(raw).map_err(|_| wrong)?;
    if pos.epoch.len() > MAX_ID_LEN {
        return Err(wrong);
    }
    Ok(Some(StreamPosition { epoch: pos.epoch.into_owned(), offset: pos.offset }))
}
