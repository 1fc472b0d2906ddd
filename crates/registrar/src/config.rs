//! The registrar's configuration, as the TAS's file writes it: where the core's API is
//! (`[core]`), how ringer proves itself (`[auth]`), and the refresh loop (`[registrar]`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use domain::config::defaults;

/// Where the core's SipBreakoutService is.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreApiConfig {
    /// `https://api.shamrock.wgtwo.com:443`, a sandbox, or an emulated core (`http://127.0.0.1:50051`).
    pub endpoint: String,
    /// A PEM CA bundle to trust instead of the system's roots (for a private core or the emulator).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Time allowed to set up the connection.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for one call.
    #[serde(default = "default_request_timeout", with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// Time allowed to set up the connection to the core, unless configured.
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

/// Time allowed for one call to the core, unless configured.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(10)
}

/// How `ringer` proves itself to the core. Secrets come from the environment or a file only.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(tag = "mode", rename_all = "kebab-case", deny_unknown_fields)]
pub enum AuthConfig {
    /// No authorization header (sandbox).
    #[default]
    None,
    /// A bearer token obtained elsewhere (e.g. a user's authorization-code token).
    Bearer {
        /// Environment variable holding the token.
        #[serde(default)]
        token_env: Option<String>,
        /// File holding the token (surrounding whitespace ignored).
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// OAuth 2.0 client credentials, the flow the operator supports today.
    ClientCredentials {
        /// The client id (not a secret).
        client_id: String,
        /// Environment variable holding the client secret.
        #[serde(default)]
        client_secret_env: Option<String>,
        /// File holding the client secret.
        #[serde(default)]
        client_secret_file: Option<PathBuf>,
        /// Token endpoint.
        #[serde(default = "defaults::token_url")]
        token_url: String,
        /// Scope to ask for.
        #[serde(default = "defaults::scope")]
        scope: String,
    },
}

/// Timers of the refresh loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrarConfig {
    /// Refresh when this share of the time to live has passed (0 < x < 1).
    pub refresh_at: f64,
    /// Random spread around `refresh_at`, so that many subscribers do not refresh together.
    pub refresh_jitter: f64,
    /// First retry delay after a transport error or UNAVAILABLE.
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// Retry period after the core refused a registration (NOT_ACCEPTABLE, PERMISSION_DENIED).
    #[serde(with = "humantime_serde")]
    pub refused_retry: Duration,
    /// Calls to the core under way at once.
    pub max_in_flight: usize,
    /// Time allowed for deleting every registration at shutdown.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Address of the HTTP status view (`GET /registrations`); none by default.
    pub status_listen: Option<SocketAddr>,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            refresh_at: 0.7,
            refresh_jitter: 0.1,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            refused_retry: Duration::from_secs(15 * 60),
            max_in_flight: 32,
            shutdown_timeout: Duration::from_secs(10),
            status_listen: None,
        }
    }
}
