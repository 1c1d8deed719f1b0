//! A `wss://` server for loadgen's TLS tests while ringcast has no TLS of its own: a
//! tokio-rustls acceptor in front of a plain ringcast, each accepted connection forwarded to
//! it. Once ringcast serves TLS itself (`--tls-cert`, `--tls-key`), `tls_server` becomes a
//! ringcast started with the files of `TlsFiles`; the tests stay as they are.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// A throwaway CA and a certificate it signed for localhost, 127.0.0.1 and ::1, made by
/// `scripts/tls-cert.sh` in `dir`.
pub struct TlsFiles {
    /// The CA to trust (`--tls-ca`).
    pub ca: PathBuf,
    /// The server's chain: its certificate, then the CA.
    pub cert: PathBuf,
    /// The server's key (PKCS#8).
    pub key: PathBuf,
}

/// Makes a CA and a server certificate in `dir` with `scripts/tls-cert.sh`.
pub fn tls_files(dir: &Path) -> TlsFiles {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls-cert.sh");
    let output = std::process::Command::new(script)
        .arg(dir)
        .output()
        .expect("scripts/tls-cert.sh runs");
    assert!(
        output.status.success(),
        "tls-cert.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    TlsFiles {
        ca: dir.join("ca.pem"),
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    }
}

/// A running TLS front; dropping it stops it.
pub struct TlsServer {
    /// Where it accepts `wss://` connections.
    pub addr: SocketAddr,
    /// Runs the accept loop and the forwarding (dropped: every task ends).
    _runtime: tokio::runtime::Runtime,
}

/// Serves TLS with `files`' certificate (ALPN `http/1.1`) and forwards each connection's
/// plaintext to `plain`, a ringcast's plain listener.
pub fn tls_server(files: &TlsFiles, plain: SocketAddr) -> TlsServer {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .expect("cert.pem opens")
        .collect::<Result<_, _>>()
        .expect("cert.pem parses");
    let key = PrivateKeyDer::from_pem_file(&files.key).expect("key.pem parses");
    #[allow(deprecated)] // ring, as loadgen (see its client config)
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key match");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = runtime
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    runtime.spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(forward(acceptor.clone(), client, plain));
        }
    });
    TlsServer {
        addr,
        _runtime: runtime,
    }
}

/// Ends one client's TLS and copies its bytes both ways to and from `plain`; a failed
/// handshake (an untrusted certificate on the client's side) just closes it.
async fn forward(acceptor: TlsAcceptor, client: TcpStream, plain: SocketAddr) {
    let _ = client.set_nodelay(true);
    let Ok(mut tls) = acceptor.accept(client).await else {
        return;
    };
    let Ok(mut server) = TcpStream::connect(plain).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
}
