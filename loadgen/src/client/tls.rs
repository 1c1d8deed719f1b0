//! TLS for `wss://` URLs: the run's one rustls `ClientConfig` (ring provider, ALPN `http/1.1`,
//! trusting only `--tls-ca`, or nothing checked with `--tls-insecure`) and the handshake on a
//! connected socket, its failures told apart.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::Resumption;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::failure::ConnectFailure;

/// The one ALPN protocol offered: the upgrade is HTTP/1.1 (a server picking h2 could not
/// upgrade).
const ALPN_HTTP_1_1: &[u8] = b"http/1.1";

/// The run's client configuration, shared by every connection of every worker: `ca` is the
/// PEM file of the CA to trust (the only one: loadgen carries no system root store);
/// `insecure` checks no certificate (the handshake signatures still are).
pub fn client_config(ca: Option<&Path>, insecure: bool) -> anyhow::Result<Arc<ClientConfig>> {
    // ring is the workspace's provider (no C toolchain to build; chosen by measurement,
    // docs/ARCHITECTURE.md "TLS"). rustls 0.23.48 deprecates it for lacking post-quantum key
    // exchange, which neither this test client nor the servers it measures need.
    #[allow(deprecated)]
    let mut provider = rustls::crypto::ring::default_provider();
    // The key share goes for the first group: X25519, as browsers and OpenSSL send. ring's
    // defaults put P-384 first, which made every handshake ~8x dearer on both ends
    // (results/tls-2026-12-06-vm/provider-probe).
    {
        use rustls::crypto::ring::kx_group::{SECP256R1, SECP384R1, X25519};
        provider.kx_groups = vec![X25519, SECP256R1, SECP384R1];
    }
    let provider = Arc::new(provider);
    let algorithms = provider.signature_verification_algorithms;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let mut config = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(algorithms)))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        if let Some(ca) = ca {
            let certificates = CertificateDer::pem_file_iter(ca)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .with_context(|| {
                    format!("--tls-ca {}: not a PEM certificate file", ca.display())
                })?;
            anyhow::ensure!(
                !certificates.is_empty(),
                "--tls-ca {}: no certificate in it",
                ca.display()
            );
            for certificate in certificates {
                roots
                    .add(certificate)
                    .with_context(|| format!("--tls-ca {}", ca.display()))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![ALPN_HTTP_1_1.to_vec()];
    // Every connection stands for a client of its own, and a new client makes a full
    // handshake: resuming one connection's session on the next would make a reconnect storm
    // look cheaper than it is.
    config.resumption = Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name the server's certificate must carry: the URL's host without its port (an IP
/// address as well).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(name.to_string())
        .with_context(|| format!("`{name}` is no TLS server name"))
}

/// Makes the TLS handshake on `tcp`; the stream is then ready for the upgrade.
pub async fn handshake(
    config: &Arc<ClientConfig>,
    name: &ServerName<'static>,
    tcp: TcpStream,
) -> Result<TlsStream<TcpStream>, ConnectFailure> {
    TlsConnector::from(config.clone())
        .connect(name.clone(), tcp)
        .await
        .map_err(|error| ConnectFailure::Tls(tls_reason(&error)))
}

/// Why a handshake failed, in words that say what to do about an untrusted certificate.
fn tls_reason(error: &std::io::Error) -> String {
    let untrusted = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|inner| matches!(inner, rustls::Error::InvalidCertificate(_)));
    if untrusted {
        format!(
            "{error}: loadgen trusts no system CA, only the one --tls-ca names \
             (or --tls-insecure checks nothing)"
        )
    } else {
        error.to_string()
    }
}

/// Gives up the tokio-rustls wrapper once the upgrade is done: the receive loop and the
/// writer drive the session over the socket's halves themselves.
pub fn into_parts(stream: TlsStream<TcpStream>) -> (TcpStream, Box<ClientConnection>) {
    let (tcp, mut session) = stream.into_inner();
    // A publisher's batch is sealed in one go, however large.
    session.set_buffer_limit(None);
    (tcp, Box::new(session))
}

/// `--tls-insecure`: any certificate for any name, while the handshake signatures are still
/// checked with the provider's algorithms (the connection does run TLS as a real one would).
#[derive(Debug)]
struct AnyCertificate(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_drop_the_port() {
        assert_eq!(
            server_name("localhost:9443").unwrap(),
            ServerName::try_from("localhost").unwrap()
        );
        assert!(matches!(
            server_name("[::1]:9443").unwrap(),
            ServerName::IpAddress(_)
        ));
        assert!(matches!(
            server_name("127.0.0.1").unwrap(),
            ServerName::IpAddress(_)
        ));
    }
}
