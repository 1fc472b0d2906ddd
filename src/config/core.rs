//! `ringer core`: the emulated operator core's configuration.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{defaults, read_toml, ConfigError};
use crate::types::Msisdn;

/// Everything `ringer core` reads from its `--config` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreConfig {
    /// The gRPC API (SipBreakoutService and the OAuth 2.0 token endpoint share it).
    #[serde(default)]
    pub grpc: GrpcListenConfig,
    /// Lifetime of a registration from its last upsert.
    #[serde(default = "defaults::one_hour", with = "humantime_serde")]
    pub time_to_live: Duration,
    /// Who may call the API.
    #[serde(default)]
    pub auth: CoreAuthConfig,
    /// The operator's subscribers: only these numbers may be registered (NOT_ACCEPTABLE for
    /// others). Empty: any number.
    #[serde(default)]
    pub subscribers: Vec<Msisdn>,
}

/// Where the gRPC API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcListenConfig {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Serve TLS (https) with this certificate chain and key instead of plain HTTP/2.
    #[serde(default)]
    pub tls: Option<TlsFiles>,
}

impl Default for GrpcListenConfig {
    fn default() -> Self {
        Self { listen: SocketAddr::from(([127, 0, 0, 1], 50051)), tls: None }
    }
}

/// A PEM certificate chain and its private key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Whether and how callers must authenticate.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoreAuthConfig {
    /// `sandbox`: a token is optional, but one that is sent is checked. `required`: every call needs one.
    #[serde(default)]
    pub mode: AuthMode,
    /// Bearer tokens the core knows from the start.
    #[serde(default, rename = "token")]
    pub tokens: Vec<StaticToken>,
    /// OAuth 2.0 clients that may get tokens from `/oauth2/token`.
    #[serde(default, rename = "client")]
    pub clients: Vec<OAuthClient>,
}

/// How strict the emulated core is about authentication.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AuthMode {
    /// Authorization is optional, as in the operator's sandbox.
    #[default]
    Sandbox,
    /// Every call must carry a valid token.
    Required,
}

/// What kind of principal a token stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenKind {
    /// A client-credentials token: acts for the operator's product, must name the phone number.
    Client,
    /// A user's token (authorization-code flow): acts on its own subscription only.
    User,
}

/// A bearer token configured up front.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StaticToken {
    /// The token text.
    pub token: String,
    /// Client or user token.
    pub kind: TokenKind,
    /// The subscriber a user token belongs to.
    #[serde(default)]
    pub msisdn: Option<Msisdn>,
    /// Scopes granted.
    #[serde(default = "defaults::scopes")]
    pub scopes: Vec<String>,
}

/// An OAuth 2.0 client registered with the emulated identity provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthClient {
    /// Client id.
    pub client_id: String,
    /// Client secret (a test value: this is an emulator).
    pub client_secret: String,
    /// Scopes the client may be granted.
    #[serde(default = "defaults::scopes")]
    pub scopes: Vec<String>,
    /// `expires_in` of the tokens issued.
    #[serde(default = "defaults::one_hour", with = "humantime_serde")]
    pub token_lifetime: Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            grpc: GrpcListenConfig::default(),
            time_to_live: defaults::one_hour(),
            auth: CoreAuthConfig::default(),
            subscribers: Vec::new(),
        }
    }
}

impl CoreConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_toml(path)?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(config)
    }

    /// Checks what serde alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.time_to_live < Duration::from_secs(1) {
            return Err("time_to_live must be at least 1s".into());
        }
        let mut tokens = HashSet::new();
        for token in &self.auth.tokens {
            if token.token.is_empty() || !tokens.insert(token.token.as_str()) {
                return Err("auth.token entries need distinct, non-empty `token` values".into());
            }
            match (token.kind, &token.msisdn) {
                (TokenKind::User, None) => {
                    return Err("a token of kind \"user\" needs the `msisdn` it belongs to".into())
                }
                (TokenKind::Client, Some(_)) => {
                    return Err("a token of kind \"client\" acts for many subscribers: remove `msisdn`".into())
                }
                _ => {}
            }
        }
        let mut clients = HashSet::new();
        for client in &self.auth.clients {
            if client.client_id.is_empty() || !clients.insert(client.client_id.as_str()) {
                return Err("auth.client entries need distinct, non-empty `client_id` values".into());
            }
            if client.token_lifetime.is_zero() {
                return Err(format!("auth.client {:?}: token_lifetime must be > 0", client.client_id));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("core.example.toml");
        let config = CoreConfig::load(&path).unwrap();
        assert_eq!(config.auth.mode, AuthMode::Required);
        assert!(!config.auth.clients.is_empty());
    }

    #[test]
    fn user_tokens_need_their_number() {
        let config: CoreConfig = toml::from_str("[[auth.token]]\ntoken = \"t\"\nkind = \"user\"\n").unwrap();
        assert!(config.validate().unwrap_err().contains("msisdn"));
    }
}
