//! `Outbound`: one connection's bounded send queue and close request, shared by the hub (through
//! `ws_core::Conn`), the relay and the connection's own task.

use std::collections::VecDeque;
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ws_core::{Conn, ConnId, SendError};

use crate::frame::{encode_header, MAX_SERVER_HEADER, OP_TEXT};
use crate::output::SPLICE_MIN;

/// One queued item.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    /// A text message's payload; the writer adds the frame header.
    Text(Bytes),
    /// A whole encoded frame, shared as is (the relay encodes a forwarded frame once for every member).
    Frame(Bytes),
    /// Short messages already framed, copied in when they were queued (see [`Frames`]).
    Frames(Frames),
}

impl Item {
    /// The payload's (or frame's) length in bytes: what the queue's byte bound counts.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Text(b) | Self::Frame(b) => b.len(),
            Self::Frames(f) => f.payload as usize,
        }
    }

    /// How many messages the item holds.
    fn messages(&self) -> u32 {
        match self {
            Self::Text(_) | Self::Frame(_) => 1,
            Self::Frames(f) => f.messages,
        }
    }
}

/// Short messages (below [`SPLICE_MIN`]) framed and copied into one buffer as they are queued, as uWebSockets
/// copies into a socket's cork buffer: a fan-out to many connections costs each one a copy of a few dozen
/// bytes and nothing else, where a shared `Bytes` per message cost two atomic updates of one count that every
/// subscriber's thread touches, a queue slot, and the same copy later anyway. The session writes the buffer
/// as it is. Long payloads stay shared and are written from where they are (see `Output`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Frames {
    /// The frames, headers and payloads, ready to write.
    pub(crate) buf: Vec<u8>,
    /// How many messages `buf` holds.
    messages: u32,
    /// Their payloads' total length (what the byte bound counts, as for the other items).
    payload: u32,
}

/// A buffer of frames at the back of the queue takes more messages until it holds this much; then the next
/// short message starts another. So one take moves about this much of it at most, and the batch stays near
/// its size.
const FRAMES_CHUNK: usize = 16 * 1024;

/// A buffer of frames starts with room for this much: a fan-out's few messages fit without growing it.
const FRAMES_START: usize = 256;

/// What a queued message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A text message's payload, to be framed.
    Text,
    /// A whole encoded frame (a relayed one).
    Frame,
}

thread_local! {
    /// How many messages this thread has queued on any connection: a session tells how wide the fan-out of
    /// one of its reads was from the difference (see `Session::on_message`).
    static QUEUED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many messages this thread has queued so far (wrapping).
pub(crate) fn queued_here() -> u64 {
    QUEUED.with(std::cell::Cell::get)
}

/// A request to close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CloseRequest {
    /// The close code.
    pub(crate) code: u16,
    /// The close reason.
    pub(crate) reason: String,
    /// What happens to what is still to be written.
    pub(crate) flush: Flush,
    /// A text message to send just before the close frame (a `disconnect`), whatever the queue holds.
    pub(crate) notice: Option<Bytes>,
}

/// How a close treats what is still to be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flush {
    /// A write in flight is aborted and the socket dropped: the peer is not reading (a slow consumer).
    Abort,
    /// What is queued goes out, then the notice and the close frame, for as long as the shutdown's drain
    /// allows (it aborts whoever is left at its deadline).
    Drain,
    /// The same, but the connection gets only the close timeout to take it all and answer; then it is dropped.
    /// A kick is delivered this way, so even a client whose socket is busy gets its `disconnect` and close.
    Bounded,
}

/// What the connection's task takes from the queue in one go.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Nothing queued; the task's waker is registered.
    Empty,
    /// Some items (moved into the caller's vector), and how long the oldest had waited when the queue went
    /// from empty to not empty.
    Items(Option<Duration>),
    /// A close was requested; what is still queued waits for [`Outbound::take_all`].
    Close(CloseRequest),
    /// The connection must be dropped now, whatever it is doing (the shutdown deadline passed).
    Abort,
}

#[derive(Debug, Default)]
struct State {
    /// What is queued, oldest first.
    queue: VecDeque<Item>,
    /// Messages queued (a buffer of frames holds several). 32 bits, as the bounds are (see `Outbound::new`):
    /// the two counts share the word the queue's byte count took alone, and an idle queue stays that small.
    messages: u32,
    /// Payload bytes queued.
    bytes: u32,
    /// Boxed: a queue is closed once, at its end.
    close: Option<Box<CloseRequest>>,
    /// Set once the task has taken the close request: nothing more is queued or taken.
    close_taken: bool,
    abort: bool,
    waker: Option<Waker>,
    /// When the queue last went from empty to not empty: one clock read per batch, not per message.
    since: Option<Instant>,
    /// The task is running and calls `take` before it sleeps again: pushes need not wake it.
    running: bool,
}

/// One connection's outbound side: a queue bounded in messages and bytes, and a close request.
///
/// Everything goes through one small mutex, held for a push or a pop and never across IO, so
/// [`Conn::try_send`] never blocks on the network. Idle, it holds no allocation.
#[derive(Debug)]
pub(crate) struct Outbound {
    id: ConnId,
    max_messages: usize,
    max_bytes: usize,
    state: Mutex<State>,
}

impl Outbound {
    /// An empty queue bounded by `max_messages` and `max_bytes` (each at most 2^31: the counts are 32 bits).
    pub(crate) fn new(id: ConnId, max_messages: usize, max_bytes: usize) -> Self {
        const MAX: usize = 1 << 31;
        let (max_messages, max_bytes) = (max_messages.clamp(1, MAX), max_bytes.min(MAX));
        Self { id, max_messages, max_bytes, state: Mutex::new(State::default()) }
    }

    /// Queues a message; never blocks. A single message larger than the byte bound is accepted into an empty
    /// queue, so a big message does not make a connection a slow consumer by itself.
    pub(crate) fn push(&self, kind: Kind, message: &Bytes) -> Result<(), SendError> {
        self.push_all(kind, std::slice::from_ref(message))
    }

    /// Queues every message or none: all of them must fit in the bounds' free space now (one message alone may
    /// exceed the byte bound in an empty queue, as with [`Self::push`]).
    pub(crate) fn push_all(&self, kind: Kind, messages: &[Bytes]) -> Result<(), SendError> {
        let waker = {
            let mut state = self.state.lock();
            if state.close.is_some() {
                return Err(SendError::Closed);
            }
            let count = messages.len();
            if count == 0 {
                return Ok(());
            }
            let len: usize = messages.iter().map(Bytes::len).sum();
            let empty = state.messages == 0;
            let alone = empty && count == 1;
            let fits = |queued: u32, more: usize, max: usize| queued as usize + more <= max;
            let fit = fits(state.messages, count, self.max_messages) && fits(state.bytes, len, self.max_bytes);
            if !alone && !fit {
                return Err(SendError::Full);
            }
            for message in messages {
                state.append(kind, message);
            }
            // In range: within the bounds, or one item alone (a message's size is far below 4 GiB).
            state.messages += count as u32;
            QUEUED.with(|queued| queued.set(queued.get().wrapping_add(count as u64)));
            state.bytes += len as u32;
            // A reply the running task queued for itself is taken before it sleeps: its wait is not timed, which
            // spares a clock read per message on the request/reply path.
            if empty && !state.running {
                state.since = Some(Instant::now());
            }
            // Only the first item needs to wake the task: it takes everything queued when it runs. A task that
            // is running (handling its own reads, whose replies land here) takes them before it sleeps, and
            // waking it would only poll it once more for nothing.
            if empty && !state.running {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            // Held until the hub has released the channel's lock, when a fan-out queued this.
            ws_core::wake(waker);
        }
        Ok(())
    }

    /// Requests a close; the first request wins. A slow consumer's queue is dropped at once: it is what
    /// overflowed, and the client recovers what it missed after reconnecting.
    pub(crate) fn request_close(&self, request: CloseRequest) {
        let waker = {
            let mut state = self.state.lock();
            if state.close.is_some() {
                return;
            }
            if request.code == ws_protocol::close::SLOW_CONSUMER {
                state.queue = VecDeque::new();
                state.messages = 0;
                state.bytes = 0;
            }
            state.close = Some(Box::new(request));
            state.waker.take()
        };
        if let Some(waker) = waker {
            ws_core::wake(waker);
        }
    }

    /// Moves every queued item into `out`, whatever the bounds and the close state: the last flush before a
    /// close frame.
    pub(crate) fn take_all(&self, out: &mut Vec<Item>) {
        let mut state = self.state.lock();
        out.extend(std::mem::take(&mut state.queue));
        state.messages = 0;
        state.bytes = 0;
    }

    /// Asks the connection's task to drop the connection at once.
    pub(crate) fn abort(&self) {
        let waker = {
            let mut state = self.state.lock();
            state.abort = true;
            state.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Wakes the connection's task: its timer is due.
    pub(crate) fn wake(&self) {
        let waker = self.state.lock().waker.take();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The connection's task is about to handle what it read: until its next [`Self::take`], pushes do not
    /// wake it, because that `take` sees them.
    pub(crate) fn set_running(&self) {
        self.state.lock().running = true;
    }

    /// Whether a close was requested.
    #[cfg(test)]
    pub(crate) fn close_requested(&self) -> bool {
        self.state.lock().close.is_some()
    }

    /// Reports an abort, else a close request, else moves up to `max_bytes` of queued items (at least one) into
    /// `out` when `items` is set. Registers the task's waker.
    pub(crate) fn take(&self, out: &mut Vec<Item>, max_bytes: usize, items: bool, cx: &mut Context<'_>) -> Taken {
        let mut state = self.state.lock();
        // Registered on every call, whatever it returns: the task may sleep on the socket next, and must still
        // hear of a close.
        register(&mut state, cx);
        // From here on the task may sleep, so pushes wake it again.
        state.running = false;
        if state.abort {
            return Taken::Abort;
        }
        if state.close_taken {
            return Taken::Empty;
        }
        // A close is reported as soon as it is requested, even while items wait (`take_all` hands them over
        // and the task decides whether they still go out): it wakes the task only once, so a take that returned
        // items instead would leave the close unseen until something else woke the task.
        if let Some(close) = &state.close {
            let close = CloseRequest::clone(close);
            state.close_taken = true;
            return Taken::Close(close);
        }
        if items {
            let mut taken = 0;
            while let Some(item) = state.queue.front() {
                if taken > 0 && taken + item.len() > max_bytes {
                    break;
                }
                taken += item.len();
                if let Some(item) = state.queue.pop_front() {
                    state.messages -= item.messages();
                    out.push(item);
                }
            }
            // In range: `taken` is part of what `bytes` counts.
            state.bytes -= taken as u32;
            if !out.is_empty() {
                let waited = state.since.take().map(|at| at.elapsed());
                if state.messages > 0 {
                    state.since = Some(Instant::now());
                } else {
                    // Drained: give the memory back, an idle queue holds none.
                    state.queue = VecDeque::new();
                }
                return Taken::Items(waited);
            }
        }
        Taken::Empty
    }
}

impl State {
    /// Queues one message: a short one is framed into the buffer of frames at the back of the queue (a new one
    /// when there is none, or it is full), a long one goes behind it as shared bytes.
    fn append(&mut self, kind: Kind, payload: &Bytes) {
        if payload.len() >= SPLICE_MIN {
            self.queue.push_back(match kind {
                Kind::Text => Item::Text(payload.clone()),
                Kind::Frame => Item::Frame(payload.clone()),
            });
            return;
        }
        if !matches!(self.queue.back(), Some(Item::Frames(f)) if f.buf.len() < FRAMES_CHUNK) {
            let buf = Vec::with_capacity(FRAMES_START.max(payload.len() + MAX_SERVER_HEADER));
            self.queue.push_back(Item::Frames(Frames { buf, messages: 0, payload: 0 }));
        }
        let Some(Item::Frames(frames)) = self.queue.back_mut() else {
            unreachable!("a buffer of frames is at the back")
        };
        if kind == Kind::Text {
            encode_header(&mut frames.buf, OP_TEXT, payload.len());
        }
        frames.buf.extend_from_slice(payload);
        frames.messages += 1;
        // Below `SPLICE_MIN`, and the buffer below `FRAMES_CHUNK` before it: in range.
        frames.payload += payload.len() as u32;
    }
}

/// Registers the task's waker, unless the same one already is.
fn register(state: &mut State, cx: &Context<'_>) {
    match &state.waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => state.waker = Some(cx.waker().clone()),
    }
}

impl Conn for Outbound {
    fn id(&self) -> ConnId {
        self.id
    }

    fn try_send(&self, frame: &Bytes) -> Result<(), SendError> {
        self.push(Kind::Text, frame)
    }

    fn try_send_all(&self, frames: &[Bytes]) -> Result<(), SendError> {
        self.push_all(Kind::Text, frames)
    }

    fn close(&self, code: u16, reason: &str) {
        self.request_close(CloseRequest { code, reason: reason.to_owned(), flush: Flush::Abort, notice: None });
    }

    fn disconnect(&self, code: u16, reason: &str, notice: Bytes) {
        self.request_close(CloseRequest {
            code,
            reason: reason.to_owned(),
            flush: Flush::Bounded,
            notice: Some(notice),
        });
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    /// A waker that counts its wakes (the timer wheel's tests use it too).
    #[derive(Default)]
    pub(crate) struct CountingWaker(pub(crate) AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn text(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    #[test]
    fn queue_is_bounded_in_messages_and_bytes() {
        let q = Outbound::new(ConnId::new(1), 2, 10);
        assert_eq!(q.try_send(&text("0123456789abc")), Ok(()), "one big item fits an empty queue");
        assert_eq!(q.try_send(&text("x")), Err(SendError::Full));
        let q = Outbound::new(ConnId::new(1), 2, 100);
        q.try_send(&text("a")).unwrap();
        q.try_send(&text("b")).unwrap();
        assert_eq!(q.try_send(&text("c")), Err(SendError::Full));
    }

    #[test]
    fn a_batch_goes_in_whole_or_not_at_all() {
        let q = Outbound::new(ConnId::new(1), 4, 100);
        q.try_send(&text("a")).unwrap();
        q.try_send(&text("b")).unwrap();
        assert_eq!(q.try_send_all(&[text("c"), text("d"), text("e")]), Err(SendError::Full), "over the count");
        assert_eq!(q.try_send_all(&[text("c"), text("d")]), Ok(()));
        let q = Outbound::new(ConnId::new(1), 100, 10);
        q.try_send(&text("0123")).unwrap();
        assert_eq!(q.try_send_all(&[text("4567"), text("89ab")]), Err(SendError::Full), "over the bytes");
        let mut out = Vec::new();
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        assert!(matches!(q.take(&mut out, 1000, true, &mut Context::from_waker(&waker)), Taken::Items(_)));
        assert_eq!(wire(&out), b"\x81\x040123", "nothing of the refused batch was queued");
        q.close(1000, "bye");
        assert_eq!(q.try_send_all(&[text("x")]), Err(SendError::Closed));
    }

    #[test]
    fn close_is_idempotent_and_wakes_the_task_once() {
        let q = Outbound::new(ConnId::new(1), 8, 100);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(matches!(q.take(&mut out, 1000, true, &mut cx), Taken::Empty));
        q.try_send(&text("a")).unwrap();
        q.try_send(&text("b")).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "only the first item wakes");
        q.close(4000, "slow consumer");
        q.close(1000, "later");
        assert_eq!(q.try_send(&text("c")), Err(SendError::Closed));
        match q.take(&mut out, 1000, true, &mut cx) {
            Taken::Close(c) => assert_eq!((c.code, out.len()), (4000, 0), "a slow consumer's queue is dropped"),
            other => panic!("expected the close, got {other:?}"),
        }
        assert!(matches!(q.take(&mut out, 1000, true, &mut cx), Taken::Empty));
    }

    #[test]
    fn a_running_task_is_not_woken_until_it_takes_again() {
        let q = Outbound::new(ConnId::new(1), 8, 100);
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(Arc::clone(&counter));
        let mut cx = Context::from_waker(&waker);
        let mut out = Vec::new();
        assert!(matches!(q.take(&mut out, 1000, true, &mut cx), Taken::Empty));
        q.set_running();
        q.try_send(&text("reply")).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 0, "the running task takes its replies itself");
        assert!(matches!(q.take(&mut out, 1000, true, &mut cx), Taken::Items(_)));
        assert_eq!(out.len(), 1);
        q.try_send(&text("later")).unwrap();
        assert_eq!(counter.0.load(Ordering::SeqCst), 1, "after a take, a push wakes the task again");
    }

    #[test]
    fn take_moves_batches_and_reports_a_close_at_once() {
        let q = Outbound::new(ConnId::new(1), 8, 100 * SPLICE_MIN);
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&waker);
        let long = Bytes::from(vec![b'x'; SPLICE_MIN]);
        for _ in 0..3 {
            q.try_send(&long).unwrap();
        }
        let mut out = Vec::new();
        assert!(matches!(q.take(&mut out, 2 * SPLICE_MIN + 1, true, &mut cx), Taken::Items(_)));
        assert_eq!(out.len(), 2, "a take stops at its byte budget");
        out.clear();
        q.close(1000, "bye");
        assert!(matches!(q.take(&mut out, 8, true, &mut cx), Taken::Close(_)), "the close first, whatever waits");
        assert!(out.is_empty());
        q.take_all(&mut out);
        assert_eq!(out.len(), 1, "what waited is handed over by take_all");
    }

    /// What `items` would put on the wire, with a stand-in for each long payload (the session writes those).
    fn wire(items: &[Item]) -> Vec<u8> {
        let mut wire = Vec::new();
        for item in items {
            match item {
                Item::Frames(f) => wire.extend_from_slice(&f.buf),
                Item::Text(p) => wire.extend_from_slice(format!("[text {}]", p.len()).as_bytes()),
                Item::Frame(p) => wire.extend_from_slice(format!("[frame {}]", p.len()).as_bytes()),
            }
        }
        wire
    }

    #[test]
    fn short_messages_are_framed_as_they_are_queued_and_keep_their_order_around_long_ones() {
        let q = Outbound::new(ConnId::new(1), 100, 100 * SPLICE_MIN);
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        let mut cx = Context::from_waker(&waker);
        q.try_send(&text("a")).unwrap();
        q.push(Kind::Frame, &Bytes::from_static(b"\x82\x01b")).unwrap();
        q.try_send(&Bytes::from(vec![b'l'; SPLICE_MIN])).unwrap();
        q.try_send(&text("c")).unwrap();
        let mut out = Vec::new();
        assert!(matches!(q.take(&mut out, usize::MAX, true, &mut cx), Taken::Items(_)));
        let expected = [&b"\x81\x01a\x82\x01b"[..], format!("[text {SPLICE_MIN}]").as_bytes(), b"\x81\x01c"].concat();
        assert_eq!(wire(&out), expected);
        assert_eq!(out.iter().map(Item::messages).sum::<u32>(), 4);
        assert_eq!(q.state.lock().bytes, 0, "every byte taken is counted out");
    }

    #[test]
    fn framed_messages_count_against_both_bounds_and_a_full_buffer_is_closed_into_the_queue() {
        let q = Outbound::new(ConnId::new(1), 3, 100);
        for s in ["aaaa", "bbbb", "cccc"] {
            q.try_send(&text(s)).unwrap();
        }
        assert_eq!(q.try_send(&text("d")), Err(SendError::Full), "three messages, though in one buffer");
        let q = Outbound::new(ConnId::new(1), 1000, 1000 * 1000);
        let msg = Bytes::from(vec![b'm'; 1000]);
        for _ in 0..20 {
            q.try_send(&msg).unwrap();
        }
        let mut out = Vec::new();
        let waker = Waker::from(Arc::new(CountingWaker::default()));
        assert!(matches!(q.take(&mut out, 4000, true, &mut Context::from_waker(&waker)), Taken::Items(_)));
        assert_eq!(out.len(), 1, "one buffer per take when it is over the budget");
        let first = out.iter().map(Item::messages).sum::<u32>();
        assert!(first < 20 && wire(&out).len() >= FRAMES_CHUNK, "the buffer was closed once full ({first} messages)");
        out.clear();
        assert!(matches!(q.take(&mut out, usize::MAX, true, &mut Context::from_waker(&waker)), Taken::Items(_)));
        assert_eq!(first + out.iter().map(Item::messages).sum::<u32>(), 20, "the rest in the next");
    }
}
