//! `Backoff`: exponential backoff with full jitter.

use std::time::Duration;

use rand::Rng;

/// Reconnect delays: attempt `n` (from 0) waits a uniformly random time in
/// `[0, min(max, initial × multiplierⁿ)]` ("full jitter"), so a fleet that lost one server spreads out
/// instead of coming back in one wave.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    /// The first ceiling. Default 1 s.
    pub initial: Duration,
    /// How much the ceiling grows per attempt. Default 2.
    pub multiplier: f64,
    /// The largest ceiling. Default 30 s.
    pub max: Duration,
    /// Give up after this many attempts in a row; `None` (the default) never gives up.
    pub max_attempts: Option<u32>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_secs(1), multiplier: 2.0, max: Duration::from_secs(30), max_attempts: None }
    }
}

impl Backoff {
    /// The ceiling of attempt `attempt` (from 0).
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let grown =
            self.initial.as_secs_f64() * self.multiplier.max(1.0).powi(i32::try_from(attempt).unwrap_or(i32::MAX));
        Duration::from_secs_f64(grown.min(self.max.as_secs_f64()))
    }

    /// A delay for attempt `attempt` drawn from `rng`.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling(attempt);
        Duration::from_secs_f64(rng.random_range(0.0..=ceiling.as_secs_f64()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_stay_under_the_growing_capped_ceiling() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            multiplier: 2.0,
            max: Duration::from_secs(3),
            max_attempts: None,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut seen_high = false;
        for attempt in 0..12 {
            let ceiling = Duration::from_millis(100 * (1u64 << attempt)).min(Duration::from_secs(3));
            assert_eq!(b.ceiling(attempt), ceiling);
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} over {ceiling:?}");
                seen_high |= attempt > 6 && d > Duration::from_secs(2);
            }
        }
        assert!(seen_high, "full jitter reaches up to the cap");
    }
}
