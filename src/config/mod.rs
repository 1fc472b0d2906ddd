//! Configuration files: their TOML types, defaults and validation with clear errors.
//!
//! `serve` configures the TAS (`ringer serve`); `core` configures the emulated operator core
//! (`ringer core`). Nothing here opens a socket.

pub mod core;
pub mod serve;

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;

/// A configuration file that cannot be used, with the file and the fault.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the expected shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's account, with line and column.
        message: String,
    },
    /// The values parse but do not make sense together.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// How a SIP extension is used: `off`, `supported` (when the peer asks or supports it) or
/// `required` (asked of every peer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtensionUse {
    /// Not used; a request that requires it gets 420 Bad Extension.
    Off,
    /// Used when the peer asks for it or supports it.
    #[default]
    Supported,
    /// Required of every peer: requests sent require it, INVITEs that do not support it get 421.
    Required,
}

impl From<ExtensionUse> for crate::sip::session_timer::Support {
    fn from(value: ExtensionUse) -> Self {
        use crate::sip::session_timer::Support;
        match value {
            ExtensionUse::Off => Support::Off,
            ExtensionUse::Supported => Support::Supported,
            ExtensionUse::Required => Support::Required,
        }
    }
}

/// The SIP extensions a user agent uses (`[sip]` of the TAS, `[sbc]` of the core): reliable
/// provisional responses and session timers.
#[derive(Debug, Clone)]
pub struct ExtensionsConfig {
    /// Reliable provisional responses (RFC 3262, `100rel`).
    pub rel100: ExtensionUse,
    /// Session timers (RFC 4028, `timer`).
    pub session_timer: ExtensionUse,
    /// The session interval asked for, and granted to requests that ask none.
    pub session_expires: std::time::Duration,
    /// The shortest session interval accepted (Min-SE); RFC 4028 says 90 s, tests go lower.
    pub min_se: std::time::Duration,
}

impl Default for ExtensionsConfig {
    fn default() -> Self {
        let timer = crate::sip::session_timer::SessionTimerConfig::default();
        Self {
            rel100: ExtensionUse::Supported,
            session_timer: ExtensionUse::Supported,
            session_expires: timer.interval,
            min_se: timer.min_se,
        }
    }
}

impl ExtensionsConfig {
    /// Checks the intervals; `section` names the place in the file.
    pub fn validate(&self, section: &str) -> Result<(), String> {
        if self.min_se.as_secs() < 1 || self.min_se.subsec_nanos() != 0 {
            return Err(format!("{section}.min_se must be a whole number of seconds, at least 1s"));
        }
        if self.session_expires < self.min_se || self.session_expires.subsec_nanos() != 0 {
            return Err(format!("{section}.session_expires must be whole seconds and at least {section}.min_se"));
        }
        Ok(())
    }

    /// Applies these settings to a user agent's.
    pub fn apply(&self, ua: crate::sip::ua::UaConfig) -> crate::sip::ua::UaConfig {
        crate::sip::ua::UaConfig {
            rel100: self.rel100.into(),
            session_timer: crate::sip::session_timer::SessionTimerConfig {
                support: self.session_timer.into(),
                interval: self.session_expires,
                min_se: self.min_se,
            },
            ..ua
        }
    }
}

/// Reads and deserialises a TOML file.
pub(crate) fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), message: error.to_string() })
}

/// Default value helpers for serde.
pub(crate) mod defaults {
    use std::time::Duration;

    /// The scope both SipBreakoutService methods require.
    pub const SCOPE: &str = "call.routing:write";
    /// The operator's OAuth 2.0 token endpoint.
    pub const TOKEN_URL: &str = "https://id.wgtwo.com/oauth2/token";

    pub fn scope() -> String {
        SCOPE.to_owned()
    }
    pub fn scopes() -> Vec<String> {
        vec![SCOPE.to_owned()]
    }
    pub fn token_url() -> String {
        TOKEN_URL.to_owned()
    }
    pub fn one_hour() -> Duration {
        Duration::from_secs(3600)
    }
}
