//! Error codes of the protocol and the allocation-free errors of command decoding.

use std::fmt;

use crate::channel::ChannelNameError;

/// The `code` of an `error` frame (PROTOCOL.md, "Error codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Not JSON, not an object, missing or mistyped field, invalid channel name.
    BadRequest,
    /// The command needs an authenticated connection.
    Unauthorized,
    /// The channel's policy denies this subscribe, publish, presence or history.
    Forbidden,
    /// No such command.
    UnknownType,
    /// A binary frame on `/ws`.
    UnsupportedFrame,
    /// Too many channels on one connection, or a payload over the channel's limit.
    LimitExceeded,
    /// The connection sends faster than its rate limit.
    RateLimited,
    /// A server fault; the message says nothing secret.
    Internal,
    /// The cluster's broker cannot be reached; the command was not carried out.
    Unavailable,
    /// The broker did not answer in time; the outcome is unknown.
    Timeout,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 10] = [
        Self::BadRequest,
        Self::Unauthorized,
        Self::Forbidden,
        Self::UnknownType,
        Self::UnsupportedFrame,
        Self::LimitExceeded,
        Self::RateLimited,
        Self::Internal,
        Self::Unavailable,
        Self::Timeout,
    ];

    /// The code as it appears on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::UnknownType => "unknown_type",
            Self::UnsupportedFrame => "unsupported_frame",
            Self::LimitExceeded => "limit_exceeded",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::Unavailable => "unavailable",
            Self::Timeout => "timeout",
        }
    }

    /// Parses a wire code.
    #[must_use]
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What is wrong with a client frame. Small, `Copy` and allocation-free: the
/// hub turns it into an `error` frame with code [`ErrorCode::BadRequest`] (or
/// [`ErrorCode::UnknownType`]) and keeps the connection open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is not valid JSON; the client should send one JSON object per text frame.
    #[error("frame is not valid JSON")]
    NotJson,
    /// The frame is JSON but not an object.
    #[error("frame is not a JSON object")]
    NotObject,
    /// The JSON nests deeper than [`crate::MAX_DEPTH`] levels.
    #[error("JSON nests deeper than 64 levels")]
    TooDeep,
    /// A required field is absent.
    #[error("missing field `{0}`")]
    Missing(&'static str),
    /// A field has the wrong JSON type; the message names the type it must have.
    #[error("field `{field}` must be {expected}")]
    WrongType {
        /// The field's name.
        field: &'static str,
        /// The JSON type the field must have, in words.
        expected: &'static str,
    },
    /// The `id` is a string longer than [`crate::MAX_ID_LEN`] bytes, or a number that is not an integer.
    #[error("field `id` must be an integer or a string of at most 128 bytes")]
    BadId,
    /// The `channel` field is not a valid channel name.
    #[error("field `channel` is invalid: {0}")]
    BadChannel(ChannelNameError),
    /// The `type` is longer than [`crate::MAX_TYPE_LEN`] bytes.
    #[error("field `type` is longer than 64 bytes")]
    TypeTooLong,
}

impl DecodeError {
    /// The wire error code this decode error maps to.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        ErrorCode::BadRequest
    }
}
