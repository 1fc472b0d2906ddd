//! The TAS assembled from its config: the SIP endpoint with its call handling. The registrar is
//! started beside it by the command line.

use std::sync::Arc;

use thiserror::Error;

use crate::call::router::RouterHandler;
use crate::call::CallRouter;
use crate::config::serve::ServeConfig;
use crate::sip::endpoint::{self, Endpoint, EndpointConfig};
use crate::sip::transaction::Timers;
use crate::sip::transport::policy::PeerPolicy;
use crate::sip::transport::stream::StreamLimits;
use crate::sip::ua::UaConfig;
use crate::tls::TlsError;

/// Why the TAS could not start.
#[derive(Debug, Error)]
pub enum TasError {
    /// A certificate, key or CA is unusable, or does not name the registered host.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be opened.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
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
            let chain = crate::tls::load_chain(cert)?;
            // The core verifies the TAS against the host it registered: refuse to start otherwise.
            crate::tls::check_name(&chain, config.tas.sip_uri.host(), cert)?;
            let key = crate::tls::load_key(key)?;
            Some((addr, crate::tls::server_config(chain, key, sip.client_ca_file.as_deref())?))
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
        ua: UaConfig {
            contact_host: sip.contact_host.clone().unwrap_or_else(|| config.tas.sip_uri.host().to_owned()),
            server: server_header(),
            timers: Timers::default(),
        },
        client_tls: Some(crate::tls::client_config(config.sip.core_ca_file.as_deref(), None)?),
        core_uri: sip.core_uri.clone(),
    })
}

/// The SIP side of a running TAS.
pub struct Tas {
    /// The listeners, transactions and dialogs.
    pub endpoint: Endpoint,
    /// The subscribers' behaviours and the record of calls.
    pub router: Arc<CallRouter>,
}

/// Starts the SIP side of the TAS.
pub async fn start_sip(config: &ServeConfig) -> Result<Tas, TasError> {
    let endpoint_config = endpoint_config(config)?;
    let router = Arc::new(CallRouter::new(config));
    let endpoint = endpoint::start(endpoint_config, Arc::new(RouterHandler(router.clone()))).await?;
    router.attach(endpoint.user_agent().clone());
    Ok(Tas { endpoint, router })
}
