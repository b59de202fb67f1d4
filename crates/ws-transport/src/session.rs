//! `Session`: one WebSocket connection's task, reading, writing, heartbeats and closing, in one loop.
//!
//! A session is a single task that waits on four things at once: the socket becoming readable, the socket
//! accepting more bytes, its send queue (`Outbound`) getting items or a close request, and one timer for
//! pings, the pong timeout, token expiry, the write timeout and the close handshake. `Session` is itself the
//! task's future, polled by hand rather than written as an `async fn`: nothing is ever cancelled half-way
//! (reads use readiness and `poll_read_buf`, writes continue from where the last one stopped), and the task
//! holds the session's fields and nothing else, which is most of what an idle connection costs.
//!
//! Writes are corked: everything queued is encoded into one buffer and written with as few syscalls as the
//! socket allows, once per batch rather than once per message. After a read that fans out to a few connections
//! (a publish, a relayed frame), the session also holds its own flush: it reads what else the socket has, then
//! yields once, so the connections it woke, and other publishers, run first and every socket writes a whole
//! turn at once.
//! A woken session reads before it writes for the same reason: what its own client published joins the turn,
//! and the delivery that woke it leaves with that turn's flush.
//!
//! Idle, a session holds no buffers: the read and write buffers are given back as soon as they are empty, and
//! a batch taken from the queue lives in a vector of the thread's, not of the session's.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncWrite;
use ws_protocol::{close, ErrorCode, ServerMessage};

use crate::config::duration_ms;
use crate::decoder::{Decoded, Decoder, Incoming, Limits};
use crate::frame::{
    encode_close, encode_frame, encode_header, MAX_SERVER_HEADER, OP_BINARY, OP_PING, OP_PONG, OP_TEXT,
};
use crate::outbound::{CloseRequest, Flush, Item, Taken};
use crate::output::{Output, SPLICE_MIN};
use crate::rate::{RateLimiter, Verdict};
use crate::registration::{Endpoint, Registration, ABNORMAL};
use crate::stream::Stream;

/// How many queued bytes are encoded into one batch (one write).
const BATCH_BYTES: usize = 64 * 1024;
/// Reading pauses while this many bytes wait to be written: a peer that does not read stops being read.
const READ_PAUSE_BYTES: usize = 256 * 1024;
/// How much to read at least per read call: enough for a big message (or a burst of small ones) in one
/// syscall. Reads go into a buffer of the thread's (see `READ_BUF`).
const READ_CHUNK: usize = 64 * 1024;
/// How many more reads a corked session (one whose reads fan out) does before it yields and flushes: this
/// bounds how much one publisher takes in per turn (tokio's cooperative budget bounds it too).
const MAX_CORKED_READS: u8 = 4;
/// A publication queued on more connections than this does not cork its publisher's turn. Corking pays when
/// each subscriber gets a few messages per publication, so that its one write carries the turn's; a wide
/// fan-out already gives every subscriber a message, and holding all their writes to the end of the turn
/// only leaves the peers idle and then overflows their socket buffers at once (room, all to all, with 1,000
/// clients: a fifth more deliveries per second uncorked; with 16, a tenth fewer).
const MAX_CORKED_FAN_OUT: u64 = 64;
/// How many batches one wake-up writes before letting other tasks run.
const MAX_ROUNDS: usize = 8;
/// The close code reported to the hub when the peer's close frame had no code (never sent on the wire).
const NO_STATUS: u16 = 1005;

thread_local! {
    /// The buffer every session of the thread reads into, as uWebSockets does: what a read brings is handled
    /// at once, and only the start of a frame whose end has not arrived is copied into the connection's
    /// decoder. So an idle connection holds no read buffer, and a busy one does not allocate one per read.
    static READ_BUF: RefCell<BytesMut> = RefCell::new(BytesMut::new());

    /// The batch being encoded: items move from a queue into it and at once into the write buffer, so it is
    /// empty between uses and no session keeps a vector of its own.
    static BATCH: RefCell<Vec<Item>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with the thread's (empty) batch vector, or with a fresh one if it is in use.
fn with_batch<R>(f: impl FnOnce(&mut Vec<Item>) -> R) -> R {
    BATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut batch) => {
            let result = f(&mut batch);
            batch.clear();
            if batch.capacity() > 1024 {
                *batch = Vec::new();
            }
            result
        }
        Err(_) => f(&mut Vec::new()),
    })
}

/// Where the close handshake is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Messages flow.
    Open,
    /// Our close frame is written or being written; nothing but it is sent any more. `deadline` is set when it
    /// has been flushed; `peer_closed` once the peer's close frame arrived (then the session ends when flushed).
    Closing { deadline: Option<u64>, peer_closed: bool },
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

/// One WebSocket connection, and the future of its task.
#[derive(Debug)]
pub(crate) struct Session {
    reg: Registration,
    stream: Stream,
    /// The frame decoder, which also keeps what a read left unfinished.
    decoder: Decoder,
    /// What is yet to be written.
    out: Output,
    /// Times are milliseconds on the server's clock (`Timers::now`).
    /// Now, as of the start of this poll: the clock is read once per poll.
    now: u64,
    /// The deadline the session's entry in the server's timer wheel wakes it for.
    timer_at: u64,
    last_recv: u64,
    next_ping: u64,
    /// When the credentials expire (`u64::MAX`: never).
    expires: u64,
    /// When the last write made progress (or writing became due).
    last_write: u64,
    /// Used when the configuration has a rate limit.
    limiter: RateLimiter,
    phase: Phase,
    done: bool,
    /// The last read queued frames on a few other connections (a publish, a relayed frame): its turn is corked.
    fanned_out: bool,
    /// Reads done since a read fanned out, while our flush is held (0: not corked).
    corked_reads: u8,
}

impl Session {
    /// The session of one upgraded connection, with what hyper read past the handshake already handled. Spawn
    /// it as a task; it runs to the connection's end, and dropping it (its registration) unregisters it.
    pub(crate) fn new(
        reg: Registration,
        stream: Stream,
        read_buf: Bytes,
        peer: SocketAddr,
        expires_at_ms: Option<u64>,
    ) -> Self {
        let config = &reg.server.config;
        let now = reg.server.timers.now();
        let expires =
            expires_at_ms.map_or(u64::MAX, |at| now.saturating_add(at.saturating_sub(reg.server.hub.now_ms())));
        let next_ping = now.saturating_add(duration_ms(config.heartbeat_interval));
        // Copy what hyper read past the handshake and let its buffer go: the `Bytes` shares hyper's whole
        // connection read buffer (8 KiB).
        let mut rbuf = BytesMut::from(&read_buf[..]);
        drop(read_buf);
        let mut session = Self {
            stream,
            decoder: Decoder::default(),
            out: Output::default(),
            now,
            timer_at: u64::MAX,
            last_recv: now,
            next_ping,
            expires,
            last_write: now,
            limiter: RateLimiter::new(config.rate_limit.unwrap_or_default(), now),
            phase: Phase::Open,
            done: false,
            fanned_out: false,
            corked_reads: 0,
            reg,
        };
        session.rearm();
        // The endpoint's name only: its `Debug` would print a relay room's members and their queued frames.
        let endpoint = match &session.reg.endpoint {
            Endpoint::Hub => "hub",
            Endpoint::Relay(_) => "relay",
            Endpoint::Echo => "echo",
        };
        tracing::debug!(conn = %session.reg.id(), %peer, endpoint, "connection open");
        if !rbuf.is_empty() {
            // The client sent frames right behind its handshake.
            let want = session.on_read(&mut rbuf);
            session.decoder.keep(rbuf, want);
        }
        session
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.timer_at != u64::MAX {
            self.reg.server.timers.remove(&self.reg.outbound, self.timer_at);
        }
    }
}

impl Future for Session {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        this.now = this.reg.server.timers.now();
        while !this.done {
            match std::task::ready!(this.poll_event(cx)) {
                Event::Read => {
                    // What was read has been handled already (see `poll_read`).
                    if std::mem::take(&mut this.fanned_out) {
                        // Corking: this read queued frames on other connections. Hold our own flush and keep
                        // reading what the socket already has (see `poll_event`); then yield once.
                        this.corked_reads = this.corked_reads.max(1);
                    }
                }
                Event::Uncork => {
                    // Let every task woken in this turn (the subscribers, and other publishers that may fan
                    // out too) run first, so that each socket's next write carries the whole turn's frames
                    // instead of one write per publication. `yield_now`'s first poll arranges our wake-up
                    // after theirs (and after the IO driver's next look) and says `Pending`; the future has
                    // done its job then, and is dropped.
                    this.corked_reads = 0;
                    let _ = std::pin::pin!(tokio::task::yield_now()).poll(cx);
                    return Poll::Pending;
                }
                Event::Eof => {
                    this.set_reason(ABNORMAL, "connection dropped");
                    this.done = true;
                }
                Event::Close(request) => this.on_close_request(request),
                Event::Timer => this.on_timer(),
                Event::Finished => this.done = true,
                Event::Abort => {
                    this.set_reason(close::GOING_AWAY, "server shutting down");
                    this.done = true;
                }
                Event::Failed(error) => {
                    tracing::debug!(conn = %this.reg.id(), %error, "socket error");
                    this.set_reason(ABNORMAL, "socket error");
                    this.done = true;
                }
            }
        }
        Poll::Ready(())
    }
}

impl Session {
    /// Bytes waiting to be written.
    fn pending(&self) -> usize {
        self.out.len()
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        // Read before writing: a session woken for a delivery often has a publication of its own waiting on the
        // socket, and reading it first corks this turn's flush, so the delivery leaves in one write with what
        // the turn brings, instead of a write of its own just before the read. (uWebSockets gets the same by
        // running every read of an event loop iteration before it drains what they published.)
        if let Poll::Ready(event) = self.poll_read_event(cx) {
            return Poll::Ready(event);
        }
        for round in 1..=MAX_ROUNDS {
            let items = self.phase == Phase::Open && self.pending() < BATCH_BYTES;
            let room = BATCH_BYTES.saturating_sub(self.pending());
            let taken = with_batch(|batch| {
                let taken = self.reg.outbound.take(batch, room, items, cx);
                self.encode_batch(batch);
                taken
            });
            match taken {
                Taken::Items(waited) => {
                    if let Some(waited) = waited {
                        self.reg.server.config.stats.queue_delay.observe(waited);
                    }
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
        // Again after the flush, which may have brought what waits to be written under the pause.
        if let Poll::Ready(event) = self.poll_read_event(cx) {
            return Poll::Ready(event);
        }
        if self.now >= self.timer_at {
            return Poll::Ready(Event::Timer);
        }
        if self.corked_reads > 0 {
            // Nothing more to read now (or reading is paused): the held flush is due after one yield.
            return Poll::Ready(Event::Uncork);
        }
        Poll::Pending
    }

    /// Reads once when reading is allowed: an event when the read brought something (or failed).
    fn poll_read_event(&mut self, cx: &mut Context<'_>) -> Poll<Event> {
        if !self.read_allowed() || self.corked_reads > MAX_CORKED_READS {
            return Poll::Pending;
        }
        match self.poll_read(cx) {
            Poll::Ready(Ok(0)) => Poll::Ready(Event::Eof),
            Poll::Ready(Ok(_)) => {
                if self.corked_reads > 0 {
                    self.corked_reads += 1;
                }
                Poll::Ready(Event::Read)
            }
            Poll::Ready(Err(error)) => Poll::Ready(Event::Failed(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn read_allowed(&self) -> bool {
        match self.phase {
            Phase::Open => self.pending() < READ_PAUSE_BYTES,
            Phase::Closing { peer_closed, .. } => !peer_closed,
        }
    }

    /// Writes until the buffer is empty or the socket is full.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = self.poll_write_all(cx);
        if result.is_pending() {
            // The peer is not taking what we write: from now on the write timeout can expire.
            self.arm(self.last_write.saturating_add(duration_ms(self.reg.server.config.write_timeout)));
        }
        result
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.out.len() > 0 {
            // `Output` gives its memory back once all is written: an idle connection holds none.
            match self.out.poll_write(&mut self.stream, cx) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    self.last_write = self.now;
                    self.reg.server.config.stats.wrote(n);
                }
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        // TLS may hold encrypted records back until flushed; on plain TCP this is a no-op.
        std::task::ready!(Pin::new(&mut self.stream).poll_flush(cx))?;
        if let Phase::Closing { deadline: None, peer_closed } = self.phase {
            let deadline = self.now.saturating_add(duration_ms(self.reg.server.config.close_timeout));
            self.phase = Phase::Closing { deadline: Some(deadline), peer_closed };
            self.arm(deadline);
        }
        Poll::Ready(Ok(()))
    }

    /// Encodes a taken batch for writing, emptying it: frame heads and short payloads copied into one buffer,
    /// long payloads written from their own bytes (see `Output`).
    fn encode_batch(&mut self, batch: &mut Vec<Item>) {
        if batch.is_empty() {
            return;
        }
        let was_idle = self.pending() == 0;
        let vectored = self.stream.is_write_vectored();
        let copied = |len: usize| if len < SPLICE_MIN || !vectored { len } else { 0 };
        // Framed buffers are not counted: the first is taken over as the write buffer when nothing is pending.
        let total: usize = batch
            .iter()
            .map(|item| match item {
                Item::Frames(_) => 0,
                other => copied(other.len()) + MAX_SERVER_HEADER,
            })
            .sum();
        self.out.reserve(total);
        for item in batch.drain(..) {
            match item {
                Item::Text(payload) => {
                    encode_header(self.out.buf(), OP_TEXT, payload.len());
                    self.out.payload(&payload, vectored);
                }
                Item::Frame(frame) => self.out.payload(&frame, vectored),
                Item::Frames(frames) => self.out.frames(frames.buf),
            }
        }
        if was_idle {
            self.write_due();
        }
    }

    /// Writing became due: the write timeout counts from now. The timer is only set for it once a write
    /// finds the socket full (see `poll_flush`): most writes complete at once, and then no timer is touched.
    fn write_due(&mut self) {
        self.last_write = self.now;
    }

    /// Appends a frame of our own (a pong, a ping, an echo) to the write buffer, past the queue: control frames
    /// are never dropped.
    fn send_frame(&mut self, opcode: u8, payload: &[u8]) {
        let was_idle = self.pending() == 0;
        encode_frame(self.out.buf(), opcode, payload);
        if was_idle {
            self.write_due();
        }
    }

    /// Reads what the socket has and handles every whole frame in it. Reads go into the thread's buffer, with
    /// the start of a frame kept from the last read copied in front; what is left unfinished is copied back into
    /// the decoder. Only a frame too big for the thread's buffer is read on into a buffer of its own.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let (mut carry, want) = self.decoder.take_carry();
        let result = if want <= READ_CHUNK {
            let mut with_buf = |buf: &mut BytesMut| {
                // Whole reads every time: a publisher streaming frames ends most reads in the middle of one, and
                // reading on into that frame's small buffer would take its messages in small bites.
                buf.reserve(READ_CHUNK + carry.len());
                buf.extend_from_slice(&carry);
                let result = self.stream.poll_read_into(cx, buf);
                if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                    let want = self.on_read(buf);
                    // The start of a frame, in a buffer of its own size: the thread's is for the next read.
                    self.decoder.keep(BytesMut::from(&buf[..]), want);
                } else {
                    self.decoder.keep(std::mem::take(&mut carry), want);
                }
                buf.clear();
                result
            };
            READ_BUF.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => with_buf(&mut buf),
                Err(_) => with_buf(&mut BytesMut::new()),
            })
        } else {
            // A frame bigger than a read: its own buffer, sized for it, so it is read without copying it again.
            carry.reserve(want.saturating_sub(carry.len()));
            let result = self.stream.poll_read_into(cx, &mut carry);
            let mut want = want;
            if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
                want = self.on_read(&mut carry);
                if carry.len() < carry.capacity() / 4 {
                    // Only the start of the next frame is left: keep it in a buffer of its own size.
                    carry = BytesMut::from(&carry[..]);
                }
            }
            self.decoder.keep(carry, want);
            result
        };
        if let Poll::Ready(Ok(n)) = result {
            self.reg.server.config.stats.read(n);
        }
        result
    }

    /// Handles every whole frame at the start of `buf`, consuming them; returns how many bytes `buf` must hold
    /// before the decoder can go on.
    fn on_read(&mut self, buf: &mut BytesMut) -> usize {
        let now = self.now;
        self.last_recv = now;
        // Replies queued while we handle these frames are taken by the next `poll_event`; no wake-up needed.
        self.reg.outbound.set_running();
        let config = &self.reg.server.config;
        let limits = Limits { max_message_size: config.max_message_size, max_fragments: config.max_fragments };
        while !self.done {
            if let Phase::Closing { deadline, .. } = self.phase {
                match self.decoder.discard(buf) {
                    Ok(Some(_)) => self.phase = Phase::Closing { deadline, peer_closed: true },
                    Ok(None) => {}
                    Err(()) => self.done = true,
                }
                break;
            }
            match self.decoder.decode(buf, &limits) {
                Ok(Decoded::Frame(incoming)) => self.on_incoming(incoming, now),
                Ok(Decoded::Fragment) => {}
                Ok(Decoded::NeedMore(n)) => return n,
                Err(violation) => {
                    tracing::debug!(conn = %self.reg.id(), reason = violation.reason(), "failing the connection");
                    self.close_with(violation.code(), violation.reason(), None);
                }
            }
        }
        0
    }

    fn on_incoming(&mut self, incoming: Incoming, now: u64) {
        match incoming {
            Incoming::Ping(payload) => self.send_frame(OP_PONG, &payload),
            Incoming::Pong => {}
            Incoming::Close(code) => {
                // The peer closes: answer with its code (RFC 6455 section 5.5.1), then end once that is written.
                self.set_reason(code.unwrap_or(NO_STATUS), "closed by peer");
                self.stop_queue(code.unwrap_or(close::NORMAL));
                let was_idle = self.pending() == 0;
                match code {
                    Some(code) => encode_close(self.out.buf(), code, ""),
                    None => encode_frame(self.out.buf(), crate::frame::OP_CLOSE, &[]),
                }
                if was_idle {
                    self.write_due();
                }
                self.phase = Phase::Closing { deadline: None, peer_closed: true };
            }
            Incoming::Text(payload) => self.on_message(true, payload, now),
            Incoming::Binary(payload) => self.on_message(false, payload, now),
        }
    }

    fn on_message(&mut self, text: bool, payload: BytesMut, now: u64) {
        // The rate limit is ours: neither fastwebsockets 0.10 nor the hub has one.
        let verdict = match self.reg.server.config.rate_limit {
            Some(limit) => self.limiter.check(&limit, now),
            None => Verdict::Allow,
        };
        match verdict {
            Verdict::Allow => {}
            Verdict::Limited => {
                if let Endpoint::Hub = self.reg.endpoint {
                    self.reg.server.hub.send_error(
                        self.reg.id(),
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
        let queued_before = crate::outbound::queued_here();
        let fans_out = match &self.reg.endpoint {
            // Shared, not copied: the frame may sit in the thread's read buffer, which the hub does not keep.
            Endpoint::Hub if text => self.reg.server.hub.handle_text_shared(self.reg.id(), &payload.freeze()),
            Endpoint::Hub => {
                self.reg.server.hub.handle_binary(self.reg.id());
                false
            }
            Endpoint::Relay(member) => {
                // Encoded once, shared by every member.
                let mut frame = Vec::with_capacity(payload.len() + MAX_SERVER_HEADER);
                encode_frame(&mut frame, opcode, &payload);
                member.room.forward(self.reg.id(), &Bytes::from(frame), self.reg.server.config.relay_echo);
                true
            }
            Endpoint::Echo => {
                self.send_frame(opcode, &payload);
                false
            }
        };
        // How wide the fan-out was, from what this thread queued meanwhile: only a narrow one corks the turn.
        if fans_out && crate::outbound::queued_here().wrapping_sub(queued_before) <= MAX_CORKED_FAN_OUT {
            self.fanned_out = true;
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
        with_batch(|batch| {
            self.reg.outbound.take_all(batch);
            self.encode_batch(batch);
        });
        let was_idle = self.pending() == 0;
        if let Some(notice) = notice {
            encode_frame(self.out.buf(), OP_TEXT, &notice);
        }
        encode_close(self.out.buf(), code, reason);
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
            let deadline = self.now.saturating_add(duration_ms(self.reg.server.config.close_timeout));
            self.phase = Phase::Closing { deadline: Some(deadline), peer_closed: false };
            self.arm(deadline);
        }
    }

    fn on_timer(&mut self) {
        let now = self.now;
        let config = &self.reg.server.config;
        if self.pending() > 0 && now >= self.last_write.saturating_add(duration_ms(config.write_timeout)) {
            tracing::debug!(conn = %self.reg.id(), "write timeout");
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
                if now >= self.expires {
                    let notice = self.notice(close::POLICY, "token expired", Duration::ZERO);
                    self.close_with(close::POLICY, "token expired", notice);
                } else if now >= self.last_recv.saturating_add(duration_ms(config.pong_timeout)) {
                    let notice = self.notice(close::HEARTBEAT_TIMEOUT, "heartbeat timeout", Duration::ZERO);
                    self.close_with(close::HEARTBEAT_TIMEOUT, "heartbeat timeout", notice);
                } else if now >= self.next_ping {
                    self.next_ping = now.saturating_add(duration_ms(config.heartbeat_interval));
                    self.send_frame(OP_PING, &[]);
                }
            }
        }
        self.rearm();
    }

    /// The next time the timer must fire.
    fn next_deadline(&self) -> u64 {
        let config = &self.reg.server.config;
        let write_deadline = self.last_write.saturating_add(duration_ms(config.write_timeout));
        let mut at = match self.phase {
            Phase::Open => {
                let pong_deadline = self.last_recv.saturating_add(duration_ms(config.pong_timeout));
                self.next_ping.min(pong_deadline).min(self.expires)
            }
            Phase::Closing { deadline: Some(deadline), .. } => deadline,
            // Until our close frame is out, only the write timeout applies.
            Phase::Closing { deadline: None, .. } => write_deadline,
        };
        if self.pending() > 0 {
            at = at.min(write_deadline);
        }
        at
    }

    /// Sets the timer to the next deadline (never one already past: what is due now was just handled).
    fn rearm(&mut self) {
        let at = self.next_deadline().max(self.now + 1);
        self.set_timer(at);
    }

    /// Makes sure the timer fires by `at`. Deadlines that only move later (the pong timeout, a write that makes
    /// progress) are not chased: when the timer fires early, it just looks again.
    fn arm(&mut self, at: u64) {
        if at < self.timer_at {
            self.set_timer(at);
        }
    }

    fn set_timer(&mut self, at: u64) {
        if at != self.timer_at {
            let old = (self.timer_at != u64::MAX).then_some(self.timer_at);
            self.reg.server.timers.set(&self.reg.outbound, old, at);
            self.timer_at = at;
        }
    }

    /// Records why the connection ends; the first reason wins.
    fn set_reason(&mut self, code: u16, reason: &str) {
        self.reg.set_reason(code, reason);
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    #[test]
    fn an_idle_session_and_its_queue_stay_within_the_memory_budget() {
        // ARCHITECTURE.md's budget: the task cell (tokio's header and trailer, about 100 bytes, and the session)
        // is rounded up to 128 bytes and must stay at 384, the queue at 128 with its `Arc` counts.
        assert!(size_of::<super::Session>() <= 264, "Session is {} bytes", size_of::<super::Session>());
        let queue = size_of::<crate::outbound::Outbound>() + 2 * size_of::<usize>();
        assert!(queue <= 144, "Outbound's allocation is {queue} bytes");
    }
}
