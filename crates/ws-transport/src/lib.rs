//! ws-hub's WebSocket transport: hyper 1.x HTTP/1.1 with upgrades, frames read and limited here, one task per
//! connection with corked writes and heartbeats, and the relay endpoint.
//!
//! [`serve()`] takes a bound listener, a [`ws_core::Hub`], a [`TransportConfig`] and a shutdown future. It serves
//! the hub's JSON protocol on `/ws`, the raw relay on `/relay/{room}`, `/healthz`, and hands every other
//! request to the configured [`HttpHandler`]. Each WebSocket connection implements [`ws_core::Conn`] with a
//! bounded send queue, so the hub never waits on a socket.
//!
//! ```no_run
//! use std::sync::Arc;
//! use ws_core::Hub;
//! use ws_transport::{serve, SystemClock, TransportConfig};
//!
//! #[tokio::main]
//! async fn main() -> std::io::Result<()> {
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//!     let hub = Hub::builder(Arc::new(SystemClock)).build();
//!     let shutdown = async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     };
//!     serve(listener, hub, TransportConfig::default(), shutdown).await
//! }
//! ```
//!
//! Every limit of [`TransportConfig`] is enforced in this crate, because fastwebsockets 0.10 does not enforce
//! them all: the handshake timeout and header size (through hyper), the message size across fragments, the
//! fragment cap, masking, control frame rules and UTF-8 (in the frame decoder), the connection caps, and the
//! rate limit.
//!
//! With the `tls` feature, [`TransportConfig::tls`] takes a rustls `ServerConfig` and every connection
//! is TLS; [`TransportConfig::stats`] shares the transport's counters ([`TransportStats`]) with a metrics exporter.
//! The `fuzzing` feature adds `fuzzing::FrameStream`, the frame decoder as the fuzz targets in `/fuzz` drive it.

mod caps;
mod clock;
mod config;
mod decoder;
mod frame;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
mod handshake;
mod http;
mod outbound;
mod output;
mod rate;
mod registration;
mod relay;
mod serve;
mod server;
mod session;
mod stats;
mod stream;
mod timers;

pub use clock::SystemClock;
pub use config::{RateLimit, TransportConfig};
pub use http::{json_error, HttpHandler};
pub use serve::serve;
pub use stats::{Rejection, TransportSnapshot, TransportStats};
pub use ws_core::DelayHistogram;

/// The subprotocol the hub endpoint selects when a client offers it.
pub const SUBPROTOCOL: &str = handshake::SUBPROTOCOL;
