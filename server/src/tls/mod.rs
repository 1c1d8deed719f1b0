//! TLS termination (`--tls-cert`/`--tls-key`): rustls driven through its unbuffered, sans-IO
//! API so that it fits the server's own IO on both backends.
//!
//! - [`TlsAcceptor`]: the process's rustls config, the served pair ([`CertStore`], reloaded on
//!   SIGHUP) and the handshake counters;
//! - [`TlsSession`] (`session.rs`): one connection's state: bytes in, plaintext out; plaintext
//!   in, records out;
//! - [`TlsHttpIo`] (`http_io.rs`): the HTTP phase's adapter, so hyper reads and writes
//!   plaintext over the backend's socket adapter; it hands the session to the WebSocket
//!   phase, where the core's reader decrypts what it reads and the flush step seals each
//!   connection's queued frames in one buffer (`output::Subscriber`).
//!
//! Why this shape (and what kernel TLS would change): docs/ARCHITECTURE.md, "TLS".

mod http_io;
mod identity;
mod session;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::ring::kx_group::{
    SECP256R1 as KX_P256, SECP384R1 as KX_P384, X25519 as KX_X25519,
};
use rustls::server::UnbufferedServerConnection;
use rustls::ServerConfig;

pub use http_io::{TlsHttpIo, TlsUpgrade};
pub use identity::{CertStore, TlsFileError, TlsFiles};
pub use session::{Received, TlsError, TlsSession};

/// The only application protocol offered in ALPN: the server speaks HTTP/1.1 (the WebSocket
/// upgrade), never h2.
const ALPN_HTTP11: &[u8] = b"http/1.1";

/// How handshakes ended (`ringcast_tls_handshakes_total{result}`).
#[derive(Debug, Default)]
pub struct HandshakeCounters {
    /// Completed.
    pub ok: AtomicU64,
    /// Failed on the client's bytes (bad records, no common version or cipher, no ALPN match).
    pub failed: AtomicU64,
    /// The connection ended before the handshake completed (timeout, client gone).
    pub incomplete: AtomicU64,
}

impl HandshakeCounters {
    /// Counts one handshake's end.
    fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every TLS connection of the process starts from.
#[derive(Debug)]
pub struct TlsAcceptor {
    /// TLS 1.2 and 1.3 on the ring provider, ALPN http/1.1, the certificate from `store`.
    config: Arc<ServerConfig>,
    /// The served pair.
    store: Arc<CertStore>,
    /// How handshakes ended.
    handshakes: HandshakeCounters,
}

impl TlsAcceptor {
    /// Reads the pair in `files` and builds the config; fails naming the file and the fault.
    pub fn new(files: TlsFiles) -> Result<Self, TlsFileError> {
        // ring, not aws-lc-rs: see docs/ARCHITECTURE.md ("TLS") and results/tls-2026-12-06-vm.
        // rustls marks it deprecated for lacking the post-quantum X25519MLKEM768 group.
        #[allow(deprecated)]
        let mut provider = rustls::crypto::ring::default_provider();
        // X25519 first: ring's defaults put P-384 first, which a client sending shares for
        // both would get at ~8x the handshake cost (results/tls-2026-12-06-vm).
        provider.kx_groups = vec![KX_X25519, KX_P256, KX_P384];
        let provider = Arc::new(provider);
        let store = Arc::new(CertStore::open(files.clone(), Arc::clone(&provider))?);
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| TlsFileError {
                flag: "--tls-cert",
                path: files.cert.clone(),
                reason: format!("no TLS version the crypto provider supports ({err})"),
            })?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&store) as _);
        config.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        Ok(TlsAcceptor {
            config: Arc::new(config),
            store,
            handshakes: HandshakeCounters::default(),
        })
    }

    /// A session for a newly accepted connection.
    pub fn session(&self) -> Result<TlsSession, TlsError> {
        UnbufferedServerConnection::new(Arc::clone(&self.config)).map(TlsSession::new)
    }

    /// The served pair (reload, expiry).
    pub fn store(&self) -> &CertStore {
        &self.store
    }

    /// How handshakes ended.
    pub fn handshakes(&self) -> &HandshakeCounters {
        &self.handshakes
    }
}

/// A TLS client and server in memory, for unit tests (the test pair in `testdata/`, made by
/// scripts/tls-cert.sh, valid until 2126).
#[cfg(test)]
pub mod testing {
    use std::io::Read;
    use std::path::PathBuf;
    use std::sync::Arc;

    use rustls::{ClientConfig, ClientConnection, RootCertStore};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};

    use super::{Received, TlsAcceptor, TlsFiles, TlsSession};

    /// The test pair (`testdata/`, made by scripts/tls-cert.sh, valid until 2126).
    pub fn testdata(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("src/tls/testdata")
            .join(name)
    }

    pub fn acceptor() -> TlsAcceptor {
        TlsAcceptor::new(TlsFiles {
            cert: testdata("cert.pem"),
            key: testdata("key.pem"),
        })
        .expect("the test pair loads")
    }

    pub fn client() -> ClientConnection {
        client_with_alpn(&[b"http/1.1"])
    }

    /// A client offering `protocols` in ALPN.
    pub fn client_with_alpn(protocols: &[&[u8]]) -> ClientConnection {
        let mut roots = RootCertStore::empty();
        for ca in CertificateDer::pem_file_iter(testdata("ca.pem")).unwrap() {
            roots.add(ca.unwrap()).unwrap();
        }
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = protocols.iter().map(|protocol| protocol.to_vec()).collect();
        ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
    }

    /// What the client has to send, as the socket would carry it.
    pub fn from_client(client: &mut ClientConnection) -> Vec<u8> {
        let mut wire = Vec::new();
        while client.wants_write() {
            client.write_tls(&mut wire).unwrap();
        }
        wire
    }

    /// Gives `wire` to the client; returns the plaintext it yields.
    pub fn to_client(client: &mut ClientConnection, wire: &[u8]) -> Vec<u8> {
        let mut rest = wire;
        let mut plain = Vec::new();
        while !rest.is_empty() {
            client.read_tls(&mut rest).unwrap();
            client.process_new_packets().unwrap();
            // Taken as it comes: the client buffers at most 16 KiB of plaintext. (Reading
            // ends with WouldBlock: no more for now.)
            let _ = client.reader().read_to_end(&mut plain);
        }
        plain
    }

    /// A session and a client with the handshake done, fed `chunk` bytes at a time.
    pub fn established(chunk: usize) -> (TlsSession, ClientConnection) {
        let mut session = acceptor().session().unwrap();
        let mut client = client();
        let mut plain = Vec::new();
        while client.is_handshaking() || session.is_handshaking() {
            let mut wire = from_client(&mut client);
            for part in wire.chunks_mut(chunk) {
                assert_eq!(session.receive(part, &mut plain).unwrap(), Received::Open);
            }
            let mut out = Vec::new();
            session.take_outgoing(&mut out);
            to_client(&mut client, &out);
        }
        assert!(plain.is_empty());
        (session, client)
    }
}
