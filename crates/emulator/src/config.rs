//! `ringer core`: the emulated operator core's configuration.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use domain::config::{defaults, read_toml, ConfigError};
use domain::types::Msisdn;

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
    /// How long an UpsertRegistration takes before the core applies and answers it: a slow
    /// core, to see what a TAS does while its upserts are under way. Default: none.
    #[serde(default, with = "humantime_serde")]
    pub upsert_delay: Duration,
    /// How `SmsService` answers the texts it is asked to send: `ok`, `error` (temporary) or
    /// `reject`.
    #[serde(default)]
    pub sms_answer: SmsAnswer,
    /// Who may call the API.
    #[serde(default)]
    pub auth: CoreAuthConfig,
    /// The operator's subscribers: only these numbers may be registered (NOT_ACCEPTABLE for
    /// others). Empty: any number.
    #[serde(default)]
    pub subscribers: Vec<Msisdn>,
    /// The SIP side (the SBC's call legs); none unless configured.
    #[serde(default)]
    pub sbc: Option<SbcConfig>,
}

/// How the emulated core answers the texts it is asked to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsAnswer {
    /// `SEND_STATUS_OK`: accepted.
    #[default]
    Ok,
    /// `SEND_STATUS_ERROR`: a temporary failure; sending again may work.
    Error,
    /// `SEND_STATUS_REJECT`: not allowed; do not send again as is.
    Reject,
}

/// The emulated SBC: where user agents call in, where TASs send leg 3, and who answers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbcConfig {
    /// Leg 1 over UDP (SIP user agents such as SIPp's Alice).
    #[serde(default)]
    pub udp_listen: Option<SocketAddr>,
    /// Leg 1 over TCP.
    #[serde(default)]
    pub tcp_listen: Option<SocketAddr>,
    /// Leg 1 over TLS (needs `cert_file` and `key_file`).
    #[serde(default)]
    pub tls_listen: Option<SocketAddr>,
    /// Where TASs send leg 3 and Ingress calls, over TLS (needs `cert_file` and `key_file`).
    pub interconnect_listen: SocketAddr,
    /// The SBC's certificate chain (PEM).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The CA the TAS certificates must chain to; default: the system's roots.
    #[serde(default)]
    pub tas_ca_file: Option<PathBuf>,
    /// The SBC's domain in the Request-URIs and addresses it writes.
    #[serde(default = "default_sbc_domain")]
    pub domain: String,
    /// Fallback: how long the subscriber's phone rings before the TAS gets the call.
    #[serde(default = "default_fallback_no_answer", with = "humantime_serde")]
    pub fallback_no_answer: Duration,
    /// Simulated handsets, answering as configured.
    #[serde(default, rename = "handset")]
    pub handsets: Vec<HandsetConfig>,
    /// Where calls to other numbers go (SIPp as Bob, a lab phone), by longest number prefix.
    #[serde(default, rename = "route")]
    pub routes: Vec<SbcRoute>,
    /// The DNS server for SRV lookups of `sip_uri`s without a port; default: the system's.
    #[serde(default)]
    pub dns_server: Option<SocketAddr>,
    /// Write leg 2's Request-URI as `tel:+<prefix><number>` rather than `sip:` with `user=phone`.
    #[serde(default)]
    pub leg2_tel: bool,
    /// Fork a Fork subscriber's own calls (MO) to the TAS too, with the MO prefix, beside the
    /// callee: the operator's pages say all signalling from and to a Fork (or Loop) MSISDN is
    /// replicated to the TAS. Off: MO calls of Fork subscribers go straight to the callee.
    #[serde(default = "default_true")]
    pub fork_mo: bool,
    /// Reliable provisional responses (RFC 3262) on every leg: `off`, `supported`, `required`.
    #[serde(default)]
    pub rel100: sip::config::ExtensionUse,
    /// Session timers (RFC 4028) on every leg: `off`, `supported`, `required`.
    #[serde(default)]
    pub session_timer: sip::config::ExtensionUse,
    /// The session interval asked for, and granted to calls that ask none.
    #[serde(default = "default_session_expires", with = "humantime_serde")]
    pub session_expires: Duration,
    /// The shortest session interval accepted (smaller gets 422).
    #[serde(default = "default_min_se", with = "humantime_serde")]
    pub min_se: Duration,
}

fn default_session_expires() -> Duration {
    sip::config::ExtensionsConfig::default().session_expires
}

fn default_min_se() -> Duration {
    sip::config::ExtensionsConfig::default().min_se
}

impl SbcConfig {
    /// The SIP extensions as configured.
    pub fn extensions(&self) -> sip::config::ExtensionsConfig {
        sip::config::ExtensionsConfig {
            rel100: self.rel100,
            session_timer: self.session_timer,
            session_expires: self.session_expires,
            min_se: self.min_se,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_sbc_domain() -> String {
    "core.ringer.invalid".into()
}

fn default_fallback_no_answer() -> Duration {
    Duration::from_secs(30)
}

/// How a simulated handset answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HandsetMode {
    /// Rings, then answers.
    Answer,
    /// 486 Busy Here.
    Busy,
    /// Rings until cancelled.
    NoAnswer,
    /// 480 Temporarily Unavailable (switched off, out of coverage).
    Unreachable,
}

/// One simulated handset.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandsetConfig {
    /// Its number.
    pub number: Msisdn,
    /// How it answers.
    pub mode: HandsetMode,
    /// How long it rings before answering.
    #[serde(default = "default_ring_time", with = "humantime_serde")]
    pub ring_time: Duration,
    /// Hang up (BYE) this long after answering; default: never.
    #[serde(default, with = "humantime_serde")]
    pub hang_up_after: Option<Duration>,
}

fn default_ring_time() -> Duration {
    Duration::from_millis(200)
}

/// Calls to numbers starting with `prefix` go to `target`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbcRoute {
    /// `+` and leading digits (`+47`), or `+` for every number.
    pub prefix: String,
    /// A SIP URI: `sip:127.0.0.1:5090` (UDP), `sip:host:port;transport=tcp`, `sips:host:port`.
    pub target: String,
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
    /// Where the authorization endpoint may send the browser back (the code flow); empty:
    /// anywhere, as a lab convenience.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            grpc: GrpcListenConfig::default(),
            time_to_live: defaults::one_hour(),
            upsert_delay: Duration::ZERO,
            sms_answer: SmsAnswer::Ok,
            auth: CoreAuthConfig::default(),
            subscribers: Vec::new(),
            sbc: None,
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
        if let Some(sbc) = &self.sbc {
            sbc.validate()?;
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

impl SbcConfig {
    /// Checks what serde alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        self.extensions().validate("sbc")?;
        if self.cert_file.is_none() || self.key_file.is_none() {
            return Err("sbc.cert_file and sbc.key_file are needed: the interconnect to TASs is TLS".into());
        }
        let mut numbers = HashSet::new();
        for handset in &self.handsets {
            if !numbers.insert(&handset.number) {
                return Err(format!("sbc.handset {} is listed twice", handset.number));
            }
        }
        for route in &self.routes {
            let digits = route
                .prefix
                .strip_prefix('+')
                .ok_or_else(|| format!("sbc.route prefix {:?} must start with + (then digits)", route.prefix))?;
            if !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("sbc.route prefix {:?} must be + and digits", route.prefix));
            }
            match sip::message::Uri::parse(&route.target) {
                Ok(sip::message::Uri::Sip(_)) => {}
                _ => return Err(format!("sbc.route target {:?} is not a sip: or sips: URI", route.target)),
            }
        }
        if self.fallback_no_answer.is_zero() {
            return Err("sbc.fallback_no_answer must be above zero".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../core.example.toml");
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
