//! Command handling: one entry point that takes a client's text frame and does what PROTOCOL.md says.

use std::sync::Arc;

use bytes::Bytes;
use ws_protocol::{ChannelName, ClientFrame, Command, CommandId, DecodeFailure, ErrorCode, ServerMessage};

use crate::broker::BrokerError;
use crate::cluster::broker_error;
use crate::conn::{Conn, ConnId};
use crate::connections::ConnEntry;
use crate::handler::CustomCommand;
use crate::hub::{CommandError, Hub};
use crate::namespace::NamespaceConfig;
use crate::policy::Action;

/// The most messages a `history` reply carries when the client gives no `limit`.
const DEFAULT_HISTORY_LIMIT: usize = 100;

impl Hub {
    /// Handles one text frame from a connection: decodes the command, checks
    /// policy, acts, and queues the reply or `error` on the connection.
    ///
    /// A bad command gets an `error` reply; it never closes the connection and
    /// never affects other connections. Frames from unregistered connections are ignored.
    ///
    /// Returns whether the frame was a `publish` that went out, i.e. whether other connections' queues may
    /// have grown. A transport can use it to cork: let the connections woken by this fan-out (and by other
    /// publishers in the same turn) collect everything before each writes once.
    pub fn handle_text(&self, id: ConnId, frame: &[u8]) -> bool {
        self.handle(id, frame, || ClientFrame::decode(frame))
    }

    /// [`Hub::handle_text`] for a frame the transport holds in shared bytes: nothing of it is copied that is
    /// not kept, so an `echo` is answered straight from the frame's bytes. The frame's buffer is not kept past
    /// this call.
    pub fn handle_text_shared(&self, id: ConnId, frame: &Bytes) -> bool {
        self.handle(id, frame, || ClientFrame::decode_shared(frame))
    }

    fn handle(&self, id: ConnId, frame: &[u8], decode: impl FnOnce() -> Result<ClientFrame, DecodeFailure>) -> bool {
        self.inner.stats.messages_in.add(1);
        let Some(entry) = self.entry(id) else { return false };
        match decode() {
            Ok(ClientFrame { id: cmd_id, command }) => match self.dispatch(&entry, cmd_id.as_ref(), command, frame) {
                Ok(publish) => publish,
                Err(e) => {
                    self.reply_error(&entry, cmd_id, e.code, e.message);
                    false
                }
            },
            Err(failure) => {
                self.reply_error(&entry, failure.id, failure.error.code(), failure.error.to_string());
                false
            }
        }
    }

    /// Answers a binary frame on the hub endpoint with `unsupported_frame`; the connection stays open.
    pub fn handle_binary(&self, id: ConnId) {
        self.inner.stats.messages_in.add(1);
        if let Some(entry) = self.entry(id) {
            self.reply_error(
                &entry,
                None,
                ErrorCode::UnsupportedFrame,
                "binary frames are not supported on this endpoint",
            );
        }
    }

    /// Queues an `error` frame on a connection.
    pub fn send_error(&self, id: ConnId, cmd_id: Option<CommandId>, code: ErrorCode, message: &str) {
        if let Some(entry) = self.entry(id) {
            self.reply_error(&entry, cmd_id, code, message);
        }
    }

    fn reply_error(&self, entry: &ConnEntry, id: Option<CommandId>, code: ErrorCode, message: impl Into<String>) {
        self.reply(entry, &ServerMessage::Error { id, code, message: message.into() });
    }

    fn reply(&self, entry: &ConnEntry, msg: &ServerMessage) {
        let policy = self.inner.config.namespaces.default_policy().slow_consumer;
        let _ = self.deliver_one(&entry.conn, &msg.encode(), policy);
    }

    fn dispatch(
        &self,
        entry: &Arc<ConnEntry>,
        id: Option<&CommandId>,
        command: Command,
        frame: &[u8],
    ) -> Result<bool, CommandError> {
        let id_owned = || id.cloned();
        let publish = matches!(command, Command::Publish { .. });
        match command {
            Command::Subscribe { channel, recover } => {
                self.authorize(entry, &channel, Action::Subscribe)?;
                self.join_channel(entry, &channel, recover.as_ref(), Some(id_owned()))?;
            }
            Command::Unsubscribe { channel } => {
                if entry.channels.lock().remove(&channel) {
                    self.leave_channel(entry, &channel);
                }
                self.reply(
                    entry,
                    &ServerMessage::Unsubscribed { id: id_owned(), channel, reason: None, resubscribe: false },
                );
            }
            Command::Publish { channel, data, idempotency_key } => {
                let policy = self.authorize(entry, &channel, Action::Publish)?;
                if data.len() > policy.max_payload_bytes {
                    return Err(CommandError::new(
                        ErrorCode::LimitExceeded,
                        format!("data is {} bytes; this channel allows {}", data.len(), policy.max_payload_bytes),
                    ));
                }
                if self.inner.clustered {
                    let reply = self.replier(entry, id_owned());
                    let name = channel.clone();
                    let want_reply = id.is_some();
                    self.publish_keyed(
                        &channel,
                        None,
                        data,
                        idempotency_key.as_deref(),
                        Box::new(move |result| match result {
                            Ok(offset) if want_reply => {
                                reply.send(|id| ServerMessage::Published { id, channel: name, offset })
                            }
                            Ok(_) => {}
                            Err(e) => reply.error(&e),
                        }),
                    );
                    // Nothing was fanned out yet: the broker delivers it, on its own task.
                    return Ok(false);
                }
                let offset = match idempotency_key {
                    None => self.publish(&channel, data),
                    Some(key) => self.publish_local_keyed(&channel, None, data, &key),
                };
                if id.is_some() {
                    self.reply(entry, &ServerMessage::Published { id: id_owned(), channel, offset });
                }
            }
            Command::Ping => self.reply(entry, &ServerMessage::Pong { id: id_owned() }),
            Command::Presence { channel } => {
                self.authorize(entry, &channel, Action::Presence)?;
                if self.inner.clustered {
                    let reply = self.replier(entry, id_owned());
                    let name = channel.clone();
                    self.presence_with(
                        &channel,
                        Box::new(move |result| match result {
                            Ok(clients) => reply.send(|id| ServerMessage::Presence { id, channel: name, clients }),
                            Err(e) => reply.error(&e),
                        }),
                    );
                    return Ok(false);
                }
                let clients = self.presence(&channel);
                self.reply(entry, &ServerMessage::Presence { id: id_owned(), channel, clients });
            }
            Command::History { channel, limit, since } => {
                let policy = self.authorize(entry, &channel, Action::History)?;
                let limit = limit.map_or(DEFAULT_HISTORY_LIMIT, |l| l as usize).min(policy.history_size);
                if self.inner.clustered {
                    let reply = self.replier(entry, id_owned());
                    let name = channel.clone();
                    self.history_with(
                        &channel,
                        limit,
                        since.as_ref(),
                        Box::new(move |result| match result {
                            Ok(page) => reply.send(|id| ServerMessage::History {
                                id,
                                channel: name,
                                epoch: page.epoch,
                                offset: page.offset,
                                messages: page.publications,
                            }),
                            Err(e) => reply.error(&e),
                        }),
                    );
                    return Ok(false);
                }
                let page = self.history(&channel, limit, since.as_ref());
                self.reply(
                    entry,
                    &ServerMessage::History {
                        id: id_owned(),
                        channel,
                        epoch: page.epoch,
                        offset: page.offset,
                        messages: page.publications,
                    },
                );
            }
            Command::Echo { data } => self.reply(entry, &ServerMessage::Echo { id: id_owned(), data }),
            Command::Status => {
                let channels = entry.channels.lock().sorted();
                let msg = ServerMessage::Status {
                    id: id_owned(),
                    conn_id: entry.id().to_string(),
                    user_id: entry.identity().user_id.as_deref().map(str::to_owned),
                    channels,
                    connected_ms: self.now_ms().saturating_sub(entry.connected_at_ms),
                };
                self.reply(entry, &msg);
            }
            Command::Custom { kind } => {
                let handler = self.inner.handlers.read().get(&*kind).cloned();
                let Some(handler) = handler else {
                    return Err(CommandError::new(ErrorCode::UnknownType, format!("unknown message type `{kind}`")));
                };
                let custom = CustomCommand { conn_id: entry.id(), identity: entry.identity(), id, kind: &kind, frame };
                handler.handle(self, &custom).map_err(|e| CommandError::new(e.code, e.message))?;
            }
            _ => return Err(CommandError::new(ErrorCode::UnknownType, "unknown message type")),
        }
        Ok(publish)
    }
}

/// Sends a reply that comes later, once the broker has answered.
struct Replier {
    hub: Hub,
    conn: Arc<dyn Conn>,
    id: Option<CommandId>,
}

impl Replier {
    fn send(self, msg: impl FnOnce(Option<CommandId>) -> ServerMessage) {
        let policy = self.hub.inner.config.namespaces.default_policy().slow_consumer;
        let _ = self.hub.deliver_one(&self.conn, &msg(self.id).encode(), policy);
    }

    fn error(self, e: &BrokerError) {
        let e = broker_error(e);
        self.send(|id| ServerMessage::Error { id, code: e.code, message: e.message });
    }
}

impl Hub {
    fn replier(&self, entry: &ConnEntry, id: Option<CommandId>) -> Replier {
        Replier { hub: self.clone(), conn: Arc::clone(&entry.conn), id }
    }

    /// Asks the authorizer; returns the channel's policy when the action is allowed.
    pub(crate) fn authorize(
        &self,
        entry: &ConnEntry,
        channel: &ChannelName,
        action: Action,
    ) -> Result<&Arc<NamespaceConfig>, CommandError> {
        let policy = self.policy(channel);
        self.inner
            .authorizer
            .authorize(entry.identity(), channel, policy, action)
            .map_err(|d| CommandError::new(d.code, d.message))?;
        Ok(policy)
    }
}
