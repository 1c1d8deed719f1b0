//! `tls-provider-probe PROVIDER CERT_DIR`: with PROVIDER `ring` or `aws-lc-rs`, times
//! (1) the server's side of full TLS 1.3 handshakes (the ECDSA P-256 certificate of
//! scripts/tls-cert.sh, the key exchange rustls' client offers first), and (2) sealing
//! application data into records on the server (the cipher suite rustls' client picks first),
//! 1 KiB and 16 KiB at a time. Prints one JSON line. Client-side work is not timed.
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, ClientConnection, RootCertStore, ServerConfig, ServerConnection};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

const HANDSHAKES: u32 = 2000;
const SEAL_BYTES: usize = 256 << 20;

/// Client to server: the server's read and processing is timed.
fn to_server(client: &mut ClientConnection, server: &mut ServerConnection) -> Duration {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let start = Instant::now();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        server.read_tls(&mut rest).unwrap();
        server.process_new_packets().unwrap();
    }
    start.elapsed()
}

/// Server to client: the server's writing is timed.
fn to_client(server: &mut ServerConnection, client: &mut ClientConnection) -> Duration {
    let mut wire = Vec::new();
    let start = Instant::now();
    while server.wants_write() {
        server.write_tls(&mut wire).unwrap();
    }
    let spent = start.elapsed();
    let mut rest = &wire[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
    }
    spent
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // ring's defaults list P-384 first (rustls 0.23.48); ringcast serves X25519 first, the
    // group browsers and OpenSSL send a share for. aws-lc-rs's defaults put the post-quantum
    // hybrid X25519MLKEM768 first, as browsers do; `aws-lc-rs-x25519` leaves it out.
    let provider: CryptoProvider = match args[1].as_str() {
        "ring" => {
            use rustls::crypto::ring::kx_group;
            #[allow(deprecated)]
            let mut provider = rustls::crypto::ring::default_provider();
            provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
            provider
        }
        "aws-lc-rs" => rustls::crypto::aws_lc_rs::default_provider(),
        "aws-lc-rs-x25519" => {
            use rustls::crypto::aws_lc_rs::kx_group;
            let mut provider = rustls::crypto::aws_lc_rs::default_provider();
            provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
            provider
        }
        other => panic!("unknown provider {other}"),
    };
    let provider = Arc::new(provider);
    let dir = std::path::Path::new(&args[2]);
    let chain: Vec<_> = CertificateDer::pem_file_iter(dir.join("cert.pem"))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(dir.join("key.pem")).unwrap();
    let server_config = Arc::new(
        ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap(),
    );
    let mut roots = RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let client_config = Arc::new(
        ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let name = ServerName::try_from("localhost").unwrap();
    let connect = || {
        let mut client = ClientConnection::new(Arc::clone(&client_config), name.clone()).unwrap();
        let mut server = ServerConnection::new(Arc::clone(&server_config)).unwrap();
        let mut spent = Duration::ZERO;
        while server.is_handshaking() || client.is_handshaking() {
            spent += to_server(&mut client, &mut server);
            spent += to_client(&mut server, &mut client);
        }
        (client, server, spent)
    };
    let mut handshake = Duration::ZERO;
    for _ in 0..HANDSHAKES {
        handshake += connect().2;
    }
    let (mut client, mut server, _) = connect();
    let suite = format!("{:?}", server.negotiated_cipher_suite().unwrap().suite());
    let group = format!("{:?}", server.negotiated_key_exchange_group().unwrap().name());
    let mut seal = |chunk: usize| {
        let data = vec![7u8; chunk];
        let mut wire = Vec::with_capacity(2 * chunk + 64);
        let start = Instant::now();
        for _ in 0..SEAL_BYTES / chunk {
            server.writer().write_all(&data).unwrap();
            wire.clear();
            server.write_tls(&mut wire).unwrap();
        }
        let ns_per_kib = start.elapsed().as_nanos() as f64 / (SEAL_BYTES / 1024) as f64;
        ns_per_kib
    };
    let seal_1k = seal(1024);
    let seal_16k = seal(16384);
    let _ = &mut client;
    println!(
        "{{\"provider\":\"{}\",\"group\":\"{}\",\"suite\":\"{}\",\"server_handshake_us\":{:.1},\"seal_1k_ns_per_kib\":{:.1},\"seal_16k_ns_per_kib\":{:.1}}}",
        args[1],
        group,
        suite,
        handshake.as_secs_f64() * 1e6 / f64::from(HANDSHAKES),
        seal_1k,
        seal_16k
    );
}
