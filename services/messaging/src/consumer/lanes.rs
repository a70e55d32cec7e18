//! Per-key lanes: the scheduling state of one subscription in one process. Messages queue per
//! key in arrival order; only a key's head may run, so a key is applied strictly in order while
//! any number of other keys run beside it. A failing head stays at the front of its key (held
//! back until its retry is due) and holds back only that key.

use std::collections::{HashMap, VecDeque};

/// Messages waiting per key, and which keys may run next. No I/O: the consumer loop drives it.
#[derive(Debug)]
pub struct Lanes<T> {
    /// Pending messages per key; a key is present while it has a message pending or running.
    queues: HashMap<String, VecDeque<T>>,
    /// Keys whose head may run now, oldest first.
    ready: VecDeque<String>,
    /// Messages held (queued, running or waiting for a retry).
    held: usize,
}

impl<T> Default for Lanes<T> {
    fn default() -> Self {
        Self {
            queues: HashMap::new(),
            ready: VecDeque::new(),
            held: 0,
        }
    }
}

impl<T> Lanes<T> {
    /// Messages held, including running ones.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Keys whose head may run now.
    pub fn ready(&self) -> usize {
        self.ready.len()
    }

    /// Keys with a message held.
    pub fn keys(&self) -> usize {
        self.queues.len()
    }

    /// Queues `item` behind the key's earlier messages; a key seen for the first time is ready.
    pub fn push(&mut self, key: &str, item: T) {
        self.held += 1;
        match self.queues.get_mut(key) {
            Some(queue) => queue.push_back(item),
            None => {
                self.queues.insert(key.to_owned(), VecDeque::from([item]));
                self.ready.push_back(key.to_owned());
            }
        }
    }

    /// Takes the heads of up to `max` ready keys (each key at most once). The keys stay occupied
    /// until [`Lanes::done`] or [`Lanes::retry_later`] is called for them.
    pub fn take_ready(&mut self, max: usize) -> Vec<(String, T)> {
        let mut taken = Vec::new();
        while taken.len() < max {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            if let Some(item) = self.queues.get_mut(&key).and_then(VecDeque::pop_front) {
                taken.push((key, item));
            }
        }
        taken
    }

    /// The key's head is finished for good (applied, rejected or dead-lettered): its next
    /// message, if any, becomes ready.
    pub fn done(&mut self, key: &str) {
        self.held = self.held.saturating_sub(1);
        match self.queues.get(key) {
            Some(queue) if !queue.is_empty() => self.ready.push_back(key.to_owned()),
            Some(_) => {
                self.queues.remove(key);
            }
            None => {}
        }
    }

    /// The key's head failed and goes back to the front of its key, which waits until
    /// [`Lanes::wake`] (its retry is due); other keys are unaffected.
    pub fn retry_later(&mut self, key: &str, item: T) {
        match self.queues.get_mut(key) {
            Some(queue) => queue.push_front(item),
            None => {
                self.queues.insert(key.to_owned(), VecDeque::from([item]));
            }
        }
    }

    /// A held-back key's retry is due: its head may run again.
    pub fn wake(&mut self, key: &str) {
        if self.queues.get(key).is_some_and(|q| !q.is_empty()) {
            self.ready.push_back(key.to_owned());
        }
    }

    /// Forgets everything (after the subscription is re-made, the broker redelivers it all).
    pub fn clear(&mut self) {
        self.queues.clear();
        self.ready.clear();
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_runs_one_message_at_a_time_in_arrival_order() {
        let mut lanes = Lanes::default();
        lanes.push("a", 1);
        lanes.push("a", 2);
        lanes.push("b", 3);
        assert_eq!(lanes.take_ready(10), [("a".into(), 1), ("b".into(), 3)]);
        assert!(
            lanes.take_ready(10).is_empty(),
            "a's second waits for its first"
        );
        lanes.done("a");
        assert_eq!(lanes.take_ready(10), [("a".into(), 2)]);
        lanes.done("a");
        lanes.done("b");
        assert!(lanes.is_empty());
        assert_eq!(lanes.keys(), 0);
    }

    #[test]
    fn a_failing_key_waits_alone_and_keeps_its_order() {
        let mut lanes = Lanes::default();
        lanes.push("bad", 1);
        lanes.push("bad", 2);
        lanes.push("good", 10);
        let first = lanes.take_ready(1);
        assert_eq!(first, [("bad".into(), 1)]);
        lanes.retry_later("bad", 1);
        lanes.push("good", 11);
        assert_eq!(lanes.take_ready(10), [("good".into(), 10)]);
        lanes.done("good");
        assert_eq!(lanes.take_ready(10), [("good".into(), 11)]);
        lanes.done("good");
        assert!(lanes.take_ready(10).is_empty(), "bad is held back");
        lanes.wake("bad");
        assert_eq!(
            lanes.take_ready(10),
            [("bad".into(), 1)],
            "its head again, not 2"
        );
        lanes.done("bad");
        assert_eq!(lanes.take_ready(10), [("bad".into(), 2)]);
        assert_eq!(lanes.len(), 1);
    }

    #[test]
    fn take_ready_is_bounded() {
        let mut lanes = Lanes::default();
        for i in 0..10 {
            lanes.push(&i.to_string(), i);
        }
        assert_eq!(lanes.take_ready(4).len(), 4);
        assert_eq!(lanes.take_ready(100).len(), 6);
        assert_eq!(lanes.len(), 10, "running messages are still held");
    }
}
