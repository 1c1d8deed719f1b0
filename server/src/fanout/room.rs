//! One room on one core: its local subscribers, and the rules for room names.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::budget::LocalFrame;
use crate::output::Subscriber;

/// The room of a bare `/ws`.
pub const DEFAULT_ROOM: &str = "default";
/// Longest room name.
const MAX_ROOM_LEN: usize = 64;

/// Rooms are 1-64 characters of `[A-Za-z0-9_.-]`.
pub fn is_valid_room(name: &str) -> bool {
    (1..=MAX_ROOM_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// The local subscribers of one room.
#[derive(Debug)]
pub struct Room {
    /// Room name (shared with other cores' mail).
    name: Arc<str>,
    /// Subscribers on this core; each knows its index for O(1) removal.
    subscribers: RefCell<Vec<Rc<Subscriber>>>,
}

impl Room {
    /// An empty room.
    pub(super) fn new(name: Arc<str>) -> Self {
        Room {
            name,
            subscribers: RefCell::new(Vec::new()),
        }
    }

    /// Pushes `frame` to every subscriber; returns how many became slow consumers.
    pub fn deliver(&self, frame: &LocalFrame) -> u64 {
        let subscribers = self.subscribers.borrow();
        let mut slow = 0;
        for subscriber in subscribers.iter() {
            slow += u64::from(subscriber.deliver(frame));
        }
        slow
    }

    /// The room's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The room's name, shared.
    pub(super) fn shared_name(&self) -> &Arc<str> {
        &self.name
    }

    /// Number of local subscribers.
    pub fn member_count(&self) -> usize {
        self.subscribers.borrow().len()
    }

    /// Adds `subscriber`.
    pub(super) fn add(&self, subscriber: Rc<Subscriber>) {
        let mut subscribers = self.subscribers.borrow_mut();
        subscriber.set_room_slot(subscribers.len());
        subscribers.push(subscriber);
    }

    /// Removes `subscriber` if it is here; returns true when the room is now empty.
    pub(super) fn remove(&self, subscriber: &Rc<Subscriber>) -> bool {
        let mut subscribers = self.subscribers.borrow_mut();
        let slot = subscriber.room_slot();
        let found = match subscribers.get(slot) {
            Some(at_slot) if Rc::ptr_eq(at_slot, subscriber) => Some(slot),
            _ => subscribers.iter().position(|s| Rc::ptr_eq(s, subscriber)),
        };
        let Some(slot) = found else { return false };
        subscribers.swap_remove(slot);
        if let Some(moved) = subscribers.get(slot) {
            moved.set_room_slot(slot);
        }
        subscribers.is_empty()
    }

    /// Calls `visit` for every subscriber.
    pub(super) fn for_each(&self, visit: &mut impl FnMut(&Rc<Subscriber>)) {
        for subscriber in self.subscribers.borrow().iter() {
            visit(subscriber);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_are_validated() {
        assert!(is_valid_room("default"));
        assert!(is_valid_room("a.b-c_9"));
        assert!(is_valid_room(&"x".repeat(64)));
        assert!(!is_valid_room(""));
        assert!(!is_valid_room(&"x".repeat(65)));
        assert!(!is_valid_room("a/b"));
        assert!(!is_valid_room("spa ce"));
        assert!(!is_valid_room("é"));
    }
}
