//! Fuzzes `ringcast::testing::FrameDecoder` (the server's `ws/decode.rs`) driven the way the
//! core's reader drives it (`input/connection.rs`):
//! decode repeatedly from one buffer, drop the consumed bytes, "read" the next chunk, stop at
//! a close or an error.
//!
//! Input layout:
//! - byte 0: `--max-message` choice (index into [`MAX_MESSAGES`]),
//! - byte 1: low 4 bits = number `n` of chunk-size bytes that follow (0: one single read),
//! - `n` bytes: read sizes, used in turn (each `1 + byte`),
//! - the rest: the bytes the client sends (masked frames).
//!
//! Checked, besides "no panic": consumed bytes are within the buffer and never 0 for Absorbed
//! and Event; NeedMore's frame_len is more than the buffer holds and is what the frame then
//! consumes; messages fit max_message; text and close reasons are UTF-8; close payloads are
//! empty or a sendable code plus reason; pings fit 125 bytes; errors carry 1002, 1007 or 1009;
//! the chunked run and a single-read run give the same events; and both agree with a small
//! independent reference decoder written below.

#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::testing::{ClientEvent, CloseCode, Decoded, FrameDecoder, MessageKind};

/// `--max-message` values picked by the first input byte (the last is the server's default).
const MAX_MESSAGES: [usize; 8] = [1, 2, 7, 125, 126, 1000, 4096, 65536];

/// One thing the decoder reported, owned so two runs can be compared.
#[derive(Debug, PartialEq, Eq)]
enum Record {
    /// A whole data message.
    Message(MessageKind, Vec<u8>),
    /// A ping and its payload.
    Ping(Vec<u8>),
    /// A pong.
    Pong,
    /// A close and its payload; the reader stops.
    Close(Vec<u8>),
    /// The connection is failed with this close code; the reader stops.
    Error(u16),
    /// The input ran out with this many bytes not yet decoded.
    End(usize),
}

/// The input split into its parts.
struct Plan<'a> {
    max_message: usize,
    chunk_sizes: &'a [u8],
    stream: &'a [u8],
}

fn plan(data: &[u8]) -> Plan<'_> {
    let max_message = MAX_MESSAGES[usize::from(data.first().copied().unwrap_or(7)) % 8];
    let n = usize::from(data.get(1).copied().unwrap_or(0) & 0x0F);
    let rest = data.get(2..).unwrap_or(&[]);
    let n = n.min(rest.len());
    let (chunk_sizes, stream) = rest.split_at(n);
    Plan {
        max_message,
        chunk_sizes,
        stream,
    }
}

/// Checks one event against the invariants and records it.
fn record(event: ClientEvent<'_>, max_message: usize) -> Record {
    match event {
        ClientEvent::Message { kind, payload, .. } => {
            assert!(payload.len() <= max_message, "message over max_message");
            if kind == MessageKind::Text {
                assert!(std::str::from_utf8(payload).is_ok(), "text not UTF-8");
            }
            Record::Message(kind, payload.to_vec())
        }
        ClientEvent::Ping(payload) => {
            assert!(payload.len() <= 125, "ping over 125 bytes");
            Record::Ping(payload.to_vec())
        }
        ClientEvent::Pong => Record::Pong,
        ClientEvent::Close(payload) => {
            assert!(payload.len() <= 125, "close over 125 bytes");
            assert_ne!(payload.len(), 1, "one-byte close payload");
            if let [high, low, reason @ ..] = payload {
                let code = u16::from_be_bytes([*high, *low]);
                assert!(is_sendable_close_code(code), "close code {code} accepted");
                assert!(
                    std::str::from_utf8(reason).is_ok(),
                    "close reason not UTF-8"
                );
            }
            Record::Close(payload.to_vec())
        }
    }
}

/// Runs the decoder like `read_loop`: `reads` yields the successive read sizes.
fn drive(stream: &[u8], max_message: usize, mut reads: impl FnMut() -> usize) -> Vec<Record> {
    let mut decoder = FrameDecoder::new(max_message);
    let mut records = Vec::new();
    let mut buffer: Vec<u8> = Vec::new();
    let mut offset = 0;
    // frame_len of the frame at the start of the buffer, once NeedMore reported it.
    let mut pending_len: Option<usize> = None;
    loop {
        let mut start = 0;
        loop {
            let available = buffer.len() - start;
            let at_front = start == 0;
            match decoder.decode(&mut buffer[start..]) {
                Ok(Decoded::Event { event, consumed }) => {
                    assert!(
                        consumed > 0 && consumed <= available,
                        "bad consumed {consumed}"
                    );
                    if let (true, Some(expected)) = (at_front, pending_len.take()) {
                        assert_eq!(consumed, expected, "frame_len differs from consumed");
                    }
                    let record = record(event, max_message);
                    start += consumed;
                    let stop = matches!(record, Record::Close(_));
                    records.push(record);
                    if stop {
                        return records;
                    }
                }
                Ok(Decoded::Absorbed { consumed }) => {
                    assert!(
                        consumed > 0 && consumed <= available,
                        "bad consumed {consumed}"
                    );
                    if let (true, Some(expected)) = (at_front, pending_len.take()) {
                        assert_eq!(consumed, expected, "frame_len differs from consumed");
                    }
                    start += consumed;
                }
                Ok(Decoded::NeedMore { frame_len }) => {
                    if let Some(len) = frame_len {
                        assert!(len > available, "NeedMore with a whole frame buffered");
                        assert!(len >= 6, "frame_len {len} shorter than a header");
                        if at_front {
                            if let Some(expected) = pending_len {
                                assert_eq!(len, expected, "frame_len changed");
                            }
                        }
                        pending_len = Some(len);
                    } else if at_front {
                        assert!(pending_len.is_none(), "frame_len forgotten");
                    }
                    break;
                }
                Err(error) => {
                    let code = error.code as u16;
                    assert!(
                        matches!(
                            error.code,
                            CloseCode::Protocol | CloseCode::InvalidPayload | CloseCode::TooBig
                        ),
                        "unexpected error code {code}"
                    );
                    assert!(!error.reason.is_empty());
                    records.push(Record::Error(code));
                    return records;
                }
            }
        }
        buffer.drain(..start);
        if offset == stream.len() {
            records.push(Record::End(buffer.len()));
            return records;
        }
        let take = reads().clamp(1, stream.len() - offset);
        buffer.extend_from_slice(&stream[offset..offset + take]);
        offset += take;
    }
}

/// Close codes a peer may send (RFC 6455 7.4), written independently of the server's list.
fn is_sendable_close_code(code: u16) -> bool {
    (1000..=1003).contains(&code) || (1007..=1014).contains(&code) || (3000..=4999).contains(&code)
}

/// A straightforward reference decoder over the whole stream at once: the RFC 6455 rules the
/// server promises (1002 for framing and control-frame errors, which win over 1009 for the
/// size limit at the header; 1007 for bad UTF-8 in text, failing fast inside a fragment, or in a
/// close reason).
fn reference(stream: &[u8], max_message: usize) -> Vec<Record> {
    let mut records = Vec::new();
    let mut pos = 0;
    let mut fragments: Option<(MessageKind, Vec<u8>)> = None;
    loop {
        let rest = &stream[pos..];
        // The first two bytes alone already show reserved bits and a missing mask.
        if let [first, second, ..] = rest {
            if first & 0x70 != 0 || second & 0x80 == 0 {
                records.push(Record::Error(1002));
                return records;
            }
        }
        let Some(header) = parse_header(rest) else {
            records.push(Record::End(rest.len()));
            return records;
        };
        let Header {
            fin,
            rsv,
            opcode,
            masked,
            len,
            header_len,
        } = header;
        let control = opcode >= 8;
        let protocol_error = rsv != 0
            || !masked
            || len >> 63 != 0
            || !matches!(opcode, 0 | 1 | 2 | 8 | 9 | 10)
            || (control && (!fin || len > 125))
            || (opcode == 0 && fragments.is_none())
            || (matches!(opcode, 1 | 2) && fragments.is_some());
        if protocol_error {
            records.push(Record::Error(1002));
            return records;
        }
        let so_far = fragments.as_ref().map_or(0, |(_, data)| data.len());
        if !control && len > (max_message - so_far) as u64 {
            records.push(Record::Error(1009));
            return records;
        }
        let len = len as usize;
        if rest.len() < header_len + len {
            records.push(Record::End(rest.len()));
            return records;
        }
        let mask = &rest[header_len - 4..header_len];
        let payload: Vec<u8> = rest[header_len..header_len + len]
            .iter()
            .enumerate()
            .map(|(i, byte)| byte ^ mask[i % 4])
            .collect();
        pos += header_len + len;
        match opcode {
            9 => records.push(Record::Ping(payload)),
            10 => records.push(Record::Pong),
            8 => {
                let record = match payload.as_slice() {
                    [] => Record::Close(payload),
                    [_] => Record::Error(1002),
                    [high, low, reason @ ..] => {
                        if !is_sendable_close_code(u16::from_be_bytes([*high, *low])) {
                            Record::Error(1002)
                        } else if std::str::from_utf8(reason).is_err() {
                            Record::Error(1007)
                        } else {
                            Record::Close(payload)
                        }
                    }
                };
                records.push(record);
                return records;
            }
            _ => {
                let (kind, mut data) = fragments.take().unwrap_or_else(|| {
                    let kind = if opcode == 2 {
                        MessageKind::Binary
                    } else {
                        MessageKind::Text
                    };
                    (kind, Vec::new())
                });
                data.extend_from_slice(&payload);
                if kind == MessageKind::Text {
                    let ok = match std::str::from_utf8(&data) {
                        Ok(_) => true,
                        // Only an incomplete last character, and more fragments to come.
                        Err(err) => !fin && err.error_len().is_none(),
                    };
                    if !ok {
                        records.push(Record::Error(1007));
                        return records;
                    }
                }
                if fin {
                    records.push(Record::Message(kind, data));
                } else {
                    fragments = Some((kind, data));
                }
            }
        }
    }
}

/// A parsed frame header.
struct Header {
    fin: bool,
    rsv: u8,
    opcode: u8,
    masked: bool,
    len: u64,
    header_len: usize,
}

/// Parses a frame header; None until the header's length fields are complete. The mask key is
/// not needed to judge a header, so it only counts in `header_len`.
fn parse_header(bytes: &[u8]) -> Option<Header> {
    let (&first, rest) = bytes.split_first()?;
    let (&second, rest) = rest.split_first()?;
    let (len, extra) = match second & 0x7F {
        126 => (
            u64::from(u16::from_be_bytes(rest.get(..2)?.try_into().ok()?)),
            2,
        ),
        127 => (u64::from_be_bytes(rest.get(..8)?.try_into().ok()?), 8),
        short => (u64::from(short), 0),
    };
    Some(Header {
        fin: first & 0x80 != 0,
        rsv: first & 0x70,
        opcode: first & 0x0F,
        masked: second & 0x80 != 0,
        len,
        header_len: 2 + extra + 4,
    })
}

fuzz_target!(|data: &[u8]| {
    let Plan {
        max_message,
        chunk_sizes,
        stream,
    } = plan(data);
    let mut next = 0;
    let chunked = drive(stream, max_message, || {
        if chunk_sizes.is_empty() {
            return usize::MAX;
        }
        let size = 1 + usize::from(chunk_sizes[next % chunk_sizes.len()]);
        next += 1;
        size
    });
    let whole = drive(stream, max_message, || usize::MAX);
    assert_eq!(chunked, whole, "chunked and single-read runs differ");
    let expected = reference(stream, max_message);
    assert_eq!(whole, expected, "decoder and reference differ");
});
