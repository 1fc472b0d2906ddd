//! The whole call path on loopback: the emulated core (gRPC registry and SBC with simulated
//! handsets), `ringer`'s TAS registered with it over TLS, and Alice, a SIP user agent that
//! calls into the SBC over UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringer::call::DefaultActionHandler;
use ringer::config::core::{HandsetConfig, HandsetMode, SbcConfig, SbcRoute};
use ringer::config::serve::ServeConfig;
use ringer::core::sbc::Sbc;
use ringer::core::CoreHandle;
use ringer::sip::endpoint::{self, Endpoint, EndpointConfig};
use ringer::sip::message::header::NameAddr;
use ringer::sip::message::Uri;
use ringer::sip::transaction::Timers;
use ringer::sip::transport::policy::PeerPolicy;
use ringer::sip::transport::stream::StreamLimits;
use ringer::sip::ua::UaConfig;
use ringer::sip::uac::{InviteSpec, OutgoingCall, Progress};
use ringer::tas::Tas;
use ringer::tls::devcert::DevCertificateFiles;
use ringer::types::{Registration, SipsUri};

use super::{loopback_any_port, msisdn, poll_until};

/// An SDP offer as SIPp or a desk phone sends it.
pub const OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0 8\r\na=rtpmap:0 PCMU/8000\r\n";

/// A running lab.
pub struct Lab {
    pub core: CoreHandle,
    pub tas: Tas,
    pub alice: Endpoint,
    pub certs: DevCertificateFiles,
    _dir: tempfile::TempDir,
}

/// A handset.
pub fn handset(number: &str, mode: HandsetMode) -> HandsetConfig {
    HandsetConfig { number: msisdn(number), mode, ring_time: Duration::from_millis(50), hang_up_after: None }
}

/// A subscriber of the TAS; `mo`/`mt` are behaviours in TOML (`"loop"`, `{ action = ... }`).
pub fn subscriber(number: &str, route_type: &str, mo_prefix: &str, mt_prefix: &str, mo: &str, mt: &str) -> String {
    let mut text = format!("[[subscriber]]\nphone_number = \"{number}\"\nroute_type = \"{route_type}\"\n");
    if !mo_prefix.is_empty() {
        text += &format!("mo_prefix = \"{mo_prefix}\"\n");
    }
    if !mt_prefix.is_empty() {
        text += &format!("mt_prefix = \"{mt_prefix}\"\n");
    }
    if !mo.is_empty() {
        text += &format!("mo = {mo}\n");
    }
    if !mt.is_empty() {
        text += &format!("mt = {mt}\n");
    }
    text
}

impl Lab {
    /// Starts the core with `handsets`, the TAS with `subscribers` (TOML), and registers them.
    pub async fn start(subscribers: &[String], handsets: Vec<HandsetConfig>) -> Lab {
        Self::start_with(subscribers, handsets, "", Duration::from_secs(30)).await
    }

    /// As [`Lab::start`], with extra `[calls]`-level TOML and the SBC's fallback timer.
    pub async fn start_with(
        subscribers: &[String],
        handsets: Vec<HandsetConfig>,
        extra: &str,
        fallback_no_answer: Duration,
    ) -> Lab {
        let dir = tempfile::tempdir().expect("temp dir");
        let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
        let certs = ringer::tls::devcert::generate(&names).expect("certs").write_to(dir.path()).expect("write certs");
        let sbc = SbcConfig {
            udp_listen: Some(loopback_any_port()),
            tcp_listen: Some(loopback_any_port()),
            tls_listen: None,
            interconnect_listen: loopback_any_port(),
            cert_file: Some(certs.server_cert.clone()),
            key_file: Some(certs.server_key.clone()),
            tas_ca_file: Some(certs.ca_cert.clone()),
            domain: "core.test".into(),
            fallback_no_answer,
            handsets,
            routes: Vec::new(),
        };
        let mut core_config =
            super::core_config(loopback_any_port(), ringer::config::core::AuthMode::Sandbox, Duration::from_secs(3600));
        core_config.sbc = Some(sbc);
        let core = ringer::core::start(&core_config).await.expect("core starts");
        let interconnect = core.sbc().and_then(|sbc| sbc.interconnect.tls_addr).expect("interconnect");
        let tas_port = super::free_port().port();
        let toml = format!(
            "[tas]\nsip_uri = \"sips:localhost:{tas_port}\"\n[core]\nendpoint = \"{}\"\n\
             [sip]\ntls_listen = \"127.0.0.1:{tas_port}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             core_uri = \"sips:localhost:{}\"\ncore_ca_file = \"{}\"\nmedia_address = \"127.0.0.1\"\n{extra}\n{}",
            core.endpoint(),
            certs.server_cert.display(),
            certs.server_key.display(),
            interconnect.port(),
            certs.ca_cert.display(),
            subscribers.join("\n"),
        );
        let config: ServeConfig = toml::from_str(&toml).expect("TAS config");
        config.validate().expect("valid TAS config");
        let tas = ringer::tas::start_sip(&config).await.expect("TAS starts");
        for registration in config.registrations() {
            register(&core, registration);
        }
        let alice = endpoint::start(
            EndpointConfig {
                tls: None,
                tcp: None,
                udp: Some(loopback_any_port()),
                policy: PeerPolicy::default(),
                limits: StreamLimits::default(),
                ua: UaConfig { contact_host: "127.0.0.1".into(), server: "alice".into(), timers: Timers::default() },
                client_tls: None,
                core_uri: None,
            },
            Arc::new(DefaultActionHandler::new("reject 486".parse().expect("action"), "127.0.0.1".into())),
        )
        .await
        .expect("alice starts");
        Lab { core, tas, alice, certs, _dir: dir }
    }

    pub fn sbc(&self) -> &Sbc {
        self.core.sbc().expect("SBC configured")
    }

    fn access(&self) -> SocketAddr {
        self.sbc().access.udp_addr.expect("access UDP")
    }

    /// Alice (`from`) calls `to` through the SBC with an SDP offer.
    pub fn call(&self, from: &str, to: &str) -> OutgoingCall {
        let access = self.access();
        let spec = InviteSpec {
            uri: Uri::parse(&format!("sip:{to}@{access};user=phone")).expect("uri"),
            from: NameAddr::parse(&format!("<sip:{from}@alice.test;user=phone>")).expect("from"),
            to: NameAddr::parse(&format!("<sip:{to}@core.test;user=phone>")).expect("to"),
            max_forwards: 70,
            headers: Vec::new(),
            body: Bytes::from_static(OFFER.as_bytes()),
        };
        let link = self.alice.udp_link(access).expect("alice UDP");
        self.alice.user_agent().invite(spec, link).expect("INVITE sent")
    }

    /// Waits until no call, transaction or leg 2 session is left anywhere.
    pub async fn settled(&self) -> bool {
        poll_until(Duration::from_secs(10), || {
            self.sbc().live_state() == 0
                && self.sbc().open_sessions() == 0
                && self.tas.endpoint.live_dialogs() == 0
                && self.tas.endpoint.pending_invites() == 0
                && self.tas.endpoint.clients().in_progress() == 0
                && self.alice.live_dialogs() == 0
                && self.alice.clients().in_progress() == 0
        })
        .await
    }

    /// A summary of what is left, for failure messages.
    pub fn leftovers(&self) -> String {
        format!(
            "sbc live {} sessions {}; tas dialogs {} pending {} clients {}; alice dialogs {} clients {}",
            self.sbc().live_state(),
            self.sbc().open_sessions(),
            self.tas.endpoint.live_dialogs(),
            self.tas.endpoint.pending_invites(),
            self.tas.endpoint.clients().in_progress(),
            self.alice.live_dialogs(),
            self.alice.clients().in_progress()
        )
    }
}

/// Registers as the TAS's registrar does (the gRPC path has tests of its own).
fn register(core: &CoreHandle, registration: Registration) {
    let number = registration.phone_number.clone().expect("number");
    core.registry().upsert(number, registration);
}

/// Follows `call` to its final answer, skipping provisionals.
pub async fn final_of(call: &mut OutgoingCall) -> Progress {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), call.next()).await {
            Ok(Progress::Provisional(_)) => continue,
            Ok(progress) => return progress,
            Err(_) => panic!("no final response within 20 s"),
        }
    }
}

/// The SIPS URI of a TAS on `port`.
pub fn tas_uri(port: u16) -> SipsUri {
    SipsUri::parse(&format!("sips:localhost:{port}")).expect("uri")
}

/// A route for the SBC.
pub fn route(prefix: &str, target: &str) -> SbcRoute {
    SbcRoute { prefix: prefix.into(), target: target.into() }
}
