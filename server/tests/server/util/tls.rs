//! The suite over TLS: with `RINGCAST_TEST_TLS=1` in the environment, every test server
//! (`start_server`, `process::spawn_server`) serves HTTPS and `wss://` only, with a certificate
//! of a throwaway CA that `scripts/tls-cert.sh` makes once per test process, and every client
//! helper (raw, ws, http, metrics) connects over TLS trusting that CA. Unset, everything is
//! plaintext as before.
//!
//! Which tests run over TLS: every test of the server binary, with these differences: the
//! limit tests read "closed before the TLS handshake" where plaintext clients read 503/429
//! (over TLS the server refuses without an answer); `cli.rs`'s option errors run the binary
//! with their own plaintext options (its fallback broadcast test takes the switch); `tls.rs`
//! runs over TLS whatever the switch says. No test is skipped over TLS.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// Whether the suite runs over TLS (`RINGCAST_TEST_TLS=1`).
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| std::env::var("RINGCAST_TEST_TLS").is_ok_and(|value| value == "1"))
}

/// A test CA and a server certificate it signed (`scripts/tls-cert.sh`'s files).
pub struct Pair {
    /// The CA certificate, what clients trust.
    pub ca: PathBuf,
    /// The server's chain (leaf, then the CA), for `--tls-cert`.
    pub cert: PathBuf,
    /// The server's key, for `--tls-key`.
    pub key: PathBuf,
}

impl Pair {
    /// Runs `scripts/tls-cert.sh DIR` (a fresh CA each time) and names its files.
    pub fn make(dir: &Path) -> Pair {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tls-cert.sh");
        let output = Command::new("bash")
            .arg(&script)
            .arg(dir)
            .output()
            .unwrap_or_else(|err| panic!("run {}: {err}", script.display()));
        assert!(
            output.status.success(),
            "{} {} failed: {}",
            script.display(),
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        Pair {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    /// `--tls-cert CERT --tls-key KEY`.
    pub fn args(&self) -> [String; 4] {
        [
            "--tls-cert".to_owned(),
            self.cert.display().to_string(),
            "--tls-key".to_owned(),
            self.key.display().to_string(),
        ]
    }

    /// A client configuration trusting this pair's CA (ALPN http/1.1, as browsers offer it).
    pub fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).expect("read the test CA") {
            roots
                .add(cert.expect("parse the test CA"))
                .expect("add the test CA");
        }
        // ring, as the server (rustls marks it deprecated for lacking post-quantum groups).
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsConnector::from(Arc::new(config))
    }
}

/// A directory for this test process's TLS files, emptied first.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("ringcast-tls-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the TLS scratch directory");
    dir
}

/// The pair every test server of this process uses (made on first use).
pub fn test_pair() -> &'static Pair {
    static PAIR: OnceLock<Pair> = OnceLock::new();
    PAIR.get_or_init(|| Pair::make(&scratch_dir("suite")))
}

/// The arguments that make a test server serve TLS when the switch is on (none otherwise).
pub fn server_args() -> Vec<String> {
    if enabled() {
        test_pair().args().to_vec()
    } else {
        Vec::new()
    }
}

fn suite_connector() -> &'static TlsConnector {
    static CONNECTOR: OnceLock<TlsConnector> = OnceLock::new();
    CONNECTOR.get_or_init(|| test_pair().connector())
}

/// A client's byte stream: plain TCP, or TLS over TCP.
pub enum Stream {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS (boxed: the session state is large).
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stream::Plain(tcp) => f.debug_tuple("Plain").field(tcp).finish(),
            Stream::Tls(tls) => f.debug_tuple("Tls").field(tls.get_ref().0).finish(),
        }
    }
}

/// Over TLS (when the switch is on), performs the handshake on `tcp` trusting the suite's CA;
/// otherwise returns `tcp` as it is.
pub async fn wrap(tcp: TcpStream, addr: SocketAddr) -> Stream {
    if enabled() {
        handshake(suite_connector(), tcp, addr)
            .await
            .unwrap_or_else(|err| panic!("TLS handshake with {addr}: {err}"))
    } else {
        Stream::Plain(tcp)
    }
}

/// The TLS handshake on `tcp` with `connector`, verifying the certificate for `addr`'s IP.
pub async fn handshake(
    connector: &TlsConnector,
    tcp: TcpStream,
    addr: SocketAddr,
) -> io::Result<Stream> {
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(super::WAIT, connector.connect(name, tcp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake stalled"))??;
    Ok(Stream::Tls(Box::new(tls)))
}

/// Connects to `addr` (over TLS when the switch is on).
pub async fn connect(addr: SocketAddr) -> Stream {
    let tcp = TcpStream::connect(addr).await.expect("TCP connect");
    wrap(tcp, addr).await
}

/// Like [`connect`], with the TLS handshake's failure returned: a server at
/// `--max-connections` (or its per-IP share) closes a TLS connection before the handshake,
/// without the 503 (429) a plaintext client reads (`refuse` in src/http/mod.rs).
pub async fn try_connect(addr: SocketAddr) -> io::Result<Stream> {
    let tcp = TcpStream::connect(addr).await?;
    if enabled() {
        handshake(suite_connector(), tcp, addr).await
    } else {
        Ok(Stream::Plain(tcp))
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }
}
