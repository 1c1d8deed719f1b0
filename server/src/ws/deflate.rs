//! permessage-deflate (RFC 7692), without sockets: the negotiation of the upgrade
//! ([`negotiate`]), a client's compressed message inflated under the size limit
//! ([`Inflater`]), and a message compressed once into the frame every deflate subscriber shares
//! ([`Compressors`]).
//!
//! Both directions always run without context takeover (the server adds
//! `server_no_context_takeover; client_no_context_takeover` to every acceptance, as 7.1.1
//! allows). That is what lets one compressed frame serve every subscriber of a room, and what
//! lets one inflater and one compressor per core serve every connection: no connection keeps a
//! window or any zlib state (the issue's 10,000 idle connections must cost what plain ones do).

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use ringcast_proto::{Frame, Header, Role};

use super::CloseCode;

/// The extension's name in `Sec-WebSocket-Extensions`.
const EXTENSION: &[u8] = b"permessage-deflate";

/// The smallest window a compressed frame is made with. zlib (and zlib-rs, which follows it)
/// refuses an 8-bit window for raw deflate, so a client that asks `server_max_window_bits=8` is
/// agreed to and then sent plain frames only: RSV1 is per message (RFC 7692 6), and an agreed
/// window is a bound the server may stay under by not compressing at all.
pub const MIN_COMPRESS_WINDOW: u8 = 9;

/// The largest window (32 KiB), what a client that does not name `server_max_window_bits`
/// takes.
pub const MAX_WINDOW: u8 = 15;

/// What the server agreed to on one connection; the response header value is [`Self::response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The `server_max_window_bits` the accepted offer named, if it named one: the acceptance
    /// repeats it (7.1.2.1: a server accepts the parameter by including it, with the same or a
    /// smaller value; the same is what lets a frame made for the room's smallest window serve).
    server_window: Option<u8>,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101. `client_max_window_bits` is never
    /// included, which 7.1.2.2 allows whether or not the client offered it: the inflater takes
    /// any window up to 15 bits, so there is nothing to limit.
    pub fn response(self) -> String {
        let base = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        match self.server_window {
            Some(bits) => format!("{base}; server_max_window_bits={bits}"),
            None => base.to_owned(),
        }
    }

    /// The largest window a frame sent to this client may use (LZ77 distances up to
    /// 2^bits): 15 unless the client asked for less.
    pub fn window_bits(self) -> u8 {
        self.server_window.unwrap_or(MAX_WINDOW)
    }
}

/// Chooses the first acceptable permessage-deflate offer among the `Sec-WebSocket-Extensions`
/// header values of an upgrade request (several header lines are one comma-separated list,
/// RFC 9110 5.3, so they are read in order as one). None declines the extension: no offer, no
/// acceptable offer, or a header that does not parse as RFC 6455 9.1's extension list (its
/// offers cannot be told apart then, so none is trusted). Declining never fails the handshake:
/// the 101 goes out without the extension and frames are plain.
///
/// An offer is not acceptable (7.1: the server declines it and may accept a later one) when it
/// has an unknown parameter, a parameter twice, a value where none belongs, a window size that
/// is not 8-15 without leading zeroes. Names compare
/// ASCII case-insensitively; quoted values are unescaped (9.1: they must then be tokens).
pub fn negotiate<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    let mut chosen = None;
    for value in values {
        let mut list = ListParser { rest: value };
        while let Some(offer) = list.next_extension().ok()? {
            if chosen.is_none() && offer.name.eq_ignore_ascii_case(EXTENSION) {
                chosen = offer.accept();
            }
        }
    }
    chosen
}

/// One extension of the list: its name and its parameters, not yet interpreted.
struct Offer<'a> {
    /// The extension token.
    name: &'a [u8],
    /// The parameter text after the name (`; a; b=1`), already checked to parse.
    params: &'a [u8],
}

impl Offer<'_> {
    /// The agreement this permessage-deflate offer allows, if it is acceptable.
    fn accept(&self) -> Option<Agreement> {
        let mut seen = [false; 4];
        let mut server_window = None;
        let mut params = ListParser { rest: self.params };
        while let Some((name, value)) = params.next_param().ok()? {
            let (index, valid) = match name.to_ascii_lowercase().as_slice() {
                b"server_no_context_takeover" => (0, value.is_none()),
                b"client_no_context_takeover" => (1, value.is_none()),
                b"server_max_window_bits" => {
                    server_window = value.and_then(window_bits);
                    (2, server_window.is_some())
                }
                // Without a value the client only says it could take a limit (7.1.2.2).
                b"client_max_window_bits" => (3, value.is_none_or(|v| window_bits(v).is_some())),
                _ => return None,
            };
            if !valid || std::mem::replace(&mut seen[index], true) {
                return None;
            }
        }
        Some(Agreement { server_window })
    }
}

/// A parameter's value as the header carries it.
#[derive(Clone, Copy)]
enum Value<'a> {
    /// A bare token.
    Token(&'a [u8]),
    /// The inside of a quoted-string, backslash escapes still in.
    Quoted(&'a [u8]),
}

impl<'a> Value<'a> {
    /// The value's bytes, escapes removed.
    fn unescaped(self) -> impl Iterator<Item = u8> + 'a {
        let (raw, quoted) = match self {
            Value::Token(raw) => (raw, false),
            Value::Quoted(raw) => (raw, true),
        };
        let mut escaped = false;
        raw.iter().copied().filter(move |&b| {
            let keep = !quoted || escaped || b != b'\\';
            escaped = quoted && !escaped && b == b'\\';
            keep
        })
    }
}

/// A window size parameter's value: 8-15 in decimal without leading zeroes (7.1.2.1).
fn window_bits(value: Value<'_>) -> Option<u8> {
    let mut digits = value.unescaped();
    let bits = match (digits.next()?, digits.next(), digits.next()) {
        (d @ b'8'..=b'9', None, None) => d - b'0',
        (b'1', Some(d @ b'0'..=b'5'), None) => 10 + d - b'0',
        _ => return None,
    };
    Some(bits)
}

/// A cursor over RFC 6455 9.1's grammar: `1#( token *( ";" token [ "=" value ] ) )`, with
/// optional whitespace around the separators and empty list elements ignored (RFC 9110 5.6.1).
/// It never allocates and reads each byte once, so a header is parsed in time linear in its
/// size (which hyper bounds).
struct ListParser<'a> {
    /// What is left to parse.
    rest: &'a [u8],
}

/// The header does not parse.
struct Malformed;

/// A parameter of an offer: its name, and its value if it has one.
type Param<'a> = (&'a [u8], Option<Value<'a>>);

impl<'a> ListParser<'a> {
    /// The next extension of the list, None at its end.
    fn next_extension(&mut self) -> Result<Option<Offer<'a>>, Malformed> {
        loop {
            self.skip_whitespace();
            match self.rest.first() {
                None => return Ok(None),
                Some(b',') => self.rest = &self.rest[1..],
                Some(_) => break,
            }
        }
        let name = self.token()?;
        let params_start = self.rest;
        let mut params = ListParser { rest: self.rest };
        while params.next_param()?.is_some() {}
        let params = &params_start[..params_start.len() - params.rest.len()];
        self.rest = &self.rest[params.len()..];
        self.skip_whitespace();
        match self.rest.first() {
            None => {}
            Some(b',') => self.rest = &self.rest[1..],
            Some(_) => return Err(Malformed),
        }
        Ok(Some(Offer { name, params }))
    }

    /// The next `; name[=value]` of an extension, None where its parameters end (at a comma
    /// or the end of the header).
    fn next_param(&mut self) -> Result<Option<Param<'a>>, Malformed> {
        self.skip_whitespace();
        if self.rest.first() != Some(&b';') {
            return Ok(None);
        }
        self.rest = &self.rest[1..];
        self.skip_whitespace();
        let name = self.token()?;
        self.skip_whitespace();
        if self.rest.first() != Some(&b'=') {
            return Ok(Some((name, None)));
        }
        self.rest = &self.rest[1..];
        self.skip_whitespace();
        let value = if self.rest.first() == Some(&b'"') {
            self.quoted()?
        } else {
            Value::Token(self.token()?)
        };
        Ok(Some((name, Some(value))))
    }

    /// One or more token characters (RFC 9110 5.6.2).
    fn token(&mut self) -> Result<&'a [u8], Malformed> {
        let len = self.rest.iter().take_while(|&&b| is_tchar(b)).count();
        if len == 0 {
            return Err(Malformed);
        }
        let (token, rest) = self.rest.split_at(len);
        self.rest = rest;
        Ok(token)
    }

    /// A quoted-string whose unescaped content is a token, as 9.1 requires of values.
    fn quoted(&mut self) -> Result<Value<'a>, Malformed> {
        let inside = &self.rest[1..];
        let mut escaped = false;
        let end = inside
            .iter()
            .position(|&b| {
                let closes = !escaped && b == b'"';
                escaped = !escaped && b == b'\\';
                closes
            })
            .ok_or(Malformed)?;
        let value = Value::Quoted(&inside[..end]);
        let mut unescaped = value.unescaped().peekable();
        if unescaped.peek().is_none() || !unescaped.all(is_tchar) {
            return Err(Malformed);
        }
        self.rest = &inside[end + 1..];
        Ok(value)
    }

    /// Skips spaces and tabs.
    fn skip_whitespace(&mut self) {
        let len = self
            .rest
            .iter()
            .take_while(|&&b| b == b' ' || b == b'\t')
            .count();
        self.rest = &self.rest[len..];
    }
}

/// A token character (RFC 9110 5.6.2).
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The end of a sync flush (an empty stored block), which 7.2.1 has the sender strip.
const SYNC_FLUSH_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// What ends every compressed message the inflater reads: the empty stored block a sender
/// strips (7.2.2 has the receiver append it), then an empty stored block with BFINAL set. The
/// second is the server's own: a well-formed message ends on a block boundary, so the inflater
/// then reaches the stream's end; a truncated one swallows these bytes as data and does not,
/// which is how truncation is told from a message that simply ends (raw deflate has no length
/// or checksum of its own).
const INFLATE_TAIL: [u8; 9] = [0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff];

/// Output the inflater adds to the caller's buffer at a time, at most: the buffer grows by
/// doubling from this, so a message that inflates to n bytes costs a few reallocations, and a
/// bomb is stopped with at most the limit allocated.
const INFLATE_FIRST_STEP: usize = 4096;

/// Why a client's compressed message was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the message limit (the inflater stopped at the limit).
    TooBig,
    /// Not valid raw deflate data, or truncated.
    Invalid,
}

impl InflateError {
    /// The close code that fails the connection: 1009 past the limit, as for a plain message;
    /// 1007 for data that does not inflate (RFC 7692 8 names no code; the payload is the
    /// message's data and it is inconsistent, which is what 1007 says).
    pub fn close_code(self) -> CloseCode {
        match self {
            InflateError::TooBig => CloseCode::TooBig,
            InflateError::Invalid => CloseCode::InvalidPayload,
        }
    }
}

thread_local! {
    /// The core's inflater: each core is one thread, and a decoder runs on its connection's
    /// core, so this is one inflater per core, made when the core first inflates.
    static INFLATER: RefCell<Inflater> = RefCell::new(Inflater::default());
}

/// Appends the inflated `compressed` message to `out` with the core's inflater; see
/// [`Inflater::inflate`].
pub fn inflate_message(
    compressed: &[u8],
    out: &mut Vec<u8>,
    max_message: usize,
) -> Result<(), InflateError> {
    // The inflater never calls out while borrowed, so the borrow cannot be taken twice.
    INFLATER.with(|inflater| inflater.borrow_mut().inflate(compressed, out, max_message))
}

/// Inflates clients' compressed messages: one per core, reset before every message (the
/// client agreed to `client_no_context_takeover`, so no message needs an earlier one's window).
pub struct Inflater {
    /// Raw deflate (no zlib header), as 7.2.2 sends it.
    state: Decompress,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            state: Decompress::new(false),
        }
    }
}

impl Inflater {
    /// Appends the inflated `compressed` (one whole message's payload, as its frames carried
    /// it) to `out`. Stops with [`InflateError::TooBig`] as soon as the output would pass
    /// `max_message` bytes; `out` then grew by at most `max_message` bytes of capacity and of
    /// length, whatever the input. On an error `out` holds a partial message the caller drops.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        max_message: usize,
    ) -> Result<(), InflateError> {
        self.state.reset(false);
        let start = out.len();
        let mut inputs = [compressed, &INFLATE_TAIL[..]];
        let mut current = 0;
        let mut step = INFLATE_FIRST_STEP.max(compressed.len().saturating_mul(2));
        loop {
            while inputs[current].is_empty() {
                current += 1;
                if current == inputs.len() {
                    // Everything read and the stream did not end: truncated.
                    return Err(InflateError::Invalid);
                }
            }
            let written = out.len() - start;
            let room = max_message - written;
            // At the limit, a one-byte probe tells a message that ends exactly there from one
            // that goes on; the probe is not kept.
            let mut probe = [0u8; 1];
            let window: &mut [u8] = if room == 0 {
                &mut probe
            } else {
                let grow = room.min(step);
                step = step.saturating_mul(2);
                // Exactly: `reserve` could round the capacity past the limit.
                out.reserve_exact(grow);
                out.resize(out.len() + grow, 0);
                &mut out[start + written..]
            };
            let (before_in, before_out) = (self.state.total_in(), self.state.total_out());
            let status = self
                .state
                .decompress(inputs[current], window, FlushDecompress::None);
            let consumed = (self.state.total_in() - before_in) as usize;
            let produced = (self.state.total_out() - before_out) as usize;
            if room > 0 {
                out.truncate(start + written + produced);
            } else if produced > 0 {
                return Err(InflateError::TooBig);
            }
            inputs[current] = &inputs[current][consumed..];
            match status.map_err(|_| InflateError::Invalid)? {
                // The stream ended: with the server's tail, or with the client's own final
                // block (7.2.3.4 allows one); bytes of the message after it are not deflate.
                Status::StreamEnd if inputs[0].is_empty() => return Ok(()),
                Status::StreamEnd => return Err(InflateError::Invalid),
                // No progress with input left and room to write (the probe's, at the limit)
                // cannot happen on valid data; refusing it keeps the loop finite whatever the
                // backend does.
                _ if consumed == 0 && produced == 0 => return Err(InflateError::Invalid),
                _ => {}
            }
        }
    }
}

/// How a core compresses messages once for every deflate subscriber: `--deflate-level` and
/// `--deflate-min-size`, and one compressor per window size in use, made on first use.
pub struct Compressors {
    /// zlib level 0-9.
    level: u32,
    /// Messages with a shorter payload stay plain.
    min_size: usize,
    /// By window bits, from [`MIN_COMPRESS_WINDOW`] to [`MAX_WINDOW`].
    by_window: [Option<Compressor>; (MAX_WINDOW - MIN_COMPRESS_WINDOW + 1) as usize],
}

impl std::fmt::Debug for Compressors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compressors")
            .field("level", &self.level)
            .field("min_size", &self.min_size)
            .finish_non_exhaustive()
    }
}

impl Compressors {
    /// Compressors at zlib `level` (0-9) for messages of at least `min_size` bytes.
    pub fn new(level: u32, min_size: usize) -> Self {
        Compressors {
            level,
            min_size,
            by_window: Default::default(),
        }
    }

    /// The compressed frame of `plain` (a whole unfragmented text or binary frame as the
    /// server encodes it) made with a window of `window_bits` (at least
    /// [`MIN_COMPRESS_WINDOW`]), or None when the message stays plain: under the minimum size,
    /// or not smaller compressed (random or already compressed data), so RSV1 is only ever set
    /// where it pays.
    pub fn compressed_frame(&mut self, plain: &[u8], window_bits: u8) -> Option<Vec<u8>> {
        let header = Header::decode(plain, Role::Server).ok()??;
        let payload = plain.get(header.header_len..)?;
        if payload.len() < self.min_size || !header.fin {
            return None;
        }
        let bits = window_bits.clamp(MIN_COMPRESS_WINDOW, MAX_WINDOW);
        let level = self.level;
        self.by_window[usize::from(bits - MIN_COMPRESS_WINDOW)]
            .get_or_insert_with(|| Compressor::new(level, bits))
            .compressed_frame(header.opcode, payload)
    }
}

/// One raw deflate stream with a fixed window, reset before every message
/// (`server_no_context_takeover` is always agreed, so a frame never depends on an earlier
/// message and is the same bytes for every connection).
struct Compressor {
    /// Raw deflate at the configured level and window.
    state: Compress,
    /// The compressed payload before it is framed; kept so a message costs one allocation,
    /// the frame's own.
    scratch: Vec<u8>,
}

impl Compressor {
    /// A compressor at zlib `level` (0-9) with a window of `window_bits` (9-15).
    fn new(level: u32, window_bits: u8) -> Self {
        Compressor {
            state: Compress::new_with_window_bits(Compression::new(level), false, window_bits),
            scratch: Vec::new(),
        }
    }

    /// The whole compressed frame (FIN, RSV1, `opcode`) of `payload`, allocated at its exact
    /// size, or None when it would not be smaller.
    fn compressed_frame(&mut self, opcode: u8, payload: &[u8]) -> Option<Vec<u8>> {
        let frame = self.compress(opcode, payload);
        // Bound the scratch buffer by what a normal message needs, not the largest one seen.
        if self.scratch.capacity() > SCRATCH_KEPT {
            self.scratch = Vec::new();
        }
        frame
    }

    /// [`Self::compressed_frame`] without the scratch trim.
    fn compress(&mut self, opcode: u8, payload: &[u8]) -> Option<Vec<u8>> {
        self.state.reset();
        self.scratch.clear();
        // Room for the worst case, so the compressor always finishes: level 1's fixed
        // Huffman codes grow incompressible data by up to 1/8, plus block headers and the
        // flush's empty block. zlib-rs 0.6.8 panicked when it ran out of output room
        // mid-message (Autobahn 12.2 found it), so that path is never taken.
        self.scratch
            .reserve(payload.len() + payload.len() / 8 + 64 + SYNC_FLUSH_TAIL.len());
        let status = self
            .state
            .compress_vec(payload, &mut self.scratch, FlushCompress::Sync);
        let complete = status.is_ok()
            && self.state.total_in() == payload.len() as u64
            && self.scratch.ends_with(&SYNC_FLUSH_TAIL);
        if !complete {
            return None;
        }
        let compressed = &self.scratch[..self.scratch.len() - SYNC_FLUSH_TAIL.len()];
        if compressed.len() >= payload.len() {
            return None;
        }
        let frame = Frame {
            rsv: RSV1,
            ..Frame::new(opcode, compressed)
        };
        let mut out = Vec::new();
        out.reserve_exact(frame.encoded_len());
        frame.encode(&mut out);
        Some(out)
    }
}

/// RSV1 in `Frame::rsv`'s numbering (RSV1-3 as the low three bits): "compressed" (7.2.3.1).
const RSV1: u8 = 0b100;

/// Largest scratch buffer a compressor keeps between messages.
const SCRATCH_KEPT: usize = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::MessageKind;

    /// `--deflate-min-size`'s default.
    const DEFLATE_MIN_SIZE: usize = 256;

    /// What `negotiate` answers to one header value.
    fn answer(value: &str) -> Option<String> {
        negotiate([value.as_bytes()]).map(Agreement::response)
    }

    /// The acceptance of an offer that named `server_max_window_bits=bits`.
    fn with_window(bits: u8) -> Option<String> {
        Some(format!("{PLAIN}; server_max_window_bits={bits}"))
    }

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

    #[test]
    fn browsers_offers_are_accepted_without_context_takeover() {
        // Chrome and Safari.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits"),
            Some(PLAIN.to_owned())
        );
        // Firefox.
        assert_eq!(answer("permessage-deflate"), Some(PLAIN.to_owned()));
        // Python websockets' default offer.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, permessage-deflate; client_max_window_bits"),
            with_window(12),
            "the first offer is taken, its window repeated"
        );
        // npm ws.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits"),
            Some(PLAIN.to_owned())
        );
    }

    #[test]
    fn every_parameter_in_range_is_accepted() {
        assert_eq!(
            answer(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=15; client_max_window_bits=9"
            ),
            with_window(15)
        );
        for bits in 8..=15 {
            let offer = format!("permessage-deflate; client_max_window_bits={bits}");
            assert_eq!(answer(&offer), Some(PLAIN.to_owned()), "{offer}");
        }
    }

    #[test]
    fn a_smaller_server_window_is_agreed_to() {
        for bits in 8..=15 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            let agreed = negotiate([offer.as_bytes()]).unwrap();
            assert_eq!(Some(agreed.response()), with_window(bits), "{offer}");
            assert_eq!(agreed.window_bits(), bits);
        }
        let agreed = negotiate([&b"permessage-deflate; client_max_window_bits"[..]]).unwrap();
        assert_eq!(agreed.window_bits(), 15);
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        assert_eq!(
            answer("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16, permessage-deflate; server_max_window_bits=10, permessage-deflate"),
            with_window(10)
        );
        assert_eq!(
            answer("permessage-deflate; unknown=1, permessage-deflate"),
            Some(PLAIN.to_owned())
        );
        assert_eq!(answer("x-other; a=1; b, foo"), None);
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let lines: [&[u8]; 2] = [
            b"permessage-deflate; server_max_window_bits=x",
            b"permessage-deflate; server_max_window_bits=15",
        ];
        assert_eq!(negotiate(lines).map(Agreement::response), with_window(15));
        assert_eq!(negotiate([] as [&[u8]; 0]), None);
        // A malformed line makes the whole list untrusted.
        let lines: [&[u8]; 2] = [b"permessage-deflate", b"permessage-deflate; ;"];
        assert_eq!(negotiate(lines), None);
    }

    #[test]
    fn syntax_variations_parse() {
        for offer in [
            "PerMessage-Deflate; Client_Max_Window_Bits",
            "  permessage-deflate\t;client_max_window_bits ,  ",
            ", , permessage-deflate,",
            "permessage-deflate; client_max_window_bits=\"10\"",
            "permessage-deflate; client_max_window_bits = 10",
            "permessage-deflate; client_max_window_bits=\"1\\0\"",
            "x-foo; a=\"b\", permessage-deflate",
        ] {
            assert_eq!(answer(offer), Some(PLAIN.to_owned()), "{offer:?}");
        }
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=\"15\""),
            with_window(15)
        );
    }

    #[test]
    fn unacceptable_offers_are_declined() {
        for offer in [
            // Duplicates (7.1: a parameter at most once).
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=15; server_max_window_bits=15",
            // Values where none belongs, none where one must be.
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"x\"",
            "permessage-deflate; server_max_window_bits",
            // Out of range or not plain decimal.
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=015",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=08",
            "permessage-deflate; client_max_window_bits=100",
            "permessage-deflate; client_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=abc",
            // Unknown parameters.
            "permessage-deflate; mux",
            "permessage-deflate; client_max_window_bits; x=1",
            // Not the extension.
            "permessage-deflate-x",
            "deflate",
        ] {
            assert_eq!(answer(offer), None, "{offer:?}");
        }
    }

    #[test]
    fn malformed_headers_are_declined() {
        for header in [
            "",
            "  ",
            ";",
            "permessage-deflate;",
            "permessage-deflate; =10",
            "permessage-deflate; client_max_window_bits=",
            "permessage-deflate; client_max_window_bits=\"10",
            "permessage-deflate; client_max_window_bits=\"\"",
            "permessage-deflate; client_max_window_bits=\"1 0\"",
            "permessage-deflate; client_max_window_bits=\"1,0\"",
            "permessage-deflate client_max_window_bits",
            "permessage-deflate; client_max_window_bits 10",
            "\"permessage-deflate\"",
            "permessage-deflate; a=b=c",
            "permessage-deflate,, permessage-deflate; server_max_window_bits=15 x",
        ] {
            assert_eq!(answer(header), None, "{header:?}");
        }
        // Bytes outside ASCII.
        assert_eq!(negotiate([&b"permessage-deflate\xff"[..]]), None);
        assert_eq!(negotiate([&b"\xc3\xa9, permessage-deflate"[..]]), None);
    }

    #[test]
    fn a_long_header_parses_in_linear_time() {
        let mut header = "x-ext; a=1, ".repeat(20_000);
        header.push_str("permessage-deflate");
        assert_eq!(answer(&header), Some(PLAIN.to_owned()));
        let quotes = format!("x; a=\"{}", "\\\"".repeat(50_000));
        assert_eq!(answer(&quotes), None);
    }

    /// Inflates with a fresh inflater into a fresh buffer.
    fn inflate(compressed: &[u8], max_message: usize) -> Result<Vec<u8>, InflateError> {
        let mut out = Vec::new();
        Inflater::default().inflate(compressed, &mut out, max_message)?;
        Ok(out)
    }

    #[test]
    fn rfc_7692_examples_inflate() {
        // 7.2.3.1 (compressed), 7.2.3.3 (a stored block), 7.2.3.4 (BFINAL set).
        for compressed in [
            &[0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00][..],
            &[
                0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00,
            ],
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00],
        ] {
            assert_eq!(inflate(compressed, 1024).unwrap(), b"Hello");
        }
    }

    /// A chat line and what Python's zlib made of it (`compressobj(6, DEFLATED, -15)`, a sync
    /// flush, its tail stripped): the inflater reads another implementation's output.
    const CHAT: &[u8] =
        br#"{"user":"ada","text":"hello hello hello hello hello hello world","ts":1733486400}"#;
    const CHAT_BY_PYTHON: &str = "aa562a2d4e2d52b2524a4c4954d2512a49ad28017232527372f215f093e5f9\
                                  453929202dc54a5686e6c6c6261666260606b50000";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn pythons_output_inflates() {
        assert_eq!(inflate(&unhex(CHAT_BY_PYTHON), 1024).unwrap(), CHAT);
        // At exactly the limit, and one byte under it.
        assert_eq!(inflate(&unhex(CHAT_BY_PYTHON), CHAT.len()).unwrap(), CHAT);
        assert_eq!(
            inflate(&unhex(CHAT_BY_PYTHON), CHAT.len() - 1),
            Err(InflateError::TooBig)
        );
    }

    /// Raw deflate of `data` with its sync-flush tail stripped, as a client sends it.
    fn client_compress(data: &[u8]) -> Vec<u8> {
        let mut compress = Compress::new(Compression::best(), false);
        let mut out = Vec::with_capacity(data.len() / 100 + 1024);
        let mut input = data;
        loop {
            let before = compress.total_in();
            compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .unwrap();
            input = &input[(compress.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        assert!(out.ends_with(&SYNC_FLUSH_TAIL));
        out.truncate(out.len() - SYNC_FLUSH_TAIL.len());
        out
    }

    #[test]
    fn a_bomb_stops_at_the_limit_without_allocating_past_it() {
        let bomb = client_compress(&vec![0u8; 100 << 20]);
        assert!(bomb.len() <= 110 << 10, "{} bytes", bomb.len());
        let max_message = 1 << 20;
        let mut out = Vec::new();
        let result = Inflater::default().inflate(&bomb, &mut out, max_message);
        assert_eq!(result, Err(InflateError::TooBig));
        assert!(out.len() <= max_message);
        assert!(out.capacity() <= max_message, "{}", out.capacity());
    }

    #[test]
    fn a_one_kib_bomb_stops_at_the_limit() {
        // Deflate's best ratio is about 1032:1, so 1 KiB inflates to 1 MiB at most (the 100 MiB
        // one above takes ~100 KiB); against a 64 KiB limit it stops at the limit all the same.
        let bomb = client_compress(&vec![0u8; 1 << 20]);
        assert!(bomb.len() <= 1100, "{} bytes", bomb.len());
        assert_eq!(inflate(&bomb, 1 << 20).unwrap().len(), 1 << 20);
        let max_message = 64 << 10;
        let mut out = Vec::new();
        let result = Inflater::default().inflate(&bomb, &mut out, max_message);
        assert_eq!(result, Err(InflateError::TooBig));
        assert!(out.capacity() <= max_message);
    }

    #[test]
    fn garbage_and_truncated_data_are_invalid() {
        let whole = client_compress(&CHAT.repeat(20));
        assert_eq!(inflate(&whole, 1 << 20).unwrap(), CHAT.repeat(20));
        for cut in [1, 2, 5, whole.len() / 2, whole.len() - 3] {
            assert_eq!(
                inflate(&whole[..cut], 1 << 20),
                Err(InflateError::Invalid),
                "cut at {cut}"
            );
        }
        for garbage in [
            &[][..],
            &[0xff; 64],
            &[0x07],
            // A stored block whose length and its complement disagree.
            &[0x00, 0x05, 0x00, 0x00, 0x00, b'H'],
            // Bytes after the client's own final block.
            &[0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x42],
        ] {
            assert_eq!(
                inflate(garbage, 1 << 20),
                Err(InflateError::Invalid),
                "{garbage:?}"
            );
        }
        assert_eq!(
            InflateError::Invalid.close_code(),
            CloseCode::InvalidPayload
        );
        assert_eq!(InflateError::TooBig.close_code(), CloseCode::TooBig);
    }

    #[test]
    fn an_inflater_serves_message_after_message() {
        let mut inflater = Inflater::default();
        let mut out = Vec::new();
        assert!(inflater.inflate(&[0xff; 8], &mut out, 1024).is_err());
        for message in [CHAT, b"Hello", &CHAT.repeat(100)] {
            out.clear();
            inflater
                .inflate(&client_compress(message), &mut out, 1 << 20)
                .unwrap();
            assert_eq!(out, message);
        }
        // It appends, and the limit counts only what it appends.
        let mut out = b"kept".to_vec();
        inflater
            .inflate(&client_compress(CHAT), &mut out, CHAT.len())
            .unwrap();
        assert_eq!(out[..4], *b"kept");
        assert_eq!(out[4..], *CHAT);
    }

    /// The plain frame the hub encodes for a message.
    fn plain(kind: MessageKind, payload: &[u8]) -> Vec<u8> {
        let mut frame = Vec::new();
        super::super::encode_frame_into(&mut frame, kind.opcode(), payload);
        frame
    }

    /// Inflates a compressed frame's payload as a client does (7.2.2: append the tail), with
    /// flate2 at `window_bits`: a frame made for a window must inflate within it.
    fn client_inflate(frame: &[u8], window_bits: u8, max: usize) -> Vec<u8> {
        let header = Header::decode_with(frame, Role::Server, 0x40)
            .unwrap()
            .unwrap();
        assert!(header.rsv1 && header.fin);
        let mut with_tail = frame[header.header_len..].to_vec();
        with_tail.extend_from_slice(&SYNC_FLUSH_TAIL);
        let mut check = Decompress::new_with_window_bits(false, window_bits);
        let mut out = Vec::with_capacity(max + 1);
        check
            .decompress_vec(&with_tail, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    #[test]
    fn a_compressed_frame_round_trips() {
        let mut compressors = Compressors::new(6, DEFLATE_MIN_SIZE);
        let message = CHAT.repeat(10);
        let frame = compressors
            .compressed_frame(&plain(MessageKind::Text, &message), 15)
            .unwrap();
        // FIN, RSV1, text; a 7-bit length, no mask.
        assert_eq!(frame[0], 0x80 | 0x40 | 0x01);
        let len = usize::from(frame[1]);
        assert!(len < 126 && frame.len() == 2 + len && len < message.len() / 4);
        assert_eq!(frame.capacity(), frame.len());
        assert_eq!(client_inflate(&frame, 15, message.len()), message);
        assert_eq!(inflate(&frame[2..], 1 << 20).unwrap(), message);
        // No context takeover: the same message compresses to the same bytes every time.
        let again = compressors.compressed_frame(&plain(MessageKind::Text, &message), 15);
        assert_eq!(again.as_deref(), Some(&frame[..]));
        let binary = compressors
            .compressed_frame(&plain(MessageKind::Binary, &message), 15)
            .unwrap();
        assert_eq!(binary[0], 0x80 | 0x40 | 0x02);
        assert_eq!(binary[1..], frame[1..]);
    }

    #[test]
    fn a_frame_made_for_a_small_window_inflates_within_it() {
        let mut compressors = Compressors::new(6, DEFLATE_MIN_SIZE);
        // Repeats 600 bytes apart: only a window past 512 bytes can refer back to them.
        let message: Vec<u8> = noise(7, 600).repeat(20);
        for bits in MIN_COMPRESS_WINDOW..=MAX_WINDOW {
            let frame = compressors
                .compressed_frame(&plain(MessageKind::Binary, &message), bits)
                .expect("repeated data compresses");
            assert_eq!(
                client_inflate(&frame, bits, message.len()),
                message,
                "{bits}"
            );
        }
        // 8 bits is compressed with 9 (zlib's smallest raw window) only by a caller that
        // ignores the agreement; the hub never does (a window-8 client gets plain frames).
        let nine = compressors.compressed_frame(&plain(MessageKind::Binary, &message), 9);
        let eight = compressors.compressed_frame(&plain(MessageKind::Binary, &message), 8);
        assert_eq!(nine, eight);
    }

    #[test]
    fn short_or_incompressible_messages_stay_plain() {
        let mut compressors = Compressors::new(6, DEFLATE_MIN_SIZE);
        let short = vec![b'a'; DEFLATE_MIN_SIZE - 1];
        assert_eq!(
            compressors.compressed_frame(&plain(MessageKind::Text, &short), 15),
            None
        );
        let at_threshold = vec![b'a'; DEFLATE_MIN_SIZE];
        assert!(compressors
            .compressed_frame(&plain(MessageKind::Text, &at_threshold), 15)
            .is_some());
        let random = noise(0x2545_f491_4f6c_dd1d, 4096);
        assert_eq!(
            compressors.compressed_frame(&plain(MessageKind::Binary, &random), 15),
            None
        );
        // And the compressor still works after giving up.
        assert!(compressors
            .compressed_frame(&plain(MessageKind::Text, &CHAT.repeat(4)), 15)
            .is_some());
        // The threshold is the option's.
        let mut eager = Compressors::new(6, 16);
        assert!(eager
            .compressed_frame(&plain(MessageKind::Text, &[b'a'; 64]), 15)
            .is_some());
    }

    #[test]
    fn a_large_message_compresses_and_the_scratch_is_not_kept() {
        let mut compressors = Compressors::new(1, DEFLATE_MIN_SIZE);
        let message = CHAT.repeat(20_000);
        let frame = compressors
            .compressed_frame(&plain(MessageKind::Text, &message), 15)
            .unwrap();
        let kept = compressors.by_window[usize::from(MAX_WINDOW - MIN_COMPRESS_WINDOW)]
            .as_ref()
            .unwrap();
        assert!(kept.scratch.capacity() <= SCRATCH_KEPT);
        assert_eq!(client_inflate(&frame, 15, message.len()), message);
    }

    #[test]
    fn any_message_compresses_or_stays_plain_at_every_level_and_window() {
        // Incompressible data stays plain, compressible data inflates back, whatever the
        // level and window.
        for level in [0, 1, 2, 6, 9] {
            for bits in [9, 12, 15] {
                let mut compressors = Compressors::new(level, 0);
                for (seed, len) in [(1, 300), (2, 4096), (3, 65_536), (4, 131_072), (5, 16)] {
                    for message in [noise(seed, len), CHAT.repeat(len / CHAT.len() + 1)] {
                        let frame = plain(MessageKind::Binary, &message);
                        if let Some(compressed) = compressors.compressed_frame(&frame, bits) {
                            assert_eq!(client_inflate(&compressed, bits, message.len()), message);
                        }
                    }
                }
            }
        }
    }

    /// A deterministic byte stream (xorshift64).
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    #[test]
    fn arbitrary_input_never_passes_the_limit_or_panics() {
        let mut inflater = Inflater::default();
        let alphabet = b"permessage-deflate;,= \t\"\\client_max_window_bits15server";
        for seed in 0..2000u64 {
            let bytes = noise(seed, (seed % 300) as usize);
            let mut out = Vec::new();
            let _ = inflater.inflate(&bytes, &mut out, 512);
            assert!(out.len() <= 512 && out.capacity() <= 512);
            // Headers made of the grammar's own characters reach the deep paths.
            let header: Vec<u8> = bytes
                .iter()
                .map(|b| alphabet[usize::from(*b) % alphabet.len()])
                .collect();
            if let Some(agreement) = negotiate([&header[..]]) {
                assert!(agreement.response().starts_with("permessage-deflate;"));
            }
            let _ = negotiate([&bytes[..]]);
        }
    }
}
