//! Reading configuration files: the error that names the file and the fault, and defaults the
//! TAS's and the emulated core's files share. The files' own types live with what they
//! configure (`tas::config`, `emulator::config`).

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

/// Reads and deserialises a TOML file.
pub fn read_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), message: error.to_string() })
}

/// Default value helpers for serde.
pub mod defaults {
    use std::time::Duration;

    /// The scope both SipBreakoutService methods require.
    pub const SCOPE: &str = "call.routing:write";
    /// The operator's OAuth 2.0 token endpoint.
    pub const TOKEN_URL: &str = "https://id.wgtwo.com/oauth2/token";

    /// [`SCOPE`], for a field that holds one scope.
    pub fn scope() -> String {
        SCOPE.to_owned()
    }

    /// [`SCOPE`] alone, for a field that holds a list.
    pub fn scopes() -> Vec<String> {
        vec![SCOPE.to_owned()]
    }

    /// [`TOKEN_URL`].
    pub fn token_url() -> String {
        TOKEN_URL.to_owned()
    }

    /// One hour, a token's or a registration's lifetime.
    pub fn one_hour() -> Duration {
        Duration::from_secs(3600)
    }
}
