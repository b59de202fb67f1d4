//! `Registration`: a WebSocket connection as the hub, the relay and the session registry know it, from just
//! before its 101 until its session ends. Dropping it takes the connection out of all three.

use std::net::SocketAddr;
use std::sync::Arc;

use ws_core::{ConnId, DisconnectReason, Identity};
use ws_protocol::{ServerMessage, PROTOCOL_VERSION};

use crate::caps::Slot;
use crate::config::duration_ms;
use crate::outbound::{Item, Outbound};
use crate::relay::Room;
use crate::server::Server;

/// The close code reported to the hub when the socket ends without a close handshake (never sent on the wire).
pub(crate) const ABNORMAL: u16 = 1006;

/// Which endpoint a connection is upgrading on.
#[derive(Debug)]
pub(crate) enum EndpointKind {
    /// `/ws`: the hub's JSON protocol.
    Hub,
    /// `/relay/{room}`.
    Relay(Box<str>),
    /// The echo endpoint.
    Echo,
}

/// A connection's endpoint, once joined.
#[derive(Debug)]
pub(crate) enum Endpoint {
    /// Registered with the hub.
    Hub,
    /// A member of a relay room.
    Relay {
        /// The room's name.
        name: Box<str>,
        /// The room.
        room: Arc<Room>,
    },
    /// On the echo endpoint.
    Echo,
}

/// One connection's place in the server.
#[derive(Debug)]
pub(crate) struct Registration {
    /// The server.
    pub(crate) server: Arc<Server>,
    /// The connection's id (a hub id on every endpoint, so ids never clash).
    pub(crate) id: ConnId,
    /// Its send queue.
    pub(crate) outbound: Arc<Outbound>,
    /// Where it is registered.
    pub(crate) endpoint: Endpoint,
    /// When its credentials expire, on the hub's clock.
    pub(crate) expires_at_ms: Option<u64>,
    /// Why it ended, once known; reported to the hub on drop.
    pub(crate) reason: Option<DisconnectReason>,
    _slot: Slot,
}

impl Registration {
    /// Registers a connection that is about to be upgraded. Done before the 101 goes out, so that once the client
    /// sees it the connection is in its room (relay) or known to the hub, with the `welcome` queued first.
    /// Returns `None` when the hub refuses the registration.
    pub(crate) fn new(
        server: &Arc<Server>,
        kind: EndpointKind,
        identity: &Identity,
        peer: SocketAddr,
        slot: Slot,
    ) -> Option<Self> {
        let config = &server.config;
        let id = server.hub.next_conn_id();
        let outbound = Arc::new(Outbound::new(id, config.queue_messages, config.queue_bytes));
        let hub_endpoint = matches!(kind, EndpointKind::Hub);
        let endpoint = match kind {
            EndpointKind::Hub => {
                let welcome = ServerMessage::Welcome {
                    conn_id: id.to_string(),
                    user_id: identity.user_id.as_deref().map(str::to_owned),
                    heartbeat_ms: duration_ms(config.heartbeat_interval),
                    version: PROTOCOL_VERSION,
                };
                // The welcome goes in before the hub knows the connection, so it is always the first frame.
                let _ = outbound.push(Item::Text(welcome.encode()));
                if let Err(error) = server.hub.register(outbound.clone(), identity.clone(), Some(peer)) {
                    tracing::error!(%error, "hub refused a fresh connection");
                    return None;
                }
                Endpoint::Hub
            }
            EndpointKind::Relay(name) => {
                Endpoint::Relay { room: server.rooms.join(&name, Arc::clone(&outbound)), name }
            }
            EndpointKind::Echo => Endpoint::Echo,
        };
        server.sessions.insert(Arc::clone(&outbound), hub_endpoint);
        config.stats.opened();
        // Shutdown walks the registry; a connection registered after that walk sees the token instead.
        if server.shutdown.is_cancelled() {
            outbound.request_close(server.going_away(hub_endpoint, 0, 1));
        }
        Some(Self {
            server: Arc::clone(server),
            id,
            outbound,
            endpoint,
            expires_at_ms: identity.expires_at_ms,
            reason: None,
            _slot: slot,
        })
    }
}

impl Drop for Registration {
    /// Unregisters the connection however it ends: a failed upgrade, a closed session, a panic, or a task
    /// cancelled with its runtime.
    fn drop(&mut self) {
        let reason = self.reason.take().unwrap_or_else(|| DisconnectReason::new(ABNORMAL, "connection dropped"));
        tracing::debug!(conn = %self.id, code = reason.code, reason = %reason.reason, "connection closed");
        ws_core::Conn::close(&*self.outbound, reason.code, &reason.reason);
        self.server.config.stats.closed(reason.code);
        self.server.sessions.remove(self.id);
        match &self.endpoint {
            Endpoint::Hub => {
                self.server.hub.unregister(self.id, &reason);
            }
            Endpoint::Relay { name, room } => self.server.rooms.leave(name, room, self.id),
            Endpoint::Echo => {}
        }
    }
}
