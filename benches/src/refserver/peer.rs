//! One socket's outbound side in the reference server: the queue other sockets' fan-out puts encoded frames
//! on, which the socket's own task takes whole and writes with one call.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Waker};

use bytes::Bytes;
use parking_lot::Mutex;

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Bytes>,
    closed: bool,
    /// The socket's task, when it waits for frames.
    waker: Option<Waker>,
}

/// A connected socket as senders see it.
#[derive(Debug)]
pub(super) struct Peer {
    /// The socket's id.
    pub(super) id: u64,
    queue: Mutex<Queue>,
    /// The heartbeat tick at which the socket last sent anything.
    last_seen: AtomicU32,
}

impl Peer {
    pub(super) fn new(id: u64, tick: u32) -> Self {
        Self { id, queue: Mutex::new(Queue::default()), last_seen: AtomicU32::new(tick) }
    }

    /// Queues one encoded frame; dropped when the socket is closing.
    pub(super) fn push(&self, frame: Bytes) {
        let waker = {
            let mut queue = self.queue.lock();
            if queue.closed {
                return;
            }
            queue.frames.push_back(frame);
            // The task takes the whole queue at once, so only the first frame needs to wake it.
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Lets the socket's task write what is queued, then close.
    pub(super) fn close(&self) {
        let waker = {
            let mut queue = self.queue.lock();
            queue.closed = true;
            queue.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Notes that the socket sent something at heartbeat tick `tick`.
    pub(super) fn seen(&self, tick: u32) {
        self.last_seen.store(tick, Ordering::Relaxed);
    }

    /// The heartbeat tick at which the socket last sent anything.
    pub(super) fn last_seen(&self) -> u32 {
        self.last_seen.load(Ordering::Relaxed)
    }

    /// Appends every queued frame to `out`; returns whether the socket was closed for sending.
    pub(super) fn take(&self, out: &mut Vec<u8>) -> bool {
        let mut queue = self.queue.lock();
        for frame in queue.frames.drain(..) {
            out.extend_from_slice(&frame);
        }
        if queue.frames.capacity() > 1024 {
            queue.frames = VecDeque::new();
        }
        queue.closed
    }

    /// Whether something is queued or the socket is closed for sending; if not, `cx`'s task is woken when that
    /// changes.
    pub(super) fn poll_queued(&self, cx: &mut Context<'_>) -> bool {
        let mut queue = self.queue.lock();
        if !queue.frames.is_empty() || queue.closed {
            return true;
        }
        if !queue.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            queue.waker = Some(cx.waker().clone());
        }
        false
    }
}
