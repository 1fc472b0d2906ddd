//! Credentials for the core's API: none (sandbox), a static bearer token, or OAuth 2.0 client
//! credentials with a cached token. Secrets never reach logs or error messages.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::config::AuthConfig;

/// A secret string whose `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }

    /// The secret itself, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// Why no token could be had.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The config names no source for a secret, or the source is empty.
    #[error("{0}")]
    MissingSecret(String),
    /// A secret file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadSecret {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint {url} unreachable: {reason}")]
    TokenTransport {
        /// The endpoint.
        url: String,
        /// Why, without any secret.
        reason: String,
    },
    /// The token endpoint refused the client.
    #[error("token endpoint {url} refused the client: HTTP {status} {error}")]
    TokenRefused {
        /// The endpoint.
        url: String,
        /// HTTP status.
        status: u16,
        /// The OAuth error code, when the body carried one.
        error: String,
    },
    /// The token endpoint's answer lacks `access_token`.
    #[error("token endpoint {url} sent an answer without a usable access_token")]
    BadTokenResponse {
        /// The endpoint.
        url: String,
    },
}

impl AuthError {
    /// Whether trying again later may help without a change of configuration.
    pub fn is_transient(&self) -> bool {
        match self {
            AuthError::TokenTransport { .. } => true,
            AuthError::TokenRefused { status, .. } => *status == 429 || *status >= 500,
            _ => false,
        }
    }
}

/// OAuth 2.0 client-credentials settings, secret resolved.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The scope to ask for.
    pub scope: String,
}

/// Where a static bearer token comes from; a file is read again after UNAUTHENTICATED, so a
/// rotated token is picked up without a restart.
#[derive(Debug, Clone)]
pub enum BearerSource {
    /// Taken once, from the environment.
    Value(Secret),
    /// Read from this file.
    File(PathBuf),
}

/// How to authenticate to the core.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Send no authorization header (sandbox).
    None,
    /// Send this bearer token.
    Bearer(BearerSource),
    /// Get tokens from an OAuth 2.0 token endpoint.
    ClientCredentials(ClientCredentials),
}

impl Credentials {
    /// Resolves the config's secret sources (environment variables and files).
    pub fn from_config(config: &AuthConfig) -> Result<Self, AuthError> {
        match config {
            AuthConfig::None => Ok(Credentials::None),
            AuthConfig::Bearer { token_env, token_file } => match (token_env, token_file) {
                (Some(_), Some(_)) | (None, None) => Err(AuthError::MissingSecret(
                    "auth mode \"bearer\" needs exactly one of token_env or token_file".into(),
                )),
                (Some(variable), None) => Ok(Credentials::Bearer(BearerSource::Value(secret_from_env(variable)?))),
                (None, Some(path)) => {
                    read_secret_file(path)?;
                    Ok(Credentials::Bearer(BearerSource::File(path.clone())))
                }
            },
            AuthConfig::ClientCredentials { client_id, client_secret_env, client_secret_file, token_url, scope } => {
                let client_secret = match (client_secret_env, client_secret_file) {
                    (Some(variable), None) => secret_from_env(variable)?,
                    (None, Some(path)) => read_secret_file(path)?,
                    _ => return Err(AuthError::MissingSecret(
                        "auth mode \"client-credentials\" needs exactly one of client_secret_env or client_secret_file"
                            .into(),
                    )),
                };
                Ok(Credentials::ClientCredentials(ClientCredentials {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret,
                    scope: scope.clone(),
                }))
            }
        }
    }

    /// With client credentials, the core cannot tell which subscriber is meant: each registration
    /// must name its phone number.
    pub fn requires_phone_number(&self) -> bool {
        matches!(self, Credentials::ClientCredentials(_))
    }
}

/// Reads a secret from the environment variable `variable`.
pub fn secret_from_env(variable: &str) -> Result<Secret, AuthError> {
    match std::env::var(variable) {
        Ok(value) if !value.trim().is_empty() => Ok(Secret::new(value.trim())),
        _ => Err(AuthError::MissingSecret(format!("environment variable {variable} is not set or empty"))),
    }
}

/// Reads a secret from a file, ignoring surrounding whitespace.
pub fn read_secret_file(path: &Path) -> Result<Secret, AuthError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| AuthError::ReadSecret { path: path.to_owned(), source })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(AuthError::MissingSecret(format!("{} is empty", path.display())));
    }
    Ok(Secret::new(text))
}

#[derive(Debug)]
struct CachedToken {
    token: Secret,
    renew_after: Instant,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct TokenErrorResponse {
    error: Option<String>,
}

/// Hands out the bearer token for each call, fetching and caching OAuth tokens as needed.
#[derive(Debug)]
pub struct TokenSource {
    credentials: Credentials,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
}

/// Without `expires_in`, assume the operator's usual one hour.
const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

impl TokenSource {
    /// A token source for `credentials`; `timeout` bounds each token request.
    pub fn new(credentials: Credentials, timeout: Duration) -> Result<Self, AuthError> {
        tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|error| AuthError::TokenTransport { url: String::new(), reason: error.to_string() })?;
        Ok(Self { credentials, http, cached: Mutex::new(None) })
    }

    /// The credentials in use.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The token to send, or `None` in sandbox mode.
    pub async fn bearer(&self) -> Result<Option<Secret>, AuthError> {
        match &self.credentials {
            Credentials::None => Ok(None),
            Credentials::Bearer(BearerSource::Value(token)) => Ok(Some(token.clone())),
            Credentials::Bearer(BearerSource::File(path)) => read_secret_file(path).map(Some),
            Credentials::ClientCredentials(client) => {
                let mut cached = self.cached.lock().await;
                if let Some(token) = cached.as_ref().filter(|t| t.renew_after > Instant::now()) {
                    return Ok(Some(token.token.clone()));
                }
                let fresh = self.fetch(client).await?;
                let token = fresh.token.clone();
                *cached = Some(fresh);
                Ok(Some(token))
            }
        }
    }

    /// Forgets a cached token the core refused, so the next call fetches a new one.
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self, client: &ClientCredentials) -> Result<CachedToken, AuthError> {
        let url = &client.token_url;
        let transport = |error: reqwest::Error| AuthError::TokenTransport {
            url: url.clone(),
            // Without the URL (already given) and without the source chain's request details.
            reason: error.without_url().to_string(),
        };
        let response = self
            .http
            .post(url)
            .basic_auth(&client.client_id, Some(client.client_secret.expose()))
            .form(&[("grant_type", "client_credentials"), ("scope", client.scope.as_str())])
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenErrorResponse>(&body)
                .ok()
                .and_then(|body| body.error)
                .unwrap_or_default();
            return Err(AuthError::TokenRefused { url: url.clone(), status: status.as_u16(), error });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|_| AuthError::BadTokenResponse { url: url.clone() })?;
        let token = parsed
            .access_token
            .filter(|token| !token.is_empty())
            .ok_or_else(|| AuthError::BadTokenResponse { url: url.clone() })?;
        let expires_in = parsed.expires_in.map(Duration::from_secs).unwrap_or(DEFAULT_EXPIRES_IN);
        let renew_after = Instant::now() + expires_in.saturating_sub(renewal_margin(expires_in));
        info!(client_id = %client.client_id, expires_in = ?expires_in, "access token obtained");
        debug!(renew_in = ?renew_after.saturating_duration_since(Instant::now()), "token cached");
        Ok(CachedToken { token: Secret::new(token), renew_after })
    }
}

/// Renew a token shortly before it runs out: a fifth of its life, at most a minute.
fn renewal_margin(expires_in: Duration) -> Duration {
    (expires_in / 5).min(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_print() {
        let secret = Secret::new("hunter2");
        assert_eq!(format!("{secret:?}"), "Secret(..)");
        let credentials = Credentials::ClientCredentials(ClientCredentials {
            token_url: "u".into(),
            client_id: "id".into(),
            client_secret: secret,
            scope: "s".into(),
        });
        assert!(!format!("{credentials:?}").contains("hunter2"));
    }

    #[test]
    fn renewal_is_shortly_before_expiry() {
        assert_eq!(renewal_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(renewal_margin(Duration::from_secs(5)), Duration::from_secs(1));
    }

    #[test]
    fn config_needs_one_secret_source() {
        let config = AuthConfig::Bearer { token_env: None, token_file: None };
        assert!(matches!(Credentials::from_config(&config), Err(AuthError::MissingSecret(_))));
        let config = AuthConfig::Bearer { token_env: Some("RINGER_TEST_SURELY_UNSET_VAR".into()), token_file: None };
        let error = Credentials::from_config(&config).unwrap_err().to_string();
        assert!(error.contains("RINGER_TEST_SURELY_UNSET_VAR"), "{error}");
    }
}
