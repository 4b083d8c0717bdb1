//! What happens next in simulated time: a queue of timed items, earliest first,
//! items at the same time in the order they were scheduled (so a run never
//! depends on the heap's tie-breaking).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

pub struct Agenda<T> {
    heap: BinaryHeap<Entry<T>>,
    scheduled: u64,
}

struct Entry<T> {
    at: f64,
    seq: u64,
    item: T,
}

impl<T> Agenda<T> {
    pub fn new() -> Self {
        Self {
            heap: BinaryHeap::new(),
            scheduled: 0,
        }
    }

    pub fn schedule(&mut self, at: f64, item: T) {
        self.scheduled += 1;
        self.heap.push(Entry {
            at,
            seq: self.scheduled,
            item,
        });
    }

    /// When the earliest item is due.
    pub fn next_at(&self) -> Option<f64> {
        self.heap.peek().map(|e| e.at)
    }

    pub fn pop(&mut self) -> Option<(f64, T)> {
        self.heap.pop().map(|e| (e.at, e.item))
    }
}

impl<T> Default for Agenda<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    /// Reversed: the max-heap pops the earliest, then the first scheduled.
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.total_cmp(&self.at).then(other.seq.cmp(&self.seq))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_then_in_scheduling_order() {
        let mut agenda = Agenda::new();
        for (at, item) in [
            (2.0, "c"),
            (1.0, "a"),
            (2.0, "d"),
            (1.0, "b"),
            (0.5, "first"),
        ] {
            agenda.schedule(at, item);
        }
        assert_eq!(agenda.next_at(), Some(0.5));
        let order: Vec<&str> = std::iter::from_fn(|| agenda.pop().map(|(_, i)| i)).collect();
        assert_eq!(order, ["first", "a", "b", "c", "d"]);
        assert_eq!(agenda.next_at(), None);
    }
}
