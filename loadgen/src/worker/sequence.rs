//! Per receiver, per publisher sequence tracking: the highest sequence seen plus a 64-entry
//! bitmap behind it, so duplicates and reordering are told apart cheaply (16 bytes each).

/// What one arriving sequence number turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Higher than anything seen so far (gaps are losses unless filled later).
    InOrder,
    /// Lower than the highest seen and not seen before: delivered, but reordered.
    Reordered,
    /// Seen before.
    Duplicate,
}

/// Sequence state of one publisher as seen by one receiver.
#[derive(Debug, Clone, Copy, Default)]
pub struct SequenceWindow {
    /// Highest sequence seen + 1; 0 = nothing seen yet.
    next: u64,
    /// Bit i set = sequence `next - 1 - i` was seen.
    seen: u64,
}

impl SequenceWindow {
    /// Classifies `seq` and records it.
    pub fn observe(&mut self, seq: u64) -> Arrival {
        if seq >= self.next {
            let shift = seq + 1 - self.next;
            self.seen = if self.next == 0 || shift >= 64 {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.next = seq + 1;
            return Arrival::InOrder;
        }
        let behind = self.next - 1 - seq;
        if behind >= 64 {
            // Too old to remember: it cannot be told from a duplicate, count it as reordered.
            return Arrival::Reordered;
        }
        let bit = 1u64 << behind;
        if self.seen & bit != 0 {
            Arrival::Duplicate
        } else {
            self.seen |= bit;
            Arrival::Reordered
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_order_gaps_reordering_and_duplicates() {
        let mut window = SequenceWindow::default();
        assert_eq!(window.observe(0), Arrival::InOrder);
        assert_eq!(window.observe(1), Arrival::InOrder);
        assert_eq!(window.observe(1), Arrival::Duplicate);
        assert_eq!(window.observe(4), Arrival::InOrder);
        assert_eq!(window.observe(3), Arrival::Reordered);
        assert_eq!(window.observe(3), Arrival::Duplicate);
        assert_eq!(window.observe(0), Arrival::Duplicate);
        assert_eq!(window.observe(2), Arrival::Reordered);
        assert_eq!(window.observe(200), Arrival::InOrder);
        assert_eq!(window.observe(4), Arrival::Reordered);
    }

    #[test]
    fn first_message_may_have_any_sequence() {
        let mut window = SequenceWindow::default();
        assert_eq!(window.observe(17), Arrival::InOrder);
        assert_eq!(window.observe(17), Arrival::Duplicate);
    }
}
