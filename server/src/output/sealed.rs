//! The output of a TLS connection: its session, and the records of the write it has started.
//!
//! The frames a connection queues are the shared plaintext frames, as on a plain connection.
//! The flush step seals them when it starts the connection's write: up to [`SEAL_BYTES`] of
//! queued frames are copied into the core's plaintext buffer and sealed into records in a
//! buffer of the connection's own, which is what the write sends (one write, as on a plain
//! connection). The frames stay in the queue, charged to `--max-backlog`, until the kernel
//! has taken every record that carries them; the record buffer then goes back to the core's
//! pool, so only connections with a write in flight hold one.

use std::cell::RefCell;

use super::queue::OutboundQueue;
use crate::tls::{Received, TlsError, TlsSession};

/// Most plaintext sealed for one write (beyond one larger frame): four full records, so that a
/// backlog is sent in writes the size a plain connection's iovecs would cover, and a record
/// buffer stays small enough to keep in the pool.
const SEAL_BYTES: usize = 64 * 1024;
/// Record buffers a core keeps for reuse; more are freed (after a burst of writes).
const POOLED_BUFFERS: usize = 1024;
/// Record buffers larger than this (a frame near --max-message) are freed, not pooled.
const POOLED_CAPACITY: usize = SEAL_BYTES + 4096;

/// A core's buffers for sealing: the plaintext of the write being sealed, and the record
/// buffers of finished writes.
#[derive(Debug, Default)]
pub struct SealBuffers {
    /// The queued frames of one write, copied to be sealed at once.
    plaintext: RefCell<Vec<u8>>,
    /// Emptied record buffers.
    spare: RefCell<Vec<Vec<u8>>>,
}

impl SealBuffers {
    /// An empty record buffer (from the pool when it has one).
    fn take(&self) -> Vec<u8> {
        self.spare.borrow_mut().pop().unwrap_or_default()
    }

    /// Gives a record buffer back.
    fn give(&self, mut buffer: Vec<u8>) {
        let mut spare = self.spare.borrow_mut();
        if buffer.capacity() <= POOLED_CAPACITY && spare.len() < POOLED_BUFFERS {
            buffer.clear();
            spare.push(buffer);
        }
    }
}

/// A TLS connection's session and its write's records.
#[derive(Debug)]
pub struct SealedOutput {
    /// The connection's TLS state (the reader decrypts through it too).
    session: TlsSession,
    /// Records of the started write (empty when none is).
    records: Vec<u8>,
    /// Bytes of `records` the kernel has taken.
    sent: usize,
    /// Plaintext bytes `records` carry: the queued frames the write covers.
    plaintext: usize,
    /// A write of `records` is with the kernel now.
    writing: bool,
}

/// One write to start: the bytes to send.
pub struct SealedWrite {
    /// Start of the unsent records (they stay put until the write completes).
    pub ptr: *const u8,
    /// Their length.
    pub len: usize,
}

impl SealedOutput {
    /// The output of a connection whose handshake completed.
    pub fn new(session: TlsSession) -> Self {
        SealedOutput {
            session,
            records: Vec::new(),
            sent: 0,
            plaintext: 0,
            writing: false,
        }
    }

    /// True when a write may start now: none is with the kernel, and records are unsent,
    /// frames wait, or the session has records of its own to send.
    pub fn has_write(&self, queue: &OutboundQueue) -> bool {
        !self.writing
            && (self.sent < self.records.len()
                || (!queue.is_writing() && (queue.has_unsent() || self.session.has_outgoing())))
    }

    /// Starts the next write: the unsent rest of the records, or the queued frames (and the
    /// session's own records) sealed now. None when there is nothing to send or a write is
    /// with the kernel; Err when the session refused to seal (the connection must end).
    pub fn start_write(
        &mut self,
        queue: &mut OutboundQueue,
        buffers: &SealBuffers,
    ) -> Result<Option<SealedWrite>, TlsError> {
        if self.writing {
            return Ok(None);
        }
        if self.sent == self.records.len() {
            let mut plaintext = buffers.plaintext.borrow_mut();
            plaintext.clear();
            let frames = queue.start_copied_write(&mut plaintext, SEAL_BYTES);
            if frames == 0 && !self.session.has_outgoing() {
                return Ok(None);
            }
            let mut records = buffers.take();
            if let Err(error) = self.session.seal(&plaintext, &mut records) {
                buffers.give(records);
                queue.finish_write(0);
                return Err(error);
            }
            self.records = records;
            self.sent = 0;
            self.plaintext = plaintext.len();
        }
        self.writing = true;
        let unsent = &self.records[self.sent..];
        Ok(Some(SealedWrite {
            ptr: unsent.as_ptr(),
            len: unsent.len(),
        }))
    }

    /// The write completed and the kernel took `written` bytes (0: it failed): returns the
    /// plaintext bytes now sent whole (the queue's frames to release), or None while records
    /// of this batch remain unsent (the frames stay in flight).
    pub fn finish_write(&mut self, written: usize, buffers: &SealBuffers) -> Option<usize> {
        self.writing = false;
        self.sent += written;
        if written > 0 && self.sent < self.records.len() {
            return None;
        }
        buffers.give(std::mem::take(&mut self.records));
        self.sent = 0;
        Some(if written > 0 { self.plaintext } else { 0 })
    }

    /// Takes bytes read from the socket; appends the plaintext they complete to `plain`.
    pub fn receive(&mut self, data: &mut [u8], plain: &mut Vec<u8>) -> Result<Received, TlsError> {
        self.session.receive(data, plain)
    }

    /// True when the session has records of its own to send (a key-update reply).
    pub fn has_outgoing(&self) -> bool {
        self.session.has_outgoing()
    }
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::*;
    use crate::tls::testing::{established, to_client};
    use crate::ws::{encode_message, MessageKind};

    /// The bytes a started write describes.
    fn bytes(write: &SealedWrite) -> &[u8] {
        // SAFETY: the records stay in the output, unchanged, until the write is finished.
        unsafe { std::slice::from_raw_parts(write.ptr, write.len) }
    }

    #[test]
    fn frames_are_sealed_once_and_released_when_every_record_is_sent() {
        let (session, mut client) = established(4096);
        let mut output = SealedOutput::new(session);
        let buffers = SealBuffers::default();
        let mut queue = OutboundQueue::new(1 << 20);
        for text in [&b"one"[..], b"two", b"three"] {
            queue
                .push(Rc::new(encode_message(MessageKind::Text, text)))
                .unwrap();
        }
        assert!(output.has_write(&queue));
        let write = output.start_write(&mut queue, &buffers).unwrap().unwrap();
        let records = bytes(&write).to_vec();
        assert!(!output.has_write(&queue), "one write at a time");
        assert!(output.start_write(&mut queue, &buffers).unwrap().is_none());
        // A frame queued meanwhile waits for the next batch.
        queue
            .push(Rc::new(encode_message(MessageKind::Text, b"four")))
            .unwrap();
        // The kernel takes 10 bytes: the frames stay in flight, the rest of the same records
        // goes next.
        assert_eq!(output.finish_write(10, &buffers), None);
        assert_eq!(queue.held_frames(), 4);
        let rest = output.start_write(&mut queue, &buffers).unwrap().unwrap();
        assert_eq!(bytes(&rest), &records[10..]);
        let released = output.finish_write(rest.len, &buffers).unwrap();
        assert_eq!(released, 5 + 5 + 7, "the three frames' plaintext");
        assert_eq!(queue.finish_write(released), 3);
        let plain = to_client(&mut client, &records);
        assert_eq!(
            plain,
            [
                &[0x81, 3][..],
                b"one",
                &[0x81, 3],
                b"two",
                &[0x81, 5],
                b"three"
            ]
            .concat()
        );
        // The next write seals the frame that waited.
        let next = output.start_write(&mut queue, &buffers).unwrap().unwrap();
        let plain = to_client(&mut client, bytes(&next));
        assert_eq!(plain, [&[0x81, 4][..], b"four"].concat());
        let released = output.finish_write(next.len, &buffers).unwrap();
        assert_eq!(queue.finish_write(released), 1);
        assert!(!output.has_write(&queue));
        assert_eq!(
            buffers.spare.borrow().len(),
            1,
            "the record buffer went back to the pool"
        );
    }

    #[test]
    fn a_failed_write_releases_nothing_and_frees_the_records() {
        let (session, _client) = established(4096);
        let mut output = SealedOutput::new(session);
        let buffers = SealBuffers::default();
        let mut queue = OutboundQueue::new(1 << 20);
        queue
            .push(Rc::new(encode_message(MessageKind::Binary, &[1; 100])))
            .unwrap();
        output.start_write(&mut queue, &buffers).unwrap().unwrap();
        assert_eq!(output.finish_write(0, &buffers), Some(0));
        assert_eq!(queue.finish_write(0), 0);
        assert!(output.records.is_empty());
    }
}
