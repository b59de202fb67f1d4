//! `serve`: the accept loop, HTTP/1.1 connections and routing, the hub's sweeper, and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};

use crate::stream::Stream;
use ws_core::Hub;

use crate::config::TransportConfig;
use crate::handshake;
use crate::http::{json_error, text};
use crate::registration::EndpointKind;
use crate::server::Server;

/// hyper refuses a read buffer smaller than this.
const MIN_HTTP_BUFFER: usize = 8192;

/// Serves the hub (and the relay, `/healthz` and the [`crate::HttpHandler`] routes) on `listener` until
/// `shutdown` completes, then shuts down gracefully.
///
/// Shutting down stops accepting, sends every `/ws` client a `disconnect` frame (code 1001, reason
/// `server shutting down`, `reconnect_after_ms` from [`TransportConfig::shutdown_reconnect_after_ms`]) and
/// then closes every WebSocket with 1001, letting queued messages flush. It waits for connections to finish,
/// for at most [`TransportConfig::drain_timeout`], drops those still open, and returns.
///
/// While serving it also sweeps the hub's idle channels every [`TransportConfig::sweep_interval`].
///
/// # Errors
/// Only when the listener cannot report its address. Failed accepts (a client that went away, the process out
/// of file descriptors) are logged and retried, so a busy server does not stop serving.
///
/// # Cancel safety
/// Dropping the returned future stops accepting but leaves connection tasks running; complete `shutdown`
/// instead to close them.
pub async fn serve(
    listener: TcpListener,
    hub: Hub,
    config: TransportConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    let server = Server::new(hub, config);
    tracing::info!(addr = %local, "serving");
    let sweeper = tokio::spawn(sweep(Arc::clone(&server)));
    let timers = tokio::spawn(Arc::clone(&server.timers).drive());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    server.tasks.spawn(accept(Arc::clone(&server), stream, peer));
                }
                Err(error) => accept_failed(&error).await,
            },
        }
    }
    drop(listener);
    drain(&server).await;
    sweeper.abort();
    timers.abort();
    tracing::info!(addr = %local, "stopped");
    Ok(())
}

/// Logs a failed accept and, unless it was just one client's trouble, backs off a little: the usual cause is
/// running out of file descriptors, which only closing connections cures.
async fn accept_failed(error: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset, Interrupted};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset | Interrupted) {
        return;
    }
    tracing::error!(%error, "accept failed; retrying");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Sweeps the hub's idle channels now and then.
async fn sweep(server: Arc<Server>) {
    let mut interval = tokio::time::interval(server.config.sweep_interval.max(Duration::from_millis(1)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let removed = server.hub.sweep();
        if removed > 0 {
            tracing::debug!(removed, "swept idle channels");
        }
    }
}

/// Sets up one accepted socket (TLS first, when configured) and serves it.
async fn accept(server: Arc<Server>, tcp: TcpStream, peer: SocketAddr) {
    // Small frames must not wait for Nagle: the writer corks on its own.
    let _ = tcp.set_nodelay(true);
    #[cfg(feature = "tls")]
    if let Some(tls) = server.config.tls.clone() {
        // The TLS handshake counts against the handshake timeout too.
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        match tokio::time::timeout(server.config.handshake_timeout, acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => serve_http(server, Stream::Tls(Box::new(tls)), peer).await,
            Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        }
        return;
    }
    serve_http(server, Stream::Tcp(tcp), peer).await;
}

/// Serves one connection's HTTP/1.1 requests, handing upgrades to sessions.
async fn serve_http(server: Arc<Server>, stream: Stream, peer: SocketAddr) {
    let config = &server.config;
    let service_server = Arc::clone(&server);
    let service = service_fn(move |request| {
        let server = Arc::clone(&service_server);
        async move { Ok::<_, Infallible>(route(&server, request, peer).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // fastwebsockets 0.10 has no handshake limits; hyper enforces these two for us. A request head that does
        // not arrive in time (slow or partial requests) drops the connection.
        .header_read_timeout(config.handshake_timeout)
        // hyper answers a larger head with 431.
        .max_header_size(config.max_header_bytes)
        .max_buf_size(config.max_header_bytes.max(MIN_HTTP_BUFFER));
    let connection = builder.serve_connection(TokioIo::new(stream), service).with_upgrades();
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "http connection ended");
            }
        }
        () = server.shutdown.cancelled() => {
            // Finish the request in flight (an upgrade in progress still hands its socket over), then close.
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(config.drain_timeout, connection).await;
        }
    }
}

/// Routes one request.
async fn route(server: &Arc<Server>, request: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let config = &server.config;
    let path = request.uri().path();
    if path == "/healthz" {
        return text("ok");
    }
    if path == config.ws_path {
        return handshake::upgrade(server, request, peer, EndpointKind::Hub).await;
    }
    // An empty prefix turns the relay off (it would otherwise match every path).
    let relay = Some(config.relay_path_prefix.as_str()).filter(|p| !p.is_empty());
    if let Some(room) = relay.and_then(|prefix| path.strip_prefix(prefix)) {
        if ws_protocol::validate_channel(room).is_err() {
            if fastwebsockets::upgrade::is_upgrade_request(&request) {
                server.refused(ws_core::RefusalReason::BadRequest, peer, path);
            }
            return json_error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "a room name is 1 to 255 bytes of A-Z a-z 0-9 _ - . : @ / = #",
            );
        }
        let room = room.into();
        return handshake::upgrade(server, request, peer, EndpointKind::Relay(room)).await;
    }
    if config.echo_path.as_deref() == Some(path) {
        return handshake::upgrade(server, request, peer, EndpointKind::Echo).await;
    }
    match &config.http_handler {
        Some(handler) => handler.handle(request, peer).await,
        None => json_error(StatusCode::NOT_FOUND, "not_found", "no such route"),
    }
}

/// Shuts down gracefully: every WebSocket is told to go away, then connections get
/// [`TransportConfig::drain_timeout`] to finish before the rest are dropped.
async fn drain(server: &Arc<Server>) {
    let config: &TransportConfig = &server.config;
    server.shutdown.cancel();
    let sessions = server.sessions.snapshot();
    tracing::info!(connections = sessions.len(), "shutting down");
    // Only `/ws` clients are told when to come back, so the spread is over them.
    let hub_total = sessions.iter().filter(|(_, hub_endpoint)| *hub_endpoint).count();
    let mut hub_position = 0;
    for (outbound, hub_endpoint) in &sessions {
        outbound.request_close(server.going_away(*hub_endpoint, hub_position, hub_total));
        hub_position += usize::from(*hub_endpoint);
    }
    server.tasks.close();
    if tokio::time::timeout(config.drain_timeout, server.tasks.wait()).await.is_ok() {
        return;
    }
    let left = server.sessions.len();
    tracing::warn!(connections = left, "drain deadline passed; dropping the connections left");
    for (outbound, _) in server.sessions.snapshot() {
        outbound.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), server.tasks.wait()).await;
}
