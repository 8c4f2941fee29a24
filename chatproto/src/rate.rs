//! [`TokenBucket`]: per-connection pacing of input lines, with time passed in.

use std::time::{Duration, Instant};

/// A token bucket: up to `burst` lines at once, refilled at `rate` lines per
/// second. A driver asks before handling each line and, when refused, stops
/// reading that connection for the returned wait, so TCP pushes back on the
/// sender and nothing is dropped.
///
/// ```
/// use std::time::{Duration, Instant};
/// use chatproto::TokenBucket;
/// let start = Instant::now();
/// let mut bucket = TokenBucket::new(2, 10, start);
/// assert!(bucket.take(start).is_ok());
/// assert!(bucket.take(start).is_ok());
/// assert_eq!(bucket.take(start), Err(Duration::from_millis(100)));
/// assert!(bucket.take(start + Duration::from_millis(100)).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct TokenBucket {
    burst: u32,
    rate: u32,
    /// Available tokens, in nanotokens (10^-9 of a token), so refill is exact
    /// integer arithmetic.
    nanotokens: u128,
    last: Instant,
}

const NANOS: u128 = 1_000_000_000;

impl TokenBucket {
    /// A full bucket. `rate == 0` means unlimited.
    pub fn new(burst: u32, rate: u32, now: Instant) -> Self {
        Self {
            burst: burst.max(1),
            rate,
            nanotokens: u128::from(burst.max(1)) * NANOS,
            last: now,
        }
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let cap = u128::from(self.burst) * NANOS;
        self.nanotokens = (self.nanotokens + elapsed * u128::from(self.rate)).min(cap);
        if self.nanotokens >= NANOS {
            self.nanotokens -= NANOS;
            Ok(())
        } else {
            let missing = NANOS - self.nanotokens;
            let nanos = missing.div_ceil(u128::from(self.rate));
            Err(Duration::from_nanos(
                u64::try_from(nanos).unwrap_or(u64::MAX),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate_up_to_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 20, t0);
        for _ in 0..3 {
            assert!(b.take(t0).is_ok());
        }
        assert_eq!(b.take(t0), Err(Duration::from_millis(50)));
        // A long pause refills only up to the burst.
        let t1 = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(b.take(t1).is_ok());
        }
        assert!(b.take(t1).is_err());
        assert!(b.take(t1 + Duration::from_millis(50)).is_ok());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 0, t0);
        for _ in 0..1000 {
            assert!(b.take(t0).is_ok());
        }
    }
}
