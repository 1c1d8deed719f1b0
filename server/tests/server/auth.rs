//! JWT at the upgrade: a valid token from `?token=` and from `Authorization: Bearer`, the
//! `rooms` claim (403 outside it; 401 when it is not an array of strings, `null` included),
//! expired, badly signed, malformed and missing tokens (401), `--jwt-audience` and
//! `--jwt-issuer`, ES256 with `--jwt-public-key`, and the auth counters; without the flags
//! nothing is asked.

use jsonwebtoken::{encode, get_current_timestamp, Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::util::{metrics, start_server, ws};

/// An HS256 secret of the required 32 bytes.
const SECRET: &str = "integration-test-secret-0123456789";
/// A P-256 key pair made for these tests only (openssl ecparam -name prime256v1).
const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgatbM5LgDyW1ro7gg
5TM6j20v/9wYvK2UOAhrDKQ0PnShRANCAASKLnhPbEP2bQMYUFmEmBiChaWpdg9e
nZE5bes3vQ6EQ2VMsjWal/BLgBtGsPYFcgDMBD7VsPp3uZOd8oxJoQ2T
-----END PRIVATE KEY-----
";
const EC_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEii54T2xD9m0DGFBZhJgYgoWlqXYP
Xp2ROW3rN70OhENlTLI1mpfwS4AbRrD2BXIAzAQ+1bD6d7mTnfKMSaENkw==
-----END PUBLIC KEY-----
";

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key");
    encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
}

fn in_an_hour() -> u64 {
    get_current_timestamp() + 3600
}

#[tokio::test]
async fn valid_tokens_from_query_or_header_are_accepted() {
    let server = start_server(&["--jwt-secret", SECRET]);
    let token = hs256(json!({ "exp": in_an_hour(), "sub": "alice" }), SECRET);
    let mut by_query = ws::connect(server.addr, &format!("/ws/lobby?token={token}")).await;
    let bearer = format!("Bearer {token}");
    let mut by_header =
        ws::try_connect_with_headers(server.addr, "/ws/lobby", &[("Authorization", &bearer)])
            .await
            .expect("a valid bearer token opens the WebSocket");
    // Both joined the same room.
    ws::send_text(&mut by_query, "hi").await;
    assert_eq!(ws::next_text(&mut by_header).await, "hi");
    assert_eq!(ws::next_text(&mut by_query).await, "hi");
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(auth_count(&samples, "accepted"), 2.0);
}

#[tokio::test]
async fn rooms_claim_limits_rooms() {
    let server = start_server(&["--jwt-secret", SECRET]);
    let token = hs256(json!({ "exp": in_an_hour(), "rooms": ["a", "b"] }), SECRET);
    let mut in_b = ws::connect(server.addr, &format!("/ws/b?token={token}")).await;
    let status = ws::refused_status(server.addr, &format!("/ws/c?token={token}"), None).await;
    assert_eq!(status, 403);
    let everything = hs256(json!({ "exp": in_an_hour(), "rooms": ["*"] }), SECRET);
    let mut in_c = ws::connect(server.addr, &format!("/ws/c?token={everything}")).await;
    // Both joined: each gets its own message back.
    for (client, text) in [(&mut in_b, "b"), (&mut in_c, "c")] {
        ws::send_text(client, text).await;
        assert_eq!(ws::next_text(client).await, text);
    }
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(auth_count(&samples, "forbidden"), 1.0);
    // The refused client joined nothing: only the two accepted ones are connected.
    assert_eq!(metrics::total(&samples, metrics::CONNECTIONS_GAUGE), 2.0);
}

#[tokio::test]
async fn rooms_claim_that_is_not_an_array_of_strings_is_401() {
    let server = start_server(&["--jwt-secret", SECRET]);
    // `null` once opened every room: it read as an absent claim.
    let cases = [
        ("null", json!(null)),
        ("a string", json!("b")),
        ("a number", json!(1)),
        ("an object", json!({ "b": true })),
        ("an array with a number", json!(["b", 1])),
    ];
    for (what, rooms) in &cases {
        let token = hs256(json!({ "exp": in_an_hour(), "rooms": rooms }), SECRET);
        let status = ws::refused_status(server.addr, &format!("/ws/b?token={token}"), None).await;
        assert_eq!(status, 401, "rooms claim {what}");
    }
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(auth_count(&samples, "unauthorized"), cases.len() as f64);
    assert_eq!(metrics::total(&samples, metrics::CONNECTIONS_GAUGE), 0.0);
}

#[tokio::test]
async fn audience_and_issuer_are_required_when_set() {
    let (aud, iss) = ("ringcast-test", "https://issuer.example");
    let server = start_server(&[
        "--jwt-secret",
        SECRET,
        "--jwt-audience",
        aud,
        "--jwt-issuer",
        iss,
    ]);
    let exp = in_an_hour();
    for (what, claims) in [
        ("both", json!({ "exp": exp, "aud": aud, "iss": iss })),
        (
            "aud in a list",
            json!({ "exp": exp, "aud": ["other", aud], "iss": iss }),
        ),
    ] {
        let token = hs256(claims, SECRET);
        let accepted = ws::try_connect(server.addr, &format!("/ws/r?token={token}"), None).await;
        assert!(accepted.is_ok(), "{what}: {accepted:?}");
    }
    for (what, claims) in [
        ("no aud", json!({ "exp": exp, "iss": iss })),
        (
            "another aud",
            json!({ "exp": exp, "aud": "billing", "iss": iss }),
        ),
        ("no iss", json!({ "exp": exp, "aud": aud })),
        (
            "another iss",
            json!({ "exp": exp, "aud": aud, "iss": "https://other.example" }),
        ),
        ("neither", json!({ "exp": exp })),
    ] {
        let token = hs256(claims, SECRET);
        let status = ws::refused_status(server.addr, &format!("/ws/r?token={token}"), None).await;
        assert_eq!(status, 401, "{what}");
    }
}

#[tokio::test]
async fn missing_expired_malformed_or_badly_signed_tokens_are_401() {
    let server = start_server(&["--jwt-secret", SECRET]);
    let expired = hs256(json!({ "exp": get_current_timestamp() - 3600 }), SECRET);
    let wrong_key = hs256(
        json!({ "exp": in_an_hour() }),
        "some-other-secret-of-enough-length!",
    );
    // The signature's first character changed (all 6 of its bits count; the last character's
    // low bits are padding, so changing it may change nothing).
    let signed = hs256(json!({ "exp": in_an_hour() }), SECRET);
    let at = signed.rfind('.').expect("three segments") + 1;
    let swap = if signed[at..].starts_with('A') {
        "B"
    } else {
        "A"
    };
    let tampered = format!("{}{swap}{}", &signed[..at], &signed[at + 1..]);
    for (what, path) in [
        ("no token", "/ws/r".to_owned()),
        ("empty token", "/ws/r?token=".to_owned()),
        ("expired", format!("/ws/r?token={expired}")),
        ("wrong key", format!("/ws/r?token={wrong_key}")),
        ("tampered signature", format!("/ws/r?token={tampered}")),
        ("malformed", "/ws/r?token=not-a-jwt".to_owned()),
    ] {
        assert_eq!(
            ws::refused_status(server.addr, &path, None).await,
            401,
            "{what}"
        );
    }
    let bad_header = [("Authorization", "Bearer not-a-jwt")];
    let refused = ws::try_connect_with_headers(server.addr, "/ws/r", &bad_header).await;
    assert!(
        matches!(&refused, Err(tokio_tungstenite::tungstenite::Error::Http(r)) if r.status() == 401),
        "bad bearer token: {refused:?}"
    );
    let samples = metrics::scrape(server.addr).await;
    assert_eq!(auth_count(&samples, "unauthorized"), 7.0);
    assert_eq!(metrics::total(&samples, metrics::CONNECTIONS_GAUGE), 0.0);
}

#[tokio::test]
async fn es256_public_key_verifies_and_keeps_hs256_out() {
    let path = std::env::temp_dir().join(format!("ringcast-test-ec-{}.pem", std::process::id()));
    std::fs::write(&path, EC_PUBLIC).expect("write the test key");
    let server = start_server(&["--jwt-public-key", path.to_str().expect("UTF-8 path")]);
    let key = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).expect("EC key");
    let token = encode(
        &Header::new(Algorithm::ES256),
        &json!({ "exp": in_an_hour() }),
        &key,
    )
    .expect("sign ES256");
    ws::connect(server.addr, &format!("/ws/r?token={token}")).await;
    // No HS256 secret is configured: an HS256 token is refused whatever it is signed with.
    let hs = hs256(json!({ "exp": in_an_hour() }), SECRET);
    let status = ws::refused_status(server.addr, &format!("/ws/r?token={hs}"), None).await;
    assert_eq!(status, 401);
    std::fs::remove_file(&path).expect("remove the test key");
}

#[tokio::test]
async fn without_jwt_flags_no_token_is_needed() {
    let server = start_server(&[]);
    ws::connect(server.addr, "/ws/r").await;
    ws::connect(server.addr, "/ws/r?token=anything").await;
}

/// `ringcast_auth_total` of `result`, summed over cores.
fn auth_count(samples: &[metrics::Sample], result: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "ringcast_auth_total" && s.label("result") == Some(result))
        .map(|s| s.value)
        .sum()
}
