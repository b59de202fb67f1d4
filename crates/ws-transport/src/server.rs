//! `Server`: the state every connection of one `serve` call shares, and `Sessions`, the registry of live
//! WebSocket connections that shutdown walks.

use std::sync::Arc;

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use ws_core::{ConnId, Hub, IdHash, RefusalReason, ShardedMap, UpgradeRefusal};
use ws_protocol::ServerMessage;

use crate::caps::Caps;
use crate::config::TransportConfig;
use crate::outbound::{CloseRequest, Flush, Outbound};
use crate::relay::Rooms;
use crate::stats::Rejection;
use crate::timers::Timers;

/// What one `serve` call shares with its connections.
#[derive(Debug)]
pub(crate) struct Server {
    /// The hub `/ws` connections register with.
    pub(crate) hub: Hub,
    /// The configuration.
    pub(crate) config: TransportConfig,
    /// The connection caps.
    pub(crate) caps: Arc<Caps>,
    /// The relay's rooms.
    pub(crate) rooms: Rooms,
    /// Every live WebSocket connection.
    pub(crate) sessions: Sessions,
    /// Every task this server spawned (HTTP connections and WebSocket sessions), so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    /// Cancelled when shutdown starts.
    pub(crate) shutdown: CancellationToken,
    /// Every session's timer, and the clock sessions read.
    pub(crate) timers: Arc<Timers>,
}

impl Server {
    /// Server state for `hub` and `config`.
    pub(crate) fn new(hub: Hub, config: TransportConfig) -> Arc<Self> {
        Arc::new(Self {
            caps: Caps::new(config.max_connections, config.max_connections_per_ip),
            hub,
            config,
            rooms: Rooms::default(),
            sessions: Sessions::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
            timers: Arc::default(),
        })
    }

    /// Counts an upgrade refused for `reason` and reports it to the hub's hooks. `path` carries no query string.
    pub(crate) fn refused(&self, reason: RefusalReason, peer: SocketAddr, path: &str) {
        if let Some(rejection) = Rejection::of(reason) {
            self.config.stats.rejected(rejection);
        }
        self.hub.upgrade_refused(&UpgradeRefusal::new(reason, peer, path));
    }

    /// The close request that tells a connection the server is going away: a graceful 1001, with a
    /// `disconnect` notice first on `/ws`.
    pub(crate) fn going_away(&self, hub_endpoint: bool, position: usize, total: usize) -> CloseRequest {
        const REASON: &str = "server shutting down";
        let code = ws_protocol::close::GOING_AWAY;
        let notice = hub_endpoint.then(|| {
            let reconnect_after_ms = self.config.shutdown_reconnect_after_ms(position, total);
            ServerMessage::Disconnect { code, reason: REASON.to_owned(), reconnect_after_ms }.encode()
        });
        CloseRequest { code, reason: REASON.to_owned(), flush: Flush::Drain, notice }
    }
}

/// The live WebSocket connections, by id: those on the hub endpoint and the others apart, so an entry is the
/// queue alone.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    hub: ShardedMap<ConnId, Arc<Outbound>, IdHash>,
    other: ShardedMap<ConnId, Arc<Outbound>, IdHash>,
}

impl Sessions {
    fn map(&self, hub_endpoint: bool) -> &ShardedMap<ConnId, Arc<Outbound>, IdHash> {
        if hub_endpoint {
            &self.hub
        } else {
            &self.other
        }
    }

    /// Registers a session.
    pub(crate) fn insert(&self, outbound: Arc<Outbound>, hub_endpoint: bool) {
        let id = ws_core::Conn::id(&*outbound);
        self.map(hub_endpoint).insert(id, outbound);
    }

    /// Unregisters a session.
    pub(crate) fn remove(&self, id: ConnId, hub_endpoint: bool) {
        self.map(hub_endpoint).remove(&id);
    }

    /// Every session's queue, and whether it is on the hub endpoint.
    pub(crate) fn snapshot(&self) -> Vec<(Arc<Outbound>, bool)> {
        let mut all = Vec::with_capacity(self.len());
        for hub_endpoint in [true, false] {
            all.extend(self.map(hub_endpoint).values_cloned().into_iter().map(|o| (o, hub_endpoint)));
        }
        all
    }

    /// How many sessions are registered.
    pub(crate) fn len(&self) -> usize {
        self.hub.len() + self.other.len()
    }
}
