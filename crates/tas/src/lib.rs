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
    /// The config enables no SIP listener.
    #[error("no SIP listener configured: set sip.tls_listen (and for lab use sip.tcp_listen / sip.udp_listen)")]
    NoListener,
}

/// The `Server` header value.
pub fn server_header() -> String {
    format!("ringer/{}", env!("CARGO_PKG_VERSION"))
}

/// Builds the endpoint's settings, checking the certificate against `tas.sip_uri`'s host.
pub fn endpoint_config(config: &ServeConfig) -> Result<EndpointConfig, TasError> {
    let sip = &config.sip;
    if sip.tls_listen.is_none() && sip.tcp_listen.is_none() && sip.udp_listen.is_none() {
        return Err(TasError::NoListener);
    }
    let tls = match (sip.tls_listen, &sip.cert_file, &sip.key_file) {
        (Some(addr), Some(cert), Some(key)) => {
            let chain = tls::load_chain(cert)?;
            // The core verifies the TAS against the host it registered: refuse to start otherwise.
            tls::check_name(&chain, config.tas.sip_uri.host(), cert)?;
            let key = tls::load_key(key)?;
            Some((addr, tls::server_config(chain, key, sip.client_ca_file.as_deref())?))
        }
        _ => None,
    };
    Ok(EndpointConfig {
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
            tls: Some(tls::client_config(config.sip.core_ca_file.as_deref(), None)?),
            core: match &sip.core_uri {
                Some(uri) => Some(
                    sip::message::Uri::parse(uri).map_err(|source| TasError::CoreUri { uri: uri.clone(), source })?,
                ),
                None => None,
            },
            dns_server: None,
        },
    })
}

/// The SIP side of a running TAS.
pub struct Tas {
    /// The listeners, transactions and dialogs.
    pub endpoint: Endpoint,
    /// The subscribers' behaviours and the record of calls.
    pub router: Arc<CallRouter>,
    /// The TAS's host (of `tas.sip_uri`), for addresses in calls it places.
    host: String,
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
        .merge(settings::router(mailboxes.clone()))
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
    let endpoint_config = endpoint_config(config)?;
    let router = Arc::new(CallRouter::new(config, records, mailboxes)?);
    let endpoint = endpoint::start(endpoint_config, Arc::new(RouterHandler(router.clone()))).await?;
    Ok(Tas { endpoint, router, host: config.tas.sip_uri.host().to_owned() })
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
