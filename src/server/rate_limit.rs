//! Per-user token buckets, so one user cannot flood the LLM.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;

use tokio::time::Instant;

use super::settings::RateLimitSettings;

/// Buckets kept before idle full ones are dropped.
const PRUNE_AT: usize = 4096;

/// The outcome of one rate-limit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// Over the limit, and the user has not been notified since their last allowed message.
    LimitedNotify,
    /// Over the limit, and the user already got the notice.
    LimitedSilent,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    notified: bool,
}

/// A token bucket per key, refilled continuously with tokio time.
#[derive(Debug)]
pub struct RateLimiter<K> {
    /// Tokens added per second; 0 turns the limiter off.
    rate: f64,
    capacity: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash> RateLimiter<K> {
    pub fn new(settings: RateLimitSettings) -> Self {
        RateLimiter {
            rate: f64::from(settings.per_minute) / 60.0,
            capacity: f64::from(settings.burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key` if there is one.
    pub fn check(&self, key: K) -> Decision {
        if self.rate == 0.0 {
            return Decision::Allowed;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("rate limiter lock poisoned");
        if buckets.len() >= PRUNE_AT {
            self.prune(&mut buckets, now);
        }

        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.capacity,
            updated: now,
            notified: false,
        });
        self.refill(bucket, now);

        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.notified = false;
            Decision::Allowed
        } else if bucket.notified {
            Decision::LimitedSilent
        } else {
            bucket.notified = true;
            Decision::LimitedNotify
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.capacity);
        bucket.updated = now;
    }

    /// Drops buckets that have refilled completely: a new full bucket behaves the same.
    fn prune(&self, buckets: &mut HashMap<K, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now);
            bucket.tokens < self.capacity
        });
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limiter(per_minute: u32, burst: u32) -> RateLimiter<&'static str> {
        RateLimiter::new(RateLimitSettings { per_minute, burst })
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_allows_burst_then_notifies_once() {
        let limiter = limiter(6, 3);

        for _ in 0..3 {
            assert_eq!(limiter.check("u1"), Decision::Allowed);
        }
        assert_eq!(limiter.check("u1"), Decision::LimitedNotify);
        assert_eq!(limiter.check("u1"), Decision::LimitedSilent);
        assert_eq!(limiter.check("u1"), Decision::LimitedSilent);
        assert_eq!(limiter.check("u2"), Decision::Allowed);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_refills_over_time() {
        let limiter = limiter(6, 3);
        for _ in 0..3 {
            limiter.check("u1");
        }
        assert_eq!(limiter.check("u1"), Decision::LimitedNotify);

        // 6 per minute is one token every 10 seconds.
        tokio::time::advance(Duration::from_secs(9)).await;
        assert_eq!(limiter.check("u1"), Decision::LimitedSilent);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(limiter.check("u1"), Decision::Allowed);

        // An allowed message resets the notice, so the next excess is notified again.
        assert_eq!(limiter.check("u1"), Decision::LimitedNotify);

        tokio::time::advance(Duration::from_secs(3600)).await;
        for _ in 0..3 {
            assert_eq!(limiter.check("u1"), Decision::Allowed);
        }
        assert_eq!(limiter.check("u1"), Decision::LimitedNotify);
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_zero_rate_disables() {
        let limiter = limiter(0, 1);
        for _ in 0..100 {
            assert_eq!(limiter.check("u1"), Decision::Allowed);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limiter_prunes_full_buckets() {
        let limiter: RateLimiter<usize> = RateLimiter::new(RateLimitSettings {
            per_minute: 60,
            burst: 2,
        });
        for user in 0..PRUNE_AT {
            limiter.check(user);
        }
        assert_eq!(limiter.len(), PRUNE_AT);

        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.check(PRUNE_AT);
        assert_eq!(limiter.len(), 1);
    }
}
