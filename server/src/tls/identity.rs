//! The served certificate chain and key: read from `--tls-cert`/`--tls-key` at start (a bad
//! file stops the server) and again on SIGHUP (a bad file keeps the pair being served), handed
//! to every new handshake through [`CertStore`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Why a certificate or key file cannot be served: the file, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{flag} {}: {reason}", path.display())]
pub struct TlsFileError {
    /// `--tls-cert` or `--tls-key`.
    pub flag: &'static str,
    /// The file.
    pub path: PathBuf,
    /// What is wrong (unreadable, no PEM block, unsupported key, not the certificate's key).
    pub reason: String,
}

/// Where the pair is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM chain, leaf first (`--tls-cert`).
    pub cert: PathBuf,
    /// PEM private key, PKCS#8, PKCS#1 (RSA) or SEC1 (EC) (`--tls-key`).
    pub key: PathBuf,
}

/// A pair read and checked: the certified key rustls serves and the leaf's not-after.
struct Identity {
    /// Chain and signing key.
    certified: Arc<CertifiedKey>,
    /// The leaf certificate's notAfter, in seconds since the Unix epoch.
    not_after: i64,
}

/// Reads and checks the pair in `files` with `provider`'s key loader.
fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<Identity, TlsFileError> {
    let cert_error = |reason: String| TlsFileError {
        flag: "--tls-cert",
        path: files.cert.clone(),
        reason,
    };
    let key_error = |reason: String| TlsFileError {
        flag: "--tls-key",
        path: files.key.clone(),
        reason,
    };
    let pem = read(&files.cert).map_err(cert_error)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| cert_error(format!("not a PEM certificate chain ({err})")))?;
    let Some(leaf) = chain.first() else {
        return Err(cert_error("no CERTIFICATE block in the file".into()));
    };
    let not_after = x509_parser::parse_x509_certificate(leaf)
        .map_err(|err| cert_error(format!("the first certificate does not parse ({err})")))?
        .1
        .validity()
        .not_after
        .timestamp();
    let pem = read(&files.key).map_err(key_error)?;
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| key_error(format!("no PEM private key in the file ({err})")))?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|err| key_error(format!("unsupported private key ({err})")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|err| {
        key_error(format!(
            "not the key of {}'s first certificate ({err})",
            files.cert.display()
        ))
    })?;
    Ok(Identity {
        certified: Arc::new(certified),
        not_after,
    })
}

/// The file's bytes, or why not (the reason names the OS error).
fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("cannot read the file ({err})"))
}

/// The pair new handshakes get, replaced whole on reload (open connections keep theirs).
pub struct CertStore {
    /// Where the pair is read from.
    files: TlsFiles,
    /// Loads keys (the same provider the handshakes run on).
    provider: Arc<CryptoProvider>,
    /// The pair being served.
    current: RwLock<Arc<CertifiedKey>>,
    /// Its leaf's notAfter (`ringcast_tls_cert_expiry_seconds`).
    not_after: AtomicI64,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("files", &self.files)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads the pair in `files`; fails naming the file and what is wrong.
    pub fn open(files: TlsFiles, provider: Arc<CryptoProvider>) -> Result<Self, TlsFileError> {
        let identity = load(&files, &provider)?;
        Ok(CertStore {
            files,
            provider,
            current: RwLock::new(identity.certified),
            not_after: AtomicI64::new(identity.not_after),
        })
    }

    /// Reads the files again and serves the new pair to new handshakes; on error the pair
    /// being served stays.
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let identity = load(&self.files, &self.provider)?;
        // A poisoned lock only means a reader panicked; the Arc inside is whole.
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = identity.certified;
        self.not_after.store(identity.not_after, Ordering::Relaxed);
        Ok(())
    }

    /// The served leaf's notAfter, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after.load(Ordering::Relaxed)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let current = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(Arc::clone(&current))
    }
}
