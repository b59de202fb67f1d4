//! TLS: a rustls acceptor from PEM certificate and key files.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;

/// Builds a TLS server configuration from a PEM certificate chain and a PEM private key (PKCS#8, PKCS#1 or SEC1).
///
/// # Errors
/// When a file cannot be read or holds no usable certificate or key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<ServerConfig>> {
    let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut read(cert, "tls.cert")?.as_slice())
        .collect::<Result<_, _>>()
        .with_context(|| format!("tls.cert {} is not a PEM certificate chain", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("tls.cert {} holds no certificate", cert.display());
    }
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut read(key, "tls.key")?.as_slice())
        .with_context(|| format!("tls.key {} is not a PEM private key", key.display()))?
        .with_context(|| format!("tls.key {} holds no private key", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.cert and tls.key do not form a usable pair")?;
    // WebSockets need HTTP/1.1's upgrade.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {key} {}", path.display()))
}
