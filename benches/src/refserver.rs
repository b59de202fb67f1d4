//! The reference server: the hub's HTTP and WebSocket stack (hyper 1 + fastwebsockets 0.10) with no hub in it,
//! the floor that stack allows. `cargo xtask bench` runs every scenario against it and against `ws-server` in
//! the same run, and reports the hub's figures as ratios to it.
//!
//! Routes:
//! - `/echo`: every data frame comes back.
//! - `/broadcast`: every data frame any client sends goes to every client on this route.
//! - `/ws`: the smallest subset of the hub protocol the scenarios use, with no JSON parsing: a `welcome` on
//!   connect, `subscribe` (answered with `subscribed`), `publish` (the client's frame goes unchanged to every
//!   subscriber of the channel) and `echo` (the frame comes back). Commands are recognised by their prefix.
//! - `/healthz`: 200.
//!
//! Each socket is one task that reads (into a receive buffer shared by the thread), handles frames and writes.
//! Fan-out encodes the frame once into shared `Bytes` and queues it on every recipient; each socket's task
//! takes everything queued and writes it, with its own replies, in one `write` call (corking). Heartbeats: one
//! sweep pings every socket each interval and closes (4001) those silent for two. fastwebsockets does the
//! upgrade handshake and unmasking; framing is done here, as the hub's transport does its own.

mod peer;
mod socket;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpSocket;

use socket::{Registry, Route};

/// The reference server: the hub's stack with no hub, for `cargo xtask bench`.
#[derive(Debug, clap::Parser)]
#[command(name = "ref-server")]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Worker threads; 1 runs single-threaded.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Ping interval in milliseconds; 0 turns heartbeats off.
    #[arg(long, default_value_t = 25_000)]
    heartbeat_ms: u64,
}

/// Runs the reference server with the process's arguments until it is killed.
pub fn main() -> ExitCode {
    let Cli { listen, workers, heartbeat_ms } = <Cli as clap::Parser>::parse();
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("ref-server: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(listen, heartbeat_ms)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ref-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(listen: SocketAddr, heartbeat_ms: u64) -> std::io::Result<()> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    let listener = socket.listen(4096)?;
    eprintln!("ref-server listening on {}", listener.local_addr()?);
    let registry = Arc::new(Registry::new(heartbeat_ms));
    if heartbeat_ms > 0 {
        tokio::spawn(socket::heartbeats(registry.clone(), Duration::from_millis(heartbeat_ms)));
    }
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors, most likely: back off briefly rather than spin.
                eprintln!("ref-server: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(route(request, registry)) }
            });
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

fn status(code: StatusCode) -> Response<Empty<Bytes>> {
    let mut response = Response::new(Empty::new());
    *response.status_mut() = code;
    response
}

fn route(mut request: Request<Incoming>, registry: Arc<Registry>) -> Response<Empty<Bytes>> {
    let route = match request.uri().path() {
        "/echo" => Route::Echo,
        "/broadcast" => Route::Broadcast,
        "/ws" => Route::Hub,
        "/healthz" => return status(StatusCode::OK),
        _ => return status(StatusCode::NOT_FOUND),
    };
    match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok((response, upgrade)) => {
            tokio::spawn(socket::run(upgrade, route, registry));
            response
        }
        Err(_) => status(StatusCode::BAD_REQUEST),
    }
}
