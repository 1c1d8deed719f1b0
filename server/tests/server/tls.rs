//! `--tls-cert`/`--tls-key` (issue 21), over TLS whatever `RINGCAST_TEST_TLS` says: the TLS
//! port gives plaintext HTTP no HTTP answer; clients trusting the test CA broadcast to each
//! other and a client trusting another CA is refused; `/metrics` over https counts handshakes
//! and shows the served certificate's notAfter; a missing certificate file stops the binary
//! with exit 2 naming it; SIGHUP with a new pair is taken by the next handshake while an open
//! connection keeps receiving.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

use crate::util::metrics::{self, Sample};
use crate::util::process::{ringcast_command, run_to_exit, spawn_server};
use crate::util::tls::{self, Pair};
use crate::util::{http, start_server, ws, BASE_ARGS, WAIT};

/// `--tls-cert`/`--tls-key` of `pair`, as `&str`s for `start_server`.
fn args_of(pair: &Pair) -> Vec<String> {
    pair.args().to_vec()
}

/// A WebSocket client over TLS trusting `connector`'s roots; the handshake error as text.
async fn wss_connect(
    connector: &TlsConnector,
    addr: SocketAddr,
    path: &str,
) -> Result<ws::Client, String> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let stream = tls::handshake(connector, tcp, addr)
        .await
        .map_err(|err| format!("TLS: {err}"))?;
    let url = format!("wss://{addr}{path}");
    let (client, _) = timeout(WAIT, tokio_tungstenite::client_async(url, stream))
        .await
        .expect("the WebSocket handshake did not finish")
        .map_err(|err| format!("WebSocket: {err}"))?;
    Ok(client)
}

/// `/metrics` over https, trusting `connector`'s roots.
async fn scrape_over(connector: &TlsConnector, addr: SocketAddr) -> Vec<Sample> {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    let stream = tls::handshake(connector, tcp, addr)
        .await
        .expect("TLS handshake for /metrics");
    let response = http::send_on(stream, addr, "GET", "/metrics", &[], &[]).await;
    assert_eq!(response.status, 200, "GET /metrics over https");
    metrics::parse_page(&response.body_text())
}

/// `ringcast_tls_handshakes_total{result=...}`.
fn handshakes(samples: &[Sample], result: &str) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == "ringcast_tls_handshakes_total" && s.label("result") == Some(result))
        .map(|s| s.value)
        .sum()
}

/// The leaf's notAfter (the first certificate of `cert`) in seconds since the epoch, as
/// OpenSSL and date(1) read it, not the server's parser.
fn not_after(cert: &Path) -> f64 {
    let output = Command::new("openssl")
        .args(["x509", "-noout", "-enddate", "-in"])
        .arg(cert)
        .output()
        .expect("run openssl x509");
    let text = String::from_utf8(output.stdout).expect("openssl output is text");
    let date = text
        .trim()
        .strip_prefix("notAfter=")
        .unwrap_or_else(|| panic!("openssl x509 -enddate said {text:?}"));
    let output = Command::new("date")
        .args(["-u", "-d", date, "+%s"])
        .output()
        .expect("run date");
    String::from_utf8(output.stdout)
        .expect("date output is text")
        .trim()
        .parse()
        .unwrap_or_else(|err| panic!("date -d {date:?}: {err}"))
}

#[tokio::test]
async fn plaintext_http_to_the_tls_port_gets_no_http_answer() {
    let pair = tls::test_pair();
    let args = args_of(pair);
    let server = start_server(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut plain = TcpStream::connect(server.addr).await.expect("TCP connect");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("write the plaintext request");
    // The server ends the connection (after a TLS alert at most) instead of waiting for a
    // ClientHello that never comes or answering in HTTP.
    let mut answer = Vec::new();
    let ended = timeout(WAIT, plain.read_to_end(&mut answer))
        .await
        .expect("the server kept the plaintext connection open");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        !text.contains("HTTP/"),
        "plaintext HTTP got an HTTP answer ({ended:?}): {text:?}"
    );
    let samples = scrape_over(&pair.connector(), server.addr).await;
    assert!(
        handshakes(&samples, "failed") >= 1.0,
        "the plaintext request is a failed handshake"
    );
}

#[tokio::test]
async fn clients_trusting_the_ca_broadcast_and_others_are_refused() {
    let pair = tls::test_pair();
    let mut args = args_of(pair);
    args.extend(["--max-message".to_owned(), "512KiB".to_owned()]);
    let server = start_server(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let connector = pair.connector();
    let mut publisher = wss_connect(&connector, server.addr, "/ws/tls")
        .await
        .expect("wss:// connect");
    let mut reader = wss_connect(&connector, server.addr, "/ws/tls")
        .await
        .expect("wss:// connect");
    ws::send_text(&mut publisher, "over TLS").await;
    assert_eq!(ws::next_text(&mut reader).await, "over TLS");
    assert_eq!(ws::next_text(&mut publisher).await, "over TLS");
    let large = "L".repeat(200 << 10);
    ws::send(&mut publisher, Message::text(large.clone())).await;
    assert_eq!(ws::next_text(&mut reader).await, large);

    // A client trusting another CA refuses the server's certificate.
    let other = Pair::make(&tls::scratch_dir("other-ca"));
    let refused = wss_connect(&other.connector(), server.addr, "/ws/tls").await;
    match refused {
        Ok(_) => panic!("a client trusting another CA completed the handshake"),
        Err(err) => assert!(err.starts_with("TLS:"), "refused, but not by TLS: {err}"),
    }
}

#[tokio::test]
async fn metrics_over_https_count_handshakes_and_show_the_cert_expiry() {
    let pair = tls::test_pair();
    let args = args_of(pair);
    let server = start_server(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let connector = pair.connector();
    let first = scrape_over(&connector, server.addr).await;
    let _client = wss_connect(&connector, server.addr, "/ws/counted")
        .await
        .expect("wss:// connect");
    let second = scrape_over(&connector, server.addr).await;
    let (before, after) = (handshakes(&first, "ok"), handshakes(&second, "ok"));
    assert!(before >= 1.0, "the first scrape's own handshake: {before}");
    assert_eq!(
        after - before,
        2.0,
        "one WebSocket client and one scrape between the scrapes"
    );
    assert_eq!(handshakes(&second, "failed"), 0.0);
    assert_eq!(
        metrics::total(&second, "ringcast_tls_cert_expiry_seconds"),
        not_after(&pair.cert),
        "ringcast_tls_cert_expiry_seconds is the leaf's notAfter"
    );
}

#[test]
fn a_missing_certificate_file_exits_2_naming_it() {
    let pair = tls::test_pair();
    let missing = tls::scratch_dir("missing").join("no-such-cert.pem");
    let key = pair.key.display().to_string();
    let missing_text = missing.display().to_string();
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--tls-cert", &missing_text, "--tls-key", &key]);
    let (status, stderr) = run_to_exit(ringcast_command(&args));
    assert_eq!(status.code(), Some(2), "exit status; stderr: {stderr}");
    assert!(
        stderr.contains(&missing_text),
        "stderr does not name {missing_text}: {stderr}"
    );
}

#[tokio::test]
async fn sighup_with_a_new_pair_is_taken_by_the_next_handshake_while_open_connections_stay() {
    let old = Pair::make(&tls::scratch_dir("reload-old"));
    let new = Pair::make(&tls::scratch_dir("reload-new"));
    // The server reads the pair from these paths, first the old one's files.
    let served = tls::scratch_dir("reload-served");
    let (cert, key) = (served.join("cert.pem"), served.join("key.pem"));
    std::fs::copy(&old.cert, &cert).expect("copy cert");
    std::fs::copy(&old.key, &key).expect("copy key");
    let (cert_text, key_text) = (cert.display().to_string(), key.display().to_string());
    let mut args = BASE_ARGS.to_vec();
    args.extend(["--tls-cert", &cert_text, "--tls-key", &key_text]);
    let mut server = spawn_server(&args);
    let addr = server.addr;
    let mut open = wss_connect(&old.connector(), addr, "/ws/reload")
        .await
        .expect("wss:// connect with the old pair");

    std::fs::copy(&new.cert, &cert).expect("copy the new cert");
    std::fs::copy(&new.key, &key).expect("copy the new key");
    server.signal(libc::SIGHUP);
    server.wait_for_line("TLS certificate and key reloaded");

    let refused = wss_connect(&old.connector(), addr, "/ws/reload").await;
    assert!(
        refused.is_err(),
        "a client trusting only the old CA still completed a handshake after the reload"
    );
    let mut publisher = wss_connect(&new.connector(), addr, "/ws/reload")
        .await
        .expect("wss:// connect with the new pair");
    for seq in 0..3 {
        let text = format!("after reload {seq}");
        ws::send_text(&mut publisher, &text).await;
        assert_eq!(ws::next_text(&mut open).await, text, "the open connection");
    }
    let samples = scrape_over(&new.connector(), addr).await;
    assert_eq!(
        metrics::total(&samples, "ringcast_tls_cert_expiry_seconds"),
        not_after(&new.cert),
        "the expiry gauge follows the reloaded certificate"
    );
}
