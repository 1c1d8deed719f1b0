//! Per receiver, per publisher: every sequence received, kept exactly as sorted runs
//! (`[start, end)`), so duplicates, reordering and, at the end, every missing message are
//! counted exactly, however far back a replay reaches. A stream in order is one run, extended
//! in place (one comparison per message); each gap (a reconnect without recovery) adds one.

/// What one arriving sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than anything received so far (gaps are losses unless filled later).
    InOrder,
    /// Lower than the highest received and not received before: delivered, out of order.
    Reordered,
    /// Received before.
    Duplicate,
}

/// The sequences of one publisher one receiver got.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SequenceSet {
    /// Disjoint, non-adjacent runs `[start, end)`, in ascending order.
    runs: Vec<(u64, u64)>,
}

impl SequenceSet {
    /// Classifies `seq` and records it.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        let Some(last) = self.runs.last_mut() else {
            self.runs.push((seq, seq + 1));
            return Arrival::InOrder;
        };
        if seq == last.1 {
            last.1 += 1;
            return Arrival::InOrder;
        }
        if seq > last.1 {
            self.runs.push((seq, seq + 1));
            return Arrival::InOrder;
        }
        // Below the highest: the first run that ends past `seq` holds it or lies above it.
        let at = self.runs.partition_point(|run| run.1 <= seq);
        if self.runs[at].0 <= seq {
            return Arrival::Duplicate;
        }
        let joins_previous = at > 0 && self.runs[at - 1].1 == seq;
        let joins_next = self.runs[at].0 == seq + 1;
        match (joins_previous, joins_next) {
            (true, true) => {
                self.runs[at - 1].1 = self.runs[at].1;
                self.runs.remove(at);
            }
            (true, false) => self.runs[at - 1].1 += 1,
            (false, true) => self.runs[at].0 = seq,
            (false, false) => self.runs.insert(at, (seq, seq + 1)),
        }
        Arrival::Reordered
    }

    /// How many of the sequences `[start, end)` were received.
    pub fn count_in(&self, start: u64, end: u64) -> u64 {
        self.runs
            .iter()
            .map(|&(from, to)| to.min(end).saturating_sub(from.max(start)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_order_gaps_reordering_and_duplicates() {
        let mut set = SequenceSet::default();
        assert_eq!(set.observe(0), Arrival::InOrder);
        assert_eq!(set.observe(1), Arrival::InOrder);
        assert_eq!(set.observe(1), Arrival::Duplicate);
        assert_eq!(set.observe(4), Arrival::InOrder);
        assert_eq!(set.observe(3), Arrival::Reordered);
        assert_eq!(set.observe(3), Arrival::Duplicate);
        assert_eq!(set.observe(0), Arrival::Duplicate);
        assert_eq!(set.observe(2), Arrival::Reordered);
        assert_eq!(set.runs, vec![(0, 5)]);
        assert_eq!(set.observe(200), Arrival::InOrder);
        // Far behind is still told exactly: new is reordered, seen is a duplicate.
        assert_eq!(set.observe(100), Arrival::Reordered);
        assert_eq!(set.observe(4), Arrival::Duplicate);
        assert_eq!(set.observe(100), Arrival::Duplicate);
        assert_eq!(set.runs, vec![(0, 5), (100, 101), (200, 201)]);
        assert_eq!(set.observe(99), Arrival::Reordered);
        assert_eq!(set.observe(199), Arrival::Reordered);
        assert_eq!(set.runs, vec![(0, 5), (99, 101), (199, 201)]);
    }

    #[test]
    fn first_message_may_have_any_sequence() {
        let mut set = SequenceSet::default();
        assert_eq!(set.observe(17), Arrival::InOrder);
        assert_eq!(set.observe(17), Arrival::Duplicate);
        assert_eq!(set.observe(16), Arrival::Reordered);
    }

    #[test]
    fn counts_what_was_received_in_a_range() {
        let mut set = SequenceSet::default();
        for seq in (0..10).chain(20..25) {
            set.observe(seq);
        }
        assert_eq!(set.count_in(0, 100), 15);
        assert_eq!(set.count_in(5, 22), 7);
        assert_eq!(set.count_in(10, 20), 0);
        assert_eq!(set.count_in(30, 40), 0);
    }
}
