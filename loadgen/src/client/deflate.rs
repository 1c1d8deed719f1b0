//! permessage-deflate (RFC 7692) as loadgen uses it with `--deflate`: the offer, the judgement
//! of the server's answer, and whole messages inflated and deflated with no context takeover
//! in either direction, so a connection keeps no window between messages (every message is
//! (de)compressed by a reset stream: the cost a server pays per message, not per connection).

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The `Sec-WebSocket-Extensions` value loadgen offers: no context takeover both ways, which a
/// server may not turn down while accepting the extension (RFC 7692 7.1.1.1, 7.1.1.2).
pub const OFFER: &str =
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover";

/// Published payloads shorter than this go out uncompressed (RSV1 clear, allowed per message):
/// below it deflate's block overhead eats most of the gain, as servers' own thresholds assume.
pub const MIN_COMPRESSED: usize = 256;

/// The empty stored block a sync flush ends with; RFC 7692 7.2.1 strips it from every message
/// on the wire and 7.2.2 appends it again before inflating.
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether the server's answer to `OFFER` accepted permessage-deflate. `values` are the
/// `Sec-WebSocket-Extensions` header values of the 101 (none: declined). Anything loadgen could
/// not honour is an error naming what is wrong (RFC 7692 requires the client to fail the
/// connection then): another extension, an unknown or repeated parameter, a value where none
/// belongs, or a missing `server_no_context_takeover` (loadgen inflates each message on its
/// own, so a server keeping its window would send what loadgen cannot read).
pub fn accepted(values: &[&str]) -> Result<bool, String> {
    let extensions: Vec<&str> = values
        .iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|extension| !extension.is_empty())
        .collect();
    let [extension] = extensions[..] else {
        return match extensions.len() {
            0 => Ok(false),
            n => Err(format!(
                "{n} extensions in the response, loadgen offered only permessage-deflate"
            )),
        };
    };
    let mut parts = extension.split(';').map(str::trim);
    let name = parts.next().unwrap_or_default();
    if !name.eq_ignore_ascii_case("permessage-deflate") {
        return Err(format!("extension `{name}` was not offered"));
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (key, value) = match param.split_once('=') {
            Some((key, value)) => (key.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return Err(format!("parameter `{key}` given twice"));
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            ("server_no_context_takeover" | "client_no_context_takeover", Some(value)) => {
                return Err(format!("parameter `{key}` takes no value, got `{value}`"));
            }
            // The server's window: any size up to 15 inflates with a 15-bit window.
            ("server_max_window_bits", Some(bits)) => {
                if !matches!(bits.parse::<u8>(), Ok(8..=15)) {
                    return Err(format!("server_max_window_bits `{bits}` is not 8 to 15"));
                }
            }
            ("server_max_window_bits", None) => {
                return Err("server_max_window_bits without a value".into());
            }
            // Only a client that offered client_max_window_bits may be answered with it.
            ("client_max_window_bits", _) => {
                return Err("client_max_window_bits answered, loadgen did not offer it".into());
            }
            _ => return Err(format!("unknown parameter `{param}`")),
        }
        seen.push(key);
    }
    if !seen.iter().any(|key| key == "server_no_context_takeover") {
        return Err("server_no_context_takeover missing: the offer required it".into());
    }
    Ok(true)
}

/// Inflates whole messages. Nothing carries over between messages (no context takeover), so
/// receivers share one per worker thread rather than hold a window each.
pub struct Inflater {
    /// Raw deflate (no zlib header), reset before every message.
    stream: Decompress,
}

impl Inflater {
    /// A raw inflater with a 15-bit window, which reads any window size the server used.
    pub fn new() -> Inflater {
        Inflater {
            stream: Decompress::new(false),
        }
    }

    /// Inflates one message's `compressed` payload into `out` (cleared first); a message that
    /// reaches `limit` bytes is refused without allocating past it. The error says why it does
    /// not inflate.
    pub fn inflate(
        &mut self,
        compressed: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), String> {
        self.stream.reset(false);
        out.clear();
        for mut input in [compressed, &TAIL[..]] {
            loop {
                if out.len() >= limit {
                    return Err(format!("inflates past {limit} bytes"));
                }
                // Room for about as much again, capped so the limit bounds the allocation
                // (`reserve_exact`: no amortised doubling past it).
                let room = out.len().max(compressed.len() * 4).max(1024);
                out.reserve_exact(room.min(limit - out.len()));
                let before = self.stream.total_in();
                let status = self
                    .stream
                    .decompress_vec(input, out, FlushDecompress::Sync)
                    .map_err(|error| format!("bad deflate data: {error}"))?;
                input = &input[(self.stream.total_in() - before) as usize..];
                // A final block ends the message early: nothing after it belongs to it.
                if status == Status::StreamEnd {
                    return Ok(());
                }
                // Done with this input once it is consumed and the output was not the limit.
                if input.is_empty() && out.len() < out.capacity() {
                    break;
                }
            }
        }
        Ok(())
    }
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater::new()
    }
}

/// Deflates whole published messages the way a browser does (zlib's default level), as
/// independent messages (no context takeover, as offered).
pub struct Deflater {
    /// Raw deflate, reset before every message.
    stream: Compress,
}

impl Deflater {
    /// A raw deflater at the default level.
    pub fn new() -> Deflater {
        Deflater {
            stream: Compress::new(Compression::default(), false),
        }
    }

    /// Compresses `payload` into `out` (cleared first): sync flush, tail stripped (RFC 7692
    /// 7.2.1).
    pub fn deflate(&mut self, payload: &[u8], out: &mut Vec<u8>) {
        self.stream.reset();
        out.clear();
        let mut input = payload;
        loop {
            out.reserve(input.len() / 2 + 64);
            let before = self.stream.total_in();
            // Only a bad flush combination errs, and a sync flush on a reset stream is not one.
            let _ = self.stream.compress_vec(input, out, FlushCompress::Sync);
            input = &input[(self.stream.total_in() - before) as usize..];
            if input.is_empty() && out.len() < out.capacity() {
                break;
            }
        }
        if out.ends_with(&TAIL) {
            out.truncate(out.len() - TAIL.len());
        }
    }
}

impl Default for Deflater {
    fn default() -> Self {
        Deflater::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_loadgen_deflates_inflates_back_at_every_size() {
        let mut deflater = Deflater::new();
        let mut inflater = Inflater::new();
        let (mut wire, mut back) = (Vec::new(), Vec::new());
        for len in [0usize, 1, 255, 256, 1000, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| b"chat words "[i % 11]).collect();
            deflater.deflate(&payload, &mut wire);
            assert!(!wire.ends_with(&TAIL), "{len}");
            inflater
                .inflate(&wire, &mut back, 1 << 20)
                .expect("inflates");
            assert_eq!(back, payload, "{len}");
        }
    }

    #[test]
    fn the_limit_stops_the_inflate() {
        let mut wire = Vec::new();
        Deflater::new().deflate(&[b'a'; 100_000], &mut wire);
        let mut out = Vec::new();
        let error = Inflater::new()
            .inflate(&wire, &mut out, 10_000)
            .unwrap_err();
        assert_eq!(error, "inflates past 10000 bytes");
        assert!(out.capacity() <= 10_000 + 1024, "{}", out.capacity());
    }
}
