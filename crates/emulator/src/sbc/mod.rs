//! The emulated SBC: the operator's call path on one machine.
//!
//! - The access side takes leg 1 from SIP user agents (UDP, TCP, TLS) and delivers calls to
//!   callees (simulated [`handsets`], or configured routes such as SIPp as Bob).
//! - The interconnect side (TLS) is where TASs are reached: leg 2 goes out to the registered
//!   `sip_uri` with the MO or MT prefix and a fresh `Session-ID`; leg 3 comes back carrying that
//!   `Session-ID` and becomes leg 4 to the callee. A leg 3 without a known `Session-ID` is
//!   refused and counted rather than looped to the TAS again; a call without one to an Ingress
//!   subscriber is the TAS placing a call.
//!
//! Route types: Loop/Loop-MO/Loop-MT send leg 2 and create leg 4 only when leg 3 comes back;
//! Fork rings the TAS and the callee at once (first 2xx wins, the other is cancelled), for the
//! subscriber's incoming calls and, with `fork_mo` (the default), its outgoing ones too;
//! Fallback rings the callee first and the TAS on busy or no answer.

pub mod handsets;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use thiserror::Error;
use tracing::{info, warn};

use super::numbers::{addressed_number, caller};
use crate::config::SbcConfig;
use domain::types::Direction;
use domain::types::{Msisdn, Prefix, RouteType};
use sip::b2bua::{self, LegOutcome, RelayedLeg};
use sip::config::UaConfig;
use sip::core::UserAgent;
use sip::dialog::{DialogId, OfferAnswer};
use sip::endpoint::{self, Endpoint, EndpointConfig};
use sip::message::header::{SessionId, TypedHeader};
use sip::message::{Request, StatusCode, Uri};
use sip::transport::policy::PeerPolicy;
use sip::transport::stream::StreamLimits;
use sip::ua::{PendingInvite, SessionHandler};
use sip::uac::{InviteSpec, OutgoingCall, Progress};
use tls::TlsError;

use super::registry::{RegistrationRecord, Registry};
use handsets::{HandsetHandler, Handsets};

/// Why the SBC could not start.
#[derive(Debug, Error)]
pub enum SbcError {
    /// A certificate, key or CA is unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A listener could not be opened.
    #[error("{0}")]
    Listen(#[from] std::io::Error),
    /// The config is inconsistent.
    #[error("{0}")]
    Config(String),
}

/// How the core routed a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallRoute {
    /// No registration involved: straight to the callee.
    Direct,
    /// To the caller's or the callee's TAS, back as leg 3 (Loop, Loop-MO, Loop-MT).
    Loop(Direction),
    /// The TAS and the callee rang at once; the subscriber is the callee (MT) or, with
    /// `fork_mo`, the caller (MO).
    Fork(Direction),
    /// The callee first, the TAS on busy or no answer.
    Fallback,
    /// A call the TAS placed to an Ingress subscriber.
    Ingress,
}

impl fmt::Display for CallRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallRoute::Direct => f.write_str("direct"),
            CallRoute::Loop(direction) => write!(f, "loop {direction}"),
            CallRoute::Fork(direction) => write!(f, "fork {direction}"),
            CallRoute::Fallback => f.write_str("fallback"),
            CallRoute::Ingress => f.write_str("ingress"),
        }
    }
}

/// One leg of a call, numbered as on the spec page: 1 caller → core, 2 core → TAS,
/// 3 TAS → core, 4 core → callee.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// 1 to 4.
    pub leg: u8,
    /// Its Request-URI.
    pub request_uri: String,
    /// Its final status code (0 while under way), as the harness reads and reports it.
    pub status: u16,
    /// Why the core gave `status` itself, when the far end gave none: the connection or TLS
    /// handshake failed, no final response came (Timer B), a CANCEL got no answer. A harness
    /// must not take such a status for the far end's.
    pub by_core: Option<String>,
}

impl LegRecord {
    fn new(leg: u8, request_uri: String) -> Self {
        Self { leg, request_uri, status: 0, by_core: None }
    }
}

/// What the SBC did with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbcCall {
    /// The caller's number, where known.
    pub caller: Option<Msisdn>,
    /// The number called.
    pub callee: Msisdn,
    /// How it was routed.
    pub route: CallRoute,
    /// The prefix put into leg 2.
    pub prefix: Option<Prefix>,
    /// The Session-ID of leg 2.
    pub session_id: String,
    /// The legs, in the order they were created.
    pub legs: Vec<LegRecord>,
    /// The final status code the caller got (0 while under way).
    pub status: u16,
}

type SharedCall = Arc<Mutex<SbcCall>>;

/// How many calls [`Sbc::calls`] keeps.
const CALLS_KEPT: usize = 1000;

struct Shared {
    config: SbcConfig,
    registry: Arc<Registry>,
    handsets: Arc<Handsets>,
    /// Where calls to handsets go: the handset endpoint's UDP address.
    handset_target: Option<String>,
    access: UserAgent,
    interconnect: UserAgent,
    /// Calls with a leg 2 under way, by Session-ID.
    sessions: Mutex<HashMap<String, SharedCall>>,
    calls: Mutex<VecDeque<SharedCall>>,
    refused_leg3: AtomicU64,
    /// Leg 2's Request-URI as `tel:+<prefix><number>` instead of `sip:...;user=phone`.
    leg2_tel: std::sync::atomic::AtomicBool,
    /// A Fork subscriber's own calls are forked to the TAS too.
    fork_mo: std::sync::atomic::AtomicBool,
    /// Cancelled legs whose real final status is not recorded yet.
    settling: Arc<std::sync::atomic::AtomicUsize>,
}

/// A running SBC.
pub struct Sbc {
    /// Where SIP user agents place calls (leg 1).
    pub access: Endpoint,
    /// Where TASs send leg 3 (TLS).
    pub interconnect: Endpoint,
    /// The simulated handsets' own endpoint.
    pub handset_endpoint: Endpoint,
    shared: Arc<Shared>,
}

fn ua_config(config: &SbcConfig, contact_host: String) -> UaConfig {
    config.extensions().apply(UaConfig::new(contact_host, format!("ringer-core-sbc/{}", env!("CARGO_PKG_VERSION"))))
}

/// Starts the SBC on the registrations of `registry`.
pub async fn start(config: &SbcConfig, registry: Arc<Registry>) -> Result<Sbc, SbcError> {
    config.validate().map_err(SbcError::Config)?;
    let (Some(cert), Some(key)) = (&config.cert_file, &config.key_file) else {
        return Err(SbcError::Config("sbc.cert_file and sbc.key_file are needed".into()));
    };
    let server_tls = tls::server_config(tls::load_chain(cert)?, tls::load_key(key)?, None)?;
    let client_tls = tls::client_config(config.tas_ca_file.as_deref(), None)?;
    let handsets = Arc::new(Handsets::new(&config.handsets));
    let base = EndpointConfig {
        tls: None,
        tcp: None,
        udp: None,
        policy: PeerPolicy::default(),
        limits: StreamLimits::default(),
        ua: ua_config(config, config.interconnect_listen.ip().to_string()),
        outbound: sip::outbound::OutboundSettings { tls: Some(client_tls), core: None, dns_server: config.dns_server },
    };
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    let handset_endpoint = endpoint::start(
        EndpointConfig {
            tcp: Some(loopback),
            udp: Some(loopback),
            ua: ua_config(config, "127.0.0.1".into()),
            ..base.clone()
        },
        Arc::new(HandsetHandler(handsets.clone())),
    )
    .await?;
    let access_host = [config.tls_listen, config.tcp_listen, config.udp_listen]
        .into_iter()
        .flatten()
        .next()
        .map(|addr| addr.ip().to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let access = endpoint::bind(EndpointConfig {
        tls: config.tls_listen.map(|addr| (addr, server_tls.clone())),
        tcp: config.tcp_listen,
        udp: config.udp_listen,
        ua: ua_config(config, access_host),
        ..base.clone()
    })
    .await?;
    let interconnect =
        endpoint::bind(EndpointConfig { tls: Some((config.interconnect_listen, server_tls)), ..base }).await?;
    // Each side places legs on the other's user agent: the sides are wired as they are built,
    // their handlers holding the SBC weakly.
    let mut endpoints = None;
    let shared = Arc::new_cyclic(|shared: &Weak<Shared>| {
        let access = access.serve(Arc::new(SideHandler { shared: shared.clone(), side: Side::Access }));
        let interconnect =
            interconnect.serve(Arc::new(SideHandler { shared: shared.clone(), side: Side::Interconnect }));
        let built = Shared {
            config: config.clone(),
            registry,
            handsets,
            handset_target: handset_endpoint.udp_addr.map(|addr| format!("sip:{addr}")),
            access: access.user_agent().clone(),
            interconnect: interconnect.user_agent().clone(),
            sessions: Mutex::new(HashMap::new()),
            calls: Mutex::new(VecDeque::new()),
            refused_leg3: AtomicU64::new(0),
            leg2_tel: std::sync::atomic::AtomicBool::new(config.leg2_tel),
            fork_mo: std::sync::atomic::AtomicBool::new(config.fork_mo),
            settling: Arc::default(),
        };
        endpoints = Some((access, interconnect));
        built
    });
    let (access, interconnect) = match endpoints {
        Some(endpoints) => endpoints,
        None => unreachable!("Arc::new_cyclic runs its closure before returning"),
    };
    info!(
        udp = ?access.udp_addr, tcp = ?access.tcp_addr, tls = ?access.tls_addr,
        interconnect = ?interconnect.tls_addr, handsets = config.handsets.len(),
        "emulated SBC listening"
    );
    Ok(Sbc { access, interconnect, handset_endpoint, shared })
}

impl Sbc {
    /// Whether leg 2's Request-URI is written `tel:+<prefix><number>` (else `sip:` with
    /// `user=phone`); the core uses both forms.
    pub fn set_leg2_tel(&self, tel: bool) {
        self.shared.leg2_tel.store(tel, Ordering::Relaxed);
    }

    /// Whether a Fork subscriber's own calls (MO) are forked to its TAS too (`sbc.fork_mo`).
    pub fn set_fork_mo(&self, fork: bool) {
        self.shared.fork_mo.store(fork, Ordering::Relaxed);
    }

    /// The calls seen, oldest first (the last 1000).
    pub fn calls(&self) -> Vec<SbcCall> {
        self.shared.calls.lock().iter().map(|call| call.lock().clone()).collect()
    }

    /// Leg 3 INVITEs refused because they carried no known Session-ID.
    pub fn refused_leg3(&self) -> u64 {
        self.shared.refused_leg3.load(Ordering::Relaxed)
    }

    /// The simulated handsets.
    pub fn handsets(&self) -> &Arc<Handsets> {
        &self.shared.handsets
    }

    /// Dialogs and transactions still alive on every side (0 when every call is over).
    pub fn live_state(&self) -> usize {
        [&self.access, &self.interconnect, &self.handset_endpoint]
            .iter()
            .map(|endpoint| endpoint.live_dialogs() + endpoint.pending_invites() + endpoint.clients().in_progress())
            .sum::<usize>()
            + self.shared.settling.load(Ordering::Relaxed)
    }

    /// Calls with a leg 2 under way.
    pub fn open_sessions(&self) -> usize {
        self.shared.sessions.lock().len()
    }

    /// Stops every listener.
    pub fn shutdown(&self) {
        self.access.shutdown();
        self.interconnect.shutdown();
        self.handset_endpoint.shutdown();
    }
}

/// A Session-ID (RFC 7989): 32 lower-case hex digits; the remote UUID is not known yet.
fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The sender's UUID of the request's Session-ID, when it has a well-formed one.
fn session_id_of(request: &Request) -> Option<String> {
    request.headers.parsed::<SessionId>().map(|id| id.local)
}

impl Shared {
    fn record(&self, call: SbcCall) -> SharedCall {
        let call = Arc::new(Mutex::new(call));
        let mut calls = self.calls.lock();
        if calls.len() == CALLS_KEPT {
            calls.pop_front();
        }
        calls.push_back(call.clone());
        call
    }

    fn sessions(&self) -> MutexGuard<'_, HashMap<String, SharedCall>> {
        self.sessions.lock()
    }

    /// Where calls to `number` are delivered: a handset, else the longest matching route.
    fn callee_target(&self, number: &Msisdn) -> Option<String> {
        if self.handsets.has(number) {
            return self.handset_target.clone();
        }
        self.config
            .routes
            .iter()
            .filter(|route| number.as_str().starts_with(&route.prefix))
            .max_by_key(|route| route.prefix.len())
            .map(|route| route.target.clone())
    }

    /// A registration of `number` whose route type is one of `kinds`.
    fn registration(&self, number: &Msisdn, kinds: &[RouteType]) -> Option<RegistrationRecord> {
        self.registry.lookup(number).filter(|record| kinds.contains(&record.registration.route_type))
    }
}

/// The headers of an incoming leg that the outgoing one carries on.
const CARRIED: [&str; 4] = ["P-Asserted-Identity", "Privacy", "History-Info", "Diversion"];

fn spec_from(incoming: &PendingInvite, uri: Uri, extra: Vec<(String, String)>) -> InviteSpec {
    let mut spec = b2bua::onward(incoming, uri, &CARRIED);
    spec.headers.extend(extra);
    spec
}

/// A `sip:+number@host;user=phone` URI.
fn phone_uri(number: &str, host: &str) -> Uri {
    Uri::parse(&format!("sip:{number}@{host};user=phone"))
        .unwrap_or_else(|_| Uri::Other { scheme: "sip".into(), rest: format!("{number}@{host}") })
}

/// Leg 2 to the TAS of `registration`, its Request-URI prefixed; recorded in `call` before it
/// leaves, since leg 3 may come back at once.
async fn leg2(
    shared: &Shared,
    leg1: &PendingInvite,
    registration: &RegistrationRecord,
    prefix: Option<&Prefix>,
    number: &Msisdn,
    call: &SharedCall,
) -> Result<(OutgoingCall, usize), String> {
    let session_id = call.lock().session_id.clone();
    let ua = &shared.interconnect;
    let sip_uri = &registration.registration.sip_uri;
    let prefixed = format!("+{}{}", prefix.map(Prefix::as_str).unwrap_or_default(), number.digits());
    let uri = match shared.leg2_tel.load(Ordering::Relaxed) {
        true => Uri::Tel { number: prefixed, params: Default::default() },
        false => phone_uri(&prefixed, sip_uri.host()),
    };
    let mut extra = vec![(SessionId::NAME.to_owned(), SessionId::unanswered(session_id).to_string())];
    if leg1.request().headers.get("P-Asserted-Identity").is_none() {
        if let Some(caller) = caller(&leg1.request().headers, &leg1.essentials().from) {
            extra.push((
                "P-Asserted-Identity".into(),
                format!("<{}>", phone_uri(caller.as_str(), &shared.config.domain)),
            ));
        }
    }
    let spec = spec_from(leg1, uri, extra);
    let index = add_leg(call, 2, &spec);
    let placed = match ua.outbound().link_to(sip_uri.as_str()).await {
        Ok(link) => ua.invite(spec, link).map_err(|error| error.to_string()),
        Err(error) => Err(error.to_string()),
    };
    placed.map(|leg| (leg, index)).map_err(|why| {
        set_leg_by_core(call, index, StatusCode::SERVICE_UNAVAILABLE, format!("leg 2 never reached the TAS: {why}"));
        why
    })
}

/// A leg from `incoming` to the callee `number` (leg 4, or the direct leg), recorded in `call`.
async fn callee_leg(
    shared: &Shared,
    incoming: &PendingInvite,
    number: &Msisdn,
    call: &SharedCall,
) -> Result<(OutgoingCall, usize), (StatusCode, String)> {
    let ua = &shared.access;
    let target =
        shared.callee_target(number).ok_or((StatusCode::NOT_FOUND, format!("no handset or route for {number}")))?;
    let host = match Uri::parse(&target) {
        Ok(Uri::Sip(sip)) => {
            let mut host = sip.host.clone();
            if let Some(port) = sip.port {
                host = format!("{host}:{port}");
            }
            host
        }
        _ => return Err((StatusCode::SERVER_INTERNAL_ERROR, format!("bad route target {target}"))),
    };
    let spec = spec_from(incoming, phone_uri(number.as_str(), &host), Vec::new());
    let link =
        ua.outbound().link_to(&target).await.map_err(|error| (StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
    let index = add_leg(call, 4, &spec);
    match ua.invite(spec, link) {
        Ok(leg) => Ok((leg, index)),
        Err(error) => {
            set_leg_by_core(call, index, StatusCode::SERVICE_UNAVAILABLE, format!("not sent: {error}"));
            Err((StatusCode::SERVICE_UNAVAILABLE, error.to_string()))
        }
    }
}

fn add_leg(call: &SharedCall, leg: u8, spec: &InviteSpec) -> usize {
    let mut call = call.lock();
    call.legs.push(LegRecord::new(leg, spec.uri.to_string()));
    call.legs.len() - 1
}

fn set_leg_status(call: &SharedCall, index: usize, status: StatusCode) {
    if let Some(leg) = call.lock().legs.get_mut(index) {
        leg.status = status.as_u16();
    }
}

/// Records a status the core gave leg `index` itself because its far end gave none.
fn set_leg_by_core(call: &SharedCall, index: usize, status: StatusCode, why: String) {
    if let Some(leg) = call.lock().legs.get_mut(index) {
        leg.status = status.as_u16();
        leg.by_core = Some(why);
    }
}

/// Why a leg got no final response: Timer B ran out, or the connection failed under it.
const NO_FINAL_RESPONSE: &str = "no final response from the far end (Timer B, or its connection failed)";

/// Records the final status leg `index` really sent once its CANCEL has played out (408 when
/// none came); until then it stays 0.
fn record_cancelled(shared: &Shared, call: &SharedCall, index: usize, cancelling: b2bua::Cancelling) {
    let (call, settling) = (call.clone(), shared.settling.clone());
    settling.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(async move {
        match cancelling.outcome().await {
            Some(status) => set_leg_status(&call, index, status),
            None => set_leg_by_core(
                &call,
                index,
                StatusCode::REQUEST_TIMEOUT,
                "no final response after the CANCEL (64*T1)".into(),
            ),
        }
        settling.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Records that the legs at `indexes` got `status`, and the call too when it is final for the caller.
fn answered(call: &SharedCall, indexes: &[usize], status: StatusCode) {
    for index in indexes {
        set_leg_status(call, *index, status);
    }
    call.lock().status = status.as_u16();
}

/// Rings `leg` for `incoming` (the leg at `incoming_index`) and, when it answers, joins the
/// two; returns the final status `incoming` got.
async fn bridge(
    shared: &Shared,
    incoming: PendingInvite,
    incoming_index: usize,
    leg: OutgoingCall,
    call: &SharedCall,
    index: usize,
) -> StatusCode {
    match b2bua::ring(&incoming, leg, None).await {
        LegOutcome::Answered(callee, response) => {
            let status = response.status;
            answered(call, &[incoming_index, index], status);
            b2bua::join(incoming, callee, response).await;
            status
        }
        LegOutcome::Refused(response) => {
            set_leg_status(call, index, response.status);
            incoming.relay_refusal(&response);
            response.status
        }
        LegOutcome::Unreachable => {
            set_leg_by_core(call, index, StatusCode::REQUEST_TIMEOUT, NO_FINAL_RESPONSE.into());
            incoming.reject(StatusCode::REQUEST_TIMEOUT, None, None);
            StatusCode::REQUEST_TIMEOUT
        }
        LegOutcome::NoAnswer(cancelling) | LegOutcome::CallerCancelled(cancelling) => {
            record_cancelled(shared, call, index, cancelling);
            StatusCode::REQUEST_TERMINATED
        }
    }
}

/// Leg 1: find the registrations of caller and callee and route the call.
async fn leg1(shared: Arc<Shared>, invite: PendingInvite) {
    let Some(callee) = addressed_number(&invite.request().uri) else {
        invite.reject(StatusCode::NOT_FOUND, None, Some("the Request-URI holds no E.164 number"));
        return;
    };
    let caller = caller(&invite.request().headers, &invite.essentials().from);
    let mo_routes: &[RouteType] = match shared.fork_mo.load(Ordering::Relaxed) {
        true => &[RouteType::Loop, RouteType::LoopMo, RouteType::Fork],
        false => &[RouteType::Loop, RouteType::LoopMo],
    };
    let mo = caller.as_ref().and_then(|c| shared.registration(c, mo_routes));
    let mt = shared.registration(&callee, &[RouteType::Loop, RouteType::LoopMt, RouteType::Fork, RouteType::Fallback]);
    let (route, registration, prefix) = match (mo, mt) {
        (Some(mo), _) => {
            let prefix = mo.registration.mo_prefix.clone();
            let route = match mo.registration.route_type {
                RouteType::Fork => CallRoute::Fork(Direction::Originating),
                _ => CallRoute::Loop(Direction::Originating),
            };
            (route, Some(mo), prefix)
        }
        (None, Some(mt)) => {
            let route = match mt.registration.route_type {
                RouteType::Fork => CallRoute::Fork(Direction::Terminating),
                RouteType::Fallback => CallRoute::Fallback,
                _ => CallRoute::Loop(Direction::Terminating),
            };
            let prefix = mt.registration.mt_prefix.clone();
            (route, Some(mt), prefix)
        }
        (None, None) => (CallRoute::Direct, None, None),
    };
    let session_id = new_session_id();
    let call = shared.record(SbcCall {
        caller,
        callee: callee.clone(),
        route,
        prefix: prefix.clone(),
        session_id: session_id.clone(),
        legs: vec![LegRecord::new(1, invite.request().uri.to_string())],
        status: 0,
    });
    info!(call_id = %invite.essentials().call_id, %callee, %route, "leg 1");
    let status = match registration {
        Some(registration) if route != CallRoute::Direct => {
            // While the TAS has the call, its leg 3 finds it by this Session-ID.
            shared.sessions().insert(session_id.clone(), call.clone());
            let via_tas = ViaTas {
                shared: &shared,
                registration: &registration,
                prefix: prefix.as_ref(),
                callee: &callee,
                call: &call,
            };
            let status = match route {
                CallRoute::Fork(_) => via_tas.fork(invite).await,
                CallRoute::Fallback => via_tas.fallback(invite).await,
                _ => via_tas.to_tas(invite).await,
            };
            shared.sessions().remove(&session_id);
            status
        }
        _ => direct(&shared, invite, &callee, &call).await,
    };
    let mut call = call.lock();
    call.status = status.as_u16();
    if let Some(leg) = call.legs.first_mut() {
        leg.status = status.as_u16();
    }
}

async fn direct(shared: &Shared, invite: PendingInvite, callee: &Msisdn, call: &SharedCall) -> StatusCode {
    match callee_leg(shared, &invite, callee, call).await {
        Ok((leg, index)) => bridge(shared, invite, 0, leg, call, index).await,
        Err((status, why)) => {
            warn!(%callee, why, "cannot deliver the call");
            invite.reject(status, None, Some(&why));
            status
        }
    }
}

/// A call the core routes through a subscriber's TAS.
struct ViaTas<'a> {
    shared: &'a Shared,
    registration: &'a RegistrationRecord,
    prefix: Option<&'a Prefix>,
    callee: &'a Msisdn,
    call: &'a SharedCall,
}

impl ViaTas<'_> {
    /// Loop: leg 2 to the TAS, bridged to leg 1.
    async fn to_tas(&self, invite: PendingInvite) -> StatusCode {
        let Self { shared, registration, prefix, callee, call } = *self;
        match leg2(shared, &invite, registration, prefix, callee, call).await {
            Ok((leg, index)) => bridge(shared, invite, 0, leg, call, index).await,
            Err(why) => {
                warn!(sip_uri = %registration.registration.sip_uri, why, "TAS unreachable");
                invite.reject(StatusCode::SERVICE_UNAVAILABLE, None, Some(&format!("TAS unreachable: {why}")));
                StatusCode::SERVICE_UNAVAILABLE
            }
        }
    }

    /// Fork: the TAS and the callee at once; the first 2xx wins and the other leg is cancelled.
    async fn fork(&self, invite: PendingInvite) -> StatusCode {
        let Self { shared, registration, prefix, callee, call } = *self;
        let mut legs: [Option<(RelayedLeg, usize)>; 2] = [None, None];
        match leg2(shared, &invite, registration, prefix, callee, call).await {
            Ok((leg, index)) => legs[0] = Some((RelayedLeg::new(leg), index)),
            Err(why) => warn!(why, "fork: TAS unreachable"),
        }
        match callee_leg(shared, &invite, callee, call).await {
            Ok((leg, index)) => legs[1] = Some((RelayedLeg::new(leg), index)),
            Err((_, why)) => warn!(why, "fork: callee unreachable"),
        }
        let mut best: Option<(StatusCode, String)> = None;
        loop {
            if legs.iter().all(Option::is_none) {
                let (status, reason) =
                    best.unwrap_or((StatusCode::TEMPORARILY_UNAVAILABLE, "Temporarily Unavailable".into()));
                invite.reject(status, Some(&reason), None);
                return status;
            }
            let [tas, phone] = &mut legs;
            let (which, progress) = tokio::select! {
                biased;
                () = invite.cancelled() => {
                    for (leg, index) in legs.iter_mut().filter_map(Option::take) {
                        record_cancelled(shared, call, index, b2bua::cancel_in_background(leg.into_leg()));
                    }
                    return StatusCode::REQUEST_TERMINATED;
                }
                progress = settle(tas, &invite) => (0, progress),
                progress = settle(phone, &invite) => (1, progress),
            };
            match progress {
                // Relayed by `settle`, which returns only final progress.
                Progress::Provisional(_) => {}
                Progress::Answered(callee_call, response) => {
                    let status = response.status;
                    if let Some((_, index)) = legs[which].take() {
                        answered(call, &[0, index], status);
                    }
                    for (leg, index) in legs.iter_mut().filter_map(Option::take) {
                        record_cancelled(shared, call, index, b2bua::cancel_in_background(leg.into_leg()));
                    }
                    b2bua::join(invite, callee_call, response).await;
                    return status;
                }
                Progress::Failed(response) => {
                    if let Some((_, index)) = legs[which].take() {
                        set_leg_status(call, index, response.status);
                    }
                    // The callee's own answer (busy...) says more than the TAS's.
                    if which == 1 || best.is_none() {
                        best = Some((response.status, response.reason.clone()));
                    }
                }
                Progress::Cancelled | Progress::TimedOut => {
                    if let Some((_, index)) = legs[which].take() {
                        set_leg_by_core(call, index, StatusCode::REQUEST_TIMEOUT, NO_FINAL_RESPONSE.into());
                    }
                }
            }
        }
    }

    /// Fallback: the callee first; on busy, unavailable or no answer in time, the TAS.
    async fn fallback(&self, invite: PendingInvite) -> StatusCode {
        let Self { shared, callee, call, .. } = *self;
        match callee_leg(shared, &invite, callee, call).await {
            Ok((leg, index)) => match b2bua::ring(&invite, leg, Some(shared.config.fallback_no_answer)).await {
                LegOutcome::Answered(callee_call, response) => {
                    let status = response.status;
                    answered(call, &[0, index], status);
                    b2bua::join(invite, callee_call, response).await;
                    return status;
                }
                LegOutcome::Refused(response) if matches!(response.status.as_u16(), 486 | 600 | 480 | 408) => {
                    set_leg_status(call, index, response.status);
                }
                LegOutcome::Refused(response) => {
                    set_leg_status(call, index, response.status);
                    invite.relay_refusal(&response);
                    return response.status;
                }
                LegOutcome::NoAnswer(cancelling) => record_cancelled(shared, call, index, cancelling),
                LegOutcome::Unreachable => {
                    set_leg_by_core(call, index, StatusCode::REQUEST_TIMEOUT, NO_FINAL_RESPONSE.into())
                }
                LegOutcome::CallerCancelled(cancelling) => {
                    record_cancelled(shared, call, index, cancelling);
                    return StatusCode::REQUEST_TERMINATED;
                }
            },
            Err((_, why)) => warn!(why, "fallback: callee unreachable, trying the TAS"),
        }
        self.to_tas(invite).await
    }
}

/// The final progress of a fork's leg, its provisional responses relayed; never, once the leg is over.
async fn settle(slot: &mut Option<(RelayedLeg, usize)>, caller: &PendingInvite) -> Progress {
    match slot {
        Some((leg, _)) => leg.settle(caller).await,
        None => std::future::pending().await,
    }
}

/// An INVITE from a TAS: leg 3 of a call with a known Session-ID, an Ingress call, or refused.
async fn from_tas(shared: Arc<Shared>, invite: PendingInvite) {
    let call_id = invite.essentials().call_id.clone();
    let Some(number) = addressed_number(&invite.request().uri) else {
        invite.reject(StatusCode::NOT_FOUND, None, Some("the Request-URI holds no E.164 number"));
        return;
    };
    let session = session_id_of(invite.request()).and_then(|id| shared.sessions().get(&id).cloned());
    let call = match session {
        Some(call) => call,
        None if shared.registration(&number, &[RouteType::Ingress]).is_some() => shared.record(SbcCall {
            caller: caller(&invite.request().headers, &invite.essentials().from),
            callee: number.clone(),
            route: CallRoute::Ingress,
            prefix: None,
            session_id: session_id_of(invite.request()).unwrap_or_default(),
            legs: vec![LegRecord::new(3, invite.request().uri.to_string())],
            status: 0,
        }),
        None => {
            shared.refused_leg3.fetch_add(1, Ordering::Relaxed);
            let why = match session_id_of(invite.request()) {
                Some(_) => "leg 3 carries a Session-ID that matches no call of the core",
                None => "leg 3 must carry the Session-ID of leg 2 (RFC 7989)",
            };
            warn!(%call_id, request_uri = %invite.request().uri, why, "INVITE from a TAS refused");
            invite.reject(StatusCode::FORBIDDEN, None, Some(why));
            return;
        }
    };
    let leg3_index = {
        let mut record = call.lock();
        if record.route != CallRoute::Ingress {
            record.legs.push(LegRecord::new(3, invite.request().uri.to_string()));
        }
        record.legs.len() - 1
    };
    info!(%call_id, %number, "leg 3 from the TAS");
    let status = match callee_leg(&shared, &invite, &number, &call).await {
        Ok((leg, index)) => bridge(&shared, invite, leg3_index, leg, &call, index).await,
        Err((status, why)) => {
            invite.reject(status, None, Some(&why));
            status
        }
    };
    set_leg_status(&call, leg3_index, status);
    let mut record = call.lock();
    if record.route == CallRoute::Ingress {
        record.status = status.as_u16();
    }
}

/// Which side of the SBC a handler serves.
#[derive(Clone, Copy)]
enum Side {
    /// User agents: leg 1.
    Access,
    /// TASs: leg 3 and Ingress calls.
    Interconnect,
}

struct SideHandler {
    /// The SBC, held weakly: it owns the endpoints that own this handler.
    shared: Weak<Shared>,
    side: Side,
}

impl SessionHandler for SideHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let Some(shared) = self.shared.upgrade() else {
            invite.reject(StatusCode::SERVICE_UNAVAILABLE, None, Some("the SBC is stopping"));
            return;
        };
        match self.side {
            Side::Access => tokio::spawn(leg1(shared, invite)),
            Side::Interconnect => tokio::spawn(from_tas(shared, invite)),
        };
    }

    fn on_offer(&self, _dialog: &DialogId, _offer: &Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("the SBC relays offers only within bridged calls".into())
    }
}
