//! Credentials: the `--publish-token` of `POST /publish/{room}` and the JWT checked at the
//! WebSocket upgrade (`--jwt-secret`, `--jwt-public-key`; `--jwt-audience`, `--jwt-issuer`).
//!
//! The JWT check runs in the HTTP phase before the subscriber is created or the room joined,
//! so a rejected client costs no room state. Neither a token nor a secret is ever logged: the
//! types holding them print as `<redacted>`, and a rejection is reported only as 401 or 403.

use std::fmt;
use std::path::Path;

use hyper::header::{HeaderMap, AUTHORIZATION};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Deserializer};
use subtle::ConstantTimeEq;

/// Clock skew tolerated on `exp` (and `nbf`): a token is accepted up to this many seconds after
/// it expired. jsonwebtoken's default is 60 s; 30 s covers NTP-synced hosts.
pub const JWT_LEEWAY_SECS: u64 = 30;
/// Shortest `--jwt-secret`: RFC 7518 section 3.2 requires an HS256 key of at least 256 bits.
pub const MIN_JWT_SECRET: usize = 32;
/// Shortest `--publish-token`, so a token cannot be guessed in a few requests.
pub const MIN_PUBLISH_TOKEN: usize = 16;
/// The `rooms` claim entry that grants every room.
const ANY_ROOM: &str = "*";

/// A shared secret (the publish token) compared in constant time and never printed.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// True when `candidate` equals the secret. The time taken depends only on the lengths, not
    /// on where the first differing byte is, so the secret cannot be found byte by byte.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        self.0.as_bytes().ct_eq(candidate).into()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Why a request's credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// No token, or a malformed, expired or badly signed one: 401.
    Unauthorized,
    /// A valid token whose `rooms` claim does not include the room: 403.
    Forbidden,
}

/// The claims ringcast reads besides `exp`/`nbf`/`aud`/`iss` (which jsonwebtoken checks).
#[derive(Deserialize)]
struct Claims {
    /// Rooms the holder may join; absent = every room. Present, it must be an array of strings:
    /// serde alone would read `null` as absent, and a `null` would open every room.
    #[serde(default, deserialize_with = "present_rooms")]
    rooms: Option<Vec<String>>,
}

/// A `rooms` claim that is present: only an array of strings (`default` covers absence).
fn present_rooms<'de, D: Deserializer<'de>>(claim: D) -> Result<Option<Vec<String>>, D::Error> {
    Vec::deserialize(claim).map(Some)
}

/// `--jwt-audience` and `--jwt-issuer`: claims a token must carry, when set.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expected<'a> {
    /// The `aud` claim must be (or, as an array, contain) this.
    pub audience: Option<&'a str>,
    /// The `iss` claim must be this.
    pub issuer: Option<&'a str>,
}

/// The keys JWTs are verified with: at most one per algorithm, chosen by the token header's
/// `alg`, so a token can never pick how its own signature is checked against a key of another
/// type (an RS256 public key used as an HS256 secret).
#[derive(Clone)]
pub struct JwtAuth {
    /// (algorithm, key, validation for that algorithm).
    keys: Vec<(Algorithm, DecodingKey, Validation)>,
}

impl JwtAuth {
    /// Verification with an HS256 `secret` and/or the RSA (RS256) or EC P-256 (ES256) public
    /// key in PEM file `public_key`, requiring the `expected` claims; None when neither key is
    /// given. The error names the flag and says what is wrong.
    pub fn new(
        secret: Option<&str>,
        public_key: Option<&Path>,
        expected: Expected<'_>,
    ) -> Result<Option<JwtAuth>, (&'static str, String)> {
        for (flag, value) in [
            ("--jwt-audience", expected.audience),
            ("--jwt-issuer", expected.issuer),
        ] {
            match value {
                // Without a key no token is read: the check asked for would silently not exist.
                Some(_) if secret.is_none() && public_key.is_none() => {
                    return Err((flag, "needs --jwt-secret or --jwt-public-key".to_owned()));
                }
                Some("") => return Err((flag, "must not be empty".to_owned())),
                _ => {}
            }
        }
        let mut keys = Vec::new();
        if let Some(secret) = secret {
            if secret.len() < MIN_JWT_SECRET {
                return Err((
                    "--jwt-secret",
                    format!(
                        "must be at least {MIN_JWT_SECRET} bytes (RFC 7518: 256 bits for HS256)"
                    ),
                ));
            }
            let key = DecodingKey::from_secret(secret.as_bytes())
                .map_err(|err| ("--jwt-secret", err.to_string()))?;
            keys.push((
                Algorithm::HS256,
                key,
                validation(Algorithm::HS256, expected),
            ));
        }
        if let Some(path) = public_key {
            let pem = std::fs::read(path).map_err(|err| {
                (
                    "--jwt-public-key",
                    format!("cannot read {}: {err}", path.display()),
                )
            })?;
            let (algorithm, key) = if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
                (Algorithm::RS256, key)
            } else if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
                (Algorithm::ES256, key)
            } else {
                return Err((
                    "--jwt-public-key",
                    format!(
                        "{} is not an RSA or EC public key in PEM format",
                        path.display()
                    ),
                ));
            };
            keys.push((algorithm, key, validation(algorithm, expected)));
        }
        Ok((!keys.is_empty()).then_some(JwtAuth { keys }))
    }

    /// Checks `token` (None: the client sent none) for joining `room`.
    pub fn check(&self, token: Option<&str>, room: &str) -> Result<(), Rejection> {
        let token = token.ok_or(Rejection::Unauthorized)?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| Rejection::Unauthorized)?;
        let (_, key, validation) = self
            .keys
            .iter()
            .find(|(algorithm, _, _)| *algorithm == header.alg)
            .ok_or(Rejection::Unauthorized)?;
        let claims = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|_| Rejection::Unauthorized)?
            .claims;
        match claims.rooms {
            Some(rooms) if !rooms.iter().any(|r| r == ANY_ROOM || r == room) => {
                Err(Rejection::Forbidden)
            }
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for JwtAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The keys stay out: DecodingKey's Debug would print an HS256 secret.
        let algorithms: Vec<_> = self
            .keys
            .iter()
            .map(|(algorithm, _, _)| algorithm)
            .collect();
        f.debug_struct("JwtAuth")
            .field("algorithms", &algorithms)
            .finish_non_exhaustive()
    }
}

/// What ringcast checks of a JWT signed with `algorithm`: signature, `exp` required, `nbf`
/// when present, both with [`JWT_LEEWAY_SECS`]; `aud` and `iss` required and compared when
/// `expected` names them, ignored otherwise.
fn validation(algorithm: Algorithm, expected: Expected<'_>) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.leeway = JWT_LEEWAY_SECS;
    validation.validate_nbf = true;
    // jsonwebtoken compares `aud`/`iss` only when the token has them: a token without them
    // would pass, so they are required too.
    let mut required = vec!["exp"];
    if let Some(issuer) = expected.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    // Without an expected audience, validate_aud would refuse every token that has an `aud`.
    validation.validate_aud = expected.audience.is_some();
    if let Some(audience) = expected.audience {
        validation.set_audience(&[audience]);
        required.push("aud");
    }
    validation.set_required_spec_claims(&required);
    validation
}

/// The token of an `Authorization: Bearer TOKEN` header (scheme case-insensitive), if any.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("Bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// The value of `token=` in a query string, taken as is: JWTs are base64url and dots, which
/// need no percent-encoding.
pub fn query_token(query: Option<&str>) -> Option<&str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;
    use jsonwebtoken::{encode, EncodingKey, Header};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn in_an_hour() -> u64 {
        jsonwebtoken::get_current_timestamp() + 3600
    }

    fn auth() -> JwtAuth {
        JwtAuth::new(Some(SECRET), None, Expected::default())
            .unwrap()
            .unwrap()
    }

    #[test]
    fn rooms_claim_limits_rooms() {
        let auth = auth();
        let any = token(serde_json::json!({ "exp": in_an_hour() }), SECRET);
        assert_eq!(auth.check(Some(&any), "lobby"), Ok(()));
        let some = token(
            serde_json::json!({ "exp": in_an_hour(), "rooms": ["a", "b"] }),
            SECRET,
        );
        assert_eq!(auth.check(Some(&some), "b"), Ok(()));
        assert_eq!(auth.check(Some(&some), "c"), Err(Rejection::Forbidden));
        let star = token(
            serde_json::json!({ "exp": in_an_hour(), "rooms": ["*"] }),
            SECRET,
        );
        assert_eq!(auth.check(Some(&star), "c"), Ok(()));
    }

    #[test]
    fn bad_tokens_are_unauthorized() {
        let auth = auth();
        let unauthorized = Err(Rejection::Unauthorized);
        assert_eq!(auth.check(None, "r"), unauthorized);
        assert_eq!(auth.check(Some("not.a.jwt"), "r"), unauthorized);
        let expired = jsonwebtoken::get_current_timestamp() - JWT_LEEWAY_SECS - 60;
        let old = token(serde_json::json!({ "exp": expired }), SECRET);
        assert_eq!(auth.check(Some(&old), "r"), unauthorized);
        let no_exp = token(serde_json::json!({ "sub": "x" }), SECRET);
        assert_eq!(auth.check(Some(&no_exp), "r"), unauthorized);
        let other_key = token(
            serde_json::json!({ "exp": in_an_hour() }),
            "another secret of thirty-two bytes!",
        );
        assert_eq!(auth.check(Some(&other_key), "r"), unauthorized);
        let bad_rooms = token(
            serde_json::json!({ "exp": in_an_hour(), "rooms": "a" }),
            SECRET,
        );
        assert_eq!(auth.check(Some(&bad_rooms), "a"), unauthorized);
        for rooms in [
            serde_json::json!(null),
            serde_json::json!(["a", 1]),
            serde_json::json!({ "a": true }),
        ] {
            let claims = serde_json::json!({ "exp": in_an_hour(), "rooms": rooms });
            let bad_rooms = token(claims, SECRET);
            assert_eq!(auth.check(Some(&bad_rooms), "a"), unauthorized, "{rooms}");
        }
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_set() {
        let exp = in_an_hour();
        let with_both = token(
            serde_json::json!({ "exp": exp, "aud": "ringcast", "iss": "idp" }),
            SECRET,
        );
        let with_neither = token(serde_json::json!({ "exp": exp }), SECRET);
        let other_aud = token(
            serde_json::json!({ "exp": exp, "aud": "billing", "iss": "idp" }),
            SECRET,
        );
        let other_iss = token(
            serde_json::json!({ "exp": exp, "aud": "ringcast", "iss": "elsewhere" }),
            SECRET,
        );
        // Unset: whatever `aud`/`iss` a token has, or none, is accepted.
        let lax = auth();
        for token in [&with_both, &with_neither, &other_aud, &other_iss] {
            assert_eq!(lax.check(Some(token), "r"), Ok(()));
        }
        let expected = Expected {
            audience: Some("ringcast"),
            issuer: Some("idp"),
        };
        let strict = JwtAuth::new(Some(SECRET), None, expected).unwrap().unwrap();
        assert_eq!(strict.check(Some(&with_both), "r"), Ok(()));
        for token in [&with_neither, &other_aud, &other_iss] {
            assert_eq!(strict.check(Some(token), "r"), Err(Rejection::Unauthorized));
        }
    }

    #[test]
    fn short_secrets_and_bad_key_files_are_refused() {
        assert_eq!(
            JwtAuth::new(Some("short"), None, Expected::default())
                .unwrap_err()
                .0,
            "--jwt-secret"
        );
        let missing = Path::new("/nonexistent/ringcast-key.pem");
        assert_eq!(
            JwtAuth::new(None, Some(missing), Expected::default())
                .unwrap_err()
                .0,
            "--jwt-public-key"
        );
        assert!(JwtAuth::new(None, None, Expected::default())
            .unwrap()
            .is_none());
        let audience = Expected {
            audience: Some("ringcast"),
            issuer: None,
        };
        let unused = JwtAuth::new(None, None, audience).unwrap_err();
        assert_eq!(unused.0, "--jwt-audience");
        let empty = Expected {
            audience: None,
            issuer: Some(""),
        };
        assert_eq!(
            JwtAuth::new(Some(SECRET), None, empty).unwrap_err().0,
            "--jwt-issuer"
        );
        assert_eq!(format!("{:?}", Secret::new(SECRET.into())), "<redacted>");
        assert!(!format!("{:?}", auth()).contains(SECRET));
    }

    #[test]
    fn tokens_are_found_in_header_and_query() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer_token(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("bearer abc"));
        assert_eq!(bearer_token(&headers), Some("abc"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer_token(&headers), None);
        assert_eq!(query_token(Some("a=1&token=x.y.z")), Some("x.y.z"));
        assert_eq!(query_token(Some("token=")), None);
        assert_eq!(query_token(None), None);
    }

    #[test]
    fn secrets_match_only_themselves() {
        let secret = Secret::new("s3cret-token-0123".into());
        assert!(secret.matches(b"s3cret-token-0123"));
        assert!(!secret.matches(b"s3cret-token-0124"));
        assert!(!secret.matches(b"s3cret"));
        assert!(!secret.matches(b""));
    }
}
