//! `RateLimiter`: one connection's token bucket and its count of consecutive violations.

use tokio::time::Instant;

use crate::config::RateLimit;

/// What the limiter decided about one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Within the limit.
    Allow,
    /// Over the limit: drop the message (and tell the client).
    Limited,
    /// Over the limit too many times in a row: close with 4003.
    Abuse,
}

/// A token bucket refilled lazily on each message, in milli-tokens so slow rates stay exact.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limit: RateLimit,
    milli_tokens: u64,
    last: Instant,
    violations: u32,
}

impl RateLimiter {
    /// A full bucket.
    pub(crate) fn new(limit: RateLimit, now: Instant) -> Self {
        Self { limit, milli_tokens: u64::from(limit.burst) * 1000, last: now, violations: 0 }
    }

    /// Takes a token for one message arriving at `now`.
    pub(crate) fn check(&mut self, now: Instant) -> Verdict {
        let elapsed_ms = u64::try_from(now.saturating_duration_since(self.last).as_millis()).unwrap_or(u64::MAX);
        if elapsed_ms > 0 {
            let refill = elapsed_ms.saturating_mul(u64::from(self.limit.per_second));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(u64::from(self.limit.burst) * 1000);
            self.last = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            self.violations = 0;
            return Verdict::Allow;
        }
        self.violations += 1;
        if self.violations >= self.limit.max_violations.max(1) {
            Verdict::Abuse
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn bursts_then_limits_then_closes_and_refills_over_time() {
        let start = Instant::now();
        let mut limiter = RateLimiter::new(RateLimit::new(10, 3).max_violations(2), start);
        let got: Vec<_> = (0..5).map(|_| limiter.check(start)).collect();
        assert_eq!(got, [Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Limited, Verdict::Abuse]);

        let mut limiter = RateLimiter::new(RateLimit::new(10, 1).max_violations(3), start);
        assert_eq!(limiter.check(start), Verdict::Allow);
        assert_eq!(limiter.check(start), Verdict::Limited);
        // 100 ms at 10/s is one token; an allowed message resets the violation count.
        assert_eq!(limiter.check(start + Duration::from_millis(100)), Verdict::Allow);
        assert_eq!(limiter.check(start + Duration::from_millis(100)), Verdict::Limited);
        assert_eq!(limiter.check(start + Duration::from_millis(100)), Verdict::Limited);
        assert_eq!(limiter.check(start + Duration::from_millis(100)), Verdict::Abuse);
    }
}
