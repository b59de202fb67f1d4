//! `SystemClock`: the wall clock the hub reads its time from when it runs on this transport.

use std::time::{SystemTime, UNIX_EPOCH};

use ws_core::Clock;

/// Milliseconds since the Unix epoch, from the system's wall clock.
///
/// Build a hub with it: `Hub::builder(Arc::new(SystemClock)).build()`. Identity expiries
/// ([`ws_core::Identity::expires_at_ms`]) are read on this clock too.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // A clock set before 1970 reads as the epoch rather than failing.
        SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_milliseconds_since_the_epoch() {
        // 2020-01-01 in milliseconds: any sane clock is past it.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
