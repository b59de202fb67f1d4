//! The envelope codec, for the `envelope` fuzz target in `/fuzz` (feature `fuzzing`).
//!
//! The envelope types stay private to the crate; these few functions let the fuzzer decode any bytes as a node
//! receives them from Redis, and encode join/leave and control envelopes as a node sends them, so it can check
//! that what one node writes another reads back unchanged. They are for fuzzing only, not part of the supported API.

use ws_core::Control;
use ws_protocol::{ClientInfo, Json};

use crate::envelope::{self, Envelope};

/// An envelope as a node decoded it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodedEnvelope {
    /// Publications at consecutive offsets from `offset`.
    Publications {
        /// The channel's epoch.
        epoch: String,
        /// The first publication's offset.
        offset: u64,
        /// Each publication's event and data, in offset order.
        items: Vec<(Option<String>, Json)>,
    },
    /// A subscriber joined (or left) a channel on another node.
    JoinLeave {
        /// Joined rather than left.
        joined: bool,
        /// The subscriber.
        client: ClientInfo,
    },
    /// A control command from another node.
    Control(Control),
}

/// Decodes `payload` as the node `node` does when Redis delivers it.
///
/// # Errors
/// Why the node drops it, as its metric label: `malformed`, `oversized`, `unknown_version` or `own_echo`.
pub fn decode_envelope(payload: &[u8], node: &str) -> Result<DecodedEnvelope, &'static str> {
    Ok(match envelope::decode(payload, node).map_err(envelope::Dropped::as_str)? {
        Envelope::Publications { epoch, offset, items } => DecodedEnvelope::Publications { epoch, offset, items },
        Envelope::JoinLeave { joined, client } => DecodedEnvelope::JoinLeave { joined, client },
        Envelope::Control(command) => DecodedEnvelope::Control(command),
    })
}

/// The join or leave envelope the node `node` publishes.
#[must_use]
pub fn encode_join_leave(node: &str, joined: bool, client: &ClientInfo) -> String {
    envelope::join_leave(node, joined, client)
}

/// The control envelope the node `node` publishes, or `None` for a command that does not travel.
#[must_use]
pub fn encode_control(node: &str, command: &Control) -> Option<String> {
    envelope::control(node, command)
}
