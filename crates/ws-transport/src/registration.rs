//! `Registration`: a WebSocket connection as the hub, the relay and the session registry know it, from just
//! before its 101 until its session ends. Dropping it takes the connection out of all three.

use std::net::SocketAddr;
use std::sync::Arc;

use ws_core::{ConnId, DisconnectReason, Identity};
use ws_protocol::{ServerMessage, PROTOCOL_VERSION};

use crate::caps::Slot;
use crate::config::duration_ms;
use crate::outbound::{Kind, Outbound};
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
    /// A member of a relay room (boxed: most connections are on the hub, and every session carries this).
    Relay(Box<Membership>),
    /// On the echo endpoint.
    Echo,
}

/// A relay connection's room.
#[derive(Debug)]
pub(crate) struct Membership {
    /// The room's name.
    pub(crate) name: Box<str>,
    /// The room.
    pub(crate) room: Arc<Room>,
}

/// One connection's place in the server.
#[derive(Debug)]
pub(crate) struct Registration {
    /// The server.
    pub(crate) server: Arc<Server>,
    /// Its send queue.
    pub(crate) outbound: Arc<Outbound>,
    /// Where it is registered.
    pub(crate) endpoint: Endpoint,
    /// Why it ended, once known; reported to the hub on drop. The first reason set wins. Boxed: it is only
    /// set at the end.
    reason: Option<Box<DisconnectReason>>,
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
                let _ = outbound.push(Kind::Text, &welcome.encode());
                if let Err(error) = server.hub.register(outbound.clone(), identity.clone(), Some(peer)) {
                    tracing::error!(%error, "hub refused a fresh connection");
                    return None;
                }
                Endpoint::Hub
            }
            EndpointKind::Relay(name) => {
                Endpoint::Relay(Box::new(Membership { room: server.rooms.join(&name, Arc::clone(&outbound)), name }))
            }
            EndpointKind::Echo => Endpoint::Echo,
        };
        server.sessions.insert(Arc::clone(&outbound), hub_endpoint);
        config.stats.opened();
        // Shutdown walks the registry; a connection registered after that walk sees the token instead.
        if server.shutdown.is_cancelled() {
            outbound.request_close(server.going_away(hub_endpoint, 0, 1));
        }
        Some(Self { server: Arc::clone(server), outbound, endpoint, reason: None, _slot: slot })
    }

    /// The connection's id (a hub id on every endpoint, so ids never clash).
    pub(crate) fn id(&self) -> ConnId {
        ws_core::Conn::id(&*self.outbound)
    }

    /// Records why the connection ends; the first reason wins.
    pub(crate) fn set_reason(&mut self, code: u16, reason: &str) {
        if self.reason.is_none() {
            self.reason = Some(Box::new(DisconnectReason::new(code, reason)));
        }
    }
}

impl Drop for Registration {
    /// Unregisters the connection however it ends: a failed upgrade, a closed session, a panic, or a task
    /// cancelled with its runtime.
    fn drop(&mut self) {
        let reason = self.reason.take().map_or_else(|| DisconnectReason::new(ABNORMAL, "connection dropped"), |r| *r);
        let id = self.id();
        tracing::debug!(conn = %id, code = reason.code, reason = %reason.reason, "connection closed");
        ws_core::Conn::close(&*self.outbound, reason.code, &reason.reason);
        self.server.config.stats.closed(reason.code);
        self.server.sessions.remove(id, matches!(self.endpoint, Endpoint::Hub));
        match &self.endpoint {
            Endpoint::Hub => {
                self.server.hub.unregister(id, &reason);
            }
            Endpoint::Relay(member) => self.server.rooms.leave(&member.name, &member.room, id),
            Endpoint::Echo => {}
        }
    }
}
