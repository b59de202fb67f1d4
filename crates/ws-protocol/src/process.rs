//! Process streaming: the `process_output` and `process_status` messages of a process's `process:{id}` channel,
//! their typed `data`, and `ProcessEvent`, one ready to publish.
//!
//! A backend that runs a command publishes each line it prints and each change of its state on the channel
//! `process:{id}`, as ordinary `message` frames whose `event` says which:
//!
//! ```json
//! {"type":"message","channel":"process:build-7","offset":1,"event":"process_output","data":{"line":"Compiling ws-core","stream":"stdout"}}
//! {"type":"message","channel":"process:build-7","offset":2,"event":"process_status","data":{"state":"exited","code":0,"at_ms":1733318400000}}
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::channel::{ChannelName, ChannelNameError, MAX_CHANNEL_LEN};
use crate::json::Json;

/// The namespace of process channels: a process's channel is `process:{id}`.
pub const PROCESS_NAMESPACE: &str = "process";

/// The `event` of a message carrying one line of output ([`ProcessOutput`]).
pub const PROCESS_OUTPUT_EVENT: &str = "process_output";

/// The `event` of a message carrying a change of state ([`ProcessStatus`]).
pub const PROCESS_STATUS_EVENT: &str = "process_status";

/// The longest line of output, in bytes (64 KiB).
pub const MAX_PROCESS_LINE_BYTES: usize = 64 * 1024;

/// The longest `reason` of a status, in bytes.
pub const MAX_PROCESS_REASON_BYTES: usize = 1024;

/// The longest process id, in bytes: what a channel name leaves after `process:`.
pub const MAX_PROCESS_ID_BYTES: usize = MAX_CHANNEL_LEN - PROCESS_NAMESPACE.len() - 1;

/// Which output stream a line came from. On the wire: `"stdout"` or `"stderr"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcessStream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

impl ProcessStream {
    /// The wire name: `stdout` or `stderr`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Stdout => "stdout",
            Self::Stderr => "stderr",
        }
    }
}

impl fmt::Display for ProcessStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProcessStream {
    type Err = ProcessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "stdout" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            other => Err(ProcessError::UnknownStream(other.to_owned())),
        }
    }
}

/// Where a process is in its life. On the wire: `"running"`, `"exited"` or `"failed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ProcessState {
    /// Started and not finished.
    Running,
    /// Finished on its own; `code` is its exit code.
    Exited,
    /// Could not start, was killed, or was lost; `reason` says what happened.
    Failed,
}

impl ProcessState {
    /// The wire name: `running`, `exited` or `failed`.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Exited => "exited",
            Self::Failed => "failed",
        }
    }
}

impl fmt::Display for ProcessState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProcessState {
    type Err = ProcessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "running" => Ok(Self::Running),
            "exited" => Ok(Self::Exited),
            "failed" => Ok(Self::Failed),
            other => Err(ProcessError::UnknownState(other.to_owned())),
        }
    }
}

/// The `data` of a `process_output` message: `{"line": "...", "stream": "stdout"}`.
///
/// Clients decode it from a message's `data` (`message.data.decode::<ProcessOutput>()`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessOutput {
    /// The line, without its line ending.
    pub line: String,
    /// The stream it came from.
    pub stream: ProcessStream,
}

impl ProcessOutput {
    /// One line from `stream`.
    #[must_use]
    pub fn new(stream: ProcessStream, line: impl Into<String>) -> Self {
        Self { line: line.into(), stream }
    }
}

/// The `data` of a `process_status` message:
/// `{"state": "exited", "code": 0, "reason": "...", "at_ms": 1733318400000}`, `code` and `reason` only when
/// known.
///
/// `at_ms` is wall-clock time in Unix milliseconds, given by whoever reports the status (`ws-server`'s API
/// reads its clock; a Rust backend passes its own), never read here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProcessStatus {
    /// The state.
    pub state: ProcessState,
    /// The exit code, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// What happened, in words (`killed by signal 9`, `command not found`); at most 1,024 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the process reached this state, in Unix milliseconds.
    pub at_ms: u64,
}

impl ProcessStatus {
    /// A status of `state` at `at_ms` (Unix milliseconds), with no code and no reason.
    #[must_use]
    pub fn new(state: ProcessState, at_ms: u64) -> Self {
        Self { state, code: None, reason: None, at_ms }
    }

    /// Sets the exit code.
    #[must_use]
    pub fn code(mut self, code: i32) -> Self {
        self.code = Some(code);
        self
    }

    /// Sets the reason.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

/// A process event ready to publish: the process's channel, the event name and the encoded `data`.
///
/// ```
/// use ws_protocol::{ProcessEvent, ProcessState, ProcessStatus, ProcessStream};
///
/// let out = ProcessEvent::output("build-7", ProcessStream::Stderr, "warning: unused variable").unwrap();
/// assert_eq!((out.channel.as_str(), out.event), ("process:build-7", "process_output"));
/// assert_eq!(out.data.as_str(), r#"{"line":"warning: unused variable","stream":"stderr"}"#);
///
/// let done = ProcessEvent::status("build-7", &ProcessStatus::new(ProcessState::Exited, 1_733_318_400_000).code(0)).unwrap();
/// assert_eq!(done.data.as_str(), r#"{"state":"exited","code":0,"at_ms":1733318400000}"#);
///
/// assert!(ProcessEvent::output("no spaces", ProcessStream::Stdout, "x").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessEvent {
    /// `process:{id}`.
    pub channel: ChannelName,
    /// [`PROCESS_OUTPUT_EVENT`] or [`PROCESS_STATUS_EVENT`].
    pub event: &'static str,
    /// The [`ProcessOutput`] or [`ProcessStatus`], encoded.
    pub data: Json,
}

impl ProcessEvent {
    /// One line of output of process `id`.
    ///
    /// # Errors
    /// [`ProcessError::InvalidId`] or [`ProcessError::LineTooLong`].
    pub fn output(id: &str, stream: ProcessStream, line: &str) -> Result<Self, ProcessError> {
        let channel = process_channel(id)?;
        if line.len() > MAX_PROCESS_LINE_BYTES {
            return Err(ProcessError::LineTooLong { len: line.len() });
        }
        let data = encode(&ProcessOutput::new(stream, line));
        Ok(Self { channel, event: PROCESS_OUTPUT_EVENT, data })
    }

    /// A change of state of process `id`.
    ///
    /// # Errors
    /// [`ProcessError::InvalidId`] or [`ProcessError::ReasonTooLong`].
    pub fn status(id: &str, status: &ProcessStatus) -> Result<Self, ProcessError> {
        let channel = process_channel(id)?;
        if let Some(len) = status.reason.as_ref().map(String::len).filter(|n| *n > MAX_PROCESS_REASON_BYTES) {
            return Err(ProcessError::ReasonTooLong { len });
        }
        Ok(Self { channel, event: PROCESS_STATUS_EVENT, data: encode(status) })
    }
}

/// The channel of process `id`: `process:{id}`.
///
/// # Errors
/// [`ProcessError::InvalidId`] when `id` is empty or `process:{id}` is not a valid channel name.
pub fn process_channel(id: &str) -> Result<ChannelName, ProcessError> {
    if id.is_empty() {
        return Err(ProcessError::InvalidId { id: String::new(), why: ChannelNameError::Empty });
    }
    ChannelName::new(&format!("{PROCESS_NAMESPACE}:{id}"))
        .map_err(|why| ProcessError::InvalidId { id: id.to_owned(), why })
}

fn encode<T: Serialize>(value: &T) -> Json {
    // These types are plain structs of strings and numbers: serializing them cannot fail.
    Json::encode(value).unwrap_or_else(|_| Json::null())
}

/// Why a process event cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// `process:{id}` is not a valid channel name; use an id of 1 to 247 bytes of
    /// `A-Z a-z 0-9 _ - . : @ / = #`.
    #[error(
        "invalid process id {id:?}: {why}; a process id is 1 to {MAX_PROCESS_ID_BYTES} bytes of \
         A-Z a-z 0-9 _ - . : @ / = # (its channel is process:{{id}})"
    )]
    InvalidId {
        /// The id given.
        id: String,
        /// The channel rule it breaks.
        why: ChannelNameError,
    },
    /// The line is longer than [`MAX_PROCESS_LINE_BYTES`]; split it, or cut it short.
    #[error("line is {len} bytes; the most is {MAX_PROCESS_LINE_BYTES}")]
    LineTooLong {
        /// The line's length in bytes.
        len: usize,
    },
    /// The reason is longer than [`MAX_PROCESS_REASON_BYTES`]; shorten it.
    #[error("reason is {len} bytes; the most is {MAX_PROCESS_REASON_BYTES}")]
    ReasonTooLong {
        /// The reason's length in bytes.
        len: usize,
    },
    /// Not a stream name; send `stdout` or `stderr`.
    #[error("unknown stream {0:?}: send \"stdout\" or \"stderr\"")]
    UnknownStream(String),
    /// Not a state name; send `running`, `exited` or `failed`.
    #[error("unknown state {0:?}: send \"running\", \"exited\" or \"failed\"")]
    UnknownState(String),
}
