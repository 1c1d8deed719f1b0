//! permessage-deflate (RFC 7692), without sockets: the negotiation of the upgrade
//! ([`negotiate`]).
//!
//! Both directions always run without context takeover (the server adds
//! `server_no_context_takeover; client_no_context_takeover` to every acceptance, as 7.1.1
//! allows). That is what lets one compressed frame serve every subscriber of a room, and what
//! lets one inflater and one compressor per core serve every connection: no connection keeps a
//! window or any zlib state (the 10,000 idle connections must cost what plain ones do).
//!
//! Work in progress (issue 20): nothing outside this module's tests calls it yet; the upgrade,
//! the decoder and the hub are wired to it next.

/// The extension's name in `Sec-WebSocket-Extensions`.
const EXTENSION: &[u8] = b"permessage-deflate";

/// The window the compressor uses. flate2's default backend (miniz_oxide) always compresses
/// with a 32 KiB window (15 bits) and cannot be asked for a smaller one, so an offer that
/// demands `server_max_window_bits` below 15 is declined (see [`negotiate`]).
const SERVER_WINDOW_BITS: u8 = 15;

/// What the server agreed to on one connection; the response header value is [`Self::response`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreement {
    /// The accepted offer named `server_max_window_bits` (necessarily 15): the acceptance
    /// repeats it (7.1.2.1: a server accepts the parameter by including it).
    server_window_named: bool,
}

impl Agreement {
    /// The `Sec-WebSocket-Extensions` value of the 101. `client_max_window_bits` is never
    /// included, which 7.1.2.2 allows whether or not the client offered it: the inflater takes
    /// any window up to 15 bits, so there is nothing to limit.
    pub fn response(self) -> &'static str {
        if self.server_window_named {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=15"
        } else {
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
        }
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
/// is not 8-15 without leading zeroes, or `server_max_window_bits` below 15. Names compare
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
        let mut server_window_named = false;
        let mut params = ListParser { rest: self.params };
        while let Some((name, value)) = params.next_param().ok()? {
            let (index, valid) = match name.to_ascii_lowercase().as_slice() {
                b"server_no_context_takeover" => (0, value.is_none()),
                b"client_no_context_takeover" => (1, value.is_none()),
                b"server_max_window_bits" => {
                    server_window_named = true;
                    // Only the window the compressor uses (see SERVER_WINDOW_BITS).
                    let bits = value.and_then(window_bits);
                    (2, bits == Some(SERVER_WINDOW_BITS))
                }
                // Without a value the client only says it could take a limit (7.1.2.2).
                b"client_max_window_bits" => (3, value.is_none_or(|v| window_bits(v).is_some())),
                _ => return None,
            };
            if !valid || std::mem::replace(&mut seen[index], true) {
                return None;
            }
        }
        Some(Agreement {
            server_window_named,
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `negotiate` answers to one header value.
    fn answer(value: &str) -> Option<&'static str> {
        negotiate([value.as_bytes()]).map(Agreement::response)
    }

    const PLAIN: &str =
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
    const WITH_WINDOW: &str = "permessage-deflate; server_no_context_takeover; \
                               client_no_context_takeover; server_max_window_bits=15";

    #[test]
    fn browsers_offers_are_accepted_without_context_takeover() {
        // Chrome and Safari.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits"),
            Some(PLAIN)
        );
        // Firefox.
        assert_eq!(answer("permessage-deflate"), Some(PLAIN));
        // Python websockets' default offer.
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=12; client_max_window_bits=12, permessage-deflate; client_max_window_bits"),
            Some(PLAIN),
            "the first offer asks a 12-bit window, the second is taken"
        );
        // npm ws.
        assert_eq!(
            answer("permessage-deflate; client_max_window_bits"),
            Some(PLAIN)
        );
    }

    #[test]
    fn every_parameter_in_range_is_accepted() {
        assert_eq!(
            answer(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
                 server_max_window_bits=15; client_max_window_bits=9"
            ),
            Some(WITH_WINDOW)
        );
        for bits in 8..=15 {
            let offer = format!("permessage-deflate; client_max_window_bits={bits}");
            assert_eq!(answer(&offer), Some(PLAIN), "{offer}");
        }
    }

    #[test]
    fn a_smaller_server_window_is_declined() {
        for bits in 8..=14 {
            let offer = format!("permessage-deflate; server_max_window_bits={bits}");
            assert_eq!(answer(&offer), None, "{offer}");
        }
    }

    #[test]
    fn the_first_acceptable_offer_wins() {
        assert_eq!(
            answer("x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=10, permessage-deflate; server_max_window_bits=15, permessage-deflate"),
            Some(WITH_WINDOW)
        );
        assert_eq!(
            answer("permessage-deflate; unknown=1, permessage-deflate"),
            Some(PLAIN)
        );
        assert_eq!(answer("x-other; a=1; b, foo"), None);
    }

    #[test]
    fn several_header_lines_are_one_list() {
        let lines: [&[u8]; 2] = [
            b"permessage-deflate; server_max_window_bits=9",
            b"permessage-deflate; server_max_window_bits=15",
        ];
        assert_eq!(negotiate(lines).map(Agreement::response), Some(WITH_WINDOW));
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
            assert_eq!(answer(offer), Some(PLAIN), "{offer:?}");
        }
        assert_eq!(
            answer("permessage-deflate; server_max_window_bits=\"15\""),
            Some(WITH_WINDOW)
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
        assert_eq!(answer(&header), Some(PLAIN));
        let quotes = format!("x; a=\"{}", "\\\"".repeat(50_000));
        assert_eq!(answer(&quotes), None);
    }
}
