//! Checking the certificate of a server ringer connects to (the core for the TAS, the TAS for
//! the emulated core and the harness), and saying in words an operator can act on why one was
//! refused.
//!
//! A CA bundle may also hold a server's own certificate, as labs with a self-signed
//! certificate give it: such a certificate is trusted as itself (pinned), byte for byte, with
//! its dates and names still checked. webpki alone refuses it (`CaUsedAsEndEntity` when it is
//! marked as a CA, `UnknownIssuer` otherwise).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, OtherError, RootCertStore, SignatureScheme};
use x509_parser::extensions::GeneralName;

/// A server certificate that names itself as its issuer and is not in the CA bundle.
#[derive(Debug, thiserror::Error)]
#[error("self-signed certificate")]
pub struct SelfSigned;

/// Trusts the roots of a bundle, and any certificate of it presented as is.
#[derive(Debug)]
pub(crate) struct ServerVerifier {
    pinned: Vec<CertificateDer<'static>>,
    /// `None` when the bundle holds no certificate webpki takes as a root.
    webpki: Option<Arc<WebPkiServerVerifier>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerVerifier {
    /// A verifier trusting `roots`, and each of `pinned` as itself.
    pub(crate) fn new(roots: RootCertStore, pinned: Vec<CertificateDer<'static>>) -> Result<Self, Error> {
        let provider = rustls::crypto::ring::default_provider();
        let algorithms = provider.signature_verification_algorithms;
        let webpki = match roots.is_empty() {
            true => None,
            false => Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider))
                    .build()
                    .map_err(|error| Error::General(error.to_string()))?,
            ),
        };
        Ok(Self { pinned, webpki, algorithms })
    }
}

/// Whether `certificate` names itself as its issuer and its own key signed it.
fn is_self_signed(certificate: &CertificateDer<'_>) -> bool {
    x509_parser::parse_x509_certificate(certificate).is_ok_and(|(_, parsed)| {
        parsed.issuer().as_raw() == parsed.subject().as_raw() && parsed.verify_signature(None).is_ok()
    })
}

/// A name as webpki reports it (`DnsName("a.example")`, `IpAddress(192.0.2.1)`), as people write it.
fn plain_name(name: &str) -> &str {
    ["DnsName(", "IpAddress(", "UriName("]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix)?.strip_suffix(')'))
        .map(|inner| inner.trim_matches('"'))
        .unwrap_or(name)
}

/// Checks a pinned certificate's dates at `now` and its names against `server_name`.
fn check_pinned(certificate: &CertificateDer<'_>, server_name: &ServerName<'_>, now: UnixTime) -> Result<(), Error> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(certificate).map_err(|_| Error::from(CertificateError::BadEncoding))?;
    let time = |seconds: i64| UnixTime::since_unix_epoch(std::time::Duration::from_secs(seconds.max(0) as u64));
    let (not_before, not_after) = (parsed.validity().not_before.timestamp(), parsed.validity().not_after.timestamp());
    let now_seconds = now.as_secs() as i64;
    if now_seconds < not_before {
        return Err(CertificateError::NotValidYetContext { time: now, not_before: time(not_before) }.into());
    }
    if now_seconds > not_after {
        return Err(CertificateError::ExpiredContext { time: now, not_after: time(not_after) }.into());
    }
    // By hand rather than through webpki, which refuses to read a CA certificate as a leaf.
    let names: Vec<String> = match parsed.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                GeneralName::IPAddress(bytes) => ip_of(bytes).map(|ip| ip.to_string()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let wanted = server_name.to_str().to_ascii_lowercase();
    let matches = |name: &String| match name.strip_prefix("*.") {
        Some(domain) => wanted.split_once('.').is_some_and(|(label, rest)| !label.is_empty() && rest == domain),
        None => *name == wanted,
    };
    match names.iter().any(matches) {
        true => Ok(()),
        false => {
            Err(CertificateError::NotValidForNameContext { expected: server_name.to_owned(), presented: names }.into())
        }
    }
}

/// The address in a subjectAltName iPAddress entry.
fn ip_of(bytes: &[u8]) -> Option<std::net::IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(std::net::IpAddr::from),
        _ => None,
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.pinned.iter().any(|pinned| pinned.as_ref() == end_entity.as_ref()) {
            check_pinned(end_entity, server_name, now)?;
            return Ok(ServerCertVerified::assertion());
        }
        let verified = match &self.webpki {
            Some(webpki) => webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now),
            None => Err(CertificateError::UnknownIssuer.into()),
        };
        verified.map_err(|error| match error {
            // webpki says UnknownIssuer, or CaUsedAsEndEntity when the certificate is marked
            // as a CA too; "self-signed" is what the operator can act on.
            Error::InvalidCertificate(CertificateError::UnknownIssuer | CertificateError::Other(_))
                if is_self_signed(end_entity) =>
            {
                CertificateError::Other(OtherError(Arc::new(SelfSigned))).into()
            }
            other => other,
        })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, certificate, signature, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &CertificateDer<'_>,
        signature: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, certificate, signature, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// A date as people read it (RFC 3339, UTC).
fn date(time: UnixTime) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(time.as_secs());
    humantime::format_rfc3339_seconds(time).to_string()
}

/// Why a TLS handshake failed, in words an operator can act on.
pub fn explain(error: &Error) -> String {
    const PIN: &str = "pass this certificate itself with --ca (or sbc.tas_ca_file) to trust it as is";
    let certificate = match error {
        Error::InvalidCertificate(certificate) => certificate,
        Error::AlertReceived(alert) => {
            return format!(
                "the server ended the handshake with the alert {alert:?} (it may want a client certificate)"
            )
        }
        Error::PeerIncompatible(why) => return format!("no TLS version or cipher suite in common ({why:?})"),
        Error::NoCertificatesPresented => return "the server presented no certificate".into(),
        other => return other.to_string(),
    };
    match certificate {
        CertificateError::Expired => "the server's certificate has expired".into(),
        CertificateError::ExpiredContext { time, not_after } => {
            format!("the server's certificate expired on {} (now {})", date(*not_after), date(*time))
        }
        CertificateError::NotValidYet => "the server's certificate is not valid yet".into(),
        CertificateError::NotValidYetContext { time, not_before } => {
            format!("the server's certificate is valid from {} only (now {})", date(*not_before), date(*time))
        }
        CertificateError::NotValidForName => "the server's certificate does not name the host connected to".into(),
        CertificateError::NotValidForNameContext { expected, presented } => format!(
            "the server's certificate does not name \"{}\" (it names {})",
            expected.to_str(),
            match presented.is_empty() {
                true => "nothing usable".to_owned(),
                false => presented.iter().map(|name| plain_name(name)).collect::<Vec<_>>().join(", "),
            }
        ),
        CertificateError::UnknownIssuer => {
            "the server's certificate is signed by an issuer the CA bundle does not hold (give the issuing CA)".into()
        }
        CertificateError::BadSignature => "the server's certificate has a signature that does not verify".into(),
        CertificateError::Revoked => "the server's certificate is revoked".into(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "the server's certificate is not for TLS servers (extended key usage)".into()
        }
        CertificateError::Other(OtherError(inner)) if inner.downcast_ref::<SelfSigned>().is_some() => {
            format!("the server's certificate is self-signed and not in the CA bundle: {PIN}")
        }
        CertificateError::Other(OtherError(inner))
            if matches!(inner.downcast_ref::<webpki::Error>(), Some(webpki::Error::CaUsedAsEndEntity)) =>
        {
            format!(
                "the server presented a CA certificate (basicConstraints CA:TRUE) as its own: it should serve a \
                 certificate that CA signed, or {PIN}"
            )
        }
        other => format!("the server's certificate was refused: {other:?}"),
    }
}

/// Why an I/O error of a TLS connection happened: the handshake's failure in words when it
/// was one, else the error as it reads.
pub fn explain_io(error: &std::io::Error) -> String {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(tls) => format!("TLS handshake failed: {}", explain(tls)),
        None => error.to_string(),
    }
}

/// Why a TLS handshake failed, as a metric label: `bad_certificate` (refused, expired, wrong
/// name, unknown issuer), `no_certificate` (a client certificate required and not given),
/// `alert` (the peer refused ours), `incompatible` (no version or cipher suite in common),
/// `protocol` (not TLS, or TLS broken), `io` (the connection failed or closed).
pub fn failure_reason(error: &std::io::Error) -> &'static str {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(Error::InvalidCertificate(_)) => "bad_certificate",
        Some(Error::NoCertificatesPresented) => "no_certificate",
        Some(Error::AlertReceived(_)) => "alert",
        Some(Error::PeerIncompatible(_)) => "incompatible",
        Some(_) => "protocol",
        None if error.kind() == std::io::ErrorKind::InvalidData => "protocol",
        None if error.kind() == std::io::ErrorKind::TimedOut => "timeout",
        None => "io",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str], ca: bool) -> CertificateDer<'static> {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verify(verifier: &ServerVerifier, certificate: &CertificateDer<'_>, name: &str) -> Result<(), Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(certificate, &[], &name, &[], UnixTime::now()).map(|_| ())
    }

    #[test]
    fn a_pinned_certificate_is_trusted_as_itself_with_its_names_checked() {
        crate::install_crypto_provider();
        for ca in [false, true] {
            let certificate = self_signed(&["localhost", "127.0.0.1"], ca);
            let verifier = ServerVerifier::new(RootCertStore::empty(), vec![certificate.clone()]).unwrap();
            verify(&verifier, &certificate, "localhost").unwrap();
            verify(&verifier, &certificate, "127.0.0.1").unwrap();
            let wrong = verify(&verifier, &certificate, "tas.example.com").unwrap_err();
            assert!(
                explain(&wrong).contains("does not name \"tas.example.com\" (it names localhost, 127.0.0.1)"),
                "{}",
                explain(&wrong)
            );
            // Not pinned, the same certificate is named for what it is.
            let other = ServerVerifier::new(RootCertStore::empty(), vec![self_signed(&["localhost"], ca)]).unwrap();
            let refused = verify(&other, &certificate, "localhost").unwrap_err();
            assert!(explain(&refused).contains("self-signed and not in the CA bundle"), "{}", explain(&refused));
        }
    }
}
