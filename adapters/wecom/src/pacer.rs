//! Sliding-window send pacing per key (per member, per webhook robot).
//!
//! WeCom silently drops messages above its quotas (30 per member per minute and
//! 1000 per hour for app messages, 20 per minute per webhook robot), so every send
//! waits here until it fits in all windows. Waiting callers keep their order
//! because each key's lock is held across the wait.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

/// At most `max` sends in any period of `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateWindow {
    pub window: Duration,
    pub max: usize,
}

/// Keys idle for longer than this are forgotten when the map grows.
const IDLE_KEY_LIMIT: usize = 10_000;

/// A per-key sliding-window rate limiter.
pub struct Pacer {
    windows: Vec<RateWindow>,
    keys: StdMutex<HashMap<String, Arc<Mutex<VecDeque<Instant>>>>>,
}

impl Pacer {
    /// Creates a pacer. Windows with `max == 0` are ignored.
    pub fn new(windows: Vec<RateWindow>) -> Self {
        Pacer {
            windows: windows.into_iter().filter(|w| w.max > 0).collect(),
            keys: StdMutex::new(HashMap::new()),
        }
    }

    /// Waits until one more send for `key` fits in every window, and records it.
    pub async fn acquire(&self, key: &str) {
        let history = self.history(key);
        let mut sent = history.lock().await;
        let longest = self
            .windows
            .iter()
            .map(|w| w.window)
            .max()
            .unwrap_or_default();
        loop {
            let now = Instant::now();
            while sent
                .front()
                .is_some_and(|at| now.duration_since(*at) >= longest)
            {
                sent.pop_front();
            }
            match self.wait_needed(&sent, now) {
                None => {
                    sent.push_back(now);
                    return;
                }
                Some(until) => {
                    tracing::debug!(
                        wait_ms = until.duration_since(now).as_millis() as u64,
                        "pacing WeCom send"
                    );
                    tokio::time::sleep_until(until).await;
                }
            }
        }
    }

    /// Returns when the next send may go, or `None` if it may go now.
    fn wait_needed(&self, sent: &VecDeque<Instant>, now: Instant) -> Option<Instant> {
        let mut until: Option<Instant> = None;
        for window in &self.windows {
            let in_window: Vec<&Instant> = sent
                .iter()
                .filter(|at| now.duration_since(**at) < window.window)
                .collect();
            if in_window.len() >= window.max {
                // The oldest send that must leave the window before one more fits.
                let blocking = in_window[in_window.len() - window.max];
                let free_at = *blocking + window.window;
                until = Some(until.map_or(free_at, |current| current.max(free_at)));
            }
        }
        until
    }

    fn history(&self, key: &str) -> Arc<Mutex<VecDeque<Instant>>> {
        let mut keys = self
            .keys
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if keys.len() > IDLE_KEY_LIMIT {
            // Drop keys that no task holds and whose last send has left every
            // window, because their history no longer delays anything.
            let now = Instant::now();
            let longest = self
                .windows
                .iter()
                .map(|w| w.window)
                .max()
                .unwrap_or_default();
            keys.retain(|_, history| {
                Arc::strong_count(history) > 1
                    || history.try_lock().map_or(true, |sent| {
                        sent.back()
                            .is_some_and(|at| now.duration_since(*at) < longest)
                    })
            });
        }
        keys.entry(key.to_string()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pacer_spreads_sends_over_the_window() {
        let pacer = Pacer::new(vec![RateWindow {
            window: Duration::from_secs(60),
            max: 3,
        }]);
        let start = Instant::now();
        let mut times = Vec::new();
        for _ in 0..7 {
            pacer.acquire("u").await;
            times.push(start.elapsed().as_secs());
        }
        assert_eq!(times, vec![0, 0, 0, 60, 60, 60, 120]);
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_keys_are_independent() {
        let pacer = Pacer::new(vec![RateWindow {
            window: Duration::from_secs(60),
            max: 1,
        }]);
        let start = Instant::now();
        pacer.acquire("a").await;
        pacer.acquire("b").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacer.acquire("a").await;
        assert_eq!(start.elapsed(), Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn pacer_honours_every_window() {
        let pacer = Pacer::new(vec![
            RateWindow {
                window: Duration::from_secs(60),
                max: 2,
            },
            RateWindow {
                window: Duration::from_secs(3600),
                max: 3,
            },
        ]);
        let start = Instant::now();
        for _ in 0..4 {
            pacer.acquire("u").await;
        }
        // The fourth send waits for the first to leave the hour window.
        assert_eq!(start.elapsed(), Duration::from_secs(3600));
    }
}
