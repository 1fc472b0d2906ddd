//! How a user agent is configured to use SIP extensions (reliable provisional responses and
//! session timers), as the TAS's `[sip]` and the emulated core's `[sbc]` sections write it.

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
    pub fn apply(&self, ua: crate::ua::UaConfig) -> crate::ua::UaConfig {
        crate::ua::UaConfig {
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
