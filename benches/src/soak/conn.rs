//! `HubConn`: a soak connection to the hub's `/ws` whose every `message` goes through its [`Deliveries`]
//! checks as it is read, while replies and notices are queued for the workload that drives it.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use serde_json::Value;

use super::deliveries::{Deliveries, Expect, Recovery};
use super::tally::Tally;
use crate::client::{self, ClientError, Sources, WsConn};
use crate::marker;
use crate::wire::{self, OP_TEXT};

/// How long a reply (welcome, subscribed, published, ...) may take.
pub(crate) const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where and how the soak's connections connect.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// The server.
    pub(crate) addr: SocketAddr,
    /// Loopback source addresses, so that thousands of connections do not run out of ephemeral ports.
    pub(crate) sources: Sources,
    /// Publishers `0..senders` mark the steady channels' messages.
    pub(crate) senders: usize,
    /// The run's counters and violations.
    pub(crate) tally: Rc<Tally>,
}

/// A checked connection.
#[derive(Debug)]
pub(crate) struct HubConn {
    conn: WsConn,
    deliveries: Deliveries,
    /// Frames other than messages, parsed, oldest first.
    others: VecDeque<Value>,
    conn_id: String,
}

/// How [`HubConn::open`] opens the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Window {
    /// An ordinary client.
    Normal,
    /// A 4 KiB receive buffer, for a client that will stop reading.
    Small,
}

impl HubConn {
    /// Connects to `/ws` and reads the welcome; `label` names the connection in violations.
    pub(crate) async fn open(endpoint: &Endpoint, label: String, window: Window) -> Result<Self, ClientError> {
        let source = endpoint.sources.next();
        let connecting = async {
            match window {
                Window::Normal => client::connect(endpoint.addr, source, "/ws", 16 * 1024).await,
                Window::Small => client::connect_small_window(endpoint.addr, source, "/ws", 4096).await,
            }
        };
        let conn = tokio::time::timeout(REPLY_TIMEOUT, connecting)
            .await
            .map_err(|_| ClientError::Timeout("the upgrade"))??;
        endpoint.tally.count(|c| c.connections += 1);
        let deliveries = Deliveries::new(label, endpoint.senders, endpoint.tally.clone());
        let mut hub = Self { conn, deliveries, others: VecDeque::new(), conn_id: String::new() };
        let welcome = hub.reply("welcome").await?;
        hub.conn_id = welcome["conn_id"].as_str().unwrap_or_default().to_owned();
        Ok(hub)
    }

    /// The connection id from the welcome.
    pub(crate) fn conn_id(&self) -> &str {
        &self.conn_id
    }

    /// The delivery checks.
    pub(crate) fn deliveries(&self) -> &Deliveries {
        &self.deliveries
    }

    /// Subscribes to every channel of `channels` and waits for each `subscribed` reply.
    pub(crate) async fn subscribe(&mut self, channels: &[(String, Expect)]) -> Result<(), ClientError> {
        let mut frames = Vec::new();
        for (channel, expect) in channels {
            self.deliveries.expect(channel, *expect);
            wire::put_masked(&mut frames, OP_TEXT, &marker::subscribe(channel));
        }
        self.conn.send(&frames).await?;
        for _ in channels {
            self.reply("subscribed").await?;
        }
        Ok(())
    }

    /// Subscribes to `channel` with `recover` after `offset` of `epoch`, and waits for the reply; says how it was
    /// answered. The replayed messages, and the live ones after them, are checked as they arrive.
    pub(crate) async fn subscribe_recovering(
        &mut self,
        channel: &str,
        expect: Expect,
        epoch: &str,
        offset: u64,
    ) -> Result<Recovery, ClientError> {
        self.deliveries.expect_recovery(channel, expect, offset);
        let recover = serde_json::json!({"epoch": epoch, "offset": offset});
        self.send(&serde_json::json!({"type": "subscribe", "channel": channel, "recover": recover})).await?;
        self.reply("subscribed").await?;
        self.deliveries
            .recovery(channel)
            .ok_or_else(|| ClientError::Protocol(format!("no recovery answer for {channel}")))
    }

    /// Sends one command (a JSON object) as a text frame.
    pub(crate) async fn send(&mut self, command: &Value) -> Result<(), ClientError> {
        let mut frame = Vec::new();
        wire::put_masked(&mut frame, OP_TEXT, command.to_string().as_bytes());
        self.conn.send(&frame).await
    }

    /// Sends bytes already encoded as frames.
    pub(crate) async fn send_raw(&mut self, frames: &[u8]) -> Result<(), ClientError> {
        self.conn.send(frames).await
    }

    /// Reads until the next frame that is not a message and returns it if it has `type` `kind`; any other reply
    /// or notice is a protocol error.
    pub(crate) async fn reply(&mut self, kind: &str) -> Result<Value, ClientError> {
        let wait = async {
            loop {
                if let Some(frame) = self.others.pop_front() {
                    if frame["type"] == kind {
                        return Ok(frame);
                    }
                    return Err(ClientError::Protocol(format!("{frame} where a {kind} reply was due")));
                }
                self.pump().await?;
            }
        };
        tokio::time::timeout(REPLY_TIMEOUT, wait).await.map_err(|_| ClientError::Timeout("a reply"))?
    }

    /// Reads what has arrived (waiting for at least one frame): messages are checked, the rest queued.
    pub(crate) async fn pump(&mut self) -> Result<(), ClientError> {
        let (deliveries, others) = (&mut self.deliveries, &mut self.others);
        self.conn
            .read_data(|payload, _| {
                if let Some(frame) = deliveries.frame(payload) {
                    others.push_back(frame);
                }
            })
            .await?;
        Ok(())
    }

    /// Handles what has arrived by `until` without waiting past it; returns false once `until` has passed.
    /// Nothing is cancelled half-way: only the wait for readiness is.
    pub(crate) async fn pump_until(&mut self, until: tokio::time::Instant) -> Result<bool, ClientError> {
        if tokio::time::timeout_at(until, self.conn.readable()).await.is_err() {
            return Ok(false);
        }
        let (deliveries, others) = (&mut self.deliveries, &mut self.others);
        self.conn
            .poll_data(|payload, _| {
                if let Some(frame) = deliveries.frame(payload) {
                    others.push_back(frame);
                }
            })
            .await?;
        Ok(true)
    }

    /// The oldest frame read that was not a message, if any.
    pub(crate) fn take_other(&mut self) -> Option<Value> {
        self.others.pop_front()
    }

    /// Reads and checks messages for `span`; fails when the connection ends or sends anything but messages.
    pub(crate) async fn read_for(&mut self, span: Duration) -> Result<(), ClientError> {
        let until = tokio::time::Instant::now() + span;
        while self.pump_until(until).await? {
            if let Some(frame) = self.others.pop_front() {
                return Err(ClientError::Protocol(format!("unexpected {frame}")));
            }
        }
        Ok(())
    }

    /// Reads (and checks) until the server ends the connection; returns the close code (`None` when the
    /// connection ended without a close frame) and the other frames that came before it.
    pub(crate) async fn read_to_end(&mut self, within: Duration) -> Result<(Option<u16>, Vec<Value>), ClientError> {
        let wait = async {
            loop {
                match self.pump().await {
                    Ok(()) => {}
                    Err(ClientError::Closed(code)) => return Ok(code),
                    Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => return Ok(None),
                    Err(e) => return Err(e),
                }
            }
        };
        let code = tokio::time::timeout(within, wait).await.map_err(|_| ClientError::Timeout("the end"))??;
        Ok((code, self.others.drain(..).collect()))
    }

    /// The socket, without the checks: to close it, drop it, reset it, or stop reading it.
    pub(crate) fn into_socket(self) -> WsConn {
        self.conn
    }
}
