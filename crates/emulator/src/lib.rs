//! The emulated operator core: its SipBreakoutService (gRPC), its OAuth 2.0 token endpoint and
//! the registrations they keep, its SBC (call legs 1 to 4, handsets), so that a TAS runs and is
//! tested with no operator account. It reads numbers with code of its own and never depends on
//! the TAS it emulates the network for.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod auth;
pub mod caller;
pub mod config;
pub mod grpc;
pub mod numbers;
pub mod oauth;
pub mod registry;
pub mod sbc;
pub mod sms;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{info, warn};

use crate::config::CoreConfig;
use auth::Authenticator;
use domain::proto::sipbreakout::v1::sip_breakout_service_server::SipBreakoutServiceServer;
use domain::proto::sms::v1::sms_service_server::SmsServiceServer;
use grpc::{CallCounts, SipBreakoutCore};
use registry::Registry;

/// Why the emulated core could not start.
#[derive(Debug, Error)]
pub enum CoreError {
    /// The listen address is taken or not ours.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A TLS file could not be read.
    #[error("cannot read {path}: {source}")]
    TlsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate or key is unusable.
    #[error("TLS set-up failed: {0}")]
    Tls(String),
    /// The SBC could not start.
    #[error("SBC: {0}")]
    Sbc(#[from] sbc::SbcError),
}

/// A running emulated core.
pub struct CoreHandle {
    grpc_addr: SocketAddr,
    tls: bool,
    registry: Arc<Registry>,
    auth: Arc<Authenticator>,
    counts: Arc<CallCounts>,
    outbox: Arc<sms::Outbox>,
    stop: Option<oneshot::Sender<()>>,
    server: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    sbc: Option<sbc::Sbc>,
}

/// Starts the emulated core's gRPC API as `config` says.
pub async fn start(config: &CoreConfig) -> Result<CoreHandle, CoreError> {
    start_with(config, |_| axum::Router::new()).await
}

/// As [`start`], serving the routes `extra` makes of the registry (such as `/metrics`) on the
/// same HTTP listener.
pub async fn start_with(
    config: &CoreConfig,
    extra: impl FnOnce(Arc<Registry>) -> axum::Router,
) -> Result<CoreHandle, CoreError> {
    tls::install_crypto_provider();
    let registry = Arc::new(Registry::new(config.time_to_live));
    let auth = Arc::new(Authenticator::new(&config.auth));

    let token_endpoint = oauth::router(oauth::IdentityProvider { auth: auth.clone(), registry: registry.clone() });
    let counts = Arc::new(CallCounts::default());
    let subscribers = config.subscribers.iter().cloned().collect();
    let service = SipBreakoutServiceServer::new(SipBreakoutCore::new(
        registry.clone(),
        auth.clone(),
        subscribers,
        counts.clone(),
        config.upsert_delay,
    ));
    let outbox = Arc::new(sms::Outbox::new(config.sms_answer));
    let sms_service = SmsServiceServer::new(sms::SmsCore::new(auth.clone(), outbox.clone()));
    let routes = Routes::from(
        Routes::new(service)
            .add_service(sms_service)
            .into_axum_router()
            .merge(token_endpoint)
            .merge(extra(registry.clone())),
    );

    // The token endpoint is plain HTTP/1.1 for most OAuth clients, so HTTP/1 is accepted beside gRPC.
    let mut server = Server::builder().accept_http1(true);
    if let Some(files) = &config.grpc.tls {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|source| CoreError::TlsFile { path: path.clone(), source });
        let identity = Identity::from_pem(read(&files.cert_file)?, read(&files.key_file)?);
        server = server
            .tls_config(ServerTlsConfig::new().identity(identity))
            .map_err(|error| CoreError::Tls(error.to_string()))?;
    }

    let listen = config.grpc.listen;
    let listener = TcpListener::bind(listen).await.map_err(|source| CoreError::Bind { addr: listen, source })?;
    let grpc_addr = listener.local_addr().map_err(|source| CoreError::Bind { addr: listen, source })?;
    let (stop, stopped) = oneshot::channel::<()>();
    let router = server.add_routes(routes);
    let server = tokio::spawn(async move {
        let shutdown = async {
            let _ = stopped.await;
        };
        if let Err(error) = router.serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown).await {
            warn!(%error, "emulated core's gRPC server stopped");
        }
    });
    let sweeper = tokio::spawn(sweep_lapsed(registry.clone()));
    let sbc = match &config.sbc {
        Some(sbc_config) => Some(sbc::start(sbc_config, registry.clone()).await?),
        None => None,
    };
    let tls = config.grpc.tls.is_some();
    info!(%grpc_addr, tls, ttl = ?config.time_to_live, "emulated core listening (SipBreakoutService, SmsService, OAuth 2.0 at /oauth2/auth, /oauth2/token, /userinfo)");
    Ok(CoreHandle { grpc_addr, tls, registry, auth, counts, outbox, stop: Some(stop), server, sweeper, sbc })
}

/// Logs and drops registrations that were not refreshed in time.
async fn sweep_lapsed(registry: Arc<Registry>) {
    let period = registry.time_to_live().min(Duration::from_secs(1)) / 2;
    let mut ticks = tokio::time::interval(period);
    loop {
        ticks.tick().await;
        for record in registry.sweep() {
            info!(msisdn = %record.msisdn, sip_uri = %record.registration.sip_uri, "registration expired");
        }
    }
}

impl CoreHandle {
    /// The address the gRPC API listens on.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// The URL a client uses: `http://addr` or `https://addr`.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.grpc_addr)
    }

    /// The URL of the OAuth 2.0 token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}{}", self.endpoint(), oauth::TOKEN_PATH)
    }

    /// The URL of the OAuth 2.0 authorization endpoint (for browsers).
    pub fn authorize_url(&self) -> String {
        format!("{}{}", self.endpoint(), oauth::AUTHORIZE_PATH)
    }

    /// The URL of the userinfo endpoint.
    pub fn userinfo_url(&self) -> String {
        format!("{}{}", self.endpoint(), oauth::USERINFO_PATH)
    }

    /// The registrations, as the SBC sees them.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The token table (tests revoke tokens through it).
    pub fn auth(&self) -> &Arc<Authenticator> {
        &self.auth
    }

    /// The SBC, when configured.
    pub fn sbc(&self) -> Option<&sbc::Sbc> {
        self.sbc.as_ref()
    }

    /// How many calls each method has received.
    pub fn call_counts(&self) -> &CallCounts {
        &self.counts
    }

    /// The texts `SmsService` was asked to send, and how it answers them.
    pub fn sms(&self) -> &sms::Outbox {
        &self.outbox
    }

    /// Stops serving: open calls get a moment to finish, then connections are dropped.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.server).await.is_err() {
            self.server.abort();
        }
        self.sweeper.abort();
        if let Some(sbc) = &self.sbc {
            sbc.shutdown();
        }
    }
}

impl Drop for CoreHandle {
    fn drop(&mut self) {
        self.server.abort();
        self.sweeper.abort();
    }
}
