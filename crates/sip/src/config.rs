//! How a user agent is configured to use SIP extensions (reliable provisional responses and
//! session timers), as the TAS's `[sip]` and the emulated core's `[sbc]` sections write it,
//! and how a user agent presents itself.

use crate::session_timer::{SessionTimerConfig, Support};
use crate::timers::Timers;

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

impl From<ExtensionUse> for crate::session_timer::Support {
    fn from(value: ExtensionUse) -> Self {
        use crate::session_timer::Support;
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
        let timer = crate::session_timer::SessionTimerConfig::default();
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
    pub fn apply(&self, ua: UaConfig) -> UaConfig {
        UaConfig {
            rel100: self.rel100.into(),
            session_timer: crate::session_timer::SessionTimerConfig {
                support: self.session_timer.into(),
                interval: self.session_expires,
                min_se: self.min_se,
            },
            ..ua
        }
    }
}

/// Methods this UA accepts.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK";
/// Body types this UA understands.
pub const ACCEPT: &str = "application/sdp";

/// How the UA presents itself and which extensions it uses.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The host in Contact on TLS (the certificate's name), and where no local address is known.
    pub contact_host: String,
    /// The Server header.
    pub server: String,
    /// Transaction timers, for the 2xx retransmission.
    pub timers: Timers,
    /// Reliable provisional responses (RFC 3262, option tag `100rel`).
    pub rel100: Support,
    /// Session timers (RFC 4028, option tag `timer`).
    pub session_timer: SessionTimerConfig,
}

impl UaConfig {
    /// A UA presenting itself as `server`, with `contact_host` in its Contact, RFC 3261's
    /// timers, and 100rel and session timers supported with RFC 4028's intervals.
    pub fn new(contact_host: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            contact_host: contact_host.into(),
            server: server.into(),
            timers: Timers::default(),
            rel100: Support::Supported,
            session_timer: SessionTimerConfig::default(),
        }
    }

    /// The extensions this UA knows, with their option tags and how each is used.
    pub fn extensions(&self) -> [(Support, &'static str); 2] {
        [(self.rel100, "100rel"), (self.session_timer.support, "timer")]
    }

    /// The option tags of a Supported header.
    pub fn supported(&self) -> String {
        let tags = self.extensions();
        tags.iter().filter(|(support, _)| *support != Support::Off).map(|(_, tag)| *tag).collect::<Vec<_>>().join(", ")
    }
}
