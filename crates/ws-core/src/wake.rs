//! Wake-ups held back until the hub has released its locks.
//!
//! Fan-out queues a frame on every subscriber's connection under the channel's lock, and a transport's queue
//! wakes the connection's task when the frame is the first one waiting. Waking a task that another worker
//! thread runs can cost a system call, and done under the lock it would make every other publisher of the
//! channel wait for it. So the hub's entry points that fan out run in a [`deferring`] scope, and a transport
//! hands its wake-ups to [`wake`], which holds them until the outermost scope of the thread ends: after every
//! lock is released.

use std::cell::RefCell;
use std::task::Waker;

#[derive(Default)]
struct Held {
    /// How many scopes are open on this thread.
    depth: usize,
    wakers: Vec<Waker>,
}

thread_local! {
    static HELD: RefCell<Held> = RefCell::new(Held::default());
}

/// Wakes `waker` now, or, inside a [`deferring`] scope, when the outermost scope of this thread ends.
///
/// A transport's [`Conn`](crate::Conn) calls it instead of `Waker::wake` when a frame it queues must wake the
/// connection's task.
pub fn wake(waker: Waker) {
    let now = HELD.with(|held| {
        let mut held = held.borrow_mut();
        if held.depth == 0 {
            return Some(waker);
        }
        held.wakers.push(waker);
        None
    });
    if let Some(waker) = now {
        waker.wake();
    }
}

/// Runs `f` with the wake-ups it causes (through [`wake`]) held until it returns, or until the outermost
/// scope returns when scopes nest. The held wake-ups happen even when `f` panics.
///
/// The hub runs its fan-out entry points in one; a transport that fans out on its own (a relay room, say) may
/// too.
pub fn deferring<R>(f: impl FnOnce() -> R) -> R {
    struct Scope;
    impl Drop for Scope {
        fn drop(&mut self) {
            let wakers = HELD.with(|held| {
                let mut held = held.borrow_mut();
                held.depth -= 1;
                if held.depth > 0 {
                    return Vec::new();
                }
                std::mem::take(&mut held.wakers)
            });
            let mut wakers = wakers;
            for waker in wakers.drain(..) {
                waker.wake();
            }
            // Keep the vector's capacity for the next scope, unless a huge fan-out grew it.
            if wakers.capacity() <= 4096 {
                HELD.with(|held| {
                    let mut held = held.borrow_mut();
                    if held.wakers.is_empty() {
                        held.wakers = wakers;
                    }
                });
            }
        }
    }
    HELD.with(|held| held.borrow_mut().depth += 1);
    let _scope = Scope;
    f()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn wakes_are_held_until_the_outermost_scope_ends() {
        let count = Arc::new(Count::default());
        let waker = || Waker::from(Arc::clone(&count));
        wake(waker());
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "outside a scope: at once");
        deferring(|| {
            wake(waker());
            deferring(|| wake(waker()));
            assert_eq!(count.0.load(Ordering::SeqCst), 1, "held while a scope is open");
        });
        assert_eq!(count.0.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn held_wakes_happen_even_when_the_scope_panics() {
        let count = Arc::new(Count::default());
        let waker = Waker::from(Arc::clone(&count));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            deferring(|| {
                wake(waker);
                panic!("a handler failed");
            })
        }));
        assert!(result.is_err());
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
        deferring(|| {});
        wake(Waker::from(Arc::clone(&count)));
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "the thread is out of every scope again");
    }
}
