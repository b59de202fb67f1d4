//! `RateLimiter`: one connection's token bucket and its count of consecutive violations.

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
    milli_tokens: u64,
    /// When tokens were last added, in milliseconds on the server's clock.
    last: u64,
    violations: u32,
}

impl RateLimiter {
    /// A full bucket.
    pub(crate) fn new(limit: RateLimit, now: u64) -> Self {
        Self { milli_tokens: u64::from(limit.burst) * 1000, last: now, violations: 0 }
    }

    /// Takes a token for one message arriving at `now` (milliseconds on the server's clock), under `limit` (the
    /// one the bucket was made with: the limiter does not keep a copy).
    pub(crate) fn check(&mut self, limit: &RateLimit, now: u64) -> Verdict {
        let elapsed_ms = now.saturating_sub(self.last);
        if elapsed_ms > 0 {
            let refill = elapsed_ms.saturating_mul(u64::from(limit.per_second));
            self.milli_tokens = self.milli_tokens.saturating_add(refill).min(u64::from(limit.burst) * 1000);
            self.last = now;
        }
        if self.milli_tokens >= 1000 {
            self.milli_tokens -= 1000;
            self.violations = 0;
            return Verdict::Allow;
        }
        self.violations += 1;
        if self.violations >= limit.max_violations.max(1) {
            Verdict::Abuse
        } else {
            Verdict::Limited
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_limits_then_closes_and_refills_over_time() {
        let start = 1_000;
        let limit = RateLimit::new(10, 3).max_violations(2);
        let mut limiter = RateLimiter::new(limit, start);
        let got: Vec<_> = (0..5).map(|_| limiter.check(&limit, start)).collect();
        assert_eq!(got, [Verdict::Allow, Verdict::Allow, Verdict::Allow, Verdict::Limited, Verdict::Abuse]);

        let limit = RateLimit::new(10, 1).max_violations(3);
        let mut limiter = RateLimiter::new(limit, start);
        assert_eq!(limiter.check(&limit, start), Verdict::Allow);
        assert_eq!(limiter.check(&limit, start), Verdict::Limited);
        // 100 ms at 10/s is one token; an allowed message resets the violation count.
        assert_eq!(limiter.check(&limit, start + 100), Verdict::Allow);
        assert_eq!(limiter.check(&limit, start + 100), Verdict::Limited);
        assert_eq!(limiter.check(&limit, start + 100), Verdict::Limited);
        assert_eq!(limiter.check(&limit, start + 100), Verdict::Abuse);
    }
}
