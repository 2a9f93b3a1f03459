//! One answer at a time per conversation: later messages wait in order.
//!
//! A conversation has an entry in the map exactly while one worker task answers
//! its messages. The worker takes the next waiting message when it finishes one,
//! and removes the entry when none is left, so the map never outgrows the
//! conversations that are busy right now.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::sync::Mutex;

/// The outcome of adding a job to a conversation.
#[derive(Debug, PartialEq, Eq)]
pub enum Enqueued<J> {
    /// Nothing runs in this conversation: the caller starts a worker with this job.
    Start(J),
    /// A worker is busy; the job waits behind `ahead` others (the running one included).
    Waiting { ahead: usize },
    /// The wait queue is full; the job is handed back.
    Full(J),
}

/// Per-conversation FIFO queues of jobs waiting for the conversation's worker.
#[derive(Debug)]
pub struct ConversationQueues<K, J> {
    max_waiting: usize,
    waiting: Mutex<HashMap<K, VecDeque<J>>>,
}

impl<K: Eq + Hash + Clone, J> ConversationQueues<K, J> {
    /// Creates queues where at most `max_waiting` jobs wait behind the running one.
    pub fn new(max_waiting: usize) -> Self {
        ConversationQueues {
            max_waiting,
            waiting: Mutex::new(HashMap::new()),
        }
    }

    pub fn enqueue(&self, key: &K, job: J) -> Enqueued<J> {
        let mut waiting = self.waiting.lock().expect("queue lock poisoned");
        match waiting.get_mut(key) {
            None => {
                waiting.insert(key.clone(), VecDeque::new());
                Enqueued::Start(job)
            }
            Some(queue) if queue.len() >= self.max_waiting => Enqueued::Full(job),
            Some(queue) => {
                queue.push_back(job);
                Enqueued::Waiting { ahead: queue.len() }
            }
        }
    }

    /// Returns the next waiting job of the conversation, or ends its worker's turn.
    ///
    /// Only the worker started by [`Enqueued::Start`] may call this. When it
    /// returns `None` the conversation is idle and the next job starts a new worker.
    pub fn next(&self, key: &K) -> Option<J> {
        let mut waiting = self.waiting.lock().expect("queue lock poisoned");
        let queue = waiting.get_mut(key)?;
        let job = queue.pop_front();
        if job.is_none() {
            waiting.remove(key);
        }
        job
    }

    /// Returns the number of conversations with a worker.
    pub fn busy(&self) -> usize {
        self.waiting.lock().expect("queue lock poisoned").len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_runs_jobs_in_order_and_bounds_depth() {
        let queues = ConversationQueues::new(2);

        assert_eq!(queues.enqueue(&"c1", 1), Enqueued::Start(1));
        assert_eq!(queues.enqueue(&"c1", 2), Enqueued::Waiting { ahead: 1 });
        assert_eq!(queues.enqueue(&"c1", 3), Enqueued::Waiting { ahead: 2 });
        assert_eq!(queues.enqueue(&"c1", 4), Enqueued::Full(4));
        assert_eq!(queues.enqueue(&"c2", 5), Enqueued::Start(5));

        assert_eq!(queues.next(&"c1"), Some(2));
        assert_eq!(queues.enqueue(&"c1", 6), Enqueued::Waiting { ahead: 2 });
        assert_eq!(queues.next(&"c1"), Some(3));
        assert_eq!(queues.next(&"c1"), Some(6));
        assert_eq!(queues.next(&"c1"), None);
        assert_eq!(queues.busy(), 1);

        assert_eq!(queues.enqueue(&"c1", 7), Enqueued::Start(7));
        assert_eq!(queues.next(&"c2"), None);
        assert_eq!(queues.busy(), 1);
    }

    #[test]
    fn queue_with_zero_depth_rejects_while_busy() {
        let queues = ConversationQueues::new(0);

        assert_eq!(queues.enqueue(&"c1", 1), Enqueued::Start(1));
        assert_eq!(queues.enqueue(&"c1", 2), Enqueued::Full(2));
        assert_eq!(queues.next(&"c1"), None);
        assert_eq!(queues.enqueue(&"c1", 3), Enqueued::Start(3));
    }
}
