//! [`TokenBucket`]: per-connection pacing of input lines, with time passed in.

use std::time::{Duration, Instant};

/// A token bucket: up to `burst` tokens at once, refilled at `rate` tokens per
/// second. A driver asks before handling each line and, when refused, stops
/// reading that connection for the returned wait, so TCP pushes back on the
/// sender and nothing is dropped.
///
/// Costs that are known only afterwards (the bytes a read returned, the size
/// of a reply) are [`charge`](Self::charge)d in thousandths of a token and may
/// put the bucket in debt; [`ready`](Self::ready) says how long until the debt
/// is paid, and a driver reads nothing until then.
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
///
/// // 3000 bytes at 4 thousandths of a token each: 12 tokens of debt.
/// let later = start + Duration::from_secs(10);
/// bucket.charge(later, 3000 * 4);
/// assert_eq!(bucket.ready(later), Err(Duration::from_secs(1)));
/// assert!(bucket.ready(later + Duration::from_secs(1)).is_ok());
/// ```
#[derive(Clone, Debug)]
pub struct TokenBucket {
    burst: u32,
    rate: u32,
    /// Available tokens in nanotokens (10^-9 of a token), so refill is exact
    /// integer arithmetic; negative while in debt. An `i64`, not an `i128`:
    /// 8-byte alignment keeps the futures that hold a bucket small.
    nanotokens: i64,
    last: Instant,
}

const NANOS: i64 = 1_000_000_000;

/// Nanotokens per thousandth of a token.
const PER_MILLI: i64 = NANOS / 1000;

impl TokenBucket {
    /// A full bucket. `rate == 0` means unlimited.
    pub fn new(burst: u32, rate: u32, now: Instant) -> Self {
        let burst = burst.max(1);
        Self {
            burst,
            rate,
            nanotokens: i64::from(burst) * NANOS,
            last: now,
        }
    }

    /// Adds what was earned since the last call, up to the burst.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_nanos();
        self.last = self.last.max(now);
        let earned = elapsed.saturating_mul(u128::from(self.rate));
        let earned = i64::try_from(earned).unwrap_or(i64::MAX);
        let cap = i64::from(self.burst) * NANOS;
        self.nanotokens = self.nanotokens.saturating_add(earned).min(cap);
    }

    /// How long until the bucket holds `want` nanotokens (which it does not).
    fn wait_for(&self, want: i64) -> Duration {
        let missing = u64::try_from(want.saturating_sub(self.nanotokens)).unwrap_or(0);
        Duration::from_nanos(missing.div_ceil(u64::from(self.rate)))
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        self.check(now)?;
        self.charge(now, 1000);
        Ok(())
    }

    /// `Ok` if a whole token is there, without taking it; else how long until
    /// one is. For a cost that is decided after looking ([`charge`](Self::charge)
    /// it then, or not).
    pub fn check(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        self.refill(now);
        if self.nanotokens >= NANOS {
            Ok(())
        } else {
            Err(self.wait_for(NANOS))
        }
    }

    /// Charges `milli_tokens` thousandths of a token for work already done;
    /// the bucket may go into debt.
    pub fn charge(&mut self, now: Instant, milli_tokens: u64) {
        if self.rate == 0 {
            return;
        }
        self.refill(now);
        let cost = i64::try_from(milli_tokens)
            .unwrap_or(i64::MAX)
            .saturating_mul(PER_MILLI);
        self.nanotokens = self.nanotokens.saturating_sub(cost);
    }

    /// `Ok` unless the bucket is in debt; then how long until it is paid.
    pub fn ready(&mut self, now: Instant) -> Result<(), Duration> {
        if self.rate == 0 {
            return Ok(());
        }
        self.refill(now);
        if self.nanotokens >= 0 {
            Ok(())
        } else {
            Err(self.wait_for(0))
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
    fn charges_make_debt_that_time_pays() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 20, t0);
        assert!(b.ready(t0).is_ok());
        // 14 tokens charged against 10 held: 4 tokens of debt, 200 ms at 20/s.
        b.charge(t0, 14_000);
        assert_eq!(b.ready(t0), Err(Duration::from_millis(200)));
        assert!(b.take(t0).is_err(), "no line while in debt");
        assert_eq!(b.check(t0), Err(Duration::from_millis(250)));
        assert!(b.ready(t0 + Duration::from_millis(200)).is_ok());
        // Huge charges saturate instead of wrapping into credit.
        b.charge(t0, u64::MAX);
        assert!(b.ready(t0 + Duration::from_secs(3600)).is_err());
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1, 0, t0);
        for _ in 0..1000 {
            assert!(b.take(t0).is_ok());
        }
        b.charge(t0, u64::MAX);
        assert!(b.ready(t0).is_ok());
    }
}
