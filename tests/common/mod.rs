//! Helpers shared by the integration tests: an emulated core on a free loopback port, clients
//! pointed at it, and polling with a deadline (never a fixed sleep standing in for a result).

#![allow(dead_code)]

pub(crate) mod audio;
pub(crate) mod broken_tas;
pub(crate) mod browser;
pub(crate) mod curl;
pub(crate) mod dns;
pub(crate) mod fault_proxy;
pub(crate) mod kamailio;
pub(crate) mod lab;
pub(crate) mod netns;
pub(crate) mod postgres;
pub(crate) mod process;
pub(crate) mod scrape;
pub(crate) mod sip;
pub(crate) mod sipp;

use std::net::SocketAddr;
use std::time::Duration;

use ringer::config::core::{
    AuthMode, CoreAuthConfig, CoreConfig, GrpcListenConfig, OAuthClient, StaticToken, TokenKind,
};
use ringer::config::serve::{CoreApiConfig, RegistrarConfig};
use ringer::core::CoreHandle;
use ringer::registrar::auth::Credentials;
use ringer::registrar::RegistrationClient;
use ringer::types::{Msisdn, Prefix, Registration, RouteType, SipsUri};

pub(crate) const SCOPE: &str = "call.routing:write";
pub(crate) const CLIENT_TOKEN: &str = "client-token";
pub(crate) const USER_TOKEN: &str = "user-token";
pub(crate) const USER_MSISDN: &str = "+4790000001";
pub(crate) const NO_SCOPE_TOKEN: &str = "no-scope-token";
pub(crate) const CLIENT_ID: &str = "product";
pub(crate) const CLIENT_SECRET: &str = "s3cret-never-logged";

pub(crate) fn loopback_any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// A free loopback port (TCP and UDP), released for the caller to bind later. It is drawn
/// below Linux's ephemeral range (32768–60999): a port the kernel handed out for port 0 would
/// go to the next socket bound to port 0 in a test running alongside, before the caller
/// bound it (a peer's lab failed to start that way, one run in eight).
pub(crate) fn free_port() -> SocketAddr {
    use rand::Rng as _;
    let mut random = rand::rng();
    for _ in 0..1000 {
        let candidate = SocketAddr::from(([127, 0, 0, 1], random.random_range(20_000..32_000)));
        let tcp = std::net::TcpListener::bind(candidate);
        let udp = std::net::UdpSocket::bind(candidate);
        if tcp.is_ok() && udp.is_ok() {
            return candidate;
        }
    }
    panic!("no free loopback port between 20000 and 32000")
}

pub(crate) fn core_config(listen: SocketAddr, mode: AuthMode, ttl: Duration) -> CoreConfig {
    CoreConfig {
        grpc: GrpcListenConfig { listen, tls: None },
        time_to_live: ttl,
        upsert_delay: Duration::ZERO,
        sms_answer: Default::default(),
        auth: CoreAuthConfig {
            mode,
            tokens: vec![
                StaticToken {
                    token: CLIENT_TOKEN.into(),
                    kind: TokenKind::Client,
                    msisdn: None,
                    scopes: vec![SCOPE.into()],
                },
                StaticToken {
                    token: USER_TOKEN.into(),
                    kind: TokenKind::User,
                    msisdn: Some(msisdn(USER_MSISDN)),
                    scopes: vec![SCOPE.into()],
                },
                StaticToken {
                    token: NO_SCOPE_TOKEN.into(),
                    kind: TokenKind::Client,
                    msisdn: None,
                    scopes: vec!["subscription.read".into()],
                },
            ],
            clients: vec![OAuthClient {
                redirect_uris: Vec::new(),
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                scopes: vec![SCOPE.into()],
                token_lifetime: Duration::from_secs(3600),
            }],
        },
        subscribers: Vec::new(),
        sbc: None,
    }
}

pub(crate) async fn start_core(mode: AuthMode, ttl: Duration) -> CoreHandle {
    ringer::core::start(&core_config(loopback_any_port(), mode, ttl)).await.expect("core starts")
}

pub(crate) fn api(endpoint: String) -> CoreApiConfig {
    CoreApiConfig {
        endpoint,
        ca_file: None,
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
    }
}

pub(crate) fn client(core: &CoreHandle, credentials: Credentials) -> RegistrationClient {
    RegistrationClient::new(&api(core.endpoint()), credentials).expect("client")
}

pub(crate) fn msisdn(text: &str) -> Msisdn {
    Msisdn::parse(text).expect("test number")
}

pub(crate) fn registration(number: &str, route_type: RouteType, mo: Option<&str>, mt: Option<&str>) -> Registration {
    Registration {
        phone_number: Some(msisdn(number)),
        sip_uri: SipsUri::parse("sips:tas.example.com:5061").expect("uri"),
        route_type,
        mo_prefix: mo.map(|p| Prefix::parse(p).expect("prefix")),
        mt_prefix: mt.map(|p| Prefix::parse(p).expect("prefix")),
    }
}

/// Registrar timers scaled down for registrations that live a few seconds.
pub(crate) fn fast_registrar() -> RegistrarConfig {
    RegistrarConfig {
        refresh_at: 0.5,
        refresh_jitter: 0.05,
        initial_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(800),
        refused_retry: Duration::from_secs(3600),
        max_in_flight: 8,
        shutdown_timeout: Duration::from_secs(5),
        status_listen: None,
    }
}

/// Polls `condition` every 20 ms until it holds; panics with `what` after `limit`.
pub(crate) async fn eventually(limit: Duration, what: &str, condition: impl FnMut() -> bool) {
    if !poll_until(limit, condition).await {
        panic!("timed out waiting for: {what}");
    }
}

/// Polls `condition` every 20 ms until it holds (true) or `limit` passes (false).
pub(crate) async fn poll_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// The RFC 4475 torture messages, byte-exact with their verdicts: `tests/fixtures/rfc4475`
/// (copied from the project's shared conformance folder), or `$RFC4475_DIR`.
pub(crate) fn rfc4475_dir() -> std::path::PathBuf {
    std::env::var_os("RFC4475_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rfc4475"))
}
