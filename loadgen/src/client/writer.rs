//! The sending side of one connection, shared by its publisher task and its receiver (which
//! answers pings and closes), which may run on different threads (a publisher's receiver runs
//! on a receiving worker). Every client frame is masked with a fresh key (RFC 6455 5.3).

use std::cell::RefCell;

use ringcast_proto::{opcode, Frame};

use super::{Deflater, MIN_COMPRESSED};

thread_local! {
    /// One deflater and output buffer per publisher thread, not per connection: with no
    /// context takeover nothing carries over between messages, and a level 6 deflate stream
    /// holds a few hundred KiB (thousands of publishers, as in the chat scenario, would hold
    /// gigabytes).
    static DEFLATE: RefCell<(Deflater, Vec<u8>)> = RefCell::new((Deflater::new(), Vec::new()));
}
use tokio::sync::Mutex;

use super::stream::WriteHalf;

/// Close code for a normal end of the run.
pub const CLOSE_NORMAL: u16 = 1000;

/// Socket write half plus the state to build masked frames.
pub struct WriteSide {
    /// The socket's write half.
    half: WriteHalf,
    /// Mask keys for frames.
    masks: MaskSource,
    /// Reused encode buffer: a batch of frames goes out in one write.
    buffer: Vec<u8>,
    /// Data messages go out compressed: permessage-deflate was negotiated on a publisher's
    /// connection.
    compress: bool,
}

impl WriteSide {
    /// Appends one masked frame to the pending batch.
    pub fn push_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.masks.next_mask();
        Frame::new(opcode, payload)
            .masked(mask)
            .encode(&mut self.buffer);
    }

    /// Appends one data message: compressed (RSV1 set) when the connection negotiated
    /// permessage-deflate and it is at least `MIN_COMPRESSED` bytes, else as it is.
    pub fn push_message(&mut self, opcode: u8, payload: &[u8]) {
        if !self.compress || payload.len() < MIN_COMPRESSED {
            self.push_frame(opcode, payload);
            return;
        }
        DEFLATE.with_borrow_mut(|(deflater, compressed)| {
            deflater.deflate(payload, compressed);
            Frame {
                rsv: 0b100,
                ..Frame::new(opcode, compressed)
            }
            .masked(self.masks.next_mask())
            .encode(&mut self.buffer);
        });
    }

    /// Writes the pending batch in one go and clears it.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let result = self.half.write_all(&self.buffer).await;
        self.buffer.clear();
        result
    }
}

/// A connection's writer; the async mutex only contends when a pong meets a publisher batch.
/// It is `Send` and `Sync`: a publisher's writer is shared between its publisher thread and the
/// receiving worker that reads its socket.
pub struct Writer {
    /// The guarded write side.
    side: Mutex<WriteSide>,
}

impl Writer {
    /// Wraps a write half; `compress`: data messages go out compressed (a publisher whose
    /// connection negotiated permessage-deflate).
    pub fn new(half: WriteHalf, compress: bool) -> Writer {
        Writer {
            side: Mutex::new(WriteSide {
                half,
                masks: MaskSource::new(),
                buffer: Vec::with_capacity(4096),
                compress,
            }),
        }
    }

    /// Exclusive access for a batch of frames.
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, WriteSide> {
        self.side.lock().await
    }

    /// Sends pre-built control replies (pongs, close echo) given as (opcode, payload).
    pub async fn send(&self, frames: &[(u8, Vec<u8>)]) -> std::io::Result<()> {
        let mut side = self.lock().await;
        for (opcode, payload) in frames {
            side.push_frame(*opcode, payload);
        }
        side.flush().await
    }

    /// Starts the closing handshake with `code`.
    pub async fn close(&self, code: u16) -> std::io::Result<()> {
        self.send(&[(opcode::CLOSE, code.to_be_bytes().to_vec())])
            .await
    }
}

/// Source of frame masks: splitmix64 seeded from the clock and a per-source address.
///
/// RFC 6455 asks for unpredictable masks to protect intermediaries from cache poisoning by
/// hostile scripts; a load generator is not such a script, and a CSPRNG call per frame would
/// cost more than the frame. Masks still change every frame, as servers may check.
struct MaskSource {
    /// splitmix64 state.
    state: u64,
}

impl MaskSource {
    /// A new source; distinct sources created at the same time still differ (address mix-in).
    fn new() -> MaskSource {
        let mut source = MaskSource { state: 0 };
        let address = &source as *const MaskSource as u64;
        source.state = crate::clock::monotonic_ns() ^ address.rotate_left(32);
        source
    }

    /// The next mask key.
    fn next_mask(&mut self) -> [u8; 4] {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z as u32).to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_change_every_frame_and_between_sources() {
        let mut first = MaskSource::new();
        let mut second = MaskSource::new();
        let masks: Vec<[u8; 4]> = (0..4).map(|_| first.next_mask()).collect();
        assert!(masks.windows(2).all(|pair| pair[0] != pair[1]));
        assert_ne!(masks[0], second.next_mask());
    }
}
