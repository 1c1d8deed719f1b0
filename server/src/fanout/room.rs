//! One room on one core: its local subscribers, and the rules for room names.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::budget::LocalFrame;
use crate::output::Subscriber;
use crate::ws::MIN_COMPRESS_WINDOW;

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

/// Compressed-frame windows a subscriber can take: 9 to 15 bits (a client that agreed to 8
/// gets plain frames, see `ws::MIN_COMPRESS_WINDOW`).
pub const DEFLATE_WINDOWS: usize = 7;

/// One message as a core delivers it: one core-local handle of its plain frame, and of its
/// compressed frame if the room's home core made one, with the window it was made for.
#[derive(Debug)]
pub struct Frames {
    /// The frame as published (RSV1 clear): for every client without permessage-deflate, or
    /// with a smaller window than the compressed frame's.
    pub plain: LocalFrame,
    /// The frame compressed once (RSV1 set) and its window bits.
    pub deflated: Option<(u8, LocalFrame)>,
}

/// What one delivery of a message to a room's local subscribers did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Subscribers that became slow consumers.
    pub slow: u64,
    /// Subscribers that were offered the compressed frame.
    pub compressed: u64,
}

/// The local subscribers of one room.
#[derive(Debug)]
pub struct Room {
    /// Room name (shared with other cores' mail).
    name: Arc<str>,
    /// Subscribers on this core; each knows its index for O(1) removal.
    subscribers: RefCell<Vec<Rc<Subscriber>>>,
    /// Subscribers here that take compressed frames, by window (9-15 bits): what tells the
    /// home core whether, and for which window, to compress the room's messages.
    deflate_members: RefCell<[u32; DEFLATE_WINDOWS]>,
}

impl Room {
    /// An empty room.
    pub(super) fn new(name: Arc<str>) -> Self {
        Room {
            name,
            subscribers: RefCell::new(Vec::new()),
            deflate_members: RefCell::new([0; DEFLATE_WINDOWS]),
        }
    }

    /// Pushes one of `frames` to every subscriber: the compressed frame to those whose window
    /// takes it, the plain one to the others.
    pub fn deliver(&self, frames: &Frames) -> Delivered {
        let subscribers = self.subscribers.borrow();
        let mut delivered = Delivered::default();
        for subscriber in subscribers.iter() {
            let frame = match &frames.deflated {
                Some((window, deflated)) if subscriber.deflate_window() >= *window => {
                    delivered.compressed += 1;
                    deflated
                }
                _ => &frames.plain,
            };
            delivered.slow += u64::from(subscriber.deliver(frame));
        }
        delivered
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

    /// Adds `subscriber`; returns its compressed-frame window if it is the first subscriber
    /// here to take that window.
    pub(super) fn add(&self, subscriber: Rc<Subscriber>) -> Option<u8> {
        let window = self.count_deflate(&subscriber, true);
        let mut subscribers = self.subscribers.borrow_mut();
        subscriber.set_room_slot(subscribers.len());
        subscribers.push(subscriber);
        window
    }

    /// Counts a deflate subscriber joining or leaving; returns its window if that window's
    /// count here went from 0 to 1 or from 1 to 0.
    fn count_deflate(&self, subscriber: &Subscriber, joined: bool) -> Option<u8> {
        let window = subscriber.deflate_window();
        let index = usize::from(window.checked_sub(MIN_COMPRESS_WINDOW)?);
        let mut counts = self.deflate_members.borrow_mut();
        let count = counts.get_mut(index)?;
        let edge = if joined {
            *count += 1;
            *count == 1
        } else {
            *count -= 1;
            *count == 0
        };
        edge.then_some(window)
    }

    /// Removes `subscriber` if it is here; returns whether the room is now empty, and the
    /// subscriber's compressed-frame window if it was the last one here to take it.
    pub(super) fn remove(&self, subscriber: &Rc<Subscriber>) -> (bool, Option<u8>) {
        let mut subscribers = self.subscribers.borrow_mut();
        let slot = subscriber.room_slot();
        let found = match subscribers.get(slot) {
            Some(at_slot) if Rc::ptr_eq(at_slot, subscriber) => Some(slot),
            _ => subscribers.iter().position(|s| Rc::ptr_eq(s, subscriber)),
        };
        let Some(slot) = found else {
            return (false, None);
        };
        subscribers.swap_remove(slot);
        if let Some(moved) = subscribers.get(slot) {
            moved.set_room_slot(slot);
        }
        let empty = subscribers.is_empty();
        drop(subscribers);
        (empty, self.count_deflate(subscriber, false))
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
