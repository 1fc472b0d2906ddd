//! `ringer serve`: the TAS's own configuration.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::call::action::{Action, App, Behaviour, BehaviourConfig};
use crate::call::routing::Direction;
use domain::config::{read_toml, ConfigError};
use domain::types::{Msisdn, Prefix, Registration, RouteType, ServiceCode, SipsUri};
pub use registrar::config::{AuthConfig, CoreApiConfig, RegistrarConfig};
use sip::message::StatusCode;

/// Everything `ringer serve` reads from its `--config` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// This TAS as the core sees it.
    pub tas: TasConfig,
    /// The operator core's gRPC API.
    pub core: CoreApiConfig,
    /// How to authenticate to the core.
    #[serde(default)]
    pub auth: AuthConfig,
    /// How registrations are kept alive.
    #[serde(default)]
    pub registrar: RegistrarConfig,
    /// The SIP side: listeners, certificates, peers, limits.
    #[serde(default)]
    pub sip: SipConfig,
    /// Calls that match no subscriber or arrive unexpectedly.
    #[serde(default)]
    pub calls: CallsConfig,
    /// Media of the calls the TAS answers itself.
    #[serde(default)]
    pub media: MediaConfig,
    /// The voicemail app.
    #[serde(default)]
    pub voicemail: VoicemailConfig,
    /// The announcement app.
    #[serde(default)]
    pub announcement: AnnouncementConfig,
    /// Service codes subscribers dial to change their settings.
    #[serde(default)]
    pub feature_codes: FeatureCodesConfig,
    /// Sign-up through the operator's consent page (OAuth 2.0 authorization code flow).
    #[serde(default)]
    pub signup: Option<SignupConfig>,
    /// Where ringer keeps its state (subscribers).
    #[serde(default)]
    pub store: StoreConfig,
    /// The HTTP listener of the APIs (the mailbox API).
    #[serde(default)]
    pub http: HttpConfig,
    /// Call detail records written to a file of JSON lines (beside the store's).
    #[serde(default)]
    pub call_records: CallRecordsConfig,
    /// A copy of every SIP message to a capture server (HEP v3, for Homer).
    #[serde(default)]
    pub hep: HepConfig,
    /// The subscribers this TAS serves. When the list is given, the file manages them: it
    /// replaces the store's list at start and on SIGHUP; without it, `ringer subscribers`
    /// manages them in the store.
    #[serde(default, rename = "subscriber")]
    pub subscribers: Vec<SubscriberConfig>,
}

/// The HTTP listener of the APIs.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Where the APIs listen (for example `127.0.0.1:8080`); unset: no HTTP API.
    pub listen: Option<std::net::SocketAddr>,
}

/// HEP v3 mirroring of the SIP messages to a capture server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HepConfig {
    /// The capture server's UDP address (Homer's heplify-server: port 9060); unset: off.
    pub address: Option<SocketAddr>,
    /// This node's capture agent id in the copies.
    pub agent_id: u32,
    /// The environment variable holding the capture server's password, when it wants one.
    pub password_env: Option<String>,
}

impl Default for HepConfig {
    fn default() -> Self {
        Self { address: None, agent_id: 1, password_env: None }
    }
}

impl HepConfig {
    /// The settings the endpoint sends with; an error names a password variable not set.
    pub fn settings(&self) -> Result<Option<sip::transport::hep::HepSettings>, String> {
        let Some(server) = self.address else { return Ok(None) };
        let password = match &self.password_env {
            Some(variable) => {
                Some(std::env::var(variable).map_err(|_| format!("hep.password_env: {variable} is not set"))?)
            }
            None => None,
        };
        Ok(Some(sip::transport::hep::HepSettings { server, agent_id: self.agent_id, password }))
    }
}

/// Call detail records in a file: one JSON object per line and per call.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallRecordsConfig {
    /// The file records are appended to; unset: records go to the store alone. SIGHUP
    /// reopens it (for logrotate).
    pub file: Option<std::path::PathBuf>,
    /// Past this many bytes the file is moved aside (`FILE.YYYYMMDDTHHMMSSZ`) and a new one
    /// started; unset: never (logrotate's job).
    pub max_size: Option<u64>,
}

/// The database ringer keeps its state in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://FILE` (one instance; the default, `sqlite://var/ringer.db`) or
    /// `postgres://USER[:PASSWORD]@HOST:PORT/DATABASE` (several instances sharing it).
    #[serde(default = "default_store_url")]
    pub url: String,
    /// How often a running instance looks for changed subscribers.
    #[serde(default = "default_poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// This instance's name among those sharing the database; default: the host name and the
    /// process id. A name kept across restarts lets a restarted instance take its leases back
    /// at once.
    #[serde(default)]
    pub instance: Option<String>,
    /// How often this instance shows it is alive and rebalances the registration leases.
    #[serde(default = "default_heartbeat_interval", with = "humantime_serde")]
    pub heartbeat_interval: Duration,
    /// An instance silent this long is dead: the others take its leases and refresh its
    /// subscribers' registrations. Well below the registrations' time to live.
    #[serde(default = "default_lease_timeout", with = "humantime_serde")]
    pub lease_timeout: Duration,
    /// What the last live instance does with the registrations when it stops: `delete` them
    /// (calls then stay with the core), or `keep` them until their time to live ends (an
    /// instance starting meanwhile takes them over).
    #[serde(default)]
    pub on_last_stop: LastStop,
}

/// What the last live instance does with the registrations at a stop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LastStop {
    /// DeleteRegistration for every subscriber.
    #[default]
    Delete,
    /// Leave them to lapse at their time to live.
    Keep,
}

fn default_heartbeat_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_lease_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_store_url() -> String {
    store::DEFAULT_URL.to_owned()
}

fn default_poll_interval() -> Duration {
    Duration::from_secs(2)
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: default_store_url(),
            poll_interval: default_poll_interval(),
            instance: None,
            heartbeat_interval: default_heartbeat_interval(),
            lease_timeout: default_lease_timeout(),
            on_last_stop: LastStop::default(),
        }
    }
}

/// A certificate served by name (SNI).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateConfig {
    /// PEM certificate chain.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// The SIP listeners and how calls are treated until behaviours are configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SipConfig {
    /// SIP over TLS, what the core uses (e.g. `0.0.0.0:5061`).
    pub tls_listen: Option<SocketAddr>,
    /// Plain SIP over TCP, for lab peers and SIPp; off in production.
    pub tcp_listen: Option<SocketAddr>,
    /// SIP over UDP, for lab peers and SIPp; off in production.
    pub udp_listen: Option<SocketAddr>,
    /// PEM certificate chain for TLS; must be valid for the host of `tas.sip_uri`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key for TLS.
    pub key_file: Option<PathBuf>,
    /// More certificates, each served to TLS clients that ask for one of its names (SNI);
    /// `cert_file` serves the others.
    #[serde(rename = "certificate")]
    pub certificates: Vec<CertificateConfig>,
    /// How often the certificate, key and CA files are looked at for changes (a change is
    /// loaded as SIGHUP loads it); 0: only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub tls_watch_interval: Duration,
    /// With this CA, TLS peers must present a certificate it signed (mutual TLS).
    pub client_ca_file: Option<PathBuf>,
    /// The CA that signs the core's certificate, for connections ringer opens; default: the
    /// system's roots.
    pub core_ca_file: Option<PathBuf>,
    /// The core's SIP address (`sips:sbc.example.net:5061`): leg 3 goes there (unset: back over
    /// leg 2's connection), and so do ringer's own in-dialog requests once the call's connection
    /// has closed (unset: the route set, else the peer's Contact).
    pub core_uri: Option<String>,
    /// Networks allowed to connect or send (e.g. the core's SBC); empty allows all.
    pub allow: Vec<ipnet::IpNet>,
    /// Open stream connections allowed in total.
    pub max_connections: usize,
    /// Open stream connections allowed from one address.
    pub max_connections_per_peer: usize,
    /// A message begun on a stream must be complete within this.
    #[serde(with = "humantime_serde")]
    pub message_timeout: Duration,
    /// A connection with nothing to read for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// The host in Contact headers; default: the host of `tas.sip_uri`.
    pub contact_host: Option<String>,
    /// The address written into SDP answers; unspecified (the default): the address the
    /// INVITE came to.
    pub media_address: std::net::IpAddr,
    /// Reliable provisional responses (RFC 3262): `off`, `supported` or `required`.
    pub rel100: sip::config::ExtensionUse,
    /// Session timers (RFC 4028): `off`, `supported` or `required`.
    pub session_timer: sip::config::ExtensionUse,
    /// The session interval asked for, and granted to calls that ask none.
    #[serde(with = "humantime_serde")]
    pub session_expires: Duration,
    /// The shortest session interval accepted (smaller gets 422); RFC 4028 says 90 s.
    #[serde(with = "humantime_serde")]
    pub min_se: Duration,
}

impl SipConfig {
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

impl Default for SipConfig {
    fn default() -> Self {
        Self {
            tls_listen: None,
            tcp_listen: None,
            udp_listen: None,
            cert_file: None,
            key_file: None,
            certificates: Vec::new(),
            tls_watch_interval: Duration::from_secs(10),
            client_ca_file: None,
            core_ca_file: None,
            core_uri: None,
            allow: Vec::new(),
            max_connections: 10_000,
            max_connections_per_peer: 1_000,
            message_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            contact_host: None,
            media_address: std::net::IpAddr::from([0, 0, 0, 0]),
            rel100: sip::config::ExtensionUse::Supported,
            session_timer: sip::config::ExtensionUse::Supported,
            session_expires: sip::config::ExtensionsConfig::default().session_expires,
            min_se: sip::config::ExtensionsConfig::default().min_se,
        }
    }
}

/// Media of the calls the TAS answers itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaConfig {
    /// The local address RTP sockets bind to.
    pub bind_address: std::net::IpAddr,
    /// The UDP ports for RTP, `"20000-29999"`.
    pub rtp_ports: String,
    /// A call whose peer sends no RTP for this long is ended with BYE.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Audio codecs (PCMA, PCMU, OPUS), in order of preference, for plain RTP and WebRTC alike.
    pub codecs: Vec<media::codec::Codec>,
}

impl Default for MediaConfig {
    fn default() -> Self {
        use media::codec::Codec;
        Self {
            bind_address: std::net::IpAddr::from([0, 0, 0, 0]),
            rtp_ports: "20000-29999".into(),
            timeout: Duration::from_secs(30),
            codecs: Codec::ALL.to_vec(),
        }
    }
}

impl MediaConfig {
    /// The RTP port range, checked.
    pub fn port_range(&self) -> Result<std::ops::RangeInclusive<u16>, String> {
        let bad = || format!("media.rtp_ports {:?} must be \"low-high\" with 1 <= low <= high", self.rtp_ports);
        let (low, high) = self.rtp_ports.split_once('-').ok_or_else(bad)?;
        let (low, high): (u16, u16) = (low.trim().parse().map_err(|_| bad())?, high.trim().parse().map_err(|_| bad())?);
        if low == 0 || low > high {
            return Err(bad());
        }
        Ok(low..=high)
    }
}

/// The voicemail app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VoicemailConfig {
    /// The mailbox folder (one folder per subscriber inside).
    pub dir: PathBuf,
    /// The system's greeting where a mailbox has none of its own (WAV 16-bit PCM at 8/16/48
    /// kHz, or Ogg/Opus); default: a synthesised chime.
    pub greeting: Option<PathBuf>,
    /// The system's greeting for callers who found the owner busy; default: `greeting`.
    pub busy_greeting: Option<PathBuf>,
    /// The number owners call to reach the mailbox menu (as do other phones, with a PIN); an
    /// owner also reaches it by calling their own number.
    pub access_number: Option<domain::types::Msisdn>,
    /// The menu's prompts in the operator's own recordings: `<dir>/<language>/<name>.wav`;
    /// any not there are the shipped English ones.
    pub prompts_dir: Option<PathBuf>,
    /// The prompts' language (a folder of `prompts_dir`).
    pub language: String,
    /// Messages a mailbox keeps; a full one plays "mailbox full" instead of taking another.
    pub max_messages: u32,
    /// Wrong PINs in a row before the mailbox locks.
    pub pin_attempts: u32,
    /// How long a mailbox stays locked.
    #[serde(with = "humantime_serde")]
    pub pin_lockout: Duration,
    /// Heard and saved messages are removed this long after they were last changed.
    #[serde(with = "humantime_serde")]
    pub keep_saved: Duration,
    /// Deleted messages are removed for good this long after deletion.
    #[serde(with = "humantime_serde")]
    pub keep_deleted: Duration,
    /// Longest message.
    #[serde(with = "humantime_serde")]
    pub max_length: Duration,
    /// This long without speech ends the recording.
    #[serde(with = "humantime_serde")]
    pub silence: Duration,
    /// Telling the owner a message is waiting.
    pub notification: NotificationConfig,
}

/// Telling a mailbox's owner that a message is waiting: an SMS through the operator's
/// SmsService, over the registrations' connection and OAuth client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotificationConfig {
    /// The SMS's sender, as the operator approved it; unset: no SMS.
    pub sms_from: Option<String>,
    /// The text; `{caller}`, `{seconds}` and `{time}` (RFC 3339, UTC) are filled in.
    pub sms_text: String,
    /// Attempts in all, when the core answers ERROR or cannot be reached (REJECT is final).
    pub attempts: u32,
    /// The wait before the second attempt, doubled for each one after (up to ten times this).
    #[serde(with = "humantime_serde")]
    pub retry: Duration,
    /// A URL each new message is POSTed to as JSON (for apps); unset: none.
    pub webhook_url: Option<String>,
    /// The environment variable holding the webhook's HMAC-SHA256 signing secret.
    pub webhook_secret_env: Option<String>,
}

impl Default for NotificationConfig {
    fn default() -> Self {
        Self {
            sms_from: None,
            sms_text: "New voicemail from {caller} ({seconds} s), left {time}.".into(),
            attempts: 5,
            retry: Duration::from_secs(10),
            webhook_url: None,
            webhook_secret_env: None,
        }
    }
}

impl Default for VoicemailConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("var/voicemail"),
            greeting: None,
            busy_greeting: None,
            access_number: None,
            prompts_dir: None,
            language: "en".into(),
            max_messages: 100,
            pin_attempts: 3,
            pin_lockout: Duration::from_secs(15 * 60),
            keep_saved: Duration::from_secs(30 * 86_400),
            keep_deleted: Duration::from_secs(86_400),
            max_length: Duration::from_secs(120),
            silence: Duration::from_secs(10),
            notification: NotificationConfig::default(),
        }
    }
}

/// The announcement app.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnnouncementConfig {
    /// What it plays (WAV 16-bit PCM at 8/16/48 kHz, or Ogg/Opus); default: a synthesised chime.
    pub file: Option<PathBuf>,
}

/// The three codes of one service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCodes {
    /// Switches the service on (a forward's target follows).
    pub on: String,
    /// Switches it off.
    pub off: String,
    /// Tells whether it is on, and where calls go.
    pub query: String,
}

impl ServiceCodes {
    fn new(on: &str, off: &str, query: &str) -> Self {
        Self { on: on.into(), off: off.into(), query: query.into() }
    }
}

/// `[feature_codes]`: the codes subscribers dial; each service's three codes are set
/// together.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeatureCodesConfig {
    /// Whether dialled codes are read at all (otherwise such a call is an unknown number).
    pub enabled: bool,
    /// Call forwarding unconditional (CFU): `*72`, `*73`, `*#72`.
    pub forward_always: ServiceCodes,
    /// Call forwarding on busy (CFB): `*90`, `*91`, `*#90`.
    pub forward_busy: ServiceCodes,
    /// Call forwarding on no reply (CFNR): `*92`, `*93`, `*#92`.
    pub forward_no_answer: ServiceCodes,
    /// Call forwarding when unreachable (CFNRc): `*94`, `*95`, `*#94`.
    pub forward_unreachable: ServiceCodes,
    /// Do-not-disturb: `*78`, `*79`, `*#78`.
    pub do_not_disturb: ServiceCodes,
}

impl FeatureCodesConfig {
    /// Why these codes cannot be used, if they cannot: each must be a service code, and no two
    /// may be the same.
    pub fn check(&self) -> Result<(), String> {
        let services = [
            ("forward_always", &self.forward_always),
            ("forward_busy", &self.forward_busy),
            ("forward_no_answer", &self.forward_no_answer),
            ("forward_unreachable", &self.forward_unreachable),
            ("do_not_disturb", &self.do_not_disturb),
        ];
        let mut seen = std::collections::HashMap::new();
        for (service, codes) in services {
            for (kind, code) in [("on", &codes.on), ("off", &codes.off), ("query", &codes.query)] {
                let key = format!("feature_codes.{service}.{kind}");
                ServiceCode::parse(code).map_err(|error| format!("{key}: {error}"))?;
                if let Some(other) = seen.insert(code.clone(), key.clone()) {
                    return Err(format!("{key}: {code:?} is already {other}"));
                }
            }
        }
        Ok(())
    }
}

impl Default for FeatureCodesConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            forward_always: ServiceCodes::new("*72", "*73", "*#72"),
            forward_busy: ServiceCodes::new("*90", "*91", "*#90"),
            forward_no_answer: ServiceCodes::new("*92", "*93", "*#92"),
            forward_unreachable: ServiceCodes::new("*94", "*95", "*#94"),
            do_not_disturb: ServiceCodes::new("*78", "*79", "*#78"),
        }
    }
}

/// `[signup]`: subscribers enable the product themselves through the operator's consent page
/// (the OAuth 2.0 authorization code flow), each then registered with their own token.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupConfig {
    /// The product's client id at the operator's identity provider.
    pub client_id: String,
    /// The environment variable holding the client secret.
    pub client_secret_env: String,
    /// The authorization endpoint the browser is sent to.
    #[serde(default = "signup_defaults::authorize_url")]
    pub authorize_url: String,
    /// The token endpoint.
    #[serde(default = "signup_defaults::token_url")]
    pub token_url: String,
    /// The userinfo endpoint (tells the subscriber's number).
    #[serde(default = "signup_defaults::userinfo_url")]
    pub userinfo_url: String,
    /// This TAS's callback as the browser reaches it (`https://tas.example.com/signup/callback`),
    /// registered with the operator for the client.
    pub redirect_uri: String,
    /// The API scope asked besides `phone offline_access` (older pages:
    /// `call.control.answer_and_initiate`).
    #[serde(default = "signup_defaults::scope")]
    pub scope: String,
    /// The environment variable holding the key tokens are sealed with in the database: 32
    /// random bytes, base64 (`openssl rand -base64 32`).
    pub token_key_env: String,
    /// How a subscriber who signs up is registered.
    #[serde(default = "signup_defaults::route_type")]
    pub route_type: RouteType,
    /// Their MO prefix.
    #[serde(default)]
    pub mo_prefix: Option<Prefix>,
    /// Their MT prefix.
    #[serde(default)]
    pub mt_prefix: Option<Prefix>,
    /// How often tokens due for a refresh are looked for (and other instances' changes read).
    #[serde(default = "signup_defaults::poll_interval", with = "humantime_serde")]
    pub poll_interval: Duration,
}

/// `[signup]` defaults: the operator's identity provider.
mod signup_defaults {
    use super::*;

    pub(super) fn authorize_url() -> String {
        "https://id.wgtwo.com/oauth2/auth".into()
    }

    pub(super) fn token_url() -> String {
        domain::config::defaults::token_url()
    }

    pub(super) fn userinfo_url() -> String {
        "https://id.wgtwo.com/userinfo".into()
    }

    pub(super) fn scope() -> String {
        domain::config::defaults::SCOPE.into()
    }

    pub(super) fn route_type() -> RouteType {
        RouteType::Loop
    }

    pub(super) fn poll_interval() -> Duration {
        Duration::from_secs(5)
    }
}

/// What calls get that no subscriber's behaviour covers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallsConfig {
    /// A Request-URI that matches no prefix and no subscriber: `reject 404` or `reject 403`
    /// (or, in a lab, `answer echo`).
    pub unknown_number: Action,
    /// A call the subscriber's route type should not have brought (an MT call for Loop-MO...).
    pub unexpected: Action,
    /// At SIGTERM, how long calls under way may go on before they are hung up; new calls and
    /// OPTIONS probes get 503 with this as Retry-After meanwhile, so that the core or a
    /// dispatcher sends them to another instance (a rolling restart then cuts no call shorter
    /// than this).
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Diversions a call may already show (History-Info with a `cause`, Diversion entries)
    /// and still be forwarded again; beyond, or to a number already in its history, it is
    /// not forwarded: `on_diversion_limit` applies instead.
    pub max_diversions: u32,
    /// What a call that may not be forwarded again gets: `answer voicemail` (the subscriber's
    /// mailbox), or a refusal such as `reject 482 Loop Detected`.
    pub on_diversion_limit: Action,
}

impl Default for CallsConfig {
    fn default() -> Self {
        Self {
            unknown_number: Action::reject(StatusCode::NOT_FOUND),
            unexpected: Action::reject(StatusCode::FORBIDDEN),
            drain_timeout: Duration::from_secs(30),
            max_diversions: 5,
            on_diversion_limit: Action::Answer(App::Voicemail),
        }
    }
}

/// This TAS as registered with the core.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasConfig {
    /// `sip_uri` of every registration: `sips:host` (DNS SRV) or `sips:host:port`.
    pub sip_uri: SipsUri,
}

/// One subscriber (MSISDN) served by this TAS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriberConfig {
    /// The subscriber's number, E.164.
    pub phone_number: Msisdn,
    /// How the core routes the subscriber's calls to this TAS.
    pub route_type: RouteType,
    /// Prefix marking calls the subscriber makes.
    #[serde(default)]
    pub mo_prefix: Option<Prefix>,
    /// Prefix marking calls the subscriber receives.
    #[serde(default)]
    pub mt_prefix: Option<Prefix>,
    /// What calls the subscriber makes get; default: by route type.
    #[serde(default)]
    pub mo: Option<BehaviourConfig>,
    /// What calls the subscriber receives get; default: by route type.
    #[serde(default)]
    pub mt: Option<BehaviourConfig>,
}

impl SubscriberConfig {
    /// Checks the subscriber alone: each behaviour makes sense, and applies to calls its route
    /// type brings. The config file's subscribers and the database's pass the same check.
    pub fn check(&self) -> Result<(), String> {
        let number = &self.phone_number;
        for (direction, configured) in [(Direction::Originating, &self.mo), (Direction::Terminating, &self.mt)] {
            let key = direction.to_string().to_ascii_lowercase();
            match self.behaviour(direction) {
                Some(behaviour) => {
                    behaviour.validate().map_err(|error| format!("subscriber {number}, {key}: {error}"))?
                }
                None if configured.is_some() => {
                    return Err(format!(
                        "subscriber {number}: route type {} brings no {direction} calls, so `{key}` cannot apply",
                        self.route_type.name()
                    ))
                }
                None => {}
            }
        }
        Ok(())
    }

    /// The behaviour in `direction`: the configured one, else the route type's default; `None`
    /// when the route type does not bring such calls.
    pub fn behaviour(&self, direction: Direction) -> Option<Behaviour> {
        let default = Behaviour::default_for(self.route_type, direction)?;
        let configured = match direction {
            Direction::Originating => &self.mo,
            Direction::Terminating => &self.mt,
        };
        Some(configured.clone().map(Behaviour::from).unwrap_or(default))
    }
}

impl ServeConfig {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config: Self = read_toml(path)?;
        config.validate().map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })?;
        Ok(config)
    }

    /// Checks what serde alone cannot.
    pub fn validate(&self) -> Result<(), String> {
        let endpoint = &self.core.endpoint;
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return Err(format!("core.endpoint {endpoint:?} must start with http:// or https://"));
        }
        let registrar = &self.registrar;
        if !(registrar.refresh_at > 0.0 && registrar.refresh_at < 1.0) {
            return Err("registrar.refresh_at must be between 0 and 1 (exclusive)".into());
        }
        if !(0.0..=registrar.refresh_at.min(1.0 - registrar.refresh_at)).contains(&registrar.refresh_jitter) {
            return Err("registrar.refresh_jitter must keep refresh_at ± jitter within (0, 1)".into());
        }
        if registrar.initial_backoff.is_zero() || registrar.max_backoff < registrar.initial_backoff {
            return Err("registrar.initial_backoff must be > 0 and <= registrar.max_backoff".into());
        }
        if registrar.max_in_flight == 0 {
            return Err("registrar.max_in_flight must be at least 1".into());
        }
        let sip = &self.sip;
        if sip.tls_listen.is_some() && (sip.cert_file.is_none() || sip.key_file.is_none()) {
            return Err("sip.tls_listen needs sip.cert_file and sip.key_file (make them with `ringer certs`)".into());
        }
        if !sip.certificates.is_empty() && sip.cert_file.is_none() {
            return Err(
                "sip.certificate entries need sip.cert_file and sip.key_file, served when no name matches".into()
            );
        }
        if let Some(uri) = &sip.core_uri {
            match sip::message::Uri::parse(uri) {
                Ok(sip::message::Uri::Sip(_)) => {}
                _ => return Err(format!("sip.core_uri {uri:?} is not a sip: or sips: URI")),
            }
        }
        sip.extensions().validate("sip")?;
        if self.call_records.max_size.is_some_and(|max| max < 4096) {
            return Err("call_records.max_size must be at least 4096 bytes".into());
        }
        if sip.max_connections == 0 || sip.max_connections_per_peer == 0 {
            return Err("sip.max_connections and sip.max_connections_per_peer must be at least 1".into());
        }
        let mut seen = HashSet::new();
        for subscriber in &self.subscribers {
            let number = &subscriber.phone_number;
            if !seen.insert(number) {
                return Err(format!("subscriber {number} is listed twice"));
            }
            subscriber.check()?;
        }
        let store = &self.store;
        if store.heartbeat_interval.is_zero() || store.lease_timeout < store.heartbeat_interval * 2 {
            return Err("store.lease_timeout must be at least twice store.heartbeat_interval (above zero)".into());
        }
        if store.instance.as_deref().is_some_and(|name| name.trim().is_empty()) {
            return Err("store.instance must not be empty".into());
        }
        self.media.port_range()?;
        if self.media.codecs.is_empty() {
            return Err("media.codecs must name at least one codec (PCMA, PCMU, OPUS)".into());
        }
        if self.media.timeout.is_zero() {
            return Err("media.timeout must be above zero".into());
        }
        let voicemail = &self.voicemail;
        if voicemail.max_messages == 0 || voicemail.pin_attempts == 0 {
            return Err("voicemail.max_messages and voicemail.pin_attempts must be at least 1".into());
        }
        if voicemail.language.is_empty()
            || !voicemail.language.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("voicemail.language {:?} must be a tag such as en or nb-NO", voicemail.language));
        }
        self.feature_codes.check()?;
        if let Some(signup) = &self.signup {
            for (key, url) in [
                ("signup.authorize_url", &signup.authorize_url),
                ("signup.token_url", &signup.token_url),
                ("signup.userinfo_url", &signup.userinfo_url),
                ("signup.redirect_uri", &signup.redirect_uri),
            ] {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(format!("{key} {url:?} must be an http:// or https:// URL"));
                }
            }
            if self.http.listen.is_none() {
                return Err("signup needs http.listen: its pages are served there".into());
            }
            if signup.poll_interval.is_zero() {
                return Err("signup.poll_interval must be above zero".into());
            }
        }
        for (key, action) in [
            ("calls.unknown_number", &self.calls.unknown_number),
            ("calls.unexpected", &self.calls.unexpected),
            ("calls.on_diversion_limit", &self.calls.on_diversion_limit),
        ] {
            if action.is_relay() {
                return Err(format!("{key} must be reject, announce or answer: it is no place to loop or forward"));
            }
        }
        Ok(())
    }

    /// The registration to upsert for each subscriber.
    pub fn registrations(&self) -> Vec<Registration> {
        self.subscribers
            .iter()
            .map(|subscriber| Registration {
                phone_number: Some(subscriber.phone_number.clone()),
                sip_uri: self.tas.sip_uri.clone(),
                route_type: subscriber.route_type,
                mo_prefix: subscriber.mo_prefix.clone(),
                mt_prefix: subscriber.mt_prefix.clone(),
            })
            .collect()
    }

    /// The configuration `ringer serve` runs on without `--config`: sample subscribers, one of
    /// each route type, registered with an emulated core at `core_endpoint`.
    pub fn embedded(core_endpoint: String, certs: &tls::devcert::DevCertificateFiles) -> Self {
        let subscriber = |number: &str, route_type, mo: &str, mt: &str| SubscriberConfig {
            // The literals below are valid; a failure here is a programming error caught by tests.
            phone_number: Msisdn::parse(number).unwrap_or_else(|_| unreachable!("sample number")),
            route_type,
            mo_prefix: Prefix::from_wire(mo).ok().flatten(),
            mt_prefix: Prefix::from_wire(mt).ok().flatten(),
            mo: None,
            mt: None,
        };
        Self {
            tas: TasConfig {
                sip_uri: SipsUri::parse("sips:localhost:5061").unwrap_or_else(|_| unreachable!("sample uri")),
            },
            core: CoreApiConfig {
                endpoint: core_endpoint,
                ca_file: None,
                connect_timeout: registrar::config::default_connect_timeout(),
                request_timeout: registrar::config::default_request_timeout(),
            },
            auth: AuthConfig::None,
            registrar: RegistrarConfig::default(),
            calls: CallsConfig::default(),
            feature_codes: FeatureCodesConfig::default(),
            signup: None,
            http: HttpConfig::default(),
            call_records: CallRecordsConfig::default(),
            hep: HepConfig::default(),
            store: StoreConfig::default(),
            media: MediaConfig::default(),
            voicemail: VoicemailConfig::default(),
            announcement: AnnouncementConfig::default(),
            sip: SipConfig {
                tls_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5061))),
                tcp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
                udp_listen: Some(SocketAddr::from(([127, 0, 0, 1], 5060))),
                cert_file: Some(certs.server_cert.clone()),
                key_file: Some(certs.server_key.clone()),
                media_address: std::net::IpAddr::from([127, 0, 0, 1]),
                ..SipConfig::default()
            },
            subscribers: vec![
                subscriber("+4799990001", RouteType::Loop, "11", "21"),
                subscriber("+4799990002", RouteType::LoopMo, "12", ""),
                subscriber("+4799990003", RouteType::LoopMt, "", "23"),
                subscriber("+4799990004", RouteType::Fork, "14", "24"),
                subscriber("+4799990005", RouteType::Fallback, "15", "25"),
                subscriber("+4799990006", RouteType::Ingress, "", ""),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_validate() {
        let files = tls::devcert::DevCertificateFiles {
            ca_cert: "ca.pem".into(),
            server_cert: "server.pem".into(),
            server_key: "server.key".into(),
        };
        let config = ServeConfig::embedded("http://127.0.0.1:1".into(), &files);
        assert_eq!(config.validate(), Ok(()));
        let routes: HashSet<RouteType> = config.subscribers.iter().map(|s| s.route_type).collect();
        assert_eq!(routes.len(), RouteType::ALL.len());
    }

    #[test]
    fn example_file_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ringer.example.toml");
        let config = ServeConfig::load(&path).unwrap();
        assert!(!config.subscribers.is_empty());
        assert!(matches!(config.auth, AuthConfig::ClientCredentials { .. }));
    }

    #[test]
    fn bad_values_are_refused_with_their_place() {
        let cases = [
            ("[tas]\nsip_uri = \"sip:tas.example.com\"\n[core]\nendpoint = \"http://x:1\"\n", "Secure SIP domain name required"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[[subscriber]]\nphone_number = \"4799\"\nroute_type = \"loop\"\n", "E.164"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[[subscriber]]\nphone_number = \"+4799\"\nroute_type = \"sideways\"\n", "unknown variant"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"x:1\"\n", "must start with http"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\nbogus = 1\n", "unknown field"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[registrar]\nrefresh_at = 1.5\n", "refresh_at"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[voicemail]\npin_attempts = 0\n", "pin_attempts"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[calls]\non_diversion_limit = \"forward +4712345678\"\n", "calls.on_diversion_limit"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[voicemail]\nlanguage = \"../etc\"\n", "voicemail.language"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[voicemail]\naccess_number = \"555\"\n", "E.164"),
            ("[tas]\nsip_uri = \"sips:tas\"\n[core]\nendpoint = \"http://x:1\"\n[http]\nlisten = \"nowhere\"\n", "invalid socket address"),
        ];
        let dir = tempfile::tempdir().unwrap();
        for (text, expected) in cases {
            let path = dir.path().join("c.toml");
            std::fs::write(&path, text).unwrap();
            let error = ServeConfig::load(&path).unwrap_err().to_string();
            assert!(error.contains(expected), "{error} should mention {expected}");
            assert!(error.contains("c.toml"), "{error} should name the file");
        }
    }
}
