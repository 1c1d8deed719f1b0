//! The WebSocket protocol as the server speaks it (RFC 6455), without sockets: frames encoded
//! once for every client (`encode.rs`), client frames decoded and validated (`decode.rs`),
//! where a connection's close handshake stands (`close.rs`), and permessage-deflate's
//! negotiation, bounded inflating and compress-once (`deflate.rs`, RFC 7692). The wire format itself (headers,
//! opcodes, masking) is `ringcast-proto`'s, shared with the load generator.

mod close;
mod decode;
mod deflate;
mod encode;

pub use close::CloseState;
pub use decode::{ClientEvent, Decoded, FrameDecoder};
pub use deflate::{
    negotiate as negotiate_deflate, Agreement as DeflateAgreement, Compressors, MIN_COMPRESS_WINDOW,
};
#[cfg(any(test, feature = "testing"))]
pub use encode::encode_message;
pub use encode::{
    encode_close, encode_close_echo, encode_frame_into, encode_pong, encoded_len, keepalive_ping,
};
use ringcast_proto::opcode;
pub use ringcast_proto::CloseCode;

/// The kind of a data message; it is kept unchanged from the publisher to every subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageKind {
    /// UTF-8 text (opcode 0x1).
    Text,
    /// Arbitrary bytes (opcode 0x2).
    Binary,
}

impl MessageKind {
    /// The data-frame opcode of this kind.
    pub(crate) fn opcode(self) -> u8 {
        match self {
            MessageKind::Text => opcode::TEXT,
            MessageKind::Binary => opcode::BINARY,
        }
    }
}
