//! An echo server for the Autobahn|Testsuite (`cargo xtask autobahn`): the production read path and limits,
//! on an echo endpoint, with the message limits raised for the suite's 16 MiB performance cases.
//!
//! Usage: `autobahn_echo [ADDR]` (default `127.0.0.1:0`). It prints `listening on <addr>` once bound and serves
//! until interrupted.

use std::io::Write as _;
use std::sync::Arc;

use ws_core::Hub;
use ws_transport::{serve, SystemClock, TransportConfig};

/// The path the echo endpoint is served on.
const ECHO_PATH: &str = "/echo";

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    let config = TransportConfig::default()
        .echo_path(Some(ECHO_PATH.to_owned()))
        // The 9.x cases send messages of up to 16 MiB, and up to a million fragments of one byte.
        .max_message_size(16 << 20)
        .max_fragments(1 << 20)
        // The 9.x cases send thousands of messages back to back.
        .rate_limit(None);
    let hub = Hub::builder(Arc::new(SystemClock)).build();
    println!("listening on {}{ECHO_PATH}", listener.local_addr()?);
    std::io::stdout().flush()?;
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    serve(listener, hub, config, shutdown).await
}
