//! TLS set-up shared by every module that opens or accepts TLS connections.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod devcert;
pub mod reload;
pub mod verify;

use std::path::Path;
use std::sync::{Arc, Once};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::RootCertStore;

/// Makes `ring` the process-wide rustls crypto provider.
///
/// `webrtc` pulls in `ring` and other crates may enable `aws-lc-rs`; with two providers compiled in,
/// rustls refuses to guess and panics at the first config. Every entry point calls this first.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A certificate, key or CA file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The certificate does not name the host peers connect to.
    #[error(
        "the certificate in {path} is not valid for {host:?} ({reason}); make one with `ringer certs --domain {host}`"
    )]
    WrongName {
        /// The certificate file.
        path: String,
        /// The host it must name.
        host: String,
        /// rustls's account.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

fn file_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// Reads a PEM certificate chain (leaf first).
pub fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|error| file_error(path, error))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| file_error(path, error))?;
    if chain.is_empty() {
        return Err(file_error(path, "no certificate found"));
    }
    Ok(chain)
}

/// Reads a PEM private key (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|error| file_error(path, format!("no usable private key ({error})")))
}

/// Reads CA certificates into a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for certificate in load_chain(path)? {
        roots.add(certificate).map_err(|error| file_error(path, error))?;
    }
    Ok(roots)
}

/// Checks that the leaf certificate of `chain` is valid for `host` (DNS name or IP address).
pub fn check_name(chain: &[CertificateDer<'static>], host: &str, path: &Path) -> Result<(), TlsError> {
    let wrong =
        |reason: String| TlsError::WrongName { path: path.display().to_string(), host: host.to_owned(), reason };
    let leaf = chain.first().ok_or_else(|| wrong("empty chain".into()))?;
    let parsed = ParsedCertificate::try_from(leaf).map_err(|error| wrong(error.to_string()))?;
    let name = ServerName::try_from(host.to_owned()).map_err(|error| wrong(error.to_string()))?;
    rustls::client::verify_server_name(&parsed, &name).map_err(|error| wrong(error.to_string()))
}

/// A TLS 1.2/1.3 server config; with `client_ca`, peers must present a certificate it signed.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_ca: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = server_builder()?;
    let builder = match client_ca {
        Some(path) => {
            let verifier = WebPkiClientVerifier::builder(Arc::new(load_roots(path)?))
                .build()
                .map_err(|error| TlsError::Config(error.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(chain, key).map_err(|error| TlsError::Config(error.to_string()))?;
    Ok(Arc::new(config))
}

/// A TLS client config trusting `ca` (or the system's roots), optionally presenting a client
/// certificate. A certificate of `ca` that a server presents as its own is trusted as is
/// (a lab's self-signed certificate; see [`verify`]).
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let builder = client_builder(Arc::new(peer_verifier(ca)?))?;
    let config = match identity {
        Some((chain, key)) => {
            builder.with_client_auth_cert(chain, key).map_err(|error| TlsError::Config(error.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The check of servers ringer connects to: against `ca` (its roots, and any certificate of it
/// presented as is), or the system's roots.
fn peer_verifier(ca: Option<&Path>) -> Result<verify::ServerVerifier, TlsError> {
    let mut roots = RootCertStore::empty();
    let pinned = match ca {
        Some(path) => {
            let bundle = load_chain(path)?;
            // A leaf webpki cannot take as an anchor is still trusted as itself.
            let (_, unusable) = roots.add_parsable_certificates(bundle.iter().cloned());
            if unusable == bundle.len() {
                return Err(file_error(path, "no certificate in it can be read"));
            }
            bundle
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
            Vec::new()
        }
    };
    verify::ServerVerifier::new(roots, pinned).map_err(|error| TlsError::Config(error.to_string()))
}

/// A server config builder on ring with TLS 1.2 and 1.3, before its client authentication.
fn server_builder() -> Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>, TlsError> {
    install_crypto_provider();
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))
}

/// A client config builder on ring with TLS 1.2 and 1.3 checking servers with `verifier`.
fn client_builder(
    verifier: Arc<dyn rustls::client::danger::ServerCertVerifier>,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError> {
    install_crypto_provider();
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier))
}
