//! Server frames as a client reads them: the header decoded and judged (RFC 6455, with
//! `ringcast-proto`; RFC 7692's RSV1 once permessage-deflate is negotiated) and the size capped
//! before anything is buffered; the payload is borrowed from the read buffer, not copied.

use ringcast_proto::{opcode, FrameError, Header, Role, RSV1};
use thiserror::Error;

/// Largest server message (one frame, or a fragmented message reassembled) accepted; past it
/// the connection is treated as broken instead of buffering without bound.
pub const MAX_SERVER_MESSAGE: u64 = 64 * 1024 * 1024;

/// Why the server's frame stream cannot be read on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The frame breaks RFC 6455 (reserved bits with no extension negotiated, a mask, an
    /// unknown opcode, a bad fragment sequence).
    #[error("malformed server frame: {0}")]
    Frame(#[from] FrameError),
    /// A frame or reassembled message over `MAX_SERVER_MESSAGE`.
    #[error("server message of {0} bytes or more exceeds the {MAX_SERVER_MESSAGE}-byte limit")]
    TooLarge(u64),
    /// A message with RSV1 set (permessage-deflate) that does not inflate.
    #[error("compressed server message: {0}")]
    Inflate(String),
}

/// The frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not all of it is there yet; `frame_len` once its header is.
    Incomplete {
        /// Header plus payload bytes, when the header is known.
        frame_len: Option<usize>,
    },
    /// A whole frame.
    Frame {
        /// Its header.
        header: Header,
        /// Its payload, borrowed from the buffer.
        payload: &'a [u8],
        /// Bytes it takes in the buffer.
        frame_len: usize,
    },
}

/// Parses and judges the server frame at the start of `buf`, given whether a fragmented
/// message is in progress and whether permessage-deflate was negotiated (`deflate`).
pub fn parse_frame(buf: &[u8], in_message: bool, deflate: bool) -> Result<Parsed<'_>, StreamError> {
    let allowed = if deflate { RSV1 } else { 0 };
    let Some(header) = Header::decode_with(buf, Role::Server, allowed)? else {
        return Ok(Parsed::Incomplete { frame_len: None });
    };
    header.check(in_message)?;
    // RSV1 marks a compressed message on its first frame only: never on a control frame or a
    // continuation (RFC 7692 6, 6.1).
    if header.rsv1 && !matches!(header.opcode, opcode::TEXT | opcode::BINARY) {
        return Err(FrameError::ReservedBits.into());
    }
    let too_large = StreamError::TooLarge(header.payload_len);
    if header.payload_len > MAX_SERVER_MESSAGE {
        return Err(too_large);
    }
    let frame_len = header.frame_len().ok_or(too_large)?;
    Ok(match buf.get(header.header_len..frame_len) {
        Some(payload) => Parsed::Frame {
            header,
            payload,
            frame_len,
        },
        None => Parsed::Incomplete {
            frame_len: Some(frame_len),
        },
    })
}
