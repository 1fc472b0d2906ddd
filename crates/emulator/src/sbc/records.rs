//! What the SBC keeps of each call: how it was routed and every leg's final status, as the
//! harness reads them; and the helpers that write them as the legs progress.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::numbers::Called;
use domain::types::{Direction, Msisdn, Prefix};
use sip::b2bua;
use sip::message::StatusCode;
use sip::uac::InviteSpec;

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

/// The legs of a call through the core, numbered as on the operator's SIP Breakout page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Leg {
    /// Leg 1: the caller's handset to the core.
    CallerToCore,
    /// Leg 2: the core to the subscriber's TAS, the prefix in the Request-URI.
    CoreToTas,
    /// Leg 3: the TAS back to the core, carrying leg 2's Session-ID (or an Ingress call).
    TasToCore,
    /// Leg 4: the core to the callee (also the only outgoing leg of a direct call).
    CoreToCallee,
}

impl Leg {
    /// Its number on the spec page, 1 to 4.
    pub fn number(self) -> u8 {
        match self {
            Leg::CallerToCore => 1,
            Leg::CoreToTas => 2,
            Leg::TasToCore => 3,
            Leg::CoreToCallee => 4,
        }
    }
}

/// Written as its number, as the spec page and the harness's evidence name legs.
impl fmt::Display for Leg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// One leg of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegRecord {
    /// Which leg.
    pub leg: Leg,
    /// Its Request-URI.
    pub request_uri: String,
    /// Its final status, once there is one.
    pub status: Option<StatusCode>,
    /// Why the core gave `status` itself, when the far end gave none: the connection or TLS
    /// handshake failed, no final response came (Timer B), a CANCEL got no answer. A harness
    /// must not take such a status for the far end's.
    pub by_core: Option<String>,
}

impl LegRecord {
    pub(super) fn new(leg: Leg, request_uri: String) -> Self {
        Self { leg, request_uri, status: None, by_core: None }
    }
}

/// `2:486`: the leg's number and final status (`2:none` while it is under way), as the
/// harness's evidence shows legs.
impl fmt::Display for LegRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            Some(status) => write!(f, "{}:{status}", self.leg),
            None => write!(f, "{}:none", self.leg),
        }
    }
}

/// What the SBC did with one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbcCall {
    /// The caller's number, where known.
    pub caller: Option<Msisdn>,
    /// What the caller dialled: a number, or a service code for the caller's TAS.
    pub callee: Called,
    /// How it was routed.
    pub route: CallRoute,
    /// The prefix put into leg 2.
    pub prefix: Option<Prefix>,
    /// The Session-ID of leg 2.
    pub session_id: String,
    /// The legs, in the order they were created.
    pub legs: Vec<LegRecord>,
    /// The final status the caller got, once there is one.
    pub status: Option<StatusCode>,
    /// Why the call was diverted to the TAS after the callee's leg (Fallback): an RFC 4458
    /// cause, told to the TAS in History-Info.
    pub diverted: Option<u16>,
}

pub(super) type SharedCall = Arc<Mutex<SbcCall>>;

pub(super) fn add_leg(call: &SharedCall, leg: Leg, spec: &InviteSpec) -> usize {
    let mut call = call.lock();
    call.legs.push(LegRecord::new(leg, spec.uri.to_string()));
    call.legs.len() - 1
}

pub(super) fn set_leg_status(call: &SharedCall, index: usize, status: StatusCode) {
    if let Some(leg) = call.lock().legs.get_mut(index) {
        leg.status = Some(status);
    }
}

/// Records a status the core gave leg `index` itself because its far end gave none.
pub(super) fn set_leg_by_core(call: &SharedCall, index: usize, status: StatusCode, why: String) {
    if let Some(leg) = call.lock().legs.get_mut(index) {
        leg.status = Some(status);
        leg.by_core = Some(why);
    }
}

/// Why a leg got no final response: Timer B ran out, or the connection failed under it.
pub(super) const NO_FINAL_RESPONSE: &str = "no final response from the far end (Timer B, or its connection failed)";

/// Records the final status leg `index` really sent once its CANCEL has played out (408 when
/// none came); until then it has none.
pub(super) fn record_cancelled(
    settling: &Arc<AtomicUsize>,
    call: &SharedCall,
    index: usize,
    cancelling: b2bua::Cancelling,
) {
    let (call, settling) = (call.clone(), settling.clone());
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
pub(super) fn answered(call: &SharedCall, indexes: &[usize], status: StatusCode) {
    for index in indexes {
        set_leg_status(call, *index, status);
    }
    call.lock().status = Some(status);
}
