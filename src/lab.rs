//! The whole call path in one process: the emulated core (gRPC and SBC with simulated
//! handsets), the TAS registered with it through the real registrar, and a caller ("Alice")
//! that places calls into the SBC. `ringer serve` without a config, `ringer demo` and the
//! tests run on it.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

use domain::types::{Msisdn, SipsUri};
use emulator::caller::Caller;
use emulator::config::{AuthMode, CoreConfig, GrpcListenConfig, HandsetConfig, HandsetMode, SbcConfig, SbcRoute};
use emulator::sbc::Sbc;
use emulator::CoreHandle;
use registrar::auth::Credentials;
use registrar::{Registrar, RegistrationClient};
use sip::endpoint::Endpoint;
use sip::uac::OutgoingCall;
use tas::call::action::{Action, App, BehaviourConfig};
use tas::call::records::RecordWriter;
use tas::config::{
    AuthConfig, CallsConfig, CoreApiConfig, MediaConfig, RegistrarConfig, ServeConfig, SipConfig, SubscriberConfig,
    TasConfig, VoicemailConfig,
};
use tas::Tas;
use tls::devcert::DevCertificateFiles;

/// Why the lab could not start.
#[derive(Debug, Error)]
pub enum LabError {
    /// The emulated core.
    #[error("emulated core: {0}")]
    Core(#[from] emulator::CoreError),
    /// The TAS.
    #[error("TAS: {0}")]
    Tas(#[from] tas::TasError),
    /// The registrar's client.
    #[error("registrar: {0}")]
    Registrar(#[from] registrar::ClientError),
    /// A listener.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The SBC of this lab has no UDP access listener to call in through.
    #[error("the SBC has no UDP access listener")]
    NoAccess,
    /// Alice's INVITE could not be sent.
    #[error("Alice's call: {0}")]
    Call(#[from] emulator::caller::DialError),
    /// The assembled TAS config is invalid.
    #[error("{0}")]
    Config(String),
    /// The call records file cannot be opened.
    #[error(transparent)]
    Records(#[from] tas::call::records::RecordFileError),
}

/// Where the lab listens; 0 picks a free port.
#[derive(Debug, Clone, Copy)]
pub struct LabPorts {
    /// The TAS's TLS listener (the core's leg 2 goes here).
    pub tas_tls: u16,
    /// The TAS's plain TCP and UDP listener for lab peers such as SIPp; `None`: off.
    pub tas_plain: Option<u16>,
    /// The SBC's access side, UDP and TCP: where SIP user agents call in.
    pub access: u16,
    /// The SBC's interconnect (TLS): where the TAS sends leg 3.
    pub interconnect: u16,
}

impl LabPorts {
    /// Free ports everywhere (tests).
    pub const ANY: LabPorts = LabPorts { tas_tls: 0, tas_plain: None, access: 0, interconnect: 0 };
    /// The documented ports of `ringer serve`'s embedded defaults.
    pub const EMBEDDED: LabPorts = LabPorts { tas_tls: 5061, tas_plain: Some(5060), access: 5070, interconnect: 5071 };
}

/// What runs in the lab.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Ports.
    pub ports: LabPorts,
    /// The TAS's subscribers and their behaviours.
    pub subscribers: Vec<SubscriberConfig>,
    /// The SBC's simulated handsets.
    pub handsets: Vec<HandsetConfig>,
    /// The SBC's Fallback no-answer time.
    pub fallback_no_answer: Duration,
    /// The TAS's `[calls]` settings.
    pub calls: CallsConfig,
    /// Where the SBC sends calls to numbers that are not handsets (SIPp as Bob...).
    pub routes: Vec<SbcRoute>,
    /// The TAS's media timeout.
    pub media_timeout: Duration,
    /// The TAS's mailbox folder.
    pub voicemail_dir: std::path::PathBuf,
    /// The voicemail settings beyond the spool folder (greetings, access number, quota, PINs).
    pub voicemail: VoicemailConfig,
    /// A store (`sqlite://FILE`) for the mailboxes: messages move there from the spool as
    /// they are recorded, the owner's menu and the greetings are served from it, and its HTTP
    /// API listens on a free loopback port. `None`: the spool alone, no menu.
    pub mailbox_store: Option<String>,
    /// Where the TAS's media binds and what its SDP says (loopback by default; a SIP client that
    /// leaves loopback out of ICE, as baresip does, needs an interface address).
    pub media_address: std::net::IpAddr,
    /// A proxy between the core and the TAS (a record-routing SBC or load balancer such as
    /// Kamailio); `None`: the core and the TAS talk directly.
    pub proxy: Option<ProxyPath>,
    /// The SBC's use of 100rel and session timers.
    pub sbc_extensions: sip::config::ExtensionsConfig,
    /// Where the TAS writes its call records (JSON lines); `None`: nowhere.
    pub call_records_file: Option<std::path::PathBuf>,
}

/// Where the core and the TAS reach each other when a proxy sits between them.
#[derive(Debug, Clone)]
pub struct ProxyPath {
    /// The `sip_uri` the TAS registers: the proxy's side facing the core.
    pub registered: SipsUri,
    /// The TAS's `sip.core_uri`: the proxy's side facing the TAS, where leg 3 goes.
    pub core_uri: String,
}

/// Sample numbers: one subscriber of each route type, and callees.
pub mod samples {
    /// Loop (both directions).
    pub const LOOP: &str = "+4799990001";
    /// Loop-MO.
    pub const LOOP_MO: &str = "+4799990002";
    /// Loop-MT.
    pub const LOOP_MT: &str = "+4799990003";
    /// Fork.
    pub const FORK: &str = "+4799990004";
    /// Fallback.
    pub const FALLBACK: &str = "+4799990005";
    /// Ingress.
    pub const INGRESS: &str = "+4799990006";
    /// A caller or callee with no registration, whose handset answers.
    pub const BOB: &str = "+4712345678";
    /// A caller with no registration.
    pub const ALICE: &str = "+4711111111";
    /// Where the TAS's own calls (Ingress) say they come from.
    pub const TAS_NUMBER: &str = "+4799999999";
}

fn number(text: &str) -> Msisdn {
    // The samples above are valid E.164; tests check every one of them.
    Msisdn::parse(text).unwrap_or_else(|_| unreachable!("sample number {text}"))
}

impl LabConfig {
    /// The embedded defaults: one subscriber of each route type with behaviours that finish
    /// quickly, and a handset for every number.
    pub fn samples(ports: LabPorts) -> Self {
        use samples::*;
        let config = ServeConfig::embedded("http://127.0.0.1:1".into(), &placeholder_certs());
        let mut subscribers = config.subscribers;
        let voicemail = Action::Answer(App::Voicemail);
        let full = |action, ring_time, on_busy, on_no_answer| BehaviourConfig::Full {
            action,
            ring_time,
            no_answer_after: None,
            on_busy,
            on_no_answer,
            on_unreachable: None,
        };
        for subscriber in &mut subscribers {
            match subscriber.phone_number.as_str() {
                // Loop both ways; calls it receives go to voicemail on busy or no answer.
                LOOP => {
                    subscriber.mt = Some(full(Action::Loop, None, Some(voicemail.clone()), Some(voicemail.clone())))
                }
                // The phone rings 2 s beside the TAS before voicemail takes the call.
                FORK => subscriber.mt = Some(full(voicemail.clone(), Some(Duration::from_secs(2)), None, None)),
                _ => {}
            }
        }
        let handset = |text: &str, mode, ring_ms| HandsetConfig {
            number: number(text),
            mode,
            ring_time: Duration::from_millis(ring_ms),
            hang_up_after: None,
        };
        Self {
            ports,
            subscribers,
            handsets: vec![
                handset(LOOP, HandsetMode::Answer, 200),
                handset(LOOP_MO, HandsetMode::Answer, 200),
                handset(LOOP_MT, HandsetMode::Answer, 200),
                handset(FORK, HandsetMode::Answer, 500),
                handset(FALLBACK, HandsetMode::Busy, 0),
                handset(INGRESS, HandsetMode::Answer, 200),
                handset(BOB, HandsetMode::Answer, 200),
            ],
            fallback_no_answer: Duration::from_secs(30),
            calls: CallsConfig::default(),
            routes: Vec::new(),
            media_timeout: MediaConfig::default().timeout,
            voicemail_dir: VoicemailConfig::default().dir,
            voicemail: VoicemailConfig::default(),
            mailbox_store: None,
            media_address: std::net::IpAddr::from([127, 0, 0, 1]),
            proxy: None,
            sbc_extensions: sip::config::ExtensionsConfig::default(),
            call_records_file: None,
        }
    }
}

fn placeholder_certs() -> DevCertificateFiles {
    DevCertificateFiles { ca_cert: "ca.pem".into(), server_cert: "server.pem".into(), server_key: "server.key".into() }
}

/// A running lab.
pub struct Lab {
    /// The emulated core.
    pub core: CoreHandle,
    /// The TAS.
    pub tas: Tas,
    /// The TAS's config as assembled.
    pub config: ServeConfig,
    /// The registrar keeping the subscribers registered.
    pub registrar: Registrar,
    /// The caller: a SIP user agent on loopback UDP.
    pub alice: Caller,
    /// The mailboxes in a store, with their HTTP API, when configured.
    pub mailboxes: Option<LabMailboxes>,
}

/// The lab's mailboxes: the store, the archiver moving messages into it, the HTTP API (with
/// the self-care page).
pub struct LabMailboxes {
    /// The mailboxes as the TAS serves them.
    pub mailboxes: tas::mailbox::Mailboxes,
    /// Where the HTTP API listens.
    pub http: SocketAddr,
    /// Bound at start, served once the TAS's router exists.
    listener: Option<tokio::net::TcpListener>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// How often the lab moves finished messages from the spool into the store.
const LAB_SWEEP: Duration = Duration::from_millis(100);

impl LabMailboxes {
    async fn start(url: &str, voicemail: &VoicemailConfig) -> Result<Self, LabError> {
        let failed = |what: &str, error: &dyn std::fmt::Display| LabError::Config(format!("mailbox {what}: {error}"));
        let database = store::Store::open(url).await.map_err(|e| failed("store", &e))?;
        database.migrate().await.map_err(|e| failed("store", &e))?;
        let spool = media::mailbox::Mailbox::open(&voicemail.dir)?;
        let archiver = tas::voicemail::Archiver::new(spool, database.clone(), "lab");
        let mailboxes = tas::mailbox::Mailboxes::new(database, voicemail).map_err(|e| failed("audio", &e))?;
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let http = listener.local_addr()?;
        Ok(Self { mailboxes, http, listener: Some(listener), tasks: vec![archiver.spawn(LAB_SWEEP)] })
    }

    /// Serves the HTTP API for the subscribers of `router`; one-time PINs by SMS through the
    /// core at `core_api` when `voicemail.notification.sms_from` is set.
    fn serve(
        &mut self,
        router: std::sync::Arc<tas::call::CallRouter>,
        core_api: &registrar::config::CoreApiConfig,
        sms_from: Option<String>,
    ) -> Result<(), LabError> {
        let Some(listener) = self.listener.take() else { return Ok(()) };
        let pin_sms = match sms_from {
            Some(from) => {
                let core = registrar::client::CoreConnection::new(core_api, Credentials::None)
                    .map_err(|e| LabError::Config(format!("SMS client: {e}")))?;
                Some(tas::selfcare::PinSms { sms: registrar::sms::SmsClient::over(core), from })
            }
            None => None,
        };
        let api = tas::http_api(self.mailboxes.clone(), router, pin_sms, None);
        self.tasks.push(tokio::spawn(async move {
            let _ = axum::serve(listener, api).await;
        }));
        Ok(())
    }
}

impl Drop for LabMailboxes {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Lab {
    /// Starts the core, the TAS (certificates from `certs`, valid for localhost) and Alice,
    /// and registers the subscribers.
    pub async fn start(config: LabConfig, certs: &DevCertificateFiles) -> Result<Lab, LabError> {
        let loopback = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let core_config = CoreConfig {
            grpc: GrpcListenConfig { listen: loopback(0), tls: None },
            sbc: Some(SbcConfig {
                udp_listen: Some(loopback(config.ports.access)),
                tcp_listen: Some(loopback(config.ports.access)),
                tls_listen: None,
                interconnect_listen: loopback(config.ports.interconnect),
                cert_file: Some(certs.server_cert.clone()),
                key_file: Some(certs.server_key.clone()),
                tas_ca_file: Some(certs.ca_cert.clone()),
                domain: "core.ringer.invalid".into(),
                fallback_no_answer: config.fallback_no_answer,
                handsets: config.handsets.clone(),
                routes: config.routes.clone(),
                dns_server: None,
                leg2_tel: false,
                fork_mo: true,
                rel100: config.sbc_extensions.rel100,
                session_timer: config.sbc_extensions.session_timer,
                session_expires: config.sbc_extensions.session_expires,
                min_se: config.sbc_extensions.min_se,
            }),
            ..CoreConfig::default()
        };
        debug_assert_eq!(core_config.auth.mode, AuthMode::Sandbox);
        let core = emulator::start(&core_config).await?;
        let interconnect = core
            .sbc()
            .and_then(|sbc| sbc.interconnect.tls_addr)
            .ok_or_else(|| LabError::Config("the SBC has no interconnect listener".into()))?;
        let sips =
            |port: u16| SipsUri::parse(&format!("sips:localhost:{port}")).map_err(|e| LabError::Config(e.to_string()));
        let mut tas_config = ServeConfig {
            tas: TasConfig { sip_uri: sips(5061)? },
            core: CoreApiConfig {
                endpoint: core.endpoint(),
                ca_file: None,
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(10),
            },
            auth: AuthConfig::None,
            registrar: RegistrarConfig::default(),
            http: Default::default(),
            hep: Default::default(),
            call_records: tas::config::CallRecordsConfig { file: config.call_records_file.clone(), max_size: None },
            calls: config.calls.clone(),
            media: MediaConfig {
                bind_address: config.media_address,
                timeout: config.media_timeout,
                ..MediaConfig::default()
            },
            voicemail: VoicemailConfig { dir: config.voicemail_dir.clone(), ..config.voicemail.clone() },
            announcement: Default::default(),
            feature_codes: Default::default(),
            signup: None,
            store: Default::default(),
            sip: SipConfig {
                tls_listen: Some(loopback(config.ports.tas_tls)),
                tcp_listen: config.ports.tas_plain.map(loopback),
                udp_listen: config.ports.tas_plain.map(loopback),
                cert_file: Some(certs.server_cert.clone()),
                key_file: Some(certs.server_key.clone()),
                core_ca_file: Some(certs.ca_cert.clone()),
                core_uri: Some(match &config.proxy {
                    Some(proxy) => proxy.core_uri.clone(),
                    None => format!("sips:localhost:{}", interconnect.port()),
                }),
                media_address: config.media_address,
                // Peers that resolve names only through DNS (baresip) cannot look up
                // "localhost"; the development certificate names the address too.
                contact_host: Some("127.0.0.1".into()),
                ..SipConfig::default()
            },
            subscribers: config.subscribers.clone(),
        };
        tas_config.validate().map_err(LabError::Config)?;
        let mut mailboxes = match &config.mailbox_store {
            Some(url) => Some(LabMailboxes::start(url, &tas_config.voicemail).await?),
            None => None,
        };
        let records = match &tas_config.call_records.file {
            Some(_) => Some(RecordWriter::start(None, &tas_config.call_records, "lab")?.0),
            None => None,
        };
        let tas = tas::start_sip_with(&tas_config, records, mailboxes.as_ref().map(|m| m.mailboxes.clone())).await?;
        if let Some(mailboxes) = &mut mailboxes {
            mailboxes.serve(
                tas.router.clone(),
                &tas_config.core,
                tas_config.voicemail.notification.sms_from.clone(),
            )?;
        }
        // Register the port the TAS really listens on, or the proxy in front of it.
        let tls_port = tas.endpoint.tls_addr.map(|addr| addr.port()).unwrap_or(config.ports.tas_tls);
        tas_config.tas.sip_uri = match &config.proxy {
            Some(proxy) => proxy.registered.clone(),
            None => sips(tls_port)?,
        };
        let client = RegistrationClient::new(&tas_config.core, Credentials::None)?;
        let registrar = Registrar::start(client, tas_config.registrar.clone(), tas_config.registrations());
        let alice = Caller::start(loopback(0).ip(), "ringer-lab-alice").await?;
        Ok(Lab { core, tas, config: tas_config, registrar, alice, mailboxes })
    }

    /// The SBC.
    pub fn sbc(&self) -> Option<&Sbc> {
        self.core.sbc()
    }

    /// Whether every subscriber is registered with the core.
    pub fn registered(&self) -> bool {
        self.config.subscribers.iter().all(|s| self.core.registry().lookup(&s.phone_number).is_some())
    }

    /// Alice (`from`) calls `to` through the SBC's access side, offering `sdp`.
    pub fn call(&self, from: &Msisdn, to: &Msisdn, sdp: Bytes) -> Result<OutgoingCall, LabError> {
        let access = self.sbc().and_then(|sbc| sbc.access.udp_addr).ok_or(LabError::NoAccess)?;
        Ok(self.alice.invite(access, from, to, sdp)?)
    }

    /// Dialogs, pending INVITEs and client transactions under way anywhere (0 once every call is over).
    pub fn live_state(&self) -> usize {
        let endpoint = |e: &Endpoint| e.live_dialogs() + e.pending_invites() + e.clients().in_progress();
        let sbc = self.sbc().map(|sbc| sbc.live_state() + sbc.open_sessions()).unwrap_or(0);
        sbc + endpoint(&self.tas.endpoint) + endpoint(self.alice.endpoint())
    }

    /// Stops everything, deleting the registrations first.
    pub async fn shutdown(self) -> registrar::ShutdownReport {
        let report = self.registrar.shutdown().await;
        self.alice.shutdown();
        self.tas.endpoint.shutdown();
        self.core.shutdown().await;
        report
    }
}
