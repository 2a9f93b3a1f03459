//! Per-chat pacing of sends and edits, shared by every sink of one bot.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Keeps sends and edits in one chat at least `interval` apart, and keeps a chat
/// waiting until a 429's `retry_after` has passed.
#[derive(Debug)]
pub struct ChatThrottle {
    interval: Duration,
    next_allowed: Mutex<HashMap<i64, Instant>>,
}

/// Entries past their time are pruned once the map contains this many chats.
const PRUNE_ABOVE: usize = 1024;

impl ChatThrottle {
    pub fn new(interval: Duration) -> Self {
        ChatThrottle {
            interval,
            next_allowed: Mutex::new(HashMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// Takes the chat's slot if it is free now; returns false (and takes nothing) otherwise.
    pub fn try_acquire(&self, chat: i64) -> bool {
        let now = Instant::now();
        let mut map = self.lock();
        if map.get(&chat).is_some_and(|next| *next > now) {
            return false;
        }
        map.insert(chat, now + self.interval);
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, next| *next > now);
        }
        true
    }

    /// Waits until the chat's slot is free, then takes it.
    pub async fn acquire(&self, chat: i64) {
        loop {
            let wait_until = {
                let now = Instant::now();
                let mut map = self.lock();
                match map.get(&chat) {
                    Some(next) if *next > now => *next,
                    _ => {
                        map.insert(chat, now + self.interval);
                        return;
                    }
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Holds the chat back until `delay` from now, e.g. after a 429 with `retry_after`.
    pub fn defer(&self, chat: i64, delay: Duration) {
        let until = Instant::now() + delay;
        let mut map = self.lock();
        let next = map.entry(chat).or_insert(until);
        if *next < until {
            *next = until;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Instant>> {
        // The map holds only timestamps, so a panic elsewhere cannot leave it inconsistent.
        self.next_allowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn second_edit_within_interval_is_refused() {
        let throttle = ChatThrottle::new(Duration::from_secs(1));
        assert!(throttle.try_acquire(7));
        assert!(!throttle.try_acquire(7));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert!(!throttle.try_acquire(7));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(throttle.try_acquire(7));
    }

    #[tokio::test(start_paused = true)]
    async fn chats_are_paced_independently() {
        let throttle = ChatThrottle::new(Duration::from_secs(1));
        assert!(throttle.try_acquire(1));
        assert!(throttle.try_acquire(2));
        assert!(!throttle.try_acquire(1));
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_waits_for_the_slot() {
        let throttle = ChatThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        throttle.acquire(5).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        throttle.acquire(5).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn defer_holds_the_chat_for_retry_after() {
        let throttle = ChatThrottle::new(Duration::from_secs(1));
        let start = Instant::now();
        assert!(throttle.try_acquire(9));
        throttle.defer(9, Duration::from_secs(3));
        assert!(!throttle.try_acquire(9));
        throttle.acquire(9).await;
        assert_eq!(start.elapsed(), Duration::from_secs(3));
    }
}
