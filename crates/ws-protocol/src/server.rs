//! Server-to-client messages: the types, the encoder used by the hub and a serde_json decoder for clients.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::channel::ChannelName;
use crate::command::CommandId;
use crate::error::ErrorCode;
use crate::json::Json;
use crate::writer::JsonWriter;

/// The protocol version this crate speaks, sent in `welcome`.
pub const PROTOCOL_VERSION: u32 = 1;

/// Why the server dropped a subscription on its own (the unsolicited `unsubscribed` notice).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UnsubscribeReason {
    /// The node cannot prove it delivered every message (an offset skipped, the broker link broke) and could
    /// not fill the gap from history.
    InsufficientState,
    /// The connection may no longer read the channel.
    Forbidden,
    /// The channel was closed by the server.
    ChannelClosed,
}

impl UnsubscribeReason {
    /// The reason as it appears on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InsufficientState => "insufficient_state",
            Self::Forbidden => "forbidden",
            Self::ChannelClosed => "channel_closed",
        }
    }

    /// Parses a wire reason.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        [Self::InsufficientState, Self::Forbidden, Self::ChannelClosed].into_iter().find(|r| r.as_str() == s)
    }
}

/// One publication as it appears in a `message` frame and in `history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// The channel it was published on.
    pub channel: ChannelName,
    /// Its offset in the channel's stream, from 1.
    pub offset: u64,
    /// An application event name, such as `process_output`.
    pub event: Option<String>,
    /// The payload.
    pub data: Json,
}

impl Publication {
    /// Encodes the `message` frame for this publication.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        encode_message(&self.channel, self.offset, self.event.as_deref(), &self.data)
    }
}

/// The bytes of an `echo` reply besides its `id` and `data`: `{"type":"echo","data":` and `}`.
const ECHO_LEN: usize = 23;

/// The bytes an `id` field takes in a reply: exactly, unless its string needs escapes (then at most, each
/// character escaped as `\u00XX`).
fn id_len(id: Option<&CommandId>) -> usize {
    match id {
        None => 0,
        Some(CommandId::Int(n)) => 6 + itoa::Buffer::new().format(*n).len(),
        Some(CommandId::Str(s)) if JsonWriter::is_plain(s) => 8 + s.len(),
        Some(CommandId::Str(s)) => 8 + 6 * s.len(),
    }
}

/// Encodes a `message` frame once; fan-out shares the returned bytes.
#[must_use]
pub fn encode_message(channel: &ChannelName, offset: u64, event: Option<&str>, data: &Json) -> Bytes {
    let mut w = JsonWriter::object_with_capacity("message", 64 + channel.as_str().len() + data.len());
    w.str_field("channel", channel.as_str());
    w.u64_field("offset", offset);
    if let Some(event) = event {
        w.str_field("event", event);
    }
    w.raw_field("data", data.as_bytes());
    w.finish()
}

/// A connection as presence and join/leave events show it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
pub struct ClientInfo {
    /// The connection id.
    pub conn_id: String,
    /// The user id, `None` for anonymous connections.
    pub user_id: Option<String>,
}

/// Every message the server sends on `/ws`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// The first frame after the upgrade.
    Welcome {
        /// This connection's id.
        conn_id: String,
        /// The authenticated user, `None` when anonymous.
        user_id: Option<String>,
        /// How often the server pings, in milliseconds.
        heartbeat_ms: u64,
        /// The protocol version, [`PROTOCOL_VERSION`].
        version: u32,
    },
    /// A publication on a subscribed channel.
    Message(Publication),
    /// A client subscribed to a channel with join/leave events on.
    Join {
        /// The channel.
        channel: ChannelName,
        /// Who joined.
        client: ClientInfo,
    },
    /// A client left a channel with join/leave events on.
    Leave {
        /// The channel.
        channel: ChannelName,
        /// Who left.
        client: ClientInfo,
    },
    /// A command failed.
    Error {
        /// The failed command's id.
        id: Option<CommandId>,
        /// The error code.
        code: ErrorCode,
        /// What went wrong, for people.
        message: String,
    },
    /// Sent just before the server closes the connection on purpose.
    Disconnect {
        /// The close code that follows.
        code: u16,
        /// Why.
        reason: String,
        /// When the client should reconnect.
        reconnect_after_ms: u64,
    },
    /// Reply to `subscribe`.
    Subscribed {
        /// The command's id.
        id: Option<CommandId>,
        /// The channel.
        channel: ChannelName,
        /// The channel's epoch.
        epoch: String,
        /// The channel's latest offset.
        offset: u64,
        /// Whether recovery succeeded (present when `recover` was sent).
        recovered: Option<bool>,
        /// How many messages are replayed (present when `recover` was sent).
        missed: Option<u64>,
    },
    /// Reply to `unsubscribe` (with `reason: None`), or the unsolicited notice that the server dropped a
    /// subscription (no `id`, with a reason).
    Unsubscribed {
        /// The command's id.
        id: Option<CommandId>,
        /// The channel.
        channel: ChannelName,
        /// Why the server dropped the subscription; `None` in a reply.
        reason: Option<UnsubscribeReason>,
        /// Whether the client should subscribe again with `recover` (written only with a reason).
        resubscribe: bool,
    },
    /// Reply to `publish` with an id.
    Published {
        /// The command's id.
        id: Option<CommandId>,
        /// The channel.
        channel: ChannelName,
        /// The offset the message got.
        offset: u64,
    },
    /// Reply to `ping`.
    Pong {
        /// The command's id.
        id: Option<CommandId>,
    },
    /// Reply to `presence`.
    Presence {
        /// The command's id.
        id: Option<CommandId>,
        /// The channel.
        channel: ChannelName,
        /// Who is subscribed.
        clients: Vec<ClientInfo>,
    },
    /// Reply to `history`.
    History {
        /// The command's id.
        id: Option<CommandId>,
        /// The channel.
        channel: ChannelName,
        /// The channel's epoch.
        epoch: String,
        /// The channel's latest offset.
        offset: u64,
        /// The messages, oldest first.
        messages: Vec<Publication>,
    },
    /// Reply to `echo`.
    Echo {
        /// The command's id.
        id: Option<CommandId>,
        /// The data sent.
        data: Json,
    },
    /// Reply to `status`.
    Status {
        /// The command's id.
        id: Option<CommandId>,
        /// This connection's id.
        conn_id: String,
        /// The user id.
        user_id: Option<String>,
        /// The channels this connection is subscribed to.
        channels: Vec<ChannelName>,
        /// How long the connection has been open, in milliseconds.
        connected_ms: u64,
    },
}

impl ServerMessage {
    /// The wire `type`.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Welcome { .. } => "welcome",
            Self::Message(_) => "message",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Error { .. } => "error",
            Self::Disconnect { .. } => "disconnect",
            Self::Subscribed { .. } => "subscribed",
            Self::Unsubscribed { .. } => "unsubscribed",
            Self::Published { .. } => "published",
            Self::Pong { .. } => "pong",
            Self::Presence { .. } => "presence",
            Self::History { .. } => "history",
            Self::Echo { .. } => "echo",
            Self::Status { .. } => "status",
        }
    }

    /// Encodes the message as one JSON text frame.
    #[must_use]
    pub fn encode(&self) -> Bytes {
        if let Self::Message(p) = self {
            return p.encode();
        }
        let mut w = match self {
            // Room for the payload up front, so a large echo is copied once rather than regrown.
            // Sized exactly (for a plain `id`), so the buffer becomes the frame's `Bytes` without another allocation.
            Self::Echo { id, data } => {
                JsonWriter::object_with_capacity(self.kind(), ECHO_LEN + id_len(id.as_ref()) + data.len())
            }
            _ => JsonWriter::object(self.kind()),
        };
        match self {
            Self::Welcome { conn_id, user_id, heartbeat_ms, version } => {
                w.str_field("conn_id", conn_id);
                w.opt_str_field("user_id", user_id.as_deref());
                w.u64_field("heartbeat_ms", *heartbeat_ms);
                w.u64_field("version", u64::from(*version));
            }
            Self::Message(_) => {}
            Self::Join { channel, client } | Self::Leave { channel, client } => {
                w.str_field("channel", channel.as_str());
                w.begin_object("client");
                w.str_field_first("conn_id", &client.conn_id);
                w.opt_str_field("user_id", client.user_id.as_deref());
                w.end_object();
            }
            Self::Error { id, code, message } => {
                w.opt_id(id.as_ref());
                w.str_field("code", code.as_str());
                w.str_field("message", message);
            }
            Self::Disconnect { code, reason, reconnect_after_ms } => {
                w.u64_field("code", u64::from(*code));
                w.str_field("reason", reason);
                w.u64_field("reconnect_after_ms", *reconnect_after_ms);
            }
            Self::Subscribed { id, channel, epoch, offset, recovered, missed } => {
                w.opt_id(id.as_ref());
                w.str_field("channel", channel.as_str());
                w.str_field("epoch", epoch);
                w.u64_field("offset", *offset);
                if let Some(r) = recovered {
                    w.bool_field("recovered", *r);
                }
                if let Some(m) = missed {
                    w.u64_field("missed", *m);
                }
            }
            Self::Unsubscribed { id, channel, reason, resubscribe } => {
                w.opt_id(id.as_ref());
                w.str_field("channel", channel.as_str());
                if let Some(reason) = reason {
                    w.str_field("reason", reason.as_str());
                    w.bool_field("resubscribe", *resubscribe);
                }
            }
            Self::Published { id, channel, offset } => {
                w.opt_id(id.as_ref());
                w.str_field("channel", channel.as_str());
                w.u64_field("offset", *offset);
            }
            Self::Pong { id } => w.opt_id(id.as_ref()),
            Self::Presence { id, channel, clients } => {
                w.opt_id(id.as_ref());
                w.str_field("channel", channel.as_str());
                w.begin_array("clients");
                for (i, c) in clients.iter().enumerate() {
                    w.element(i == 0, |buf| {
                        buf.extend_from_slice(b"{\"conn_id\":");
                        JsonWriter::write_string(buf, &c.conn_id);
                        buf.extend_from_slice(b",\"user_id\":");
                        match &c.user_id {
                            Some(u) => JsonWriter::write_string(buf, u),
                            None => buf.extend_from_slice(b"null"),
                        }
                        buf.push(b'}');
                    });
                }
                w.end_array();
            }
            Self::History { id, channel, epoch, offset, messages } => {
                w.opt_id(id.as_ref());
                w.str_field("channel", channel.as_str());
                w.str_field("epoch", epoch);
                w.u64_field("offset", *offset);
                w.begin_array("messages");
                for (i, m) in messages.iter().enumerate() {
                    w.element(i == 0, |buf| buf.extend_from_slice(&m.encode()));
                }
                w.end_array();
            }
            Self::Echo { id, data } => {
                w.opt_id(id.as_ref());
                w.raw_field("data", data.as_bytes());
            }
            Self::Status { id, conn_id, user_id, channels, connected_ms } => {
                w.opt_id(id.as_ref());
                w.str_field("conn_id", conn_id);
                w.opt_str_field("user_id", user_id.as_deref());
                w.begin_array("channels");
                for (i, c) in channels.iter().enumerate() {
                    w.element(i == 0, |buf| JsonWriter::write_string(buf, c.as_str()));
                }
                w.end_array();
                w.u64_field("connected_ms", *connected_ms);
            }
        }
        w.finish()
    }

    /// Decodes a server frame (for clients).
    ///
    /// Each `data` is kept as the raw text the server sent.
    ///
    /// # Errors
    /// When the frame is not a message of this protocol; the error says which field is wrong.
    pub fn decode(frame: &[u8]) -> Result<Self, ServerDecodeError> {
        let raw: RawServerMessage<'_> =
            serde_json::from_slice(frame).map_err(|e| ServerDecodeError::Json(e.to_string()))?;
        raw.into_message()
    }
}

/// A server frame that is not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ServerDecodeError {
    /// The frame is not JSON of the expected shape; the server is not speaking this protocol.
    #[error("server frame is not valid: {0}")]
    Json(String),
    /// A field the message type requires is absent.
    #[error("server frame of type `{kind}` lacks field `{field}`")]
    Missing {
        /// The message type.
        kind: String,
        /// The missing field.
        field: &'static str,
    },
    /// The `type` is not one this crate knows; a newer server may send it.
    #[error("unknown server message type `{0}`")]
    UnknownType(String),
}

#[derive(Deserialize)]
struct RawPublication<'a> {
    channel: ChannelName,
    offset: u64,
    #[serde(default)]
    event: Option<String>,
    #[serde(borrow)]
    data: &'a RawValue,
}

impl RawPublication<'_> {
    fn into_publication(self) -> Publication {
        Publication {
            channel: self.channel,
            offset: self.offset,
            event: self.event,
            data: Json::from_trusted(Bytes::copy_from_slice(self.data.get().as_bytes())),
        }
    }
}

/// Reads a field that is present, even as `null`: plain `Option<&RawValue>`
/// would take `"data":null` for a missing field, yet `null` is a valid payload.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

/// Every field any server message has, all optional: serde's internally
/// tagged enums cannot hold raw JSON values, so the shape is checked by hand.
#[derive(Deserialize)]
struct RawServerMessage<'a> {
    #[serde(rename = "type")]
    kind: String,
    id: Option<CommandId>,
    conn_id: Option<String>,
    user_id: Option<String>,
    heartbeat_ms: Option<u64>,
    version: Option<u32>,
    channel: Option<ChannelName>,
    offset: Option<u64>,
    event: Option<String>,
    #[serde(borrow, default, deserialize_with = "present")]
    data: Option<&'a RawValue>,
    client: Option<ClientInfo>,
    code: Option<serde_json::Value>,
    message: Option<String>,
    reason: Option<String>,
    reconnect_after_ms: Option<u64>,
    epoch: Option<String>,
    recovered: Option<bool>,
    missed: Option<u64>,
    resubscribe: Option<bool>,
    clients: Option<Vec<ClientInfo>>,
    #[serde(borrow)]
    messages: Option<Vec<RawPublication<'a>>>,
    channels: Option<Vec<ChannelName>>,
    connected_ms: Option<u64>,
}

impl RawServerMessage<'_> {
    fn into_message(self) -> Result<ServerMessage, ServerDecodeError> {
        let kind = self.kind.clone();
        let need = |field: &'static str| ServerDecodeError::Missing { kind: kind.clone(), field };
        let json = |v: Option<&RawValue>| v.map(|r| Json::from_trusted(Bytes::copy_from_slice(r.get().as_bytes())));
        Ok(match self.kind.as_str() {
            "welcome" => ServerMessage::Welcome {
                conn_id: self.conn_id.ok_or_else(|| need("conn_id"))?,
                user_id: self.user_id,
                heartbeat_ms: self.heartbeat_ms.ok_or_else(|| need("heartbeat_ms"))?,
                version: self.version.ok_or_else(|| need("version"))?,
            },
            "message" => ServerMessage::Message(Publication {
                channel: self.channel.ok_or_else(|| need("channel"))?,
                offset: self.offset.ok_or_else(|| need("offset"))?,
                event: self.event,
                data: json(self.data).ok_or_else(|| need("data"))?,
            }),
            "join" | "leave" => {
                let channel = self.channel.ok_or_else(|| need("channel"))?;
                let client = self.client.ok_or_else(|| need("client"))?;
                if self.kind == "join" {
                    ServerMessage::Join { channel, client }
                } else {
                    ServerMessage::Leave { channel, client }
                }
            }
            "error" => ServerMessage::Error {
                id: self.id,
                code: match self.code {
                    Some(serde_json::Value::String(s)) => ErrorCode::from_wire(&s).ok_or_else(|| need("code"))?,
                    _ => return Err(need("code")),
                },
                message: self.message.ok_or_else(|| need("message"))?,
            },
            "disconnect" => ServerMessage::Disconnect {
                code: match self.code {
                    Some(serde_json::Value::Number(n)) => {
                        n.as_u64().and_then(|c| u16::try_from(c).ok()).ok_or_else(|| need("code"))?
                    }
                    _ => return Err(need("code")),
                },
                reason: self.reason.ok_or_else(|| need("reason"))?,
                reconnect_after_ms: self.reconnect_after_ms.ok_or_else(|| need("reconnect_after_ms"))?,
            },
            "subscribed" => ServerMessage::Subscribed {
                id: self.id,
                channel: self.channel.ok_or_else(|| need("channel"))?,
                epoch: self.epoch.ok_or_else(|| need("epoch"))?,
                offset: self.offset.ok_or_else(|| need("offset"))?,
                recovered: self.recovered,
                missed: self.missed,
            },
            "unsubscribed" => ServerMessage::Unsubscribed {
                id: self.id,
                channel: self.channel.ok_or_else(|| need("channel"))?,
                reason: match self.reason.as_deref() {
                    None => None,
                    Some(r) => Some(UnsubscribeReason::from_wire(r).ok_or_else(|| need("reason"))?),
                },
                resubscribe: self.resubscribe.unwrap_or(false),
            },
            "published" => ServerMessage::Published {
                id: self.id,
                channel: self.channel.ok_or_else(|| need("channel"))?,
                offset: self.offset.ok_or_else(|| need("offset"))?,
            },
            "pong" => ServerMessage::Pong { id: self.id },
            "presence" => ServerMessage::Presence {
                id: self.id,
                channel: self.channel.ok_or_else(|| need("channel"))?,
                clients: self.clients.ok_or_else(|| need("clients"))?,
            },
            "history" => ServerMessage::History {
                id: self.id,
                channel: self.channel.ok_or_else(|| need("channel"))?,
                epoch: self.epoch.ok_or_else(|| need("epoch"))?,
                offset: self.offset.ok_or_else(|| need("offset"))?,
                messages: self
                    .messages
                    .ok_or_else(|| need("messages"))?
                    .into_iter()
                    .map(RawPublication::into_publication)
                    .collect(),
            },
            "echo" => ServerMessage::Echo { id: self.id, data: json(self.data).ok_or_else(|| need("data"))? },
            "status" => ServerMessage::Status {
                id: self.id,
                conn_id: self.conn_id.ok_or_else(|| need("conn_id"))?,
                user_id: self.user_id,
                channels: self.channels.ok_or_else(|| need("channels"))?,
                connected_ms: self.connected_ms.ok_or_else(|| need("connected_ms"))?,
            },
            other => return Err(ServerDecodeError::UnknownType(other.to_owned())),
        })
    }
}
