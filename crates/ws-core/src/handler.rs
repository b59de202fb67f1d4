//! Application handlers for custom message `type`s.

use std::fmt;

use ws_protocol::{CommandId, ErrorCode};

use crate::conn::ConnId;
use crate::hub::Hub;
use crate::policy::Identity;

/// A client command whose `type` the protocol does not define.
#[derive(Debug)]
#[non_exhaustive]
pub struct CustomCommand<'a> {
    /// The connection that sent it.
    pub conn_id: ConnId,
    /// Who that connection is.
    pub identity: &'a Identity,
    /// The command's `id`, to echo in a reply.
    pub id: Option<&'a CommandId>,
    /// The `type`.
    pub kind: &'a str,
    /// The whole frame as received; decode the fields you need.
    pub frame: &'a [u8],
}

/// An error a handler returns; the hub sends it as an `error` frame echoing the command's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// The error code.
    pub code: ErrorCode,
    /// What went wrong, for the client.
    pub message: String,
}

impl HandlerError {
    /// Builds an error.
    #[must_use]
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

/// Handles one custom `type`. Runs on the connection's read path: it must not
/// block; send replies with `Hub::send`.
pub trait Handler: Send + Sync + fmt::Debug + 'static {
    /// Handles the command.
    ///
    /// # Errors
    /// A [`HandlerError`] becomes an `error` reply.
    fn handle(&self, hub: &Hub, command: &CustomCommand<'_>) -> Result<(), HandlerError>;
}
