//! The reference server's sockets: the registry of sockets and channels, the read loop of each route, and the
//! heartbeat sweep.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::upgrade::UpgradeFut;
use hyper_util::rt::TokioIo;
use indexmap::IndexMap;
use memchr::memmem;
use parking_lot::Mutex;
use tokio::net::TcpStream;

use super::peer::Peer;
use crate::wire;

/// Which behaviour a socket gets, by request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Route {
    /// `/echo`: every data frame comes back.
    Echo,
    /// `/broadcast`: every data frame goes to every socket on this route.
    Broadcast,
    /// `/ws`: the prefix-matched subset of the hub protocol.
    Hub,
}

type Peers = IndexMap<u64, Arc<Peer>>;

/// Every socket, every channel's subscribers and the broadcast route's sockets.
#[derive(Debug)]
pub(super) struct Registry {
    next_id: AtomicU64,
    heartbeat_ms: u64,
    tick: AtomicU32,
    peers: Mutex<Peers>,
    channels: Mutex<HashMap<Box<str>, Peers>>,
    broadcast: Mutex<Peers>,
}

impl Registry {
    pub(super) fn new(heartbeat_ms: u64) -> Self {
        Self {
            next_id: AtomicU64::new(1),
            heartbeat_ms,
            tick: AtomicU32::new(0),
            peers: Mutex::new(IndexMap::new()),
            channels: Mutex::new(HashMap::new()),
            broadcast: Mutex::new(IndexMap::new()),
        }
    }

    fn tick(&self) -> u32 {
        self.tick.load(Ordering::Relaxed)
    }

    fn subscribe(&self, channel: &str, peer: &Arc<Peer>) -> bool {
        let mut channels = self.channels.lock();
        match channels.get_mut(channel) {
            Some(subscribers) => subscribers.insert(peer.id, peer.clone()).is_none(),
            None => {
                channels.insert(channel.into(), IndexMap::from([(peer.id, peer.clone())]));
                true
            }
        }
    }

    fn unsubscribe(&self, channel: &str, id: u64) {
        let mut channels = self.channels.lock();
        if let Some(subscribers) = channels.get_mut(channel) {
            subscribers.swap_remove(&id);
            if subscribers.is_empty() {
                channels.remove(channel);
            }
        }
    }

    fn publish(&self, channel: &str, frame: &Bytes) {
        if let Some(subscribers) = self.channels.lock().get(channel) {
            for peer in subscribers.values() {
                peer.push(frame.clone());
            }
        }
    }
}

/// The value of `"channel":"..."` in a command, without JSON parsing (channel names need no escapes).
fn channel_of(payload: &[u8]) -> Option<&str> {
    let start = memmem::find(payload, b"\"channel\":\"")? + 11;
    let len = memchr::memchr(b'"', &payload[start..])?;
    std::str::from_utf8(&payload[start..start + len]).ok()
}

/// The largest client frame the reference takes (the hub's default limit is 64 KiB).
const MAX_FRAME: usize = 1 << 20;

thread_local! {
    /// The receive buffer every socket of a thread reads into (as uWebSockets does): an idle socket holds no
    /// read buffer, only the unparsed tail of a frame that arrived in pieces.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 64 * 1024]);
}

/// What woke a socket's task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Frames are queued for it (or it was closed).
    Queued,
    /// The socket has bytes to read.
    Readable,
    /// The socket takes bytes again.
    Writable,
}

/// One socket's state, owned by its task.
struct Socket {
    peer: Arc<Peer>,
    route: Route,
    /// Bytes to write: replies to this socket and frames taken from its queue.
    out: Vec<u8>,
    written: usize,
    /// The start of a frame whose end has not arrived yet.
    partial: Vec<u8>,
    channels: Vec<Box<str>>,
    /// The socket is ending: write what is owed, then close.
    closing: bool,
    /// The last read published to other sockets.
    fanned_out: bool,
}

/// Serves one upgraded socket on `route` until it closes: one task that reads, writes and handles frames, so
/// that a reply needs no second task's wake-up.
pub(super) async fn run(upgrade: UpgradeFut, route: Route, registry: Arc<Registry>) {
    let Ok(ws) = upgrade.await else { return };
    // Take the TCP stream back from hyper's type-erased upgrade, so that reads and writes go straight to it.
    let Ok(parts) = ws.into_inner().into_inner().downcast::<TokioIo<TcpStream>>() else { return };
    let stream = parts.io.into_inner();
    let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
    let peer = Arc::new(Peer::new(id, registry.tick()));
    registry.peers.lock().insert(id, peer.clone());
    let mut socket = Socket {
        peer,
        route,
        out: Vec::new(),
        written: 0,
        partial: parts.read_buf.to_vec(),
        channels: Vec::new(),
        closing: false,
        fanned_out: false,
    };
    match route {
        Route::Hub => {
            let welcome = format!(
                r#"{{"type":"welcome","conn_id":"{id:016x}","user_id":null,"heartbeat_ms":{},"version":1}}"#,
                registry.heartbeat_ms
            );
            wire::put_server_frame(&mut socket.out, wire::OP_TEXT, welcome.as_bytes());
        }
        Route::Broadcast => {
            registry.broadcast.lock().insert(id, socket.peer.clone());
        }
        Route::Echo => {}
    }
    if !socket.partial.is_empty() {
        let mut partial = std::mem::take(&mut socket.partial);
        let used = socket.frames(&mut partial, &registry);
        socket.partial = partial.split_off(used);
    }
    let _ = socket.serve(&stream, &registry).await;

    registry.peers.lock().swap_remove(&id);
    registry.broadcast.lock().swap_remove(&id);
    for channel in &socket.channels {
        registry.unsubscribe(channel, id);
    }
    socket.peer.close();
}

impl Socket {
    async fn serve(&mut self, stream: &TcpStream, registry: &Registry) -> std::io::Result<()> {
        loop {
            if self.peer.take(&mut self.out) {
                self.closing = true;
            }
            self.flush(stream)?;
            let pending = self.written < self.out.len();
            if self.closing && !pending {
                return Ok(());
            }
            let event = std::future::poll_fn(|cx| {
                if self.peer.poll_queued(cx) {
                    return Poll::Ready(Ok(Event::Queued));
                }
                if !self.closing {
                    if let Poll::Ready(ready) = stream.poll_read_ready(cx) {
                        return Poll::Ready(ready.map(|()| Event::Readable));
                    }
                }
                if pending {
                    if let Poll::Ready(ready) = stream.poll_write_ready(cx) {
                        return Poll::Ready(ready.map(|()| Event::Writable));
                    }
                }
                Poll::Pending
            })
            .await?;
            if event == Event::Readable && self.read(stream, registry)? {
                // This socket published to others, whose tasks may be about to publish too: let every task
                // woken in this turn run first, so that each socket's write takes a whole turn's frames.
                tokio::task::yield_now().await;
            }
        }
    }

    /// Writes what is owed until done or the socket is full.
    fn flush(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        while self.written < self.out.len() {
            match stream.try_write(&self.out[self.written..]) {
                Ok(n) => self.written += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.written = 0;
        self.out.clear();
        // An idle socket keeps no big buffer.
        if self.out.capacity() > 64 * 1024 {
            self.out = Vec::new();
        }
        Ok(())
    }

    /// Reads what the socket has (into the thread's buffer) and handles every complete frame; returns whether
    /// it fanned anything out to other sockets.
    fn read(&mut self, stream: &TcpStream, registry: &Registry) -> std::io::Result<bool> {
        self.fanned_out = false;
        READ_BUF.with(|buf| {
            let mut buf = buf.borrow_mut();
            for _ in 0..4 {
                let n = match stream.try_read(&mut buf) {
                    Ok(0) => {
                        self.closing = true;
                        return Ok(self.fanned_out);
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(self.fanned_out),
                    Err(e) => return Err(e),
                };
                if self.partial.is_empty() {
                    let used = self.frames(&mut buf[..n], registry);
                    self.partial.extend_from_slice(&buf[used..n]);
                } else {
                    let mut partial = std::mem::take(&mut self.partial);
                    partial.extend_from_slice(&buf[..n]);
                    let used = self.frames(&mut partial, registry);
                    partial.drain(..used);
                    self.partial = partial;
                }
                if self.partial.is_empty() && self.partial.capacity() > 0 {
                    self.partial = Vec::new();
                }
                if self.closing || n < buf.len() {
                    return Ok(self.fanned_out);
                }
            }
            Ok(self.fanned_out)
        })
    }

    /// Handles every complete frame at the start of `buf`; returns how many bytes they took.
    fn frames(&mut self, buf: &mut [u8], registry: &Registry) -> usize {
        let mut at = 0;
        let mut seen = false;
        while !self.closing {
            let frame = match wire::parse_client_frame(&mut buf[at..], MAX_FRAME) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => {
                    self.close(1002);
                    break;
                }
            };
            seen = true;
            let payload = &buf[at + frame.payload_start..at + frame.end];
            match frame.opcode {
                wire::OP_TEXT | wire::OP_BINARY if frame.fin => match self.route {
                    Route::Echo => wire::put_server_frame(&mut self.out, frame.opcode, payload),
                    Route::Broadcast => {
                        self.fanned_out = true;
                        let out = wire::server_frame(frame.opcode, payload);
                        for other in registry.broadcast.lock().values() {
                            other.push(out.clone());
                        }
                    }
                    Route::Hub => self.hub_command(payload, registry),
                },
                wire::OP_PING => wire::put_server_frame(&mut self.out, wire::OP_PONG, payload),
                wire::OP_PONG => {}
                wire::OP_CLOSE => {
                    wire::put_server_frame(&mut self.out, wire::OP_CLOSE, payload);
                    self.closing = true;
                }
                // The scenarios never fragment; the reference does not reassemble.
                _ => self.close(1002),
            }
            at += frame.end;
        }
        if seen {
            self.peer.seen(registry.tick());
        }
        at
    }

    fn close(&mut self, code: u16) {
        wire::put_server_frame(&mut self.out, wire::OP_CLOSE, &code.to_be_bytes());
        self.closing = true;
    }

    /// One `/ws` command, recognised by its prefix; anything else is ignored.
    fn hub_command(&mut self, payload: &[u8], registry: &Registry) {
        if payload.starts_with(br#"{"type":"publish""#) {
            if let Some(channel) = channel_of(payload) {
                self.fanned_out = true;
                registry.publish(channel, &wire::server_frame(wire::OP_TEXT, payload));
            }
        } else if payload.starts_with(br#"{"type":"subscribe""#) {
            if let Some(channel) = channel_of(payload) {
                if registry.subscribe(channel, &self.peer) {
                    self.channels.push(channel.into());
                }
                let reply = format!(r#"{{"type":"subscribed","channel":"{channel}","epoch":"ref","offset":0}}"#);
                wire::put_server_frame(&mut self.out, wire::OP_TEXT, reply.as_bytes());
            }
        } else if payload.starts_with(br#"{"type":"echo""#) {
            wire::put_server_frame(&mut self.out, wire::OP_TEXT, payload);
        }
    }
}

/// Pings every socket each `interval`, and closes with 4001 those that sent nothing for two intervals.
pub(super) async fn heartbeats(registry: Arc<Registry>, interval: Duration) {
    let ping = wire::server_frame(wire::OP_PING, b"");
    let mut close = 4001u16.to_be_bytes().to_vec();
    close.extend_from_slice(b"heartbeat timeout");
    let close = wire::server_frame(wire::OP_CLOSE, &close);
    let mut ticks = tokio::time::interval(interval);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let tick = registry.tick.fetch_add(1, Ordering::Relaxed) + 1;
        for peer in registry.peers.lock().values() {
            if tick.wrapping_sub(peer.last_seen()) > 2 {
                peer.push(close.clone());
                peer.close();
            } else {
                peer.push(ping.clone());
            }
        }
    }
}
