//! The group threads the bot takes part in, kept in memory with a size cap and a TTL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use maxwin_channel::{Inbound, Platform};
use tokio::time::Instant;

/// One conversation, or one thread inside it; the unit of ordering and of memory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConversationKey {
    pub platform: Platform,
    pub tenant: String,
    pub conversation: String,
    pub thread: Option<String>,
}

impl ConversationKey {
    pub fn of(message: &Inbound) -> Self {
        ConversationKey {
            platform: message.platform,
            tenant: message.tenant.clone(),
            conversation: message.conversation.clone(),
            thread: message.thread.clone(),
        }
    }
}

/// Threads where the bot answered recently, least recently used dropped first.
#[derive(Debug)]
pub struct JoinedThreads {
    capacity: usize,
    ttl: Duration,
    last_seen: Mutex<HashMap<ConversationKey, Instant>>,
}

impl JoinedThreads {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        JoinedThreads {
            capacity: capacity.max(1),
            ttl,
            last_seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records that the bot answers in this thread; keys without a thread are skipped.
    pub fn join(&self, key: &ConversationKey) {
        if key.thread.is_none() {
            return;
        }
        let now = Instant::now();
        let mut last_seen = self.last_seen.lock().expect("thread memory lock poisoned");
        last_seen.insert(key.clone(), now);
        if last_seen.len() > self.capacity {
            self.evict(&mut last_seen, now);
        }
    }

    /// Returns true when the bot answered in this thread within the TTL.
    pub fn contains(&self, key: &ConversationKey) -> bool {
        if key.thread.is_none() {
            return false;
        }
        let now = Instant::now();
        let mut last_seen = self.last_seen.lock().expect("thread memory lock poisoned");
        match last_seen.get(key) {
            Some(seen) if now.saturating_duration_since(*seen) < self.ttl => true,
            Some(_) => {
                last_seen.remove(key);
                false
            }
            None => false,
        }
    }

    /// Drops expired threads, then the least recently used down to 90% of capacity,
    /// so that eviction runs once per many inserts instead of on each one.
    fn evict(&self, last_seen: &mut HashMap<ConversationKey, Instant>, now: Instant) {
        last_seen.retain(|_, seen| now.saturating_duration_since(*seen) < self.ttl);
        if last_seen.len() <= self.capacity {
            return;
        }

        let keep = self.capacity - self.capacity / 10;
        let mut by_age: Vec<(Instant, ConversationKey)> = last_seen
            .iter()
            .map(|(key, seen)| (*seen, key.clone()))
            .collect();
        by_age.sort_by_key(|(seen, _)| std::cmp::Reverse(*seen));
        for (_, key) in by_age.into_iter().skip(keep) {
            last_seen.remove(&key);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.last_seen.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(thread: Option<&str>) -> ConversationKey {
        ConversationKey {
            platform: Platform::Slack,
            tenant: "T1".into(),
            conversation: "C1".into(),
            thread: thread.map(str::to_owned),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn joined_threads_expire_after_ttl() {
        let threads = JoinedThreads::new(10, Duration::from_secs(60));
        threads.join(&key(Some("t1")));

        assert!(threads.contains(&key(Some("t1"))));
        assert!(!threads.contains(&key(Some("t2"))));

        tokio::time::advance(Duration::from_secs(60)).await;
        assert!(!threads.contains(&key(Some("t1"))));
        assert_eq!(threads.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn joined_threads_skip_keys_without_thread() {
        let threads = JoinedThreads::new(10, Duration::from_secs(60));
        threads.join(&key(None));

        assert!(!threads.contains(&key(None)));
        assert_eq!(threads.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn joined_threads_evict_least_recent() {
        let threads = JoinedThreads::new(10, Duration::from_secs(3600));
        for i in 0..10 {
            threads.join(&key(Some(&format!("t{i}"))));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        // Touch the oldest so it becomes the most recent.
        threads.join(&key(Some("t0")));
        tokio::time::advance(Duration::from_secs(1)).await;
        threads.join(&key(Some("t10")));

        assert_eq!(threads.len(), 9);
        assert!(threads.contains(&key(Some("t0"))));
        assert!(threads.contains(&key(Some("t10"))));
        assert!(!threads.contains(&key(Some("t1"))));
        assert!(!threads.contains(&key(Some("t2"))));
        assert!(threads.contains(&key(Some("t3"))));
    }
}
