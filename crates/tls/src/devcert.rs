//! Development certificates: a private CA and a server certificate it signs, so that peers
//! verify the TAS (or the emulated core) against that CA instead of turning verification off.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use thiserror::Error;

/// Why certificates could not be made or written.
#[derive(Debug, Error)]
pub enum DevCertError {
    /// A name is not usable in a certificate.
    #[error("cannot make a certificate for {name:?}: {reason}")]
    Name {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A development CA and a server certificate signed by it, all PEM.
#[derive(Clone)]
pub struct DevCertificates {
    /// The CA certificate peers trust.
    pub ca_cert_pem: String,
    /// The server certificate.
    pub server_cert_pem: String,
    /// The server's private key.
    pub server_key_pem: String,
    /// The CA's own key and name, to issue more certificates (never written to disk).
    ca_key_pem: String,
    ca_name: String,
}

impl std::fmt::Debug for DevCertificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCertificates").finish_non_exhaustive()
    }
}

/// The first of `names`, which certificates are named after; there must be one.
fn first_name(names: &[String]) -> Result<&String, DevCertError> {
    names
        .first()
        .ok_or_else(|| DevCertError::Name { name: String::new(), reason: "at least one name is needed".into() })
}

/// The CA's settings: its name after `first`, signing certificates only.
fn ca_params(first: &str) -> Result<CertificateParams, DevCertError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.distinguished_name.push(DnType::CommonName, format!("ringer development CA for {first}"));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    Ok(params)
}

/// A server certificate for every name of `names` (DNS names and IP addresses alike), and its key.
fn server_certificate(names: &[String], issuer: &Issuer<'_, KeyPair>) -> Result<(String, String), DevCertError> {
    let first = first_name(names)?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, first.clone());
    for name in names {
        let san =
            match name.parse::<IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(name.clone().try_into().map_err(|error: rcgen::Error| {
                    DevCertError::Name { name: name.clone(), reason: error.to_string() }
                })?),
            };
        params.subject_alt_names.push(san);
    }
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate()?;
    let certificate = params.signed_by(&key, issuer)?;
    Ok((certificate.pem(), key.serialize_pem()))
}

/// Makes a CA named after the first name, and a server certificate for every name (DNS names
/// and IP addresses alike), valid for server and client authentication.
pub fn generate(names: &[String]) -> Result<DevCertificates, DevCertError> {
    let first = first_name(names)?;
    let params = ca_params(first)?;
    let ca_key = KeyPair::generate()?;
    let ca_cert = params.self_signed(&ca_key)?;
    let ca_key_pem = ca_key.serialize_pem();
    let (server_cert_pem, server_key_pem) = server_certificate(names, &Issuer::new(params, ca_key))?;
    Ok(DevCertificates {
        ca_cert_pem: ca_cert.pem(),
        server_cert_pem,
        server_key_pem,
        ca_key_pem,
        ca_name: first.clone(),
    })
}

impl DevCertificates {
    /// A new server certificate and key for `names` from the same CA (a renewal, or a second
    /// name served by SNI).
    pub fn issue(&self, names: &[String]) -> Result<DevCertificates, DevCertError> {
        let issuer = Issuer::new(ca_params(&self.ca_name)?, KeyPair::from_pem(&self.ca_key_pem)?);
        let (server_cert_pem, server_key_pem) = server_certificate(names, &issuer)?;
        Ok(DevCertificates { server_cert_pem, server_key_pem, ..self.clone() })
    }
}

/// Paths of written certificate files.
#[derive(Debug, Clone)]
pub struct DevCertificateFiles {
    /// `ca.pem`.
    pub ca_cert: PathBuf,
    /// `server.pem`.
    pub server_cert: PathBuf,
    /// `server.key` (mode 0600).
    pub server_key: PathBuf,
}

impl DevCertificates {
    /// Writes `ca.pem`, `server.pem` and `server.key` into `dir`, the key readable by its owner only.
    pub fn write_to(&self, dir: &Path) -> Result<DevCertificateFiles, DevCertError> {
        std::fs::create_dir_all(dir).map_err(|source| DevCertError::Write { path: dir.to_owned(), source })?;
        let files = DevCertificateFiles {
            ca_cert: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        write_file(&files.ca_cert, &self.ca_cert_pem, 0o644)?;
        write_file(&files.server_cert, &self.server_cert_pem, 0o644)?;
        write_file(&files.server_key, &self.server_key_pem, 0o600)?;
        Ok(files)
    }
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), DevCertError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |source| DevCertError::Write { path: path.to_owned(), source };
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temporary)
        .map_err(error)?;
    file.write_all(contents.as_bytes()).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&temporary, path).map_err(error)
}

/// The files in `dir` if all three exist, else a new CA and certificate for `names` written there.
pub fn ensure(dir: &Path, names: &[String]) -> Result<DevCertificateFiles, DevCertError> {
    let files = DevCertificateFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    if files.ca_cert.exists() && files.server_cert.exists() && files.server_key.exists() {
        return Ok(files);
    }
    generate(names)?.write_to(dir)
}
