//! `ringer conformance`: the emulated core played against any TAS, a verdict per documented
//! behaviour. The harness registers the TAS's subscribers in its own registry (as the TAS
//! would with UpsertRegistration), runs the emulated SBC with handsets for them, probes the TAS
//! over TLS as the SBC does, and places calls through the SBC with WebRTC-style media, then
//! reads what happened on each leg.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod expect;
pub mod probe;
pub mod relay;
pub mod report;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use domain::types::{Direction, Msisdn, Registration, RouteType, SipsUri};
use emulator::caller::Caller;
use emulator::config::{HandsetConfig, HandsetMode, SbcConfig};
use emulator::numbers::addressed_number;
use emulator::registry::Registry;
use emulator::sbc::Sbc;
use media::peer::{OfferingPeer, PeerOptions};
use sip::message::{Message, Uri};
use sip::uac::Progress;

use expect::{Expectation, Observed};
use probe::{Probe, PROBE_TIMEOUT};
pub use report::{CaseResult, Report, Verdict};

/// What the harness needs to know.
#[derive(Debug, Clone)]
pub struct HarnessConfig {
    /// The TAS under test, `sips:host` or `sips:host:port`, as it registers.
    pub target: SipsUri,
    /// The CA its certificate must chain to; default: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The subscribers the TAS serves, as it would register them.
    pub subscribers: Vec<Registration>,
    /// Where the harness takes leg 3 from the TAS, over TLS (the TAS's view of the core).
    pub interconnect: SocketAddr,
    /// The harness's certificate chain and key for that listener.
    pub cert_file: PathBuf,
    /// Its key.
    pub key_file: PathBuf,
    /// The address the harness's media and handsets use.
    pub media_address: IpAddr,
    /// How long to wait for the TAS to call each Ingress subscriber (it starts those calls
    /// itself); `None` skips the Ingress cases.
    pub ingress_wait: Option<Duration>,
    /// How long after its INVITE a call may go without a final response before the harness
    /// cancels it (a Fallback call's no-answer time, 5 s at the harness's core, included).
    pub answer_wait: Duration,
    /// Only the cases these patterns name (a name, or a prefix ending in `*`); all when empty.
    pub only: Vec<String>,
    /// Serve SipBreakoutService too, for the TAS to register against (instead of the harness
    /// registering the claimed subscribers itself).
    pub grpc: Option<GrpcSide>,
    /// What the TAS is declared to do per subscriber and direction; a call case whose outcome
    /// differs fails. Undeclared calls pass on any proper outcome, which the report names.
    pub expectations: std::collections::HashMap<(Msisdn, Direction), Expectation>,
}

/// The harness's own SipBreakoutService.
#[derive(Debug, Clone)]
pub struct GrpcSide {
    /// Where it listens (plain HTTP/2, sandbox authentication).
    pub listen: SocketAddr,
    /// The time to live it grants; the TAS must refresh within it.
    pub time_to_live: Duration,
    /// How long the TAS has to register every subscriber.
    pub wait: Duration,
    /// After every other case, how long to wait for DeleteRegistration of each subscriber
    /// while the TAS is being stopped; `None` skips those cases.
    pub delete_wait: Option<Duration>,
}

/// Why the harness could not run at all (as opposed to a case failing).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The emulated SBC would not start.
    #[error("the emulated SBC: {0}")]
    Sbc(#[from] emulator::sbc::SbcError),
    /// The emulated core would not start.
    #[error("the emulated core: {0}")]
    Core(#[from] emulator::CoreError),
    /// A socket would not open.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// TLS settings are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] tls::TlsError),
}

/// The caller's number for MT calls: no registration.
const ALICE: &str = "+4711111111";
/// The callee of MO calls: a handset that answers.
const BOB: &str = "+4712340000";

/// A running harness.
struct Harness {
    config: HarnessConfig,
    /// The SBC when the harness registers the subscribers itself.
    own_sbc: Option<Sbc>,
    /// The core (its gRPC API, its SBC) when the TAS registers.
    core: Option<emulator::CoreHandle>,
    caller: Caller,
    tls: Arc<rustls::ClientConfig>,
    report: Report,
    progress: Box<dyn Fn(&str) + Send + Sync>,
}

/// Runs every case against the TAS; `progress` hears each case's name as it starts.
pub async fn run(
    config: HarnessConfig,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Report, HarnessError> {
    let mut handsets = vec![handset(BOB, HandsetMode::Answer)];
    for registration in &config.subscribers {
        let Some(number) = &registration.phone_number else { continue };
        // The phone beside the TAS: it must leave the call to the TAS where the route type
        // rings both (Fork) or the phone first (Fallback).
        let mode = match registration.route_type {
            RouteType::Fork => HandsetMode::NoAnswer,
            RouteType::Fallback => HandsetMode::Busy,
            _ => HandsetMode::Answer,
        };
        handsets.push(HandsetConfig {
            number: number.clone(),
            mode,
            ring_time: Duration::from_millis(50),
            hang_up_after: None,
        });
    }
    let sbc_config = SbcConfig {
        udp_listen: Some(SocketAddr::new(config.media_address, 0)),
        tcp_listen: None,
        tls_listen: None,
        interconnect_listen: config.interconnect,
        cert_file: Some(config.cert_file.clone()),
        key_file: Some(config.key_file.clone()),
        tas_ca_file: config.ca_file.clone(),
        domain: "core.ringer.invalid".into(),
        fallback_no_answer: Duration::from_secs(5),
        handsets,
        routes: Vec::new(),
        dns_server: None,
        leg2_tel: false,
        fork_mo: true,
        rel100: Default::default(),
        session_timer: Default::default(),
        session_expires: Duration::from_secs(1800),
        min_se: Duration::from_secs(90),
    };
    let (own_sbc, core) = match &config.grpc {
        None => {
            // The harness registers the claimed subscribers itself, as the TAS would.
            let registry = Arc::new(Registry::new(Duration::from_secs(3600)));
            for registration in &config.subscribers {
                if let Some(number) = &registration.phone_number {
                    let registration = Registration { sip_uri: config.target.clone(), ..registration.clone() };
                    registry.upsert(number.clone(), registration);
                }
            }
            (Some(emulator::sbc::start(&sbc_config, registry).await?), None)
        }
        Some(grpc) => {
            let core_config = emulator::config::CoreConfig {
                grpc: emulator::config::GrpcListenConfig { listen: grpc.listen, tls: None },
                time_to_live: grpc.time_to_live,
                sbc: Some(sbc_config),
                ..Default::default()
            };
            (None, Some(emulator::start(&core_config).await?))
        }
    };
    let caller = Caller::start(config.media_address, "ringer-conformance").await?;
    let tls = tls::client_config(config.ca_file.as_deref(), None)?;
    let report = Report { target: config.target.as_str().to_owned(), cases: Vec::new() };
    let mut harness = Harness { config, own_sbc, core, caller, tls, report, progress: Box::new(progress) };
    let registered = harness.registration_cases().await;
    harness.tls_cases().await;
    harness.sip_cases().await;
    harness.call_cases().await;
    harness.ingress_cases().await;
    harness.robustness_cases().await;
    harness.refresh_cases(registered.clone()).await;
    harness.delete_cases(registered).await;
    harness.sbc().shutdown();
    let Harness { report, caller, core, .. } = harness;
    caller.shutdown();
    if let Some(core) = core {
        core.shutdown().await;
    }
    Ok(report)
}

fn handset(number: &str, mode: HandsetMode) -> HandsetConfig {
    let number = Msisdn::parse(number).unwrap_or_else(|_| unreachable!("{number} is E.164"));
    HandsetConfig { number, mode, ring_time: Duration::from_millis(50), hang_up_after: None }
}

/// What a case found: its verdict, the evidence on the way and, for a call, what the TAS did.
struct Finding {
    verdict: Verdict,
    evidence: Vec<String>,
    outcome: Option<String>,
}

impl Finding {
    fn pass(evidence: Vec<String>) -> Self {
        Finding { verdict: Verdict::Pass, evidence, outcome: None }
    }

    fn fail(expected: impl Into<String>, got: impl Into<String>, evidence: Vec<String>) -> Self {
        Finding { verdict: Verdict::fail(expected, got), evidence, outcome: None }
    }

    fn skip(reason: impl Into<String>) -> Self {
        Finding { verdict: Verdict::skip(reason), evidence: Vec::new(), outcome: None }
    }

    /// The same finding, saying what the TAS did with the call.
    fn with_outcome(self, outcome: Option<String>) -> Self {
        Finding { outcome, ..self }
    }
}

impl Harness {
    fn sbc(&self) -> &Sbc {
        match (&self.own_sbc, &self.core) {
            (Some(sbc), _) => sbc,
            (None, Some(core)) => core.sbc().unwrap_or_else(|| unreachable!("the core was started with an SBC")),
            (None, None) => unreachable!("the harness runs an SBC or a core with one"),
        }
    }

    /// With the gRPC side: each claimed subscriber registered by the TAS, with the claimed
    /// fields. Returns when each was first seen.
    async fn registration_cases(&mut self) -> Vec<(Msisdn, Instant)> {
        let Some(grpc) = self.config.grpc.clone() else { return Vec::new() };
        let Some(registry) = self.core.as_ref().map(|core| core.registry().clone()) else { return Vec::new() };
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + grpc.wait;
        for claimed in self.config.subscribers.clone() {
            let Some(number) = claimed.phone_number.clone() else { continue };
            let name = format!("grpc.registration.{number}");
            let started = self.start(&name);
            poll_until(deadline, POLL, || registry.lookup(&number).is_some()).await;
            let record = registry.lookup(&number);
            let expected = Registration { sip_uri: self.config.target.clone(), ..claimed.clone() };
            let finding = match record {
                None => Finding::fail(
                    format!("UpsertRegistration for {number} within {} s", grpc.wait.as_secs()),
                    "no registration",
                    Vec::new(),
                ),
                Some(record) if record.registration != expected => Finding::fail(
                    format!("{expected:?}"),
                    format!("{:?}", record.registration),
                    vec!["the registration's fields differ from what the TAS claims".into()],
                ),
                Some(record) => {
                    seen.push((number.clone(), Instant::now()));
                    Finding::pass(vec![format!(
                        "{} {} mo={} mt={}",
                        record.registration.sip_uri.as_str(),
                        record.registration.route_type.name(),
                        record.registration.mo_prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
                        record.registration.mt_prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
                    )])
                }
            };
            // The wait above is needed for the calls even when this case is left out.
            if let Some(started) = started {
                self.record(
                    &name,
                    "UpsertRegistration with the claimed sip_uri, route type and prefixes",
                    started,
                    finding,
                );
            }
        }
        seen
    }

    /// With the gRPC side: every registration refreshed before its time to live ran out.
    async fn refresh_cases(&mut self, registered: Vec<(Msisdn, Instant)>) {
        let Some(grpc) = self.config.grpc.clone() else { return };
        let Some(registry) = self.core.as_ref().map(|core| core.registry().clone()) else { return };
        for (number, first_seen) in registered {
            let name = format!("grpc.refresh.{number}");
            let Some(started) = self.start(&name) else { continue };
            // Past one time to live from first sight, it lives only if refreshed.
            let lapse = first_seen + grpc.time_to_live + Duration::from_millis(500);
            tokio::time::sleep(lapse.saturating_duration_since(Instant::now())).await;
            let finding = match registry.lookup(&number) {
                Some(record) if record.upserts >= 2 => {
                    Finding::pass(vec![format!("{} upserts within {} s", record.upserts, first_seen.elapsed().as_secs())])
                }
                other => Finding::fail(
                    format!(
                        "a refresh (UpsertRegistration again) before the {} s time to live runs out (spec: registrations expire unless refreshed)",
                        grpc.time_to_live.as_secs()
                    ),
                    match other {
                        Some(record) => format!("{} upsert(s)", record.upserts),
                        None => "the registration lapsed".into(),
                    },
                    Vec::new(),
                ),
            };
            self.record(&name, "the registration refreshed before its time to live", started, finding);
        }
    }

    /// With the gRPC side and a delete wait: the vendor stops the TAS as these cases start (the
    /// progress callback hears `grpc.delete.<number>`), and each registration it made is
    /// deleted rather than left to lapse.
    async fn delete_cases(&mut self, registered: Vec<(Msisdn, Instant)>) {
        let Some(grpc) = self.config.grpc.clone() else { return };
        let Some(wait) = grpc.delete_wait else { return };
        let Some(registry) = self.core.as_ref().map(|core| core.registry().clone()) else { return };
        let deadline = tokio::time::Instant::now() + wait;
        for (number, _) in registered {
            let name = format!("grpc.delete.{number}");
            let Some(started) = self.start(&name) else { continue };
            let finding = match poll_until(deadline, POLL, || registry.deletions(&number) > 0).await {
                true => Finding::pass(vec![format!("DeleteRegistration after {} ms", started.elapsed().as_millis())]),
                false => Finding::fail(
                    format!(
                        "DeleteRegistration for {number}, with the registered sip_uri, within {} s of the TAS being stopped (spec: DeleteRegistration removes it before the TTL expires)",
                        wait.as_secs()
                    ),
                    match registry.lookup(&number) {
                        Some(_) => "the registration is still there".to_owned(),
                        None => "no delete; the registration lapsed or was never there".to_owned(),
                    },
                    Vec::new(),
                ),
            };
            self.record(&name, "the registration deleted when the TAS stops", started, finding);
        }
    }

    /// The call's last check: every dialog and transaction at the core ends within 5 s. A pass
    /// with `evidence`, or a failure against `expected` saying how many are still open.
    async fn settled(&self, expected: &str, evidence: Vec<String>) -> Finding {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        if poll_until(deadline, POLL, || self.sbc().live_state() == 0).await {
            return Finding::pass(evidence);
        }
        let open = self.sbc().live_state();
        Finding::fail(expected, format!("{open} dialogs or transactions still open at the core after 5 s"), evidence)
    }

    fn record(&mut self, name: &str, description: &str, started: Instant, finding: Finding) {
        self.report.cases.push(CaseResult {
            name: name.to_owned(),
            description: description.to_owned(),
            verdict: finding.verdict,
            evidence: finding.evidence,
            outcome: finding.outcome,
            duration: started.elapsed(),
        });
    }

    /// Starts case `name` (the progress callback hears it), or `None` when `only` leaves it out.
    fn start(&self, name: &str) -> Option<Instant> {
        if !wanted(&self.config.only, name) {
            return None;
        }
        (self.progress)(name);
        Some(Instant::now())
    }

    /// Where the TAS is: its port, or DNS SRV `_sips._tcp` as the core resolves it.
    async fn address(&self) -> Result<(SocketAddr, Vec<String>), String> {
        let host = self.config.target.host().to_owned();
        let (server, port, evidence) = match self.config.target.port() {
            Some(port) => (host.clone(), port, vec![format!("{host}:{port} from the sip_uri")]),
            None => {
                match self.sbc().interconnect.user_agent().outbound().srv(&host, sip::transport::Transport::Tls).await {
                    Some((server, port)) => {
                        (server.clone(), port, vec![format!("SRV _sips._tcp.{host} → {server}:{port}")])
                    }
                    None => (host.clone(), 5061, vec![format!("no SRV record for _sips._tcp.{host}: port 5061")]),
                }
            }
        };
        let addr = tokio::net::lookup_host((server.as_str(), port))
            .await
            .map_err(|error| format!("{server}: {error}"))?
            .next()
            .ok_or_else(|| format!("{server}: no address"))?;
        Ok((addr, evidence))
    }

    async fn connect(&self) -> Result<(Probe, Vec<String>), String> {
        let (addr, mut evidence) = self.address().await?;
        let probe = Probe::connect(addr, self.config.target.host(), self.tls.clone()).await?;
        evidence.push(format!("TLS {} with {addr}", probe.version));
        Ok((probe, evidence))
    }

    async fn tls_cases(&mut self) {
        let Some(started) = self.start("tls.certificate") else { return };
        let finding = match self.connect().await {
            Ok((_, evidence)) => Finding::pass(evidence),
            Err(error) => Finding::fail(
                format!(
                    "a TLS 1.2+ handshake with a certificate for {} that chains to {} (spec: the core verifies the TAS over TLS)",
                    self.config.target.host(),
                    self.config.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the system roots".into())
                ),
                error,
                Vec::new(),
            ),
        };
        self.record("tls.certificate", "TLS 1.2+, certificate valid for the sip_uri host", started, finding);
    }

    async fn sip_cases(&mut self) {
        if let Some(started) = self.start("sip.options") {
            let finding = match self.options().await {
                Ok(evidence) => Finding::pass(evidence),
                Err(got) => Finding::fail("200 OK to OPTIONS (RFC 3261 §11)", got, Vec::new()),
            };
            self.record("sip.options", "OPTIONS is answered 200", started, finding);
        }
        if let Some(started) = self.start("sip.keepalive") {
            let finding = self.keepalive().await;
            self.record("sip.keepalive", "a CRLFCRLF keep-alive gets its CRLF pong", started, finding);
        }
    }

    async fn keepalive(&self) -> Finding {
        let (mut probe, evidence) = match self.connect().await {
            Ok(connected) => connected,
            Err(error) => return Finding::fail("a TLS connection", error, Vec::new()),
        };
        if let Err(error) = probe.send(b"\r\n\r\n").await {
            return Finding::fail("a CRLF pong", error, evidence);
        }
        let pong = probe.read_raw(Duration::from_secs(2)).await;
        if pong.starts_with(b"\r\n") {
            Finding::pass(evidence)
        } else {
            Finding::fail(
                "CRLF in answer to a CRLFCRLF ping within 2 s (RFC 5626 §4.4.1)",
                format!("{:?}", String::from_utf8_lossy(&pong)),
                evidence,
            )
        }
    }

    async fn options(&self) -> Result<Vec<String>, String> {
        let (mut probe, mut evidence) = self.connect().await?;
        let request = probe::options(self.config.target.as_str(), probe.local, "conformance-options");
        probe.send(request.as_bytes()).await?;
        let response = probe.final_response(PROBE_TIMEOUT).await?;
        evidence.push(format!("{} {}", response.status, response.reason));
        match response.status {
            200..=299 => Ok(evidence),
            _ => Err(excerpt(&response.to_bytes())),
        }
    }

    async fn call_cases(&mut self) {
        let subscribers = self.config.subscribers.clone();
        for registration in &subscribers {
            let Some(number) = &registration.phone_number else { continue };
            for direction in [Direction::Originating, Direction::Terminating] {
                let short = match direction {
                    Direction::Originating => "mo",
                    Direction::Terminating => "mt",
                };
                let brings = match direction {
                    // The harness's core forks a Fork subscriber's own calls to the TAS too.
                    Direction::Originating => {
                        matches!(registration.route_type, RouteType::Loop | RouteType::LoopMo | RouteType::Fork)
                    }
                    Direction::Terminating => {
                        !matches!(registration.route_type, RouteType::LoopMo | RouteType::Ingress)
                    }
                };
                let route = registration.route_type.name().replace('_', "-");
                // Leg 2's Request-URI in both forms the core uses.
                for (form, tel) in [("sip", false), ("tel", true)] {
                    let name = format!("call.{route}.{short}.{form}.{number}");
                    let Some(started) = self.start(&name) else { continue };
                    self.sbc().set_leg2_tel(tel);
                    let finding = match brings {
                        true => self.call(number, direction).await,
                        false => Finding::skip(format!("route type {route} brings no {} calls", short.to_uppercase())),
                    };
                    self.sbc().set_leg2_tel(false);
                    let description = format!(
                        "leg 2 ({form}: URI) with the prefix; leg 3 or a final answer; media; re-INVITE; BYE across"
                    );
                    self.record(&name, &description, started, finding);
                }
            }
            if registration.route_type == RouteType::Fallback {
                let name = format!("call.fallback.no-answer.{number}");
                if let Some(started) = self.start(&name) {
                    let finding = self.fallback_on_no_answer(number).await;
                    self.record(
                        &name,
                        "the phone rings unanswered; the TAS gets leg 2 and answers or refuses in time",
                        started,
                        finding,
                    );
                }
            }
            if registration.route_type == RouteType::Fork {
                let name = format!("call.fork.cancel.{number}");
                if let Some(started) = self.start(&name) {
                    let finding = self.cancel_while_ringing(number).await;
                    self.record(&name, "CANCEL of the ringing TAS leg: 487, nothing left", started, finding);
                }
            }
            self.race_cases(registration, number).await;
        }
    }

    /// A Fallback call whose phone rings unanswered (the other calls find it busy): the core
    /// cancels it after its no-answer time and sends leg 2, which the TAS must take like any.
    async fn fallback_on_no_answer(&mut self, number: &Msisdn) -> Finding {
        self.sbc().handsets().set_mode(number, HandsetMode::NoAnswer);
        let mut finding = self.call(number, Direction::Terminating).await;
        self.sbc().handsets().set_mode(number, HandsetMode::Busy);
        let record = self.sbc().calls().into_iter().rev().find(|call| &call.callee == number);
        let phone = record.as_ref().and_then(|r| r.legs.iter().find(|leg| leg.leg == 4).map(|leg| leg.status));
        if finding.verdict == Verdict::Pass && phone != Some(487) {
            finding.verdict = Verdict::fail(
                "the phone cancelled after the no-answer time, then leg 2 to the TAS",
                format!("the phone's leg ended {}", phone.unwrap_or(0)),
            );
        }
        finding
    }

    /// A Fork call cancelled while the TAS leg rings (the core cancels it when the phone
    /// answers first): the TAS answers 487 and keeps no dialog.
    async fn cancel_while_ringing(&mut self, number: &Msisdn) -> Finding {
        let Some(access) = self.sbc().access.udp_addr else {
            return Finding::fail("the SBC's access side", "no UDP listener", Vec::new());
        };
        let alice = Msisdn::parse(ALICE).unwrap_or_else(|_| unreachable!());
        let (peer, offer) = match OfferingPeer::offer(PeerOptions::sbc(self.config.media_address)).await {
            Ok(made) => made,
            Err(error) => return Finding::fail("a WebRTC offer", error.to_string(), Vec::new()),
        };
        let mut evidence = Vec::new();
        let mut outgoing = match self.caller.invite(access, &alice, number, Bytes::from(offer.to_string())) {
            Ok(outgoing) => outgoing,
            Err(error) => return Finding::fail("leg 1 sent", error.to_string(), evidence),
        };
        // Wait until the TAS leg rings (a provisional from it reaches the caller).
        let ringing = loop {
            match tokio::time::timeout(Duration::from_secs(10), outgoing.next()).await {
                Ok(Progress::Provisional(response)) if response.status > 100 => break Ok(response.status),
                Ok(Progress::Provisional(_)) => continue,
                Ok(Progress::Answered(call, _)) => {
                    let _ = call.ack(None);
                    let _ = call.hangup().await;
                    break Err("answered before ringing");
                }
                Ok(_) => break Err("refused before ringing"),
                Err(_) => break Err("no provisional response in 10 s"),
            }
        };
        let status = match ringing {
            Ok(status) => status,
            Err(why) => {
                peer.close().await;
                return Finding { evidence, ..Finding::skip(format!("no ringing phase to cancel: {why}")) };
            }
        };
        evidence.push(format!("{status} relayed to the caller; CANCEL"));
        outgoing.cancel();
        let end = loop {
            match tokio::time::timeout(Duration::from_secs(10), outgoing.next()).await {
                Ok(Progress::Provisional(_)) => continue,
                Ok(progress) => break Some(progress),
                Err(_) => break None,
            }
        };
        peer.close().await;
        // The TAS leg's own final response, as the core got it (0 while none has come).
        let leg2 = || {
            let record = self.sbc().calls().into_iter().rev().find(|call| &call.callee == number);
            record.and_then(|r| r.legs.iter().find(|leg| leg.leg == 2).map(|leg| leg.status)).unwrap_or(0)
        };
        poll_until(tokio::time::Instant::now() + Duration::from_secs(5), POLL, || leg2() != 0).await;
        let leg2 = leg2();
        evidence.push(format!("leg 2 final: {leg2}"));
        if !matches!(end, Some(Progress::Cancelled)) || leg2 != 487 {
            let leg2 = match leg2 {
                0 => "with no final response within 5 s of the CANCEL".to_owned(),
                status => format!("with {status}"),
            };
            return Finding::fail(
                "487 Request Terminated on the TAS leg after CANCEL (RFC 3261 §9.2)",
                format!("leg 2 ended {leg2}; the caller saw {end:?}"),
                evidence,
            );
        }
        self.settled("no dialog or transaction left after the CANCEL", evidence).await
    }

    /// One call through the SBC to or from `number`, checked leg by leg.
    async fn call(&mut self, number: &Msisdn, direction: Direction) -> Finding {
        let mut up = match self.place(number, direction).await {
            Placed::Up(up) => *up,
            Placed::Over(finding) => return finding,
        };
        let outcome = up.outcome.clone();
        let media = self.media(&mut up).await;
        if let Err(got) = media {
            return up
                .abandon(Finding::fail(
                    "ICE and DTLS complete, no media before DTLS, and audio comes back that is not silence",
                    got,
                    Vec::new(),
                ))
                .await;
        }
        up.evidence.push("ICE, DTLS and audio both ways".into());
        // The core re-offers mid-call (session refresh, codec checks): the media must go on.
        let reoffer = self.reoffer(&up.call, &mut up.peer, up.relay.as_ref()).await;
        let Established { call, peer, mut evidence, .. } = up;
        let hangup = call.hangup().await;
        peer.close().await;
        let finding = match (reoffer, hangup) {
            (Err(got), _) => Finding::fail(
                "a re-INVITE mid-call answered 200 with SDP, the media going on (RFC 3261 §14.2)",
                got,
                evidence,
            ),
            (Ok(line), Ok(status @ 200..=299)) => {
                evidence.push(line);
                evidence.push(format!("BYE answered {status}"));
                self.settled("every leg ended after the caller's BYE (the TAS relays BYE to leg 3)", evidence).await
            }
            (Ok(line), Ok(status)) => {
                evidence.push(line);
                Finding::fail("200 to BYE", format!("{status}"), evidence)
            }
            (Ok(line), Err(error)) => {
                evidence.push(line);
                Finding::fail("200 to BYE", error.to_string(), evidence)
            }
        };
        finding.with_outcome(outcome)
    }

    /// Places a call through the SBC to or from `number` and checks it up to the answer: leg 3
    /// (Session-ID, prefix stripped), a final response in time, an SDP answer in a 2xx. A
    /// refusal is a finished call that passed.
    async fn place(&mut self, number: &Msisdn, direction: Direction) -> Placed {
        let Some(access) = self.sbc().access.udp_addr else {
            return Placed::Over(Finding::fail("the SBC's access side", "no UDP listener", Vec::new()));
        };
        let alice = Msisdn::parse(ALICE).unwrap_or_else(|_| unreachable!());
        let bob = Msisdn::parse(BOB).unwrap_or_else(|_| unreachable!());
        let (from, to) = match direction {
            Direction::Originating => (number.clone(), bob),
            Direction::Terminating => (alice, number.clone()),
        };
        let refused_before = self.sbc().refused_leg3();
        let options = PeerOptions::sbc(self.config.media_address);
        let (peer, offer) = match OfferingPeer::offer(options).await {
            Ok(made) => made,
            Err(error) => return Placed::Over(Finding::fail("a WebRTC offer", error.to_string(), Vec::new())),
        };
        // The media passes a relay that sees what the TAS sends before DTLS.
        let relay = match relay::first_candidate(&offer) {
            Some(candidate) => relay::MediaRelay::start(self.config.media_address, candidate).await.ok(),
            None => None,
        };
        let offer = match &relay {
            Some(relay) => relay::through(&offer, relay.tas_side()),
            None => offer,
        };
        let mut evidence = Vec::new();
        let mut outgoing = match self.caller.invite(access, &from, &to, Bytes::from(offer.to_string())) {
            Ok(outgoing) => outgoing,
            Err(error) => return Placed::Over(Finding::fail("leg 1 sent", error.to_string(), evidence)),
        };
        let wait = self.config.answer_wait;
        let deadline = tokio::time::Instant::now() + wait;
        let outcome = loop {
            match tokio::time::timeout_at(deadline, outgoing.next()).await {
                Ok(Progress::Provisional(_)) => continue,
                Ok(progress) => break Some(progress),
                Err(_) => break None,
            }
        };
        let record = self.sbc().calls().into_iter().rev().find(|call| call.callee == to);
        if let Some(record) = &record {
            evidence.push(format!(
                "route {}, prefix {}, legs {}",
                record.route,
                record.prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
                record.legs.iter().map(|l| format!("{}:{}", l.leg, l.status)).collect::<Vec<_>>().join(" ")
            ));
        }
        let leg3 = record.as_ref().and_then(|r| r.legs.iter().find(|leg| leg.leg == 3).cloned());
        let judged = self.judge(number, direction, &to, record.as_ref(), outcome.as_ref(), refused_before);
        let (failed, observed) = match judged {
            Ok(observed) => (None, Some(observed)),
            Err(failed) => (Some(failed), None),
        };
        if let Some(leg3) = &leg3 {
            evidence.push(format!("leg 3 to {}", leg3.request_uri));
        }
        let outcome_line = observed.as_ref().map(|observed| match (observed, &leg3, &outcome) {
            (Observed::Leg3(_), Some(leg3), Some(Progress::Answered(..))) if leg3.status >= 300 => {
                format!("{observed}, refused {}; then answered by the TAS", leg3.status)
            }
            (Observed::Leg3(_), Some(leg3), _) if (200..300).contains(&leg3.status) => format!("{observed}, answered"),
            (Observed::Leg3(_), Some(leg3), _) => format!("{observed}, ended {}", leg3.status),
            _ => observed.to_string(),
        });
        let (call, response) = match (outcome, failed) {
            (Some(Progress::Answered(call, response)), None) => (call, response),
            (outcome, failed) => {
                if let Some(Progress::Answered(call, _)) = &outcome {
                    let _ = call.ack(None);
                    let _ = call.hangup().await;
                }
                if outcome.is_none() {
                    outgoing.cancel();
                }
                peer.close().await;
                let finding = match (failed, outcome) {
                    // The caller's own account of a missing final response says more.
                    (Some(failed), Some(_)) => failed,
                    (None, Some(Progress::Failed(response))) => {
                        evidence.push(format!("refused: {} {}", response.status, response.reason));
                        return Placed::Over(Finding::pass(evidence).with_outcome(outcome_line));
                    }
                    (_, None) => Finding::fail(
                        format!("a final response within {} s", wait.as_secs()),
                        "none; the call was cancelled",
                        Vec::new(),
                    ),
                    (_, Some(other)) => Finding::fail("a final response", format!("{other:?}"), Vec::new()),
                };
                return Placed::Over(Finding { evidence, ..finding });
            }
        };
        let _ = call.ack(None);
        let answer = audio_answer(&response.body);
        let far_end = leg3.is_some_and(|leg| leg.status < 300);
        let up = Established {
            call,
            peer,
            relay,
            answer: answer.clone().unwrap_or_default(),
            evidence,
            far_end,
            outcome: outcome_line,
        };
        if answer.is_none() {
            let got = excerpt(&response.to_bytes());
            return Placed::Over(
                up.abandon(Finding::fail(
                    "an SDP answer with the audio stream in the 2xx to an INVITE that offered (RFC 3264 §5)",
                    got,
                    Vec::new(),
                ))
                .await,
            );
        }
        let mut up = up;
        up.evidence.push(format!("answered {} {}", response.status, response.reason));
        Placed::Up(Box::new(up))
    }

    /// What the TAS did with a call placed to or from `number` for `callee`, from the core's
    /// record of it; a finding when that already fails the case: leg 3 without the call's
    /// Session-ID, a leg 2 the TAS never answered (the core's own 503 or 408 is not the TAS's
    /// refusal), leg 3 to a number the prefix was not removed from, or an outcome other than
    /// the one declared for the subscriber and direction.
    fn judge(
        &self,
        number: &Msisdn,
        direction: Direction,
        callee: &Msisdn,
        record: Option<&emulator::sbc::SbcCall>,
        outcome: Option<&Progress>,
        refused_before: u64,
    ) -> Result<Observed, Finding> {
        let fail = |expected: String, got: String| Err(Finding::fail(expected, got, Vec::new()));
        if self.sbc().refused_leg3() > refused_before {
            return fail(
                "leg 3 carries leg 2's Session-ID (spec: the core matches leg 3 to its call by Session-ID)".into(),
                "the TAS sent an INVITE with no known Session-ID; the core refused it 403".into(),
            );
        }
        let legs = record.map(|record| record.legs.as_slice()).unwrap_or_default();
        let Some(leg2) = legs.iter().rev().find(|leg| leg.leg == 2) else {
            return fail(
                format!("leg 2 to the TAS for this {direction} call"),
                "the core sent no leg 2: no registration of the TAS routed the call".into(),
            );
        };
        if let Some(why) = &leg2.by_core {
            return fail(
                "the TAS answers leg 2 (a final response of its own)".into(),
                format!("{why}; the caller's {} came from the emulated core, not from the TAS", leg2.status),
            );
        }
        let observed = match (legs.iter().find(|leg| leg.leg == 3), outcome) {
            (Some(leg3), _) => match Uri::parse(&leg3.request_uri).ok().as_ref().and_then(addressed_number) {
                Some(target) => Observed::Leg3(target),
                None => {
                    return fail("leg 3 to an E.164 number (+ and digits)".into(), leg3.request_uri.clone());
                }
            },
            // Where the core forked the call, another branch may have answered it.
            (None, Some(Progress::Answered(..))) => match leg2.status {
                200..=299 => Observed::Answered,
                487 | 0 => Observed::Cancelled,
                status => Observed::Refused(status),
            },
            (None, Some(Progress::Failed(response))) => {
                Observed::Refused(if leg2.status >= 300 { leg2.status } else { response.status })
            }
            // No final response, or none the caller could use: the caller's account says so.
            (None, _) => return Err(Finding::fail("a final response", "none", Vec::new())),
        };
        match self.config.expectations.get(&(number.clone(), direction)) {
            Some(declared) if !declared.matches(&observed, callee) => {
                fail(format!("{declared} for {direction} calls of {number} (as declared)"), observed.to_string())
            }
            None => match &observed {
                Observed::Leg3(target) if target != callee => fail(
                    format!(
                        "leg 3 to {callee}, the number with the prefix removed (spec: the TAS strips the prefix); \
                         declare expect-{}=forward:NUMBER if the TAS forwards",
                        direction.to_string().to_lowercase()
                    ),
                    observed.to_string(),
                ),
                _ => Ok(observed),
            },
            Some(_) => Ok(observed),
        }
    }

    /// For each subscriber whose calls the TAS takes: a re-INVITE with a BYE right behind it,
    /// and (where a far end answered through leg 3) BYEs from both ends at once. Every request
    /// gets its final response and nothing is left open.
    async fn race_cases(&mut self, registration: &Registration, number: &Msisdn) {
        let direction = match registration.route_type {
            RouteType::LoopMo => Some(Direction::Originating),
            RouteType::Ingress => None,
            _ => Some(Direction::Terminating),
        };
        for race in [Race::ByeCrossesReinvite, Race::ByeFromBothEnds] {
            let name = format!("call.race.{}.{number}", race.name());
            let Some(started) = self.start(&name) else { continue };
            let finding = match direction {
                Some(direction) => self.race(number, direction, race).await,
                None => Finding::skip("Ingress calls start at the TAS"),
            };
            self.record(&name, race.description(), started, finding);
        }
    }

    async fn race(&mut self, number: &Msisdn, direction: Direction, race: Race) -> Finding {
        let mut up = match self.place(number, direction).await {
            Placed::Up(up) => *up,
            Placed::Over(Finding { verdict: Verdict::Pass, .. }) => {
                return Finding::skip("the TAS refuses this call: nothing to race")
            }
            Placed::Over(_) => return Finding::skip("the call itself fails (see the call cases)"),
        };
        if let Err(error) = self.connect_media(&mut up).await {
            return up.abandon(Finding::skip(format!("no media to race over: {error}"))).await;
        }
        let Established { call, mut peer, relay, mut evidence, far_end, .. } = up;
        let finding = match race {
            Race::ByeCrossesReinvite => {
                let offer = match peer.reoffer().await {
                    Ok(offer) => offer,
                    Err(error) => {
                        let _ = call.hangup().await;
                        peer.close().await;
                        return Finding::fail("a WebRTC re-offer", error.to_string(), evidence);
                    }
                };
                let offer = match &relay {
                    Some(relay) => relay::through(&offer, relay.tas_side()),
                    None => offer,
                };
                let towards_tas = self.sbc().interconnect.clients().clone();
                let before = towards_tas.in_progress();
                let (reinvite, (crossed, bye)) = tokio::join!(
                    tokio::time::timeout(Duration::from_secs(10), call.reinvite(Bytes::from(offer.to_string()))),
                    async {
                        // The BYE leaves the moment the core has relayed the re-INVITE to the
                        // TAS, so that both reach it before it can answer.
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                        let crossed =
                            poll_until(deadline, Duration::from_millis(1), || towards_tas.in_progress() > before).await;
                        (crossed, call.hangup().await)
                    }
                );
                if !crossed {
                    evidence.push("the re-INVITE was not seen going to the TAS before the BYE".into());
                }
                evidence.push(match &reinvite {
                    Ok(Ok(_)) => "re-INVITE answered 200".to_owned(),
                    Ok(Err(error)) => format!("re-INVITE ended: {error}"),
                    Err(_) => "re-INVITE unanswered after 10 s".to_owned(),
                });
                evidence.push(format!("BYE: {}", bye.as_ref().map(u16::to_string).unwrap_or_else(|e| e.to_string())));
                match (reinvite, bye) {
                    (Err(_), _) => Some("the re-INVITE got no final response after the BYE".to_owned()),
                    (_, Ok(200..=299)) => None,
                    (_, bye) => Some(format!("BYE answered {bye:?}")),
                }
            }
            Race::ByeFromBothEnds if !far_end => {
                let _ = call.hangup().await;
                peer.close().await;
                return Finding {
                    evidence,
                    ..Finding::skip("the TAS answers this call itself: no far end to hang up with the caller")
                };
            }
            Race::ByeFromBothEnds => {
                // The far end's BYE is on its way the moment the caller's leaves.
                self.sbc().handsets().hang_up_all();
                let bye = call.hangup().await;
                evidence.push(format!(
                    "caller's BYE: {}",
                    bye.as_ref().map(u16::to_string).unwrap_or_else(|e| e.to_string())
                ));
                match bye {
                    // The far end's BYE may reach the caller first: then the caller's crosses
                    // it (481 is right) or is never sent.
                    Ok(200..=299 | 481) | Err(sip::dialog::DialogError::NoDialog) => None,
                    bye => Some(format!("BYE answered {bye:?}")),
                }
            }
        };
        peer.close().await;
        drop(relay);
        if let Some(got) = finding {
            return Finding::fail(race.expected(), got, evidence);
        }
        self.settled(race.expected(), evidence).await
    }

    /// ICE and DTLS up with the call's answer, through the relay.
    async fn connect_media(&self, up: &mut Established) -> Result<(), String> {
        let answer = match (&up.relay, relay::first_candidate(&up.answer)) {
            (Some(relay), Some(tas)) => {
                relay.set_tas(tas);
                relay::through(&up.answer, relay.peer_side())
            }
            _ => up.answer.clone(),
        };
        up.peer.accept(&answer, Duration::from_secs(10)).await.map_err(|error| error.to_string())
    }

    /// A new offer in the call: answered with SDP, the connection stays up, and where audio
    /// came back before (an echo, the far end; not a voicemail recording in silence) it still
    /// does.
    async fn reoffer(
        &self,
        call: &sip::call::CallHandle,
        peer: &mut OfferingPeer,
        relay: Option<&relay::MediaRelay>,
    ) -> Result<String, String> {
        let tone = media::apps::tone(1000.0, 600, 10000.0);
        let loud = |heard: &[i16]| heard.iter().filter(|sample| sample.unsigned_abs() > 300).count();
        peer.play(&tone).await;
        let before = loud(&peer.heard(Duration::from_millis(300)).await);
        let offer = peer.reoffer().await.map_err(|error| error.to_string())?;
        let offer = match relay {
            Some(relay) => relay::through(&offer, relay.tas_side()),
            None => offer,
        };
        let body =
            call.reinvite(Bytes::from(offer.to_string())).await.map_err(|error| format!("re-INVITE: {error}"))?;
        let Some(answer) = audio_answer(&body) else {
            return Err(format!("a 2xx without an SDP answer:\n{}", String::from_utf8_lossy(&body)));
        };
        let answer = match relay {
            Some(relay) => relay::through(&answer, relay.peer_side()),
            None => answer,
        };
        peer.accept_reanswer(&answer).await.map_err(|error| error.to_string())?;
        peer.play(&tone).await;
        let after = loud(&peer.heard(Duration::from_millis(300)).await);
        if !peer.is_connected() {
            return Err("ICE or DTLS went down after the re-INVITE".into());
        }
        if before >= 400 && after < 400 {
            return Err(format!("audio stopped: {before} loud samples before the re-INVITE, {after} after"));
        }
        Ok(format!("re-INVITE answered; media on ({before} / {after} loud samples before / after)"))
    }

    /// ICE and DTLS complete with the answer, a second of tone goes out, and what comes back
    /// (an echo, a greeting, the far end) is not silence.
    async fn media(&self, up: &mut Established) -> Result<(), String> {
        self.connect_media(up).await?;
        let (peer, relay) = (&mut up.peer, up.relay.as_ref());
        // No media before DTLS: RTP from the TAS before its handshake can have finished cannot
        // be protected.
        match relay.map(relay::MediaRelay::firsts).and_then(|firsts| firsts.early_media()) {
            Some(relay::EarlyMedia::BeforeHandshake) => {
                return Err(
                    "RTP from the TAS before the DTLS handshake (RFC 5763 §5: no media before DTLS-SRTP keys)".into()
                )
            }
            Some(relay::EarlyMedia::DuringHandshake) => {
                return Err("RTP from the TAS during the DTLS handshake, before the harness's ChangeCipherSpec (RFC 5763 §5: no media before DTLS-SRTP keys)".into())
            }
            None => {}
        }
        peer.play(&media::apps::tone(1000.0, 1000, 10000.0)).await;
        let heard = peer.heard(Duration::from_millis(400)).await;
        let loud = heard.iter().filter(|sample| sample.unsigned_abs() > 300).count();
        if loud < 800 {
            return Err(format!("{} samples heard, {loud} above -40 dBFS", heard.len()));
        }
        Ok(())
    }

    /// For each Ingress subscriber: the TAS calls it through the core (leg 3 without a
    /// Session-ID, which the core accepts only towards an Ingress registration) and the handset
    /// answers. The harness cannot start these calls: it waits for them.
    async fn ingress_cases(&mut self) {
        let subscribers = self.config.subscribers.clone();
        for registration in subscribers.iter().filter(|r| r.route_type == RouteType::Ingress) {
            let Some(number) = &registration.phone_number else { continue };
            let name = format!("call.ingress.{number}");
            let Some(started) = self.start(&name) else { continue };
            let finding = match self.config.ingress_wait {
                None => {
                    Finding::skip("Ingress calls start at the TAS: give --ingress-wait and have it call the subscriber")
                }
                Some(wait) => self.await_ingress(number, wait).await,
            };
            self.record(&name, "a TAS-originated call to the subscriber goes through the core", started, finding);
        }
    }

    async fn await_ingress(&self, number: &Msisdn, wait: Duration) -> Finding {
        let refused_before = self.sbc().refused_leg3();
        let seen_before = self.sbc().calls().iter().filter(|call| &call.callee == number).count();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let calls: Vec<_> = self.sbc().calls().into_iter().filter(|call| &call.callee == number).collect();
            if let Some(call) = calls.get(seen_before).filter(|call| call.status != 0) {
                let mut evidence = vec![format!(
                    "route {}, legs {}",
                    call.route,
                    call.legs.iter().map(|l| format!("{}:{}", l.leg, l.status)).collect::<Vec<_>>().join(" ")
                )];
                evidence.push(format!("final {}", call.status));
                return Finding::pass(evidence);
            }
            if self.sbc().refused_leg3() > refused_before {
                return Finding::fail(
                    format!("an INVITE to {number}, an Ingress subscriber, which the core accepts without Session-ID"),
                    "an INVITE the core refused (403): not to a registered Ingress number",
                    Vec::new(),
                );
            }
            if tokio::time::Instant::now() >= deadline {
                return Finding::fail(
                    format!("an INVITE from the TAS to {number} within {} s", wait.as_secs()),
                    "none arrived",
                    Vec::new(),
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Malformed requests are refused cleanly, and the TAS still answers OPTIONS afterwards.
    async fn robustness_cases(&mut self) {
        let Some(started) = self.start("robustness.malformed") else { return };
        let mut evidence = Vec::new();
        let mut failure = None;
        for (label, message) in MALFORMED {
            let result = async {
                let (mut probe, _) = self.connect().await?;
                let text = message.replace("{local}", &probe.local.to_string());
                probe.send(text.as_bytes()).await?;
                match probe.next_message(Duration::from_secs(2)).await {
                    Ok(Message::Response(response)) if (400..500).contains(&response.status) => {
                        Ok(format!("{label}: {} {}", response.status, response.reason))
                    }
                    Ok(Message::Response(response)) => Err(format!("{label}: {} {}", response.status, response.reason)),
                    Ok(Message::Request(request)) => {
                        Ok(format!("{label}: a {} request back, no answer", request.method))
                    }
                    // Dropping what cannot be answered (no usable Via) is fine; so is closing.
                    Err(why) => Ok(format!("{label}: no answer ({why})")),
                }
            }
            .await;
            match result {
                Ok(line) => evidence.push(line),
                Err(line) => {
                    failure.get_or_insert(line.clone());
                    evidence.push(line);
                }
            }
        }
        let finding = match (failure, self.options().await) {
            (Some(got), _) => Finding::fail(
                "a 4xx response or silence to a malformed request (RFC 3261 §16.3, RFC 4475)",
                got,
                evidence,
            ),
            (None, Err(got)) => Finding::fail("OPTIONS still answered after malformed requests", got, evidence),
            (None, Ok(_)) => Finding::pass(evidence),
        };
        self.record("robustness.malformed", "malformed requests refused cleanly; the TAS lives on", started, finding);
    }
}

/// A call the TAS took (answered itself or through leg 3), its media not yet checked.
struct Established {
    call: sip::call::CallHandle,
    peer: OfferingPeer,
    relay: Option<relay::MediaRelay>,
    /// The SDP answer as the TAS sent it.
    answer: sdp::SessionDescription,
    evidence: Vec<String>,
    /// Leg 3 was answered: a far end (a handset) is in the call.
    far_end: bool,
    /// What the TAS did with the call, for the report.
    outcome: Option<String>,
}

impl Established {
    /// Hangs up and closes the media, then returns `finding` with this call's evidence.
    async fn abandon(self, finding: Finding) -> Finding {
        let _ = self.call.hangup().await;
        self.peer.close().await;
        let mut evidence = self.evidence;
        evidence.extend(finding.evidence);
        Finding { verdict: finding.verdict, evidence, outcome: finding.outcome.or(self.outcome) }
    }
}

/// The SDP in `body` when it can be read and has an audio stream.
fn audio_answer(body: &[u8]) -> Option<sdp::SessionDescription> {
    let answer = sdp::SessionDescription::parse(std::str::from_utf8(body).ok()?).ok()?;
    answer.media.iter().any(|media| media.kind == "audio").then_some(answer)
}

/// How a placed call went: up, or finished with a finding.
enum Placed {
    Up(Box<Established>),
    Over(Finding),
}

/// The BYE races the harness runs (RFC 5407).
#[derive(Debug, Clone, Copy)]
enum Race {
    /// A re-INVITE with the caller's BYE right behind it.
    ByeCrossesReinvite,
    /// The caller and the far end hang up at the same moment.
    ByeFromBothEnds,
}

impl Race {
    fn name(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => "bye-reinvite",
            Race::ByeFromBothEnds => "bye-bye",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => "a BYE crossing a re-INVITE: both answered, nothing left open",
            Race::ByeFromBothEnds => "BYE from both ends at once: both answered, nothing left open",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => {
                "the re-INVITE answered (200, or 487 once the BYE came: RFC 3261 §15.1.2), the BYE answered 200, and every leg ended (RFC 5407 §3.5)"
            }
            Race::ByeFromBothEnds => {
                "each BYE answered (200, or 481 for a dialog already gone: RFC 5407 §3.3.2) and every leg ended"
            }
        }
    }
}

/// Requests the TAS must refuse cleanly (from the kinds RFC 4475 lists); `{local}` is the
/// probe's address for the Via.
const MALFORMED: [(&str, &str); 3] = [
    (
        "CSeq method mismatch (RFC 4475 3.1.2.x)",
        "OPTIONS sip:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad1\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b1\r\nTo: <sip:tas@conformance.invalid>\r\nCall-ID: bad1@conformance\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "unknown Request-URI scheme (RFC 4475 3.3.2)",
        "OPTIONS nope:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad2\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b2\r\nTo: <sip:tas@conformance.invalid>\r\nCall-ID: bad2@conformance\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "no Call-ID",
        "OPTIONS sip:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad3\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b3\r\nTo: <sip:tas@conformance.invalid>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ),
];

/// How often the harness looks again at what it waits for.
const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` every `every` until it holds (true) or `deadline` passes (false).
async fn poll_until(deadline: tokio::time::Instant, every: Duration, mut condition: impl FnMut() -> bool) -> bool {
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

/// Whether case `name` is one of `only` (a name, or a prefix ending in `*`); all are when
/// `only` is empty.
fn wanted(only: &[String], name: &str) -> bool {
    only.is_empty()
        || only.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern == name,
        })
}

/// The first lines of a message, for a failure's "got".
fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().take(14).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn only_names_cases_by_name_or_prefix() {
        assert!(wanted(&[], "sip.options"), "no filter: every case");
        let only = ["call.race.*".to_owned(), "tls.certificate".to_owned()];
        assert!(wanted(&only, "call.race.bye-bye.+4799990001"));
        assert!(wanted(&only, "tls.certificate"));
        assert!(!wanted(&only, "tls.certificate.more"), "without `*` the whole name must match");
        assert!(!wanted(&only, "call.loop.mt.sip.+4799990001"));
    }
}
