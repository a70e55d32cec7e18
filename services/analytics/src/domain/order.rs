//! The causal order of a workflow's messages: each after the message that caused it, and
//! otherwise by when they happened.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use chrono::{DateTime, Utc};

/// What ordering needs to know of a message.
pub trait Caused {
    fn message_id(&self) -> &str;
    /// The message that caused it; empty for a first command.
    fn causation_id(&self) -> &str;
    fn occurred_at(&self) -> DateTime<Utc>;
}

/// `messages` ordered so that each comes after its cause (when its cause is among them), ties
/// and independent branches by time, then id. A message whose cause is not among them starts a
/// branch of its own (its cause was a gRPC call, or is past retention).
pub fn causal_order<M: Caused>(messages: Vec<M>) -> Vec<M> {
    let ids: HashSet<String> = messages.iter().map(|m| m.message_id().to_owned()).collect();
    let mut children: HashMap<String, Vec<usize>> = HashMap::new();
    let mut ready = BinaryHeap::new();
    for (index, m) in messages.iter().enumerate() {
        let cause = m.causation_id();
        if !cause.is_empty() && cause != m.message_id() && ids.contains(cause) {
            children.entry(cause.to_owned()).or_default().push(index);
        } else {
            ready.push(Reverse((m.occurred_at(), m.message_id().to_owned(), index)));
        }
    }
    let mut order = Vec::with_capacity(messages.len());
    let mut placed = vec![false; messages.len()];
    while let Some(Reverse((_, id, index))) = ready.pop() {
        order.push(index);
        placed[index] = true;
        for &child in children.get(&id).map_or(&[][..], Vec::as_slice) {
            let m = &messages[child];
            ready.push(Reverse((m.occurred_at(), m.message_id().to_owned(), child)));
        }
    }
    // A cycle of causes (only a forged message makes one): the rest by time.
    let mut rest: Vec<usize> = (0..messages.len()).filter(|i| !placed[*i]).collect();
    rest.sort_by_key(|i| {
        (
            messages[*i].occurred_at(),
            messages[*i].message_id().to_owned(),
        )
    });
    order.extend(rest);
    let mut slots: Vec<Option<M>> = messages.into_iter().map(Some).collect();
    order
        .into_iter()
        .filter_map(|i| slots.get_mut(i).and_then(Option::take))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct M(&'static str, &'static str, i64);

    impl Caused for M {
        fn message_id(&self) -> &str {
            self.0
        }
        fn causation_id(&self) -> &str {
            self.1
        }
        fn occurred_at(&self) -> DateTime<Utc> {
            DateTime::from_timestamp(self.2, 0).unwrap_or_default()
        }
    }

    fn ids(ms: &[M]) -> Vec<&str> {
        ms.iter().map(|m| m.0).collect()
    }

    #[test]
    fn a_message_comes_after_its_cause_even_with_an_earlier_clock() {
        // `settle` was stamped by a clock behind the one that stamped its cause.
        let ms = vec![
            M("settled", "settle", 5),
            M("settle", "completed", 3),
            M("completed", "requested", 4),
            M("requested", "", 1),
        ];
        assert_eq!(
            ids(&causal_order(ms)),
            ["requested", "completed", "settle", "settled"]
        );
    }

    #[test]
    fn branches_interleave_by_time_and_orphans_start_their_own() {
        let ms = vec![
            M("b1", "a", 3),
            M("c1", "a", 2),
            M("a", "", 1),
            M("orphan", "gone", 0),
            M("b2", "b1", 4),
        ];
        assert_eq!(ids(&causal_order(ms)), ["orphan", "a", "c1", "b1", "b2"]);
    }

    #[test]
    fn a_cycle_of_causes_loses_no_message() {
        let ms = vec![M("x", "y", 2), M("y", "x", 1), M("z", "", 3)];
        assert_eq!(ids(&causal_order(ms)), ["z", "y", "x"]);
    }
}
