//! The ws-hub core: a transport-agnostic hub of connections and channels.
//!
//! The core does no IO, never awaits and never reads a clock: a transport
//! implements [`Conn`] for each connection, registers it with the [`Hub`], and
//! feeds the client's text frames to [`Hub::handle_text`]. The hub answers on
//! the connection, fans publications out to subscribers (encoding each once),
//! and applies namespace policy, authorization and backpressure.
//!
//! On one node every command completes before `handle_text` returns. With a clustered [`Broker`] (the
//! Redis broker of `ws-redis`), the broker numbers and stores publications and confirms subscriptions;
//! commands that wait for it reply later, through the same [`Conn`], when it calls back (see [`Broker`]).
//!
//! ```
//! use std::sync::Arc;
//! use ws_core::{Hub, Identity};
//! use ws_core::test_util::{ManualClock, RecordingConn};
//! use ws_protocol::ServerMessage;
//!
//! let hub = Hub::builder(ManualClock::new(0)).build();
//! let alice = RecordingConn::new(hub.next_conn_id());
//! hub.register(alice.clone(), Identity::user("alice"), None).unwrap();
//!
//! hub.handle_text(alice.id(), br#"{"type":"subscribe","id":1,"channel":"news"}"#);
//! hub.handle_text(alice.id(), br#"{"type":"publish","channel":"news","data":"hello"}"#);
//!
//! let got = alice.messages();
//! assert!(matches!(&got[0], ServerMessage::Subscribed { offset: 0, .. }));
//! let ServerMessage::Message(p) = &got[1] else { panic!("expected a message") };
//! assert_eq!((p.offset, p.data.as_str()), (1, "\"hello\""));
//! ```

mod broker;
mod budget;
mod channel;
mod clock;
mod cluster;
mod commands;
mod conn;
mod connections;
mod handler;
mod history;
mod hooks;
mod hub;
mod namespace;
mod policy;
mod presence;
mod process;
mod publish;
mod registry;
mod sharded;
mod stats;
mod subscriptions;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
mod wake;

pub use broker::{
    Broker, BrokerError, Control, Done, HistoryReply, HistoryRequest, LocalBroker, Position, PublishRequest,
};
pub use clock::Clock;
pub use conn::{Conn, ConnId, SendError};
pub use handler::{CustomCommand, Handler, HandlerError};
pub use hooks::{DisconnectReason, Hooks, NoHooks, RefusalReason, UpgradeRefusal};
pub use hub::{CommandError, ConnInfo, Hub, HubBuilder, HubConfig, RegisterError, WeakHub};
pub use namespace::{NamespaceConfig, Namespaces, SlowConsumerPolicy};
pub use policy::{
    Action, AllowAnonymous, AuthError, AuthRequest, Authenticator, ChannelAuthorizer, Denial, Identity,
    NamespaceAuthorizer,
};
pub use presence::HistoryPage;
pub use sharded::{IdHash, IdHasher, ShardedMap};
pub use stats::{DelayHistogram, DropReason, StatsSnapshot, StripedCounter};
pub use subscriptions::Subscribed;
pub use wake::{deferring, wake};
pub use ws_protocol;
pub use ws_protocol::{ProcessError, ProcessEvent, ProcessOutput, ProcessState, ProcessStatus, ProcessStream};
