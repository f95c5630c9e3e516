//! Live events that reach a socket ahead of their turn.
//!
//! The group-commit writer gives a conversation's events consecutive seqs in
//! one batch, and the tasks that publish them race each other to the hub, so
//! seq 8 can reach a socket a few microseconds before seq 7. Reading the
//! store for 7 at once would be correct but costs a read per race; instead
//! the socket holds 8 back for a moment. If 7 arrives, both go out in order;
//! if it has not arrived by the deadline (an event lost between nodes), the
//! socket fills the gap from the store as before.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

/// How long an early event waits for the ones before it.
pub const GAP_WAIT: Duration = Duration::from_millis(25);

/// Early events held per conversation before the gap is filled from the
/// store at once (bounds the memory a stalled publisher can pin).
pub const MAX_HELD: usize = 64;

#[derive(Default)]
pub struct Reorder {
    held: HashMap<String, BTreeMap<i64, Bytes>>,
    deadline: Option<Instant>,
}

impl Reorder {
    /// Hold an event that is ahead of the cursor; returns how many events
    /// this conversation now holds.
    pub fn hold(&mut self, conv: &str, seq: i64, text: Bytes, now: Instant) -> usize {
        let held = self.held.entry(conv.to_owned()).or_default();
        held.insert(seq, text);
        self.deadline.get_or_insert(now + GAP_WAIT);
        held.len()
    }

    /// The held events of `conv` that follow `cursor` without a gap, in
    /// order, removing them and any at or below the cursor.
    pub fn take_ready(&mut self, conv: &str, cursor: i64) -> Vec<(i64, Bytes)> {
        let Some(held) = self.held.get_mut(conv) else { return Vec::new() };
        let mut ready = Vec::new();
        let mut next = cursor + 1;
        while let Some((&seq, _)) = held.first_key_value() {
            if seq < next {
                held.pop_first();
            } else if seq == next {
                ready.push(held.pop_first().expect("first exists"));
                next += 1;
            } else {
                break;
            }
        }
        if held.is_empty() {
            self.held.remove(conv);
            if self.held.is_empty() {
                self.deadline = None;
            }
        }
        ready
    }

    /// When the oldest wait runs out, if anything is held.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Conversations still waiting, each with the highest seq held: the
    /// store must be read up to there. Resets the deadline.
    pub fn expired(&mut self) -> Vec<(String, i64)> {
        self.deadline = None;
        let waiting: Vec<(String, i64)> = self
            .held
            .iter()
            .filter_map(|(conv, held)| held.last_key_value().map(|(seq, _)| (conv.clone(), *seq)))
            .collect();
        if !waiting.is_empty() {
            self.deadline = Some(Instant::now() + GAP_WAIT);
        }
        waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::from(s.to_owned())
    }

    fn seqs(ready: &[(i64, Bytes)]) -> Vec<i64> {
        ready.iter().map(|(s, _)| *s).collect()
    }

    #[test]
    fn an_early_event_goes_out_after_the_one_it_waited_for() {
        let mut r = Reorder::default();
        let now = Instant::now();
        assert_eq!(r.hold("c", 8, b("8"), now), 1);
        assert_eq!(r.deadline(), Some(now + GAP_WAIT));
        // 7 was sent directly (cursor now 7): 8 is ready, nothing is left.
        assert_eq!(seqs(&r.take_ready("c", 7)), vec![8]);
        assert_eq!(r.deadline(), None);
        assert!(r.expired().is_empty());
    }

    #[test]
    fn only_a_gap_free_run_is_released() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.hold("c", 5, b("5"), now);
        r.hold("c", 3, b("3"), now);
        r.hold("c", 4, b("4"), now);
        r.hold("c", 7, b("7"), now);
        let ready = r.take_ready("c", 2);
        assert_eq!(seqs(&ready), vec![3, 4, 5]);
        assert_eq!(ready[0].1, b("3"));
        // 6 is still missing: 7 waits, and so does the deadline.
        assert_eq!(r.deadline(), Some(now + GAP_WAIT));
        assert_eq!(r.expired(), vec![("c".to_owned(), 7)]);
    }

    #[test]
    fn events_already_sent_by_a_store_read_are_dropped() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.hold("c", 4, b("4"), now);
        r.hold("c", 6, b("6"), now);
        // A catch-up from the store sent up to 6.
        assert!(r.take_ready("c", 6).is_empty());
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn conversations_wait_independently() {
        let mut r = Reorder::default();
        let now = Instant::now();
        r.hold("a", 2, b("a2"), now);
        r.hold("b", 9, b("b9"), now);
        assert_eq!(seqs(&r.take_ready("a", 1)), vec![2]);
        assert!(r.deadline().is_some(), "b still waits");
        assert_eq!(r.expired(), vec![("b".to_owned(), 9)]);
        assert!(r.take_ready("unknown", 0).is_empty());
    }
}
