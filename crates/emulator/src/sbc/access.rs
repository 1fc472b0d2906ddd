//! The access side: leg 1 from a user agent, routed by the registrations of caller and
//! callee: straight to the callee, or through a subscriber's TAS (Loop, Fork, Fallback).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{info, warn};

use super::legs::{bridge, callee_leg, conclude, leg2, leg_target, new_session_id, record_unanswered, LegError};
use super::records::{
    answered, record_cancelled, set_leg_by_core, set_leg_status, CallRoute, Leg, LegRecord, SbcCall, SharedCall,
    NO_FINAL_RESPONSE,
};
use super::shared::Shared;
use crate::numbers::Called;
use crate::numbers::{addressed_number, caller, dialled_code};
use crate::registry::RegistrationRecord;
use domain::types::{Direction, Msisdn, Prefix, RouteType, ServiceCode};
use sip::b2bua::{self, LegOutcome, RelayedLeg};
use sip::message::StatusCode;
use sip::ua::PendingInvite;
use sip::uac::Progress;

/// Leg 1: find the registrations of caller and callee and route the call.
pub(super) async fn leg1(shared: Arc<Shared>, invite: PendingInvite) {
    let uri = &invite.request().uri;
    if let Some(callee) = addressed_number(uri) {
        route(&shared, invite, callee, Leg::CallerToCore, true).await;
    } else if let Some(code) = dialled_code(uri) {
        service_code(&shared, invite, code).await;
    } else {
        invite.reject(StatusCode::NOT_FOUND, None, Some("the Request-URI holds no E.164 number or service code"));
    }
}

/// A service code (`*72+4799990002`) dialled by a subscriber whose calls go through its TAS
/// (Loop, Loop-MO): leg 2 to that TAS with the MO prefix after the `+`, as for any number.
/// The core itself serves no codes: from anyone else, 404.
async fn service_code(shared: &Arc<Shared>, invite: PendingInvite, code: ServiceCode) {
    let caller = caller(&invite.request().headers, &invite.essentials().from);
    let Some(registration) = caller.as_ref().and_then(|caller| shared.registration(caller, &CODE_ROUTES)) else {
        info!(call_id = %invite.essentials().call_id, %code, "service code from a caller without originating services");
        invite.reject(StatusCode::NOT_FOUND, None, Some("no service serves this code for the caller"));
        return;
    };
    let prefix = registration.registration.mo_prefix.clone();
    let called = Called::Code(code);
    let call = shared.record(SbcCall {
        caller,
        callee: called.clone(),
        route: CallRoute::Loop(Direction::Originating),
        prefix: prefix.clone(),
        session_id: new_session_id(),
        legs: vec![LegRecord::new(Leg::CallerToCore, invite.request().uri.to_string())],
        status: None,
        diverted: None,
    });
    info!(call_id = %invite.essentials().call_id, %called, "service code to the caller's TAS");
    let via_tas = ViaTas { shared, registration: &registration, prefix: prefix.as_ref(), called: &called, call: &call };
    let status = via_tas.to_tas(invite).await;
    let mut call = call.lock();
    call.status = Some(status);
    if let Some(leg) = call.legs.first_mut() {
        leg.status = Some(status);
    }
}

/// The registrations whose subscriber's service codes go to its TAS.
const CODE_ROUTES: [RouteType; 2] = [RouteType::Loop, RouteType::LoopMo];

/// The registrations a call to a number goes through its TAS for.
pub(super) const MT_ROUTES: [RouteType; 4] = [RouteType::Loop, RouteType::LoopMt, RouteType::Fork, RouteType::Fallback];

/// Routes `invite` (which came as `first`) to `callee`: through the caller's TAS (MO, when
/// `originating` services apply), the callee's (MT), or straight; returns the final status.
/// A call a TAS forwarded to another number comes here again without `originating`: the new
/// callee's terminating services apply, as they do in the operator's core.
pub(super) async fn route(
    shared: &Arc<Shared>,
    invite: PendingInvite,
    callee: Msisdn,
    first: Leg,
    originating: bool,
) -> StatusCode {
    let caller = caller(&invite.request().headers, &invite.essentials().from);
    let mo_routes: &[RouteType] = match shared.fork_mo.load(Ordering::Relaxed) {
        true => &[RouteType::Loop, RouteType::LoopMo, RouteType::Fork],
        false => &[RouteType::Loop, RouteType::LoopMo],
    };
    let mo = caller.as_ref().filter(|_| originating).and_then(|c| shared.registration(c, mo_routes));
    let mt = shared.registration(&callee, &MT_ROUTES);
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
    let called = Called::Number(callee.clone());
    let call = shared.record(SbcCall {
        caller,
        callee: called.clone(),
        route,
        prefix: prefix.clone(),
        session_id: session_id.clone(),
        legs: vec![LegRecord::new(first, invite.request().uri.to_string())],
        status: None,
        diverted: None,
    });
    info!(call_id = %invite.essentials().call_id, %callee, %route, leg = first.number(), "call in");
    let status = match registration {
        Some(registration) if route != CallRoute::Direct => {
            // While the TAS has the call, its leg 3 finds it by this Session-ID.
            shared.sessions().insert(session_id.clone(), call.clone());
            let via_tas =
                ViaTas { shared, registration: &registration, prefix: prefix.as_ref(), called: &called, call: &call };
            let status = match route {
                CallRoute::Fork(_) => via_tas.fork(invite, &callee).await,
                CallRoute::Fallback => via_tas.fallback(invite, &callee).await,
                _ => via_tas.to_tas(invite).await,
            };
            shared.sessions().remove(&session_id);
            status
        }
        _ => direct(shared, invite, &callee, &call).await,
    };
    let mut call = call.lock();
    call.status = Some(status);
    if let Some(leg) = call.legs.first_mut() {
        leg.status = Some(status);
    }
    status
}

pub(super) async fn direct(shared: &Shared, invite: PendingInvite, callee: &Msisdn, call: &SharedCall) -> StatusCode {
    match callee_leg(shared, &invite, callee, call).await {
        Ok((leg, index)) => bridge(shared, invite, 0, leg, call, index).await,
        Err(why) => {
            warn!(%callee, %why, "cannot deliver the call");
            let status = why.status();
            invite.reject(status, None, Some(&why.to_string()));
            status
        }
    }
}

/// A call the core routes through a subscriber's TAS.
pub(super) struct ViaTas<'a> {
    shared: &'a Shared,
    registration: &'a RegistrationRecord,
    prefix: Option<&'a Prefix>,
    /// What leg 2 carries: the callee, or a service code.
    called: &'a Called,
    call: &'a SharedCall,
}

impl ViaTas<'_> {
    /// Loop: leg 2 to the TAS, bridged to leg 1. A TAS server that cannot be reached, fails
    /// in transport or answers 503 gives way to the `sip_uri`'s next one (RFC 3263 §4.3): an
    /// instance that is stopping or gone loses no call while another serves the same URI.
    async fn to_tas(&self, invite: PendingInvite) -> StatusCode {
        let Self { shared, registration, prefix, called, call } = *self;
        let sip_uri = &registration.registration.sip_uri;
        let servers = match leg_target(sip_uri.as_str()) {
            Ok(target) => shared.interconnect.outbound().servers(&target).await.map_err(LegError::from),
            Err(why) => Err(why),
        };
        let unreachable = |invite: PendingInvite, why: &LegError| {
            warn!(%sip_uri, %why, "TAS unreachable");
            invite.reject(StatusCode::SERVICE_UNAVAILABLE, None, Some(&format!("TAS unreachable: {why}")));
            StatusCode::SERVICE_UNAVAILABLE
        };
        let servers = match servers {
            Ok(servers) => servers,
            Err(why) => return unreachable(invite, &why),
        };
        let last = servers.len().saturating_sub(1);
        for (attempt, server) in servers.iter().enumerate() {
            let (leg, index) = match leg2(shared, &invite, registration, prefix, called, call, Some(server)).await {
                Ok(placed) => placed,
                Err(why) if attempt < last => {
                    warn!(%sip_uri, server = %server.address, port = server.port, %why, "TAS server unreachable; trying the next");
                    continue;
                }
                Err(why) => return unreachable(invite, &why),
            };
            let outcome = b2bua::ring(&invite, leg, None).await;
            let next = match &outcome {
                LegOutcome::Refused(response) if response.status == StatusCode::SERVICE_UNAVAILABLE => "answered 503",
                // No response at all: Timer B, or the connection closed before any.
                LegOutcome::Unreachable => "sent no response",
                _ => "",
            };
            if attempt < last && !next.is_empty() {
                record_unanswered(call, index, &outcome);
                info!(%sip_uri, server = %server.address, port = server.port, "TAS server {next}; trying the next");
                continue;
            }
            return conclude(shared, invite, 0, outcome, call, index).await;
        }
        unreachable(invite, &LegError::NoServer(sip_uri.to_string()))
    }

    /// Fork: the TAS and the callee at once; the first 2xx wins and the other leg is cancelled.
    async fn fork(&self, invite: PendingInvite, callee: &Msisdn) -> StatusCode {
        let Self { shared, registration, prefix, called, call } = *self;
        let mut legs: [Option<(RelayedLeg, usize)>; 2] = [None, None];
        match leg2(shared, &invite, registration, prefix, called, call, None).await {
            Ok((leg, index)) => legs[0] = Some((RelayedLeg::new(leg), index)),
            Err(why) => warn!(%why, "fork: TAS unreachable"),
        }
        match callee_leg(shared, &invite, callee, call).await {
            Ok((leg, index)) => legs[1] = Some((RelayedLeg::new(leg), index)),
            Err(why) => warn!(%why, "fork: callee unreachable"),
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
                        record_cancelled(&shared.settling, call, index, b2bua::cancel_in_background(leg.into_leg()));
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
                        record_cancelled(&shared.settling, call, index, b2bua::cancel_in_background(leg.into_leg()));
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
    async fn fallback(&self, invite: PendingInvite, callee: &Msisdn) -> StatusCode {
        let Self { shared, call, .. } = *self;
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
                    call.lock().diverted = Some(match response.status.as_u16() {
                        486 | 600 => 486,
                        other => other,
                    });
                }
                LegOutcome::Refused(response) => {
                    set_leg_status(call, index, response.status);
                    invite.relay_refusal(&response);
                    return response.status;
                }
                LegOutcome::NoAnswer(cancelling) => {
                    call.lock().diverted = Some(408);
                    record_cancelled(&shared.settling, call, index, cancelling)
                }
                LegOutcome::Unreachable => {
                    call.lock().diverted = Some(503);
                    set_leg_by_core(call, index, StatusCode::REQUEST_TIMEOUT, NO_FINAL_RESPONSE.into())
                }
                LegOutcome::CallerCancelled(cancelling) => {
                    record_cancelled(&shared.settling, call, index, cancelling);
                    return StatusCode::REQUEST_TERMINATED;
                }
            },
            Err(why) => {
                warn!(%why, "fallback: callee unreachable, trying the TAS");
                call.lock().diverted = Some(503);
            }
        }
        self.to_tas(invite).await
    }
}

/// The final progress of a fork's leg, its provisional responses relayed; never, once the leg is over.
pub(super) async fn settle(slot: &mut Option<(RelayedLeg, usize)>, caller: &PendingInvite) -> Progress {
    match slot {
        Some((leg, _)) => leg.settle(caller).await,
        None => std::future::pending().await,
    }
}
