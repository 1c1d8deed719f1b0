//! `POST /publish/{room}`: bearer token (good, wrong, missing), text vs binary frames, invalid
//! UTF-8, the `--max-message` cap, delivery to members on every core, and the endpoint's
//! absence without `--publish-token`.

use tokio_tungstenite::tungstenite::Message;

use crate::util::{http, metrics, start_server, ws};

const TOKEN: &str = "test-publish-token-0123456789";
const AUTH: &str = "Authorization: Bearer test-publish-token-0123456789";

#[tokio::test]
async fn text_and_binary_bodies_reach_the_room() {
    let server = start_server(&["--publish-token", TOKEN]);
    let mut client = ws::connect(server.addr, "/ws/news").await;
    let mut other_room = ws::connect(server.addr, "/ws/sports").await;

    let text = ["Content-Type: text/plain; charset=utf-8", AUTH];
    let response = http::post(server.addr, "/publish/news", &text, "héllo".as_bytes()).await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON body");
    assert_eq!(body["room"], "news");
    assert_eq!(body["bytes"], "héllo".len());
    assert_eq!(ws::next_text(&mut client).await, "héllo");

    let binary = ["Content-Type: application/octet-stream", AUTH];
    let payload = [0u8, 0xff, 0xfe, 1];
    let response = http::post(server.addr, "/publish/news", &binary, &payload).await;
    assert_eq!(response.status, 200, "{}", response.body_text());
    match ws::next_data(&mut client).await {
        Message::Binary(got) => assert_eq!(&got[..], payload),
        other => panic!("expected binary, got {other:?}"),
    }
    // No Content-Type: binary too.
    let response = http::post(server.addr, "/publish/news", &[AUTH], b"raw").await;
    assert_eq!(response.status, 200);
    assert_eq!(
        ws::next_data(&mut client).await,
        Message::binary(&b"raw"[..])
    );

    // Only the room published to got anything: the next message of the other room is ours.
    ws::send_text(&mut other_room, "mine").await;
    assert_eq!(ws::next_text(&mut other_room).await, "mine");

    let samples = metrics::scrape(server.addr).await;
    let published: f64 = samples
        .iter()
        .filter(|s| s.name == "ringcast_http_publish_total")
        .filter(|s| s.label("result") == Some("published"))
        .map(|s| s.value)
        .sum();
    assert_eq!(published, 3.0);
    let bytes = metrics::total(&samples, "ringcast_http_publish_bytes_total");
    assert_eq!(bytes, ("héllo".len() + payload.len() + 3) as f64);
}

#[tokio::test]
async fn wrong_or_missing_token_is_401() {
    let server = start_server(&["--publish-token", TOKEN]);
    let mut client = ws::connect(server.addr, "/ws/r").await;
    for headers in [
        vec![],
        vec!["Authorization: Bearer test-publish-token-0123456780"],
        vec!["Authorization: Bearer test-publish-token"],
        vec!["Authorization: Basic dGVzdDp0ZXN0"],
        vec!["Authorization: Bearer"],
    ] {
        let response = http::post(server.addr, "/publish/r", &headers, b"no").await;
        assert_eq!(response.status, 401, "headers {headers:?}");
        assert_eq!(response.header("www-authenticate"), Some("Bearer"));
    }
    // Nothing was published: the client's next message is its own.
    ws::send_text(&mut client, "own").await;
    assert_eq!(ws::next_text(&mut client).await, "own");
    // The scheme is case-insensitive.
    let lower = format!("authorization: bearer {TOKEN}");
    let response = http::post(server.addr, "/publish/r", &[&lower], b"yes").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn invalid_utf8_text_is_400() {
    let server = start_server(&["--publish-token", TOKEN]);
    let mut client = ws::connect(server.addr, "/ws/r").await;
    let headers = ["Content-Type: text/plain", AUTH];
    let response = http::post(server.addr, "/publish/r", &headers, &[0x66, 0xc3, 0x28]).await;
    assert_eq!(response.status, 400);
    // The same bytes as binary are fine.
    let response = http::post(server.addr, "/publish/r", &[AUTH], &[0x66, 0xc3, 0x28]).await;
    assert_eq!(response.status, 200);
    assert_eq!(
        ws::next_data(&mut client).await,
        Message::binary(vec![0x66, 0xc3, 0x28])
    );
}

#[tokio::test]
async fn bodies_over_max_message_are_413() {
    let server = start_server(&["--publish-token", TOKEN, "--max-message", "1KiB"]);
    let mut client = ws::connect(server.addr, "/ws/r").await;
    let exact = vec![b'a'; 1024];
    let response = http::post(server.addr, "/publish/r", &[AUTH], &exact).await;
    assert_eq!(response.status, 200);
    assert_eq!(ws::next_data(&mut client).await, Message::binary(exact));

    // Declared too large: refused from the header.
    let over = vec![b'b'; 1025];
    let response = http::post(server.addr, "/publish/r", &[AUTH], &over).await;
    assert_eq!(response.status, 413);

    // Chunked without a length: refused at the first byte past the limit.
    let mut chunked = Vec::new();
    for _ in 0..3 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b'c'; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let headers = [AUTH, "Transfer-Encoding: chunked"];
    let response = http::send(server.addr, "POST", "/publish/r", &headers, &chunked).await;
    assert_eq!(response.status, 413);

    // A chunked body within the limit is accepted.
    let headers = [
        AUTH,
        "Transfer-Encoding: chunked",
        "Content-Type: text/plain",
    ];
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    let response = http::send(server.addr, "POST", "/publish/r", &headers, body).await;
    assert_eq!(response.status, 200);
    assert_eq!(ws::next_text(&mut client).await, "hello");
}

#[tokio::test]
async fn publish_reaches_members_on_every_core() {
    let server = start_server(&["--publish-token", TOKEN]);
    // Clients spread over both cores (SO_REUSEPORT); keep connecting until both have one.
    let mut clients = Vec::new();
    for _ in 0..64 {
        clients.push(ws::connect(server.addr, "/ws/spread").await);
        let per_core = metrics::connections_per_core(&metrics::scrape(server.addr).await);
        if clients.len() >= 2 && per_core.iter().all(|&(_, open)| open >= 1.0) {
            break;
        }
    }
    let per_core = metrics::connections_per_core(&metrics::scrape(server.addr).await);
    assert!(
        per_core.iter().all(|&(_, open)| open >= 1.0),
        "clients never reached both cores: {per_core:?}"
    );
    // Each publish is a new connection on either core; every member gets every message.
    for round in 0..8 {
        let message = format!("round {round}");
        let headers = ["Content-Type: text/plain", AUTH];
        let response =
            http::post(server.addr, "/publish/spread", &headers, message.as_bytes()).await;
        assert_eq!(response.status, 200);
        for client in &mut clients {
            assert_eq!(ws::next_text(client).await, message);
        }
    }
    // A room without members anywhere drops the message.
    let response = http::post(server.addr, "/publish/empty", &[AUTH], b"x").await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn bad_requests_and_disabled_endpoint() {
    let server = start_server(&["--publish-token", TOKEN]);
    let response = http::post(server.addr, "/publish/bad%20room", &[AUTH], b"x").await;
    assert_eq!(response.status, 400);
    let response = http::post(server.addr, "/publish/", &[AUTH], b"x").await;
    assert_eq!(response.status, 400);
    let response = http::get(server.addr, "/publish/r", &[AUTH]).await;
    assert_eq!(response.status, 405);
    assert_eq!(response.header("allow"), Some("POST"));

    let disabled = start_server(&[]);
    let response = http::post(disabled.addr, "/publish/r", &[AUTH], b"x").await;
    assert_eq!(response.status, 404);
}
