//! The process helpers: a process's output lines and changes of state, published on its `process:{id}` channel
//! (see `ws_protocol`'s "Process streaming").

use ws_protocol::{ProcessError, ProcessEvent, ProcessStatus, ProcessStream};

use crate::broker::Done;
use crate::hub::Hub;

impl Hub {
    /// Publishes one line of a process's output on `process:{id}`, with event `process_output` and data
    /// `{"line", "stream"}`, and returns its offset as [`Hub::publish`] does.
    ///
    /// ```
    /// use ws_core::{Hub, ProcessState, ProcessStatus, ProcessStream};
    /// use ws_core::test_util::ManualClock;
    ///
    /// let hub = Hub::builder(ManualClock::new(0)).build();
    /// hub.send_process_output("build-7", ProcessStream::Stdout, "Compiling ws-core").unwrap();
    /// // The caller reads the wall clock; the hub never does.
    /// let exited = ProcessStatus::new(ProcessState::Exited, 1_733_318_400_000).code(0);
    /// hub.send_process_status("build-7", &exited).unwrap();
    /// assert!(hub.send_process_output("not an id", ProcessStream::Stdout, "x").is_err());
    /// ```
    ///
    /// # Errors
    /// [`ProcessError::InvalidId`] when `process:{id}` is not a valid channel name, and
    /// [`ProcessError::LineTooLong`] for a line over 64 KiB; nothing is published.
    pub fn send_process_output(&self, id: &str, stream: ProcessStream, line: &str) -> Result<u64, ProcessError> {
        let event = ProcessEvent::output(id, stream, line)?;
        Ok(self.publish_event(&event.channel, Some(event.event), event.data))
    }

    /// Publishes a change of a process's state on `process:{id}`, with event `process_status` and data
    /// `{"state", "code", "reason", "at_ms"}`, and returns its offset as [`Hub::publish`] does. The time is the
    /// caller's (`status.at_ms`): the hub reads no clock for it.
    ///
    /// # Errors
    /// [`ProcessError::InvalidId`] when `process:{id}` is not a valid channel name, and
    /// [`ProcessError::ReasonTooLong`]; nothing is published.
    pub fn send_process_status(&self, id: &str, status: &ProcessStatus) -> Result<u64, ProcessError> {
        let event = ProcessEvent::status(id, status)?;
        Ok(self.publish_event(&event.channel, Some(event.event), event.data))
    }

    /// Publishes a process event made with [`ProcessEvent::output`] or [`ProcessEvent::status`] and calls
    /// `done` with its offset, or with why the broker could not take it ([`Hub::publish_with`]).
    pub fn publish_process(&self, event: ProcessEvent, done: Done<u64>) {
        self.publish_with(&event.channel, Some(event.event), event.data, done);
    }
}
