//! Shared test helpers: the two runtimes every test runs on, a server on `127.0.0.1:0`, a tokio-tungstenite
//! client (an independent implementation), raw HTTP requests, and a raw-frame client for the malformed input no
//! real client sends.
//!
//! Every wait has a generous guard so a broken server fails the test instead of hanging it; the guards are not
//! assertions about speed.

#![allow(dead_code, unreachable_pub)]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use ws_core::Hub;
use ws_transport::{serve, SystemClock, TransportConfig};

/// The runtime a test, its server and its clients run on.
#[derive(Debug, Clone, Copy)]
pub enum Runtime {
    /// One thread, as `#[tokio::test]` gives: the sessions, the hub's callers and the clients take turns.
    CurrentThread,
    /// Two worker threads, as `ws-server --workers 2` runs: a session, the sessions it publishes to and the test
    /// itself run in parallel, so races between them can happen.
    TwoWorkers,
}

impl Runtime {
    /// Runs `test` to completion on a fresh runtime of this kind, with IO and timers on.
    pub fn block_on<F: Future>(self, test: F) -> F::Output {
        let mut builder = match self {
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Self::TwoWorkers => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(2);
                builder
            }
        };
        builder.enable_all().build().expect("a tokio runtime").block_on(test)
    }
}

/// Declares a test per runtime for each listed `async fn`: `current_thread::NAME` and `two_workers::NAME`, so
/// every transport test also runs where sessions really run in parallel. A test left out of the list is an
/// unused function, which clippy refuses.
macro_rules! on_both_runtimes {
    ($($test:ident),+ $(,)?) => {
        mod current_thread {
            $(
                #[test]
                fn $test() {
                    $crate::common::Runtime::CurrentThread.block_on(super::$test())
                }
            )+
        }
        mod two_workers {
            $(
                #[test]
                fn $test() {
                    $crate::common::Runtime::TwoWorkers.block_on(super::$test())
                }
            )+
        }
    };
}
pub(crate) use on_both_runtimes;

/// How long any single wait may take before the test is declared stuck.
pub const GUARD: Duration = Duration::from_secs(20);

/// A tokio-tungstenite client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A hub on the system clock with the default configuration.
pub fn hub() -> Hub {
    Hub::builder(Arc::new(SystemClock)).build()
}

/// A server serving on an ephemeral port until shut down.
pub struct TestServer {
    pub addr: SocketAddr,
    pub hub: Hub,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// Serves a fresh hub with `config`.
    pub async fn start(config: TransportConfig) -> Self {
        Self::with_hub(hub(), config).await
    }

    /// Serves `hub` with `config`.
    pub async fn with_hub(hub: Hub, config: TransportConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, hub.clone(), config, async move {
            let _ = rx.await;
        }));
        Self { addr, hub, shutdown: Some(tx), task: Some(task) }
    }

    /// A `ws://` URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Triggers shutdown without waiting for it.
    pub fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// Triggers shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.trigger_shutdown();
        let task = self.task.take().expect("serving");
        tokio::time::timeout(GUARD, task).await.expect("serve returns after shutdown").expect("serve task")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.trigger_shutdown();
    }
}

/// Connects a client to `path`.
pub async fn connect(server: &TestServer, path: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(server.url(path)))
        .await
        .expect("connect in time")
        .expect("connect");
    ws
}

/// Connects to `/ws` and returns the client and its `welcome`.
pub async fn connect_hub(server: &TestServer) -> (Ws, Value) {
    let mut ws = connect(server, "/ws").await;
    let welcome = next_json(&mut ws).await;
    assert_eq!(welcome["type"], "welcome", "the first frame is the welcome: {welcome}");
    (ws, welcome)
}

/// Connects with extra request headers; returns the handshake error when the server refuses.
pub async fn try_connect_with(
    server: &TestServer,
    path: &str,
    headers: &[(&'static str, &str)],
) -> Result<(Ws, tungstenite::handshake::client::Response), tungstenite::Error> {
    let mut request = server.url(path).into_client_request().expect("request");
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().expect("header value"));
    }
    tokio::time::timeout(GUARD, tokio_tungstenite::connect_async(request)).await.expect("handshake in time")
}

/// The refused handshake's status, `Retry-After` and JSON body.
pub fn refusal(error: tungstenite::Error) -> (u16, Option<String>, Value) {
    let tungstenite::Error::Http(response) = error else { panic!("expected an HTTP refusal, got {error:?}") };
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let body = response.body().clone().unwrap_or_default();
    let json = serde_json::from_slice(&body).unwrap_or_else(|e| panic!("body {body:?} is not JSON: {e}"));
    (response.status().as_u16(), retry_after, json)
}

/// The next text message, parsed; pings and pongs are skipped.
pub async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next()).await.expect("a message in time");
        match message.expect("the connection is open").expect("a valid message") {
            Message::Text(text) => return serde_json::from_str(&text).expect("JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a text message, got {other:?}"),
        }
    }
}

/// The next message that is not a ping or pong.
pub async fn next_message(ws: &mut Ws) -> Message {
    loop {
        let message = tokio::time::timeout(GUARD, ws.next()).await.expect("a message in time");
        match message.expect("the connection is open").expect("a valid message") {
            Message::Ping(_) | Message::Pong(_) => {}
            other => return other,
        }
    }
}

/// Sends a JSON command.
pub async fn send_json(ws: &mut Ws, value: &Value) {
    ws.send(Message::text(value.to_string())).await.expect("send");
}

/// Sends a command and returns the next message.
pub async fn request(ws: &mut Ws, value: &Value) -> Value {
    send_json(ws, value).await;
    next_json(ws).await
}

/// Reads until the server's close frame; returns its code and reason and the text messages before it.
pub async fn expect_close(ws: &mut Ws) -> (u16, String, Vec<Value>) {
    let mut before = Vec::new();
    loop {
        let message = tokio::time::timeout(GUARD, ws.next()).await.expect("the close in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => return (frame.code.into(), frame.reason.to_string(), before),
            Some(Ok(Message::Close(None))) => return (1005, String::new(), before),
            Some(Ok(Message::Text(text))) => before.push(serde_json::from_str(&text).expect("JSON")),
            Some(Ok(_)) => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// An HTTP response read off a raw socket.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

/// Sends raw request bytes and reads the response until the server closes or the head and body are in.
pub async fn raw_http(addr: SocketAddr, request: &[u8]) -> RawResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(GUARD, async {
        let mut chunk = [0u8; 4096];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if response_complete(&buf) {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    RawResponse { status, head: head.to_owned(), body: body.as_bytes().to_vec() }
}

fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    if head.starts_with("HTTP/1.1 101") {
        // Switching protocols: nothing more belongs to the HTTP response.
        return true;
    }
    let length = head
        .lines()
        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap_or(0)));
    length.is_some_and(|n: usize| body.len() >= n)
}

/// A WebSocket client that writes frames by hand, for input no real client would send.
pub struct RawClient {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// A frame the server sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Vec<u8>,
}

impl RawClient {
    /// Opens a WebSocket on `path` with a hand-written handshake.
    pub async fn connect(addr: SocketAddr, path: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let mut client = Self { stream, buf: Vec::new() };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        client.stream.write_all(request.as_bytes()).await.expect("write handshake");
        let head = client.read_head().await;
        assert!(head.starts_with("HTTP/1.1 101"), "expected 101, got {head}");
        client
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill().await, "connection closed during the handshake");
        }
    }

    /// Reads more bytes; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(GUARD, self.stream.read(&mut chunk)).await.expect("bytes in time") {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// Encodes a client frame; `mask` false leaves it unmasked.
    pub fn frame(fin: bool, opcode: u8, payload: &[u8], mask: bool) -> Vec<u8> {
        let mut out = vec![(u8::from(fin) << 7) | opcode];
        let mask_bit = if mask { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if mask {
            let key = [0x37, 0xFA, 0x21, 0x3D];
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(payload);
        }
        out
    }

    /// Sends one masked frame.
    pub async fn send(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&Self::frame(fin, opcode, payload, true)).await;
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next frame, or `None` at the end of the stream.
    pub async fn read_frame(&mut self) -> Option<ServerFrame> {
        loop {
            if let Some((frame, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Some(frame);
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads until the close frame and returns its code (`None` when the stream ends without one), and the
    /// text frames before it.
    pub async fn read_close(&mut self) -> (Option<u16>, Vec<String>) {
        let mut texts = Vec::new();
        while let Some(frame) = self.read_frame().await {
            match frame.opcode {
                0x8 => {
                    let code =
                        (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                    return (code, texts);
                }
                0x1 => texts.push(String::from_utf8(frame.payload).expect("server text is UTF-8")),
                _ => {}
            }
        }
        (None, texts)
    }

    /// Whether the server ends the stream (EOF or reset) without sending anything more than frames.
    pub async fn closed_by_server(&mut self) -> bool {
        while self.read_frame().await.is_some() {}
        true
    }
}

/// Parses one unmasked server frame from the front of `buf`.
fn parse_server_frame(buf: &[u8]) -> Option<(ServerFrame, usize)> {
    let [b0, b1, ..] = *buf else { return None };
    assert_eq!(b1 & 0x80, 0, "server frames are never masked");
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        n => (n as usize, 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((ServerFrame { fin: b0 & 0x80 != 0, opcode: b0 & 0x0F, payload }, at + len))
}
