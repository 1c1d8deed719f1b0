//! A `wss://` ringcast for loadgen's TLS tests: a throwaway CA and certificate
//! (`scripts/tls-cert.sh`), and ringcast serving them itself.

use std::path::{Path, PathBuf};

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

/// A ringcast serving `wss://` with `files`' certificate (its own TLS, `--tls-cert`).
pub fn start_tls_ringcast(files: &TlsFiles) -> ringcast::Server {
    super::start_ringcast(&[
        "--tls-cert",
        files.cert.to_str().expect("UTF-8 path"),
        "--tls-key",
        files.key.to_str().expect("UTF-8 path"),
    ])
}
