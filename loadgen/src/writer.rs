//! The sending side of one connection, shared by its publisher task and its receiver (which
//! answers pings and closes). Every client frame is masked with a fresh key (RFC 6455 5.3).

use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Mutex;

use crate::frame::{encode_client_frame, MaskSource, OP_CLOSE};

/// Close code for a normal end of the run.
pub const CLOSE_NORMAL: u16 = 1000;

/// Socket write half plus the state to build masked frames.
pub struct WriteSide {
    /// The socket's write half.
    half: OwnedWriteHalf,
    /// Mask keys for frames.
    masks: MaskSource,
    /// Reused encode buffer: a batch of frames goes out in one write.
    buffer: Vec<u8>,
}

impl WriteSide {
    /// Appends one masked frame to the pending batch.
    pub fn push_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.masks.next_mask();
        encode_client_frame(&mut self.buffer, opcode, payload, mask);
    }

    /// Writes the pending batch in one go and clears it.
    pub async fn flush(&mut self) -> std::io::Result<()> {
        let result = self.half.write_all(&self.buffer).await;
        self.buffer.clear();
        result
    }
}

/// A connection's writer; the async mutex only contends when a pong meets a publisher batch.
pub struct Writer {
    /// The guarded write side.
    side: Mutex<WriteSide>,
}

impl Writer {
    /// Wraps a write half.
    pub fn new(half: OwnedWriteHalf) -> Writer {
        Writer {
            side: Mutex::new(WriteSide {
                half,
                masks: MaskSource::new(),
                buffer: Vec::with_capacity(4096),
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
        self.send(&[(OP_CLOSE, code.to_be_bytes().to_vec())]).await
    }
}
