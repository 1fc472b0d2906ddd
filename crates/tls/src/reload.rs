//! TLS material that can be replaced while the process runs: the server's certificates (several,
//! chosen by SNI), the CA that client certificates must chain to, and the CA bundle servers
//! ringer connects to are checked against. rustls asks for each of them per handshake, so a
//! reload changes what new connections get and leaves established ones as they are.
//!
//! A reload is all or nothing: every file is read and checked first, and only when all of them
//! are usable is the running set replaced. A bad file leaves the old set in place.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};
use x509_parser::extensions::GeneralName;

use crate::{check_name, file_error, load_chain, load_key, load_roots, TlsError};

/// A certificate chain and its key, as files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    /// The PEM chain, leaf first.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// Every file of a TLS set-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server's certificates: the first is served to clients that send no name (SNI) or a
    /// name none of them has; the others to clients naming one of their names.
    pub certificates: Vec<CertificateFiles>,
    /// The host the first certificate must name (what peers verify); `None`: not checked.
    pub required_name: Option<String>,
    /// Clients must present a certificate this CA bundle signed (mutual TLS).
    pub client_ca: Option<PathBuf>,
    /// The CA bundle servers ringer connects to are checked against; `None`: the system's roots.
    pub peer_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file named, for noticing changes.
    fn paths(&self) -> Vec<&Path> {
        let mut paths: Vec<&Path> =
            self.certificates.iter().flat_map(|files| [files.cert.as_path(), files.key.as_path()]).collect();
        paths.extend(self.client_ca.as_deref());
        paths.extend(self.peer_ca.as_deref());
        paths
    }
}

/// What a loaded certificate is valid for, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The file it came from.
    pub file: PathBuf,
    /// Its DNS names and IP addresses (subjectAltName).
    pub names: Vec<String>,
    /// When it expires.
    pub not_after: SystemTime,
}

/// The server certificates in use, one chosen per handshake by the name the client asks for.
#[derive(Debug)]
struct CertificateSet {
    default: Arc<CertifiedKey>,
    /// (lower-case name or `*.suffix`, certificate), in the order configured.
    named: Vec<(String, Arc<CertifiedKey>)>,
}

impl CertificateSet {
    fn choose(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(str::to_ascii_lowercase) else { return self.default.clone() };
        let exact = self.named.iter().find(|(pattern, _)| *pattern == name);
        let wildcard = || {
            let (_, parent) = name.split_once('.')?;
            self.named.iter().find(|(pattern, _)| pattern.strip_prefix("*.") == Some(parent))
        };
        exact.or_else(wildcard).map_or_else(|| self.default.clone(), |(_, key)| key.clone())
    }
}

/// What is in use, swapped whole by a reload: every handshake reads one consistent set.
struct InUse {
    certificates: Option<CertificateSet>,
    client: Option<Arc<dyn ClientCertVerifier>>,
    /// The client CAs' names, sent in CertificateRequest so that clients with several
    /// certificates pick the right one. Leaked once per load: rustls wants them borrowed for
    /// as long as the verifier lives, and reloads are rare operator actions.
    client_hints: &'static [DistinguishedName],
    peer: Arc<dyn ServerCertVerifier>,
    summaries: Vec<CertificateSummary>,
}

impl std::fmt::Debug for InUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InUse").field("summaries", &self.summaries).finish_non_exhaustive()
    }
}

/// The set in use, shared by the resolver, the verifiers and the reloader.
type Shared = Arc<RwLock<Arc<InUse>>>;

/// Chooses the server certificate by SNI from the set in use.
#[derive(Debug)]
struct ServerCertificates(Shared);

impl ResolvesServerCert for ServerCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let in_use = self.0.read().clone();
        in_use.certificates.as_ref().map(|set| set.choose(hello.server_name()))
    }
}

/// Delegates to the client certificate verifier in use.
#[derive(Debug)]
struct ClientVerifier(Shared);

impl ClientVerifier {
    fn current(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        self.0.read().client.clone().ok_or_else(|| Error::General("no client CA in use".into()))
    }
}

impl ClientCertVerifier for ClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.0.read().client_hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.current()?.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current()?.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().map(|verifier| verifier.supported_verify_schemes()).unwrap_or_default()
    }
}

/// Delegates to the server certificate verifier in use (for connections ringer opens).
#[derive(Debug)]
struct PeerVerifier(Shared);

impl PeerVerifier {
    fn current(&self) -> Arc<dyn ServerCertVerifier> {
        self.0.read().peer.clone()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.current().verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A file's size and modification time, to notice that it changed.
type Stamp = Option<(u64, SystemTime)>;

fn stamp(path: &Path) -> Stamp {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// The TLS set-up of an endpoint, replaceable while it runs: server and client configs built
/// once, whose certificates and CAs [`ReloadableTls::reload`] swaps.
#[derive(Debug)]
pub struct ReloadableTls {
    files: TlsFiles,
    in_use: Shared,
    /// One reload at a time, with the stamps of the files it read: a slower reload never
    /// puts older files in use after a newer one.
    reloading: Mutex<Vec<Stamp>>,
}

impl ReloadableTls {
    /// Reads and checks every file of `files`.
    pub fn load(files: TlsFiles) -> Result<Self, TlsError> {
        crate::install_crypto_provider();
        let stamps = files.paths().into_iter().map(stamp).collect();
        let in_use = load(&files)?;
        Ok(Self { files, in_use: Arc::new(RwLock::new(Arc::new(in_use))), reloading: Mutex::new(stamps) })
    }

    /// Reads every file again and, when all are usable, puts them in use for the next
    /// handshakes, all at once; otherwise keeps what is in use and says why. Blocks on the
    /// files: call it off the async runtime.
    pub fn reload(&self) -> Result<Vec<CertificateSummary>, TlsError> {
        let mut stamps = self.reloading.lock();
        // Noted before reading: a file changed while being read is read again next time.
        *stamps = self.files.paths().into_iter().map(stamp).collect();
        let loaded = load(&self.files)?;
        let summaries = loaded.summaries.clone();
        *self.in_use.write() = Arc::new(loaded);
        Ok(summaries)
    }

    /// Whether a file changed (size or modification time) since it was last read.
    pub fn files_changed(&self) -> bool {
        let now: Vec<Stamp> = self.files.paths().into_iter().map(stamp).collect();
        *self.reloading.lock() != now
    }

    /// The server certificates in use.
    pub fn certificates(&self) -> Vec<CertificateSummary> {
        self.in_use.read().summaries.clone()
    }

    /// A TLS 1.2/1.3 server config serving the certificates in use (`None` without any).
    /// With client certificates required, sessions are never resumed: a resumed session would
    /// skip the check against a client CA replaced since.
    pub fn server_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
        if self.files.certificates.is_empty() {
            return Ok(None);
        }
        let builder = crate::server_builder()?;
        let mutual = self.files.client_ca.is_some();
        let builder = match mutual {
            true => builder.with_client_cert_verifier(Arc::new(ClientVerifier(self.in_use.clone()))),
            false => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(Arc::new(ServerCertificates(self.in_use.clone())));
        if mutual {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        Ok(Some(Arc::new(config)))
    }

    /// A TLS client config checking servers against the peer CA bundle in use.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        let verifier = Arc::new(PeerVerifier(self.in_use.clone()));
        Ok(Arc::new(crate::client_builder(verifier)?.with_no_client_auth()))
    }
}

fn load(files: &TlsFiles) -> Result<InUse, TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    let mut summaries = Vec::new();
    let mut keys = Vec::new();
    for (index, certificate) in files.certificates.iter().enumerate() {
        let chain = load_chain(&certificate.cert)?;
        if index == 0 {
            if let Some(host) = &files.required_name {
                check_name(&chain, host, &certificate.cert)?;
            }
        }
        let summary = summarise(&chain, &certificate.cert)?;
        let key = load_key(&certificate.key)?;
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|error| {
            file_error(&certificate.key, format!("does not go with {} ({error})", certificate.cert.display()))
        })?;
        keys.push((summary.names.clone(), Arc::new(certified)));
        summaries.push(summary);
    }
    let certificates = keys.first().map(|(_, default)| CertificateSet {
        default: default.clone(),
        named: keys
            .iter()
            .flat_map(|(names, key)| names.iter().map(|name| (name.to_ascii_lowercase(), key.clone())))
            .collect(),
    });
    let client: Option<Arc<dyn ClientCertVerifier>> = match &files.client_ca {
        Some(path) => Some(
            WebPkiClientVerifier::builder(Arc::new(load_roots(path)?))
                .build()
                .map_err(|error| file_error(path, error))?,
        ),
        None => None,
    };
    let peer: Arc<dyn ServerCertVerifier> = Arc::new(crate::peer_verifier(files.peer_ca.as_deref())?);
    let client_hints: &'static [DistinguishedName] = match &client {
        Some(verifier) => Box::leak(verifier.root_hint_subjects().to_vec().into_boxed_slice()),
        None => &[],
    };
    Ok(InUse { certificates, client, client_hints, peer, summaries })
}

/// The names and expiry of `chain`'s leaf.
fn summarise(chain: &[CertificateDer<'static>], path: &Path) -> Result<CertificateSummary, TlsError> {
    let leaf = chain.first().ok_or_else(|| file_error(path, "no certificate found"))?;
    let (_, parsed) =
        x509_parser::parse_x509_certificate(leaf).map_err(|error| file_error(path, format!("unreadable ({error})")))?;
    let mut names: Vec<String> = parsed
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|names| {
            names
                .value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(name) => Some((*name).to_owned()),
                    GeneralName::IPAddress(bytes) => match bytes.len() {
                        4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| std::net::IpAddr::from(b).to_string()),
                        _ => None,
                    },
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names.extend(parsed.subject().iter_common_name().filter_map(|name| name.as_str().ok().map(str::to_owned)));
    }
    let seconds = u64::try_from(parsed.validity().not_after.timestamp()).unwrap_or(0);
    Ok(CertificateSummary {
        file: path.to_owned(),
        names,
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
    })
}
