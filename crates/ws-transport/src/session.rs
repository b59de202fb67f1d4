//! `Session`: one WebSocket connection's task, reading, writing, heartbeats and closing, in one loop.
//!
//! A session is a single task that waits on four things at once: the socket becoming readable, the socket
//! accepting more bytes, its send queue (`Outbound`) getting items or a close request, and one timer for
//! pings, the pong timeout, token expiry, the write timeout and the close handshake. All of them are polled
//! by hand from one `poll_fn`, so nothing is ever cancelled half-way: reads use readiness and `poll_read_buf`,
//! writes continue from where the last one stopped.
//!
//! Writes are corked: everything queued is encoded into one buffer and written with as few syscalls as the
//! socket allows, once per batch rather than once per message. After a read that fans out (a publish, a
//! relayed frame), the session also holds its own flush: it reads what else the socket has, then yields once,
//! so the connections it woke, and other publishers, run first and every socket writes a whole turn at once.
//!
//! Idle, a session holds no buffers: the read and write buffers are given back as soon as they are empty.

use std::future::{poll_fn, Future as _};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use tokio::time::{Instant, Sleep};
use ws_core::DisconnectReason;
use ws_protocol::{close, ErrorCode, ServerMessage};

use crate::config::duration_ms;
use crate::decoder::{Decoded, Decoder, Incoming, Limits};
use crate::frame::{
    encode_close, encode_frame, encode_header, MAX_SERVER_HEADER, OP_BINARY, OP_PING, OP_PONG, OP_TEXT,
};
use crate::outbound::{CloseRequest, Flush, Item, Taken};
use crate::rate::{RateLimiter, Verdict};
use crate::registration::{Endpoint, Registration, ABNORMAL};
use crate::stream::Stream;

/// How many queued bytes are encoded into one batch (one write).
const BATCH_BYTES: usize = 64 * 1024;
/// Reading pauses while this many bytes wait to be written: a peer that does not read stops being read.
const READ_PAUSE_BYTES: usize = 256 * 1024;
/// How much to read at least per read call: enough for a big message (or a burst of small ones) in one
/// syscall. The buffer is only held while data is being handled (see `on_read`).
const READ_CHUNK: usize = 64 * 1024;
/// How many more reads a corked session (one whose reads fan out) does before it yields and flushes: this
/// bounds how much one publisher takes in per turn (tokio's cooperative budget bounds it too).
const MAX_CORKED_READS: usize = 4;
/// How many batches one wake-up writes before letting other tasks run.
const MAX_ROUNDS: usize = 8;
/// The close code reported to the hub when the peer's close frame had no code (never sent on the wire).
const NO_STATUS: u16 = 1005;

/// Where the close handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Messages flow.
    Open,
    /// Our close frame is written or being written; nothing but it is sent any more. `deadline` is set when it
    /// has been flushed; `peer_closed` once the peer's close frame arrived (then the session ends when flushed).
    Closing { deadline: Option<Instant>, peer_closed: bool },
}

/// What woke the session.
#[derive(Debug)]
enum Event {
    Read,
    Eof,
    Close(CloseRequest),
    Timer,
    /// Corked reads are done: yield once, then flush.
    Uncork,
    Finished,
    Abort,
    Failed(io::Error),
}

/// One WebSocket connection.
#[derive(Debug)]
pub(crate) struct Session {
    reg: Registration,
    stream: Stream,
    decoder: Decoder,
    rbuf: BytesMut,
    /// How many bytes `rbuf` must hold before the decoder can go on.
    want: usize,
    wbuf: Vec<u8>,
    /// How much of `wbuf` is written.
    wpos: usize,
    batch: Vec<Item>,
    timer: Pin<Box<Sleep>>,
    timer_at: Instant,
    last_recv: Instant,
    next_ping: Instant,
    expires: Option<Instant>,
    /// When the last write made progress (or writing became due).
    last_write: Instant,
    limiter: Option<RateLimiter>,
    phase: Phase,
    done: bool,
    /// The last read queued frames on other connections (a publish, a relayed frame).
    fanned_out: bool,
    /// Reads done since a read fanned out, while our flush is held (0: not corked).
    corked_reads: usize,
    reason: Option<DisconnectReason>,
}

/// Runs one upgraded connection to its end; dropping the registration at the end unregisters it.
pub(crate) async fn run(reg: Registration, stream: Stream, read_buf: Bytes, peer: SocketAddr) {
    let config = &reg.server.config;
    let now = Instant::now();
    let expires = reg.expires_at_ms.map(|at| now + Duration::from_millis(at.saturating_sub(reg.server.hub.now_ms())));
    let limits = Limits { max_message_size: config.max_message_size, max_fragments: config.max_fragments };
    let next_ping = now + config.heartbeat_interval;
    // Copy what hyper read past the handshake, then drop its buffer now: the `Bytes` shares hyper's whole
    // connection read buffer (8 KiB), and an argument of an `async fn` would otherwise live as long as the
    // connection.
    let rbuf = BytesMut::from(&read_buf[..]);
    drop(read_buf);
    let mut session = Session {
        stream,
        decoder: Decoder::new(limits),
        rbuf,
        want: 0,
        wbuf: Vec::new(),
        wpos: 0,
        batch: Vec::new(),
        timer: Box::pin(tokio::time::sleep_until(next_ping)),
        timer_at: next_ping,
        last_recv: now,
        next_ping,
        expires,
        last_write: now,
        limiter: config.rate_limit.map(|limit| RateLimiter::new(limit, now)),
        phase: Phase::Open,
        done: false,
        fanned_out: false,
        corked_reads: 0,
        reason: None,
        reg,
    };
    session.rearm();
    // The endpoint's name only: its `Debug` would print a relay room's members and their queued frames.
    let endpoint = match &session.reg.endpoint {
        Endpoint::Hub => "hub",
        Endpoint::Relay { .. } => "relay",
        Endpoint::Echo => "echo",
    };
    tracing::debug!(conn = %session.reg.id, %peer, endpoint, "connection open");
    session.run().await;
    session.reg.reason = session.reason.take();
}

impl Session {
    async fn run(&mut self) {
        if !self.rbuf.is_empty() {
            // The client sent frames right behind its handshake.
            self.on_read();
        }
        while !self.done {
            match poll_fn(|cx| self.poll_event(cx)).await {
                Event::Read => {
                    self.on_read();
                    if std::mem::take(&mut self.fanned_out) {
                        // Corking: this read queued frames on other connections. Hold our own flush and keep
                        // reading what the socket already has (see `poll_event`); then yield once.
                        self.corked_reads = self.corked_reads.max(1);
                    }
                }
                Event::Uncork => {
                    // Let every task woken in this turn (the subscribers, and other publishers that may fan
                    // out too) run first, so that each socket's next write carries the whole turn's frames
                    // instead of one write per publication.
                    self.corked_reads = 0;
                    tokio::task::yield_now().await;
                }
                Event::Eof => {
                    self.set_reason(ABNORMAL, "connection dropped");
                    self.done = true;
                }
                Event::Close(request) => self.on_close_request(request),
                Event::Timer => self.on_timer(),
                Event::Finished => self.done = true,
                Event::Abort => {
                    self.set_reason(close::GOING_AWAY, "server shutting down");
                    self.done = true;
                }
                Event::Failed(error) => {
                    tracing::debug!(conn = %self.reg.id, %error, "socket error");
                    self.set_reason(ABNORMAL, "socket error");
                    self.done = true;
                }
            }
        }
    }

    /// Bytes waiting to be written.
    fn pending(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        for round in 1..=MAX_ROUNDS {
            let items = self.phase == Phase::Open && self.pending() < BATCH_BYTES;
            let room = BATCH_BYTES.saturating_sub(self.pending());
            match self.reg.outbound.take(&mut self.batch, room, items, cx) {
                Taken::Items(waited) => {
                    if let Some(waited) = waited {
                        self.reg.server.config.stats.queue_delay.observe(waited);
                    }
                    self.encode_batch();
                }
                Taken::Close(request) => return Poll::Ready(Event::Close(request)),
                Taken::Abort => return Poll::Ready(Event::Abort),
                Taken::Empty => {}
            }
            if self.pending() == 0 || self.corked_reads > 0 {
                // Corked: the flush waits until the reads that fan out are done and other tasks had a turn.
                break;
            }
            match self.poll_flush(cx) {
                Poll::Ready(Ok(())) if round == MAX_ROUNDS => {
                    // Plenty written for one turn; come back after other tasks had theirs.
                    cx.waker().wake_by_ref();
                }
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => return Poll::Ready(Event::Failed(error)),
                Poll::Pending => break,
            }
        }
        if let Phase::Closing { peer_closed: true, .. } = self.phase {
            if self.pending() == 0 {
                return Poll::Ready(Event::Finished);
            }
        }
        if self.read_allowed() && self.corked_reads <= MAX_CORKED_READS {
            let want = self.want.max(self.rbuf.len() + READ_CHUNK);
            match self.stream.poll_read_into(cx, &mut self.rbuf, want) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Event::Eof),
                Poll::Ready(Ok(n)) => {
                    self.reg.server.config.stats.read(n);
                    if self.corked_reads > 0 {
                        self.corked_reads += 1;
                    }
                    return Poll::Ready(Event::Read);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Event::Failed(error)),
                Poll::Pending => {}
            }
        }
        if self.timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Event::Timer);
        }
        if self.corked_reads > 0 {
            // Nothing more to read now (or reading is paused): the held flush is due after one yield.
            return Poll::Ready(Event::Uncork);
        }
        Poll::Pending
    }

    fn read_allowed(&self) -> bool {
        match self.phase {
            Phase::Open => self.pending() < READ_PAUSE_BYTES,
            Phase::Closing { peer_closed, .. } => !peer_closed,
        }
    }

    /// Writes until the buffer is empty or the socket is full.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.wpos < self.wbuf.len() {
            match Pin::new(&mut self.stream).poll_write(cx, &self.wbuf[self.wpos..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.wpos += n;
                    self.last_write = Instant::now();
                    self.reg.server.config.stats.wrote(n);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // TLS may hold encrypted records back until flushed; on plain TCP this is a no-op.
        std::task::ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        // Give the buffer back: an idle connection holds none.
        self.wbuf = Vec::new();
        self.wpos = 0;
        if let Phase::Closing { deadline: None, peer_closed } = self.phase {
            let deadline = Instant::now() + self.reg.server.config.close_timeout;
            self.phase = Phase::Closing { deadline: Some(deadline), peer_closed };
            self.arm(deadline);
        }
        Poll::Ready(Ok(()))
    }

    /// Encodes the taken batch into the write buffer.
    fn encode_batch(&mut self) {
        let was_idle = self.pending() == 0;
        let total: usize = self.batch.iter().map(|item| item.len() + MAX_SERVER_HEADER).sum();
        self.wbuf.reserve(total);
        for item in self.batch.drain(..) {
            match item {
                Item::Text(payload) => {
                    encode_header(&mut self.wbuf, OP_TEXT, payload.len());
                    self.wbuf.extend_from_slice(&payload);
                }
                Item::Frame(frame) => self.wbuf.extend_from_slice(&frame),
            }
        }
        if self.batch.capacity() > 64 {
            self.batch = Vec::new();
        }
        if was_idle {
            self.write_due();
        }
    }

    /// Writing became due: the write timeout starts now.
    fn write_due(&mut self) {
        self.last_write = Instant::now();
        self.arm(self.last_write + self.reg.server.config.write_timeout);
    }

    /// Appends a frame of our own (a pong, a ping, an echo) to the write buffer, past the queue: control frames
    /// are never dropped.
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let was_idle = self.pending() == 0;
        encode_frame(&mut self.wbuf, opcode, payload);
        if was_idle {
            self.write_due();
        }
    }

    fn on_read(&mut self) {
        let now = Instant::now();
        self.last_recv = now;
        // Replies queued while we handle these frames are taken by the next `poll_event`; no wake-up needed.
        self.reg.outbound.set_running();
        while !self.done {
            if let Phase::Closing { deadline, .. } = self.phase {
                self.want = 0;
                match self.decoder.discard(&mut self.rbuf) {
                    Ok(Some(_)) => self.phase = Phase::Closing { deadline, peer_closed: true },
                    Ok(None) => {}
                    Err(()) => self.done = true,
                }
                break;
            }
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Decoded::Frame(incoming)) => self.on_incoming(incoming, now),
                Ok(Decoded::Fragment) => {}
                Ok(Decoded::NeedMore(n)) => {
                    self.want = n;
                    break;
                }
                Err(violation) => {
                    tracing::debug!(conn = %self.reg.id, reason = violation.reason(), "failing the connection");
                    self.close_with(violation.code(), violation.reason(), None);
                }
            }
        }
        if self.rbuf.is_empty() {
            // Give the buffer back: an idle connection holds none.
            self.rbuf = BytesMut::new();
        } else if self.rbuf.len() < self.rbuf.capacity() / 4 {
            // Only the start of a frame is left: keep it in a buffer of its own size rather than a whole read
            // chunk, so a peer that sends frames in pieces does not pin `READ_CHUNK` bytes while it waits.
            self.rbuf = BytesMut::from(&self.rbuf[..]);
        }
    }

    fn on_incoming(&mut self, incoming: Incoming, now: Instant) {
        match incoming {
            Incoming::Ping(payload) => self.send_frame(OP_PONG, &payload),
            Incoming::Pong => {}
            Incoming::Close(code) => {
                // The peer closes: answer with its code (RFC 6455 section 5.5.1), then end once that is written.
                self.set_reason(code.unwrap_or(NO_STATUS), "closed by peer");
                self.stop_queue(code.unwrap_or(close::NORMAL));
                let was_idle = self.pending() == 0;
                match code {
                    Some(code) => encode_close(&mut self.wbuf, code, ""),
                    None => encode_frame(&mut self.wbuf, crate::frame::OP_CLOSE, &[]),
                }
                if was_idle {
                    self.write_due();
                }
                self.phase = Phase::Closing { deadline: None, peer_closed: true };
            }
            Incoming::Text(payload) => self.on_message(true, &payload, now),
            Incoming::Binary(payload) => self.on_message(false, &payload, now),
        }
    }

    fn on_message(&mut self, text: bool, payload: &[u8], now: Instant) {
        // The rate limit is ours: neither fastwebsockets 0.10 nor the hub has one.
        let verdict = self.limiter.as_mut().map_or(Verdict::Allow, |l| l.check(now));
        match verdict {
            Verdict::Allow => {}
            Verdict::Limited => {
                if let Endpoint::Hub = self.reg.endpoint {
                    self.reg.server.hub.send_error(
                        self.reg.id,
                        None,
                        ErrorCode::RateLimited,
                        "rate limit exceeded; slow down",
                    );
                }
                return;
            }
            Verdict::Abuse => {
                let notice =
                    self.notice(close::RATE_LIMITED, "rate limit exceeded", self.reg.server.config.retry_after);
                self.close_with(close::RATE_LIMITED, "rate limit exceeded", notice);
                return;
            }
        }
        let opcode = if text { OP_TEXT } else { OP_BINARY };
        match &self.reg.endpoint {
            Endpoint::Hub if text => {
                if self.reg.server.hub.handle_text(self.reg.id, payload) {
                    self.fanned_out = true;
                }
            }
            Endpoint::Hub => self.reg.server.hub.handle_binary(self.reg.id),
            Endpoint::Relay { room, .. } => {
                // Encoded once, shared by every member.
                let mut frame = Vec::with_capacity(payload.len() + MAX_SERVER_HEADER);
                encode_frame(&mut frame, opcode, payload);
                room.forward(self.reg.id, &Bytes::from(frame), self.reg.server.config.relay_echo);
                self.fanned_out = true;
            }
            Endpoint::Echo => self.send_frame(opcode, payload),
        }
    }

    /// A `disconnect` notice for `/ws` clients; nothing on the other endpoints.
    fn notice(&self, code: u16, reason: &str, reconnect_after: Duration) -> Option<Bytes> {
        matches!(self.reg.endpoint, Endpoint::Hub).then(|| {
            let reconnect_after_ms = duration_ms(reconnect_after);
            ServerMessage::Disconnect { code, reason: reason.to_owned(), reconnect_after_ms }.encode()
        })
    }

    /// Closes the queue to new items: from now on the hub and the relay see the connection as closed.
    fn stop_queue(&self, code: u16) {
        self.reg.outbound.request_close(CloseRequest {
            code,
            reason: String::new(),
            flush: Flush::Abort,
            notice: None,
        });
    }

    /// Starts the close handshake from our side: the notice (if any), then the close frame.
    fn close_with(&mut self, code: u16, reason: &str, notice: Option<Bytes>) {
        if self.phase != Phase::Open {
            return;
        }
        self.set_reason(code, reason);
        self.stop_queue(code);
        // What was queued before the close (replies to the messages read so far) goes out before it.
        self.reg.outbound.take_all(&mut self.batch);
        if !self.batch.is_empty() {
            self.encode_batch();
        }
        let was_idle = self.pending() == 0;
        if let Some(notice) = notice {
            encode_frame(&mut self.wbuf, OP_TEXT, &notice);
        }
        encode_close(&mut self.wbuf, code, reason);
        if was_idle {
            self.write_due();
        }
        self.phase = Phase::Closing { deadline: None, peer_closed: false };
    }

    /// A close requested through the queue: by the hub, the relay, or shutdown.
    fn on_close_request(&mut self, request: CloseRequest) {
        if self.phase != Phase::Open {
            // Our own close, seen through the queue we stopped: it is already under way.
            return;
        }
        // Bytes held back by corking were never offered to the socket, so they do not mean a stalled peer.
        if request.flush == Flush::Abort && self.pending() > 0 && self.corked_reads == 0 {
            // A write is in flight, so the peer is not reading: abort it rather than wait. The stream stops
            // mid-frame, so no close frame can follow; the socket is just dropped.
            self.set_reason(request.code, &request.reason);
            self.done = true;
            return;
        }
        self.close_with(request.code, &request.reason, request.notice);
        if request.flush == Flush::Bounded {
            // The whole close, flush and handshake, gets the close timeout from now; then the socket is dropped.
            let deadline = Instant::now() + self.reg.server.config.close_timeout;
            self.phase = Phase::Closing { deadline: Some(deadline), peer_closed: false };
            self.arm(deadline);
        }
    }

    fn on_timer(&mut self) {
        let now = Instant::now();
        let config = &self.reg.server.config;
        if self.pending() > 0 && now >= self.last_write + config.write_timeout {
            tracing::debug!(conn = %self.reg.id, "write timeout");
            self.set_reason(ABNORMAL, "write timeout");
            self.done = true;
            return;
        }
        match self.phase {
            Phase::Closing { deadline: Some(deadline), .. } if now >= deadline => {
                self.done = true;
                return;
            }
            Phase::Closing { .. } => {}
            Phase::Open => {
                if self.expires.is_some_and(|at| now >= at) {
                    let notice = self.notice(close::POLICY, "token expired", Duration::ZERO);
                    self.close_with(close::POLICY, "token expired", notice);
                } else if now >= self.last_recv + config.pong_timeout {
                    let notice = self.notice(close::HEARTBEAT_TIMEOUT, "heartbeat timeout", Duration::ZERO);
                    self.close_with(close::HEARTBEAT_TIMEOUT, "heartbeat timeout", notice);
                } else if now >= self.next_ping {
                    self.next_ping = now + config.heartbeat_interval;
                    self.send_frame(OP_PING, &[]);
                }
            }
        }
        self.rearm();
    }

    /// The next time the timer must fire.
    fn next_deadline(&self) -> Instant {
        let config = &self.reg.server.config;
        let mut at = match self.phase {
            Phase::Open => {
                let at = self.next_ping.min(self.last_recv + config.pong_timeout);
                self.expires.map_or(at, |e| at.min(e))
            }
            Phase::Closing { deadline: Some(deadline), .. } => deadline,
            // Until our close frame is out, only the write timeout applies.
            Phase::Closing { deadline: None, .. } => self.last_write + config.write_timeout,
        };
        if self.pending() > 0 {
            at = at.min(self.last_write + config.write_timeout);
        }
        at
    }

    /// Sets the timer to the next deadline.
    fn rearm(&mut self) {
        let at = self.next_deadline();
        self.timer_at = at;
        self.timer.as_mut().reset(at);
    }

    /// Makes sure the timer fires by `at`. Deadlines that only move later (the pong timeout, a write that makes
    /// progress) are not chased: when the timer fires early, it just looks again.
    fn arm(&mut self, at: Instant) {
        if at < self.timer_at {
            self.timer_at = at;
            self.timer.as_mut().reset(at);
        }
    }

    /// Records why the connection ends; the first reason wins.
    fn set_reason(&mut self, code: u16, reason: &str) {
        if self.reason.is_none() {
            self.reason = Some(DisconnectReason::new(code, reason));
        }
    }
}
