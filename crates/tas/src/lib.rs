//! The TAS: its configuration, the call handling (routing by prefix, behaviours, the B2BUA's
//! leg 3, the apps) and the SIP endpoint assembled from them. The registrar is started beside it
//! by the command line.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod call;
pub mod config;
pub mod feature_codes;
mod html;
pub mod leases;
pub mod mailbox;
pub mod selfcare;
pub mod settings;
pub mod signup;
pub mod subscribers;
pub mod tls_reload;
pub mod voicemail;
pub mod webhook;

use std::sync::Arc;

use thiserror::Error;

use crate::call::records::RecordWriter;
use crate::call::router::RouterHandler;
use crate::call::CallRouter;
use crate::config::ServeConfig;
use sip::config::UaConfig;
use sip::endpoint::{self, Endpoint, EndpointConfig};
use sip::transport::policy::PeerPolicy;
use sip::transport::stream::StreamLimits;
use tls::reload::ReloadableTls;
use tls::TlsError;

/// Why the TAS could not start.
#[derive(Debug, Error)]
pub enum TasError {
    /// A certificate, key or CA is unusable, or does not name the registered host.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be opened.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// A media file or the mailbox is unusable.
    #[error(transparent)]
    Router(#[from] call::router::RouterError),
    /// `sip.core_uri` does not parse (the config check lets no such file through).
    #[error("sip.core_uri {uri:?} is not a URI")]
    CoreUri {
        /// The value.
        uri: String,
        /// Why it does not parse.
        #[source]
        source: sip::message::uri::BadUri,
    },
    /// `[hep]` cannot be used.
    #[error("{0}")]
    Hep(String),
    /// The config enables no SIP listener.
    #[error("no SIP listener configured: set sip.tls_listen (and for lab use sip.tcp_listen / sip.udp_listen)")]
    NoListener,
}

/// The `Server` header value.
pub fn server_header() -> String {
    format!("ringer/{}", env!("CARGO_PKG_VERSION"))
}

/// The TLS files of `config`: the certificates (`sip.cert_file` first, then each
/// `[[sip.certificate]]`, served by name), the client CA and the core's CA bundle.
pub fn tls_files(config: &ServeConfig) -> tls::reload::TlsFiles {
    use tls::reload::CertificateFiles;
    let sip = &config.sip;
    let default = match (&sip.cert_file, &sip.key_file) {
        (Some(cert), Some(key)) if sip.tls_listen.is_some() => {
            Some(CertificateFiles { cert: cert.clone(), key: key.clone() })
        }
        _ => None,
    };
    let named =
        sip.certificates.iter().map(|c| CertificateFiles { cert: c.cert_file.clone(), key: c.key_file.clone() });
    let certificates: Vec<CertificateFiles> = match default {
        Some(default) => std::iter::once(default).chain(named).collect(),
        None => Vec::new(),
    };
    tls::reload::TlsFiles {
        certificates,
        // The core verifies the TAS against the host it registered: refuse to start otherwise.
        required_name: Some(config.tas.sip_uri.host().to_owned()),
        client_ca: sip.client_ca_file.clone(),
        peer_ca: sip.core_ca_file.clone(),
    }
}

/// Builds the endpoint's settings and the TLS set-up under them, checking the certificate
/// against `tas.sip_uri`'s host.
pub fn endpoint_config(config: &ServeConfig) -> Result<(EndpointConfig, Arc<ReloadableTls>), TasError> {
    let sip = &config.sip;
    if sip.tls_listen.is_none() && sip.tcp_listen.is_none() && sip.udp_listen.is_none() {
        return Err(TasError::NoListener);
    }
    let reloadable = Arc::new(ReloadableTls::load(tls_files(config))?);
    let tls = match (sip.tls_listen, reloadable.server_config()?) {
        (Some(addr), Some(server)) => Some((addr, server)),
        _ => None,
    };
    let endpoint = EndpointConfig {
        tls,
        tcp: sip.tcp_listen,
        udp: sip.udp_listen,
        policy: PeerPolicy {
            allow: sip.allow.clone(),
            max_connections: sip.max_connections,
            max_connections_per_peer: sip.max_connections_per_peer,
        },
        limits: StreamLimits {
            message_timeout: sip.message_timeout,
            idle_timeout: sip.idle_timeout,
            ..StreamLimits::default()
        },
        ua: sip.extensions().apply(UaConfig::new(
            sip.contact_host.clone().unwrap_or_else(|| config.tas.sip_uri.host().to_owned()),
            server_header(),
        )),
        outbound: sip::outbound::OutboundSettings {
            tls: Some(reloadable.client_config()?),
            core: match &sip.core_uri {
                Some(uri) => Some(
                    sip::message::Uri::parse(uri).map_err(|source| TasError::CoreUri { uri: uri.clone(), source })?,
                ),
                None => None,
            },
            dns_server: None,
        },
        hep: config.hep.settings().map_err(TasError::Hep)?,
    };
    Ok((endpoint, reloadable))
}

/// The SIP side of a running TAS.
pub struct Tas {
    /// The listeners, transactions and dialogs.
    pub endpoint: Endpoint,
    /// The subscribers' behaviours and the record of calls.
    pub router: Arc<CallRouter>,
    /// The TAS's host (of `tas.sip_uri`), for addresses in calls it places.
    host: String,
    /// The certificates and CAs in use, to reload.
    pub tls: tls_reload::TlsReloader,
}

/// The HTTP API over `mailboxes` and their store: the voicemail API
/// (`/api/v1/mailboxes/...`), the subscribers' settings (`/api/v1/subscribers/...`), the
/// self-care page (`/me`, for the subscribers of `router`, first-login PINs by `pin_sms`), and
/// with `signup` its pages (`/signup...`) and status (`/api/v1/signups`).
pub fn http_api(
    mailboxes: mailbox::Mailboxes,
    router: Arc<CallRouter>,
    pin_sms: Option<selfcare::PinSms>,
    signup: Option<&signup::Signup>,
) -> axum::Router {
    let api = mailbox::api::router(mailboxes.clone())
        .merge(settings::api::router(mailboxes.clone()))
        .merge(selfcare::router(mailboxes, router, pin_sms));
    match signup {
        Some(signup) => api.merge(signup.router()),
        None => api,
    }
}

/// Starts the SIP side of the TAS.
pub async fn start_sip(config: &ServeConfig) -> Result<Tas, TasError> {
    start_sip_with(config, None, None).await
}

/// As [`start_sip`], recording every call through `records` (into the store) and serving
/// the `mailboxes` kept there (greetings, quota, the owner's menu).
pub async fn start_sip_with(
    config: &ServeConfig,
    records: Option<RecordWriter>,
    mailboxes: Option<mailbox::Mailboxes>,
) -> Result<Tas, TasError> {
    let (endpoint_config, reloadable) = endpoint_config(config)?;
    let router = Arc::new(CallRouter::new(config, records, mailboxes)?);
    let endpoint = endpoint::start(endpoint_config, Arc::new(RouterHandler(router.clone()))).await?;
    let tls = tls_reload::TlsReloader::new(reloadable);
    Ok(Tas { endpoint, router, host: config.tas.sip_uri.host().to_owned(), tls })
}

/// Why the TAS could not place a call.
#[derive(Debug, Error)]
pub enum PlaceCallError {
    /// `sip.core_uri` is not set: the TAS does not know where the core is.
    #[error("sip.core_uri is not set: the TAS needs the core's SIP address to place calls")]
    NoCore,
    /// The core could not be reached.
    #[error(transparent)]
    Connect(#[from] sip::outbound::ConnectError),
    /// The INVITE could not be sent.
    #[error(transparent)]
    Request(#[from] sip::client::RequestError),
}

impl Tas {
    /// Places a call from the TAS to `to` through the core (route type Ingress), shown as coming
    /// from `from`, offering `sdp`. Follow it with [`sip::uac::OutgoingCall::next`].
    pub async fn call(
        &self,
        to: &domain::types::Msisdn,
        from: &domain::types::Msisdn,
        sdp: bytes::Bytes,
    ) -> Result<sip::uac::OutgoingCall, PlaceCallError> {
        use sip::message::header::NameAddr;
        use sip::message::Uri;
        let ua = self.endpoint.user_agent();
        let core = ua.outbound().core().ok_or(PlaceCallError::NoCore)?.clone();
        let core_host = match &core {
            Uri::Sip(sip) => sip.host.clone(),
            _ => return Err(PlaceCallError::NoCore),
        };
        let uri = |number: &str, host: &str| Uri::parse(&format!("sip:{number}@{host};user=phone"));
        let (Ok(request_uri), Ok(from_uri)) = (uri(to.as_str(), &core_host), uri(from.as_str(), &self.host)) else {
            return Err(PlaceCallError::NoCore);
        };
        let spec = sip::uac::InviteSpec {
            to: NameAddr { display_name: None, uri: request_uri.clone(), params: Default::default() },
            from: NameAddr { display_name: None, uri: from_uri, params: Default::default() },
            uri: request_uri,
            max_forwards: 70,
            headers: Vec::new(),
            body: sdp,
            offer_100rel: true,
        };
        let link = ua.outbound().link_to(&core).await?;
        Ok(ua.invite(spec, link)?)
    }
}
