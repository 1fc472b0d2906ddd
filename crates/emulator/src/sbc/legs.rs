//! Placing the SBC's outgoing legs: leg 2 to a subscriber's TAS (prefixed, with a fresh
//! Session-ID), the leg to the callee (leg 4, or the direct leg), and bridging a leg to the
//! incoming one once it answers.

use std::sync::atomic::Ordering;

use thiserror::Error;

use super::records::{
    add_leg, answered, record_cancelled, set_leg_by_core, set_leg_status, Leg, SharedCall, NO_FINAL_RESPONSE,
};
use super::shared::Shared;
use crate::numbers::caller;
use crate::numbers::Called;
use crate::registry::RegistrationRecord;
use domain::types::{Msisdn, Prefix};
use sip::b2bua::{self, LegOutcome};
use sip::message::header::{SessionId, TypedHeader};
use sip::message::{Request, StatusCode, Uri};
use sip::outbound::Server;
use sip::ua::PendingInvite;
use sip::uac::{InviteSpec, OutgoingCall};

/// A Session-ID (RFC 7989): 32 lower-case hex digits; the remote UUID is not known yet.
pub(super) fn new_session_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The sender's UUID of the request's Session-ID, when it has a well-formed one.
pub(super) fn session_id_of(request: &Request) -> Option<String> {
    // The UUID alone correlates: a malformed parameter must not cost the call its leg 3.
    SessionId::local_of(request.headers.get(SessionId::NAME)?).ok()
}

/// The headers of an incoming leg that the outgoing one carries on.
pub(super) const CARRIED: [&str; 4] = ["P-Asserted-Identity", "Privacy", "History-Info", "Diversion"];

pub(super) fn spec_from(incoming: &PendingInvite, uri: Uri, extra: Vec<(String, String)>) -> InviteSpec {
    let mut spec = b2bua::onward(incoming, uri, &CARRIED);
    spec.headers.extend(extra);
    spec
}

/// A `sip:+number@host;user=phone` URI.
pub(super) fn phone_uri(number: &str, host: &str) -> Uri {
    Uri::parse(&format!("sip:{number}@{host};user=phone"))
        .unwrap_or_else(|_| Uri::Other { scheme: "sip".into(), rest: format!("{number}@{host}") })
}

/// Why the SBC could not place a leg.
#[derive(Debug, Error)]
pub(super) enum LegError {
    /// No handset or route serves the number.
    #[error("no handset or route for {0}")]
    NoRoute(Msisdn),
    /// The registered or configured target is not a SIP URI.
    #[error("{target} is not a SIP URI: {source}")]
    BadTarget {
        /// The target as registered or configured.
        target: String,
        /// Why it does not parse.
        #[source]
        source: sip::message::uri::BadUri,
    },
    /// The target is a URI, but not one of SIP.
    #[error("{0} is not a sip: or sips: URI")]
    NotSip(String),
    /// No connection to the target.
    #[error(transparent)]
    Connect(#[from] sip::outbound::ConnectError),
    /// The INVITE could not be sent.
    #[error("INVITE not sent: {0}")]
    Request(#[from] sip::client::RequestError),
    /// No server to try for the target (defensive: resolution falls back to the target's own
    /// host, so it always names one).
    #[error("no server to try for {0}")]
    NoServer(String),
}

impl LegError {
    /// The status the caller gets for it.
    pub(super) fn status(&self) -> StatusCode {
        match self {
            LegError::NoRoute(_) => StatusCode::NOT_FOUND,
            LegError::BadTarget { .. } | LegError::NotSip(_) => StatusCode::SERVER_INTERNAL_ERROR,
            LegError::Connect(_) | LegError::Request(_) | LegError::NoServer(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// `target` parsed, for a leg to it.
pub(super) fn leg_target(target: &str) -> Result<Uri, LegError> {
    Uri::parse(target).map_err(|source| LegError::BadTarget { target: target.to_owned(), source })
}

/// Leg 2 to the TAS of `registration`, its Request-URI prefixed; recorded in `call` before it
/// leaves, since leg 3 may come back at once. Sent to `server` (one of the `sip_uri`'s
/// servers), or without one to the first that can be reached.
pub(super) async fn leg2(
    shared: &Shared,
    leg1: &PendingInvite,
    registration: &RegistrationRecord,
    prefix: Option<&Prefix>,
    called: &Called,
    call: &SharedCall,
    server: Option<&Server>,
) -> Result<(OutgoingCall, usize), LegError> {
    let session_id = call.lock().session_id.clone();
    let ua = &shared.interconnect;
    let sip_uri = &registration.registration.sip_uri;
    let prefixed = format!("+{}{}", prefix.map(Prefix::as_str).unwrap_or_default(), called.user_part());
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
    // A call diverted to the TAS after the callee's leg failed (Fallback) says why, as an IMS
    // core does: History-Info (RFC 7044) with the RFC 4458 cause on the TAS's entry.
    let diverted = call.lock().diverted;
    if let Some(cause) = diverted {
        let callee_entry = phone_uri(&called.to_string(), &shared.config.domain);
        extra.push(("History-Info".into(), format!("<{callee_entry}>;index=1")));
        extra.push(("History-Info".into(), format!("<{uri};cause={cause}>;index=1.1")));
    }
    let spec = spec_from(leg1, uri, extra);
    let index = add_leg(call, Leg::CoreToTas, &spec);
    let placed = async {
        let target = leg_target(sip_uri.as_str())?;
        let link = match server {
            Some(server) => ua.outbound().link_to_server(&target, server).await?,
            None => ua.outbound().link_to(&target).await?,
        };
        Ok(ua.invite(spec, link)?)
    };
    placed.await.map(|leg| (leg, index)).map_err(|why: LegError| {
        set_leg_by_core(call, index, why.status(), format!("leg 2 never reached the TAS: {why}"));
        why
    })
}

/// A leg from `incoming` to the callee `number` (leg 4, or the direct leg), recorded in `call`.
pub(super) async fn callee_leg(
    shared: &Shared,
    incoming: &PendingInvite,
    number: &Msisdn,
    call: &SharedCall,
) -> Result<(OutgoingCall, usize), LegError> {
    let ua = &shared.access;
    let target = shared.callee_target(number).ok_or_else(|| LegError::NoRoute(number.clone()))?;
    let target = leg_target(&target)?;
    let host = match &target {
        Uri::Sip(sip) => match sip.port {
            Some(port) => format!("{}:{port}", sip.host),
            None => sip.host.clone(),
        },
        _ => return Err(LegError::NotSip(target.to_string())),
    };
    let spec = spec_from(incoming, phone_uri(number.as_str(), &host), Vec::new());
    let link = ua.outbound().link_to(&target).await?;
    let index = add_leg(call, Leg::CoreToCallee, &spec);
    match ua.invite(spec, link) {
        Ok(leg) => Ok((leg, index)),
        Err(error) => {
            set_leg_by_core(call, index, StatusCode::SERVICE_UNAVAILABLE, format!("not sent: {error}"));
            Err(error.into())
        }
    }
}

/// Rings `leg` for `incoming` (the leg at `incoming_index`) and, when it answers, joins the
/// two; returns the final status `incoming` got.
pub(super) async fn bridge(
    shared: &Shared,
    incoming: PendingInvite,
    incoming_index: usize,
    leg: OutgoingCall,
    call: &SharedCall,
    index: usize,
) -> StatusCode {
    let outcome = b2bua::ring(&incoming, leg, None).await;
    conclude(shared, incoming, incoming_index, outcome, call, index).await
}

/// Records how the leg at `index` ended when it did not answer: its refusal, or no final
/// response (the status the core gives it then is its own, and says so).
pub(super) fn record_unanswered(call: &SharedCall, index: usize, outcome: &LegOutcome) {
    match outcome {
        LegOutcome::Refused(response) => set_leg_status(call, index, response.status),
        LegOutcome::Unreachable => set_leg_by_core(call, index, StatusCode::REQUEST_TIMEOUT, NO_FINAL_RESPONSE.into()),
        LegOutcome::Answered(..) | LegOutcome::NoAnswer(_) | LegOutcome::CallerCancelled(_) => {}
    }
}

/// Finishes `incoming` (the leg at `incoming_index`) as the leg at `index` ended ringing:
/// joined when it answered, else with its refusal relayed; returns the final status
/// `incoming` got.
pub(super) async fn conclude(
    shared: &Shared,
    incoming: PendingInvite,
    incoming_index: usize,
    outcome: LegOutcome,
    call: &SharedCall,
    index: usize,
) -> StatusCode {
    record_unanswered(call, index, &outcome);
    match outcome {
        LegOutcome::Answered(callee, response) => {
            let status = response.status;
            answered(call, &[incoming_index, index], status);
            b2bua::join(incoming, callee, response).await;
            status
        }
        LegOutcome::Refused(response) => {
            incoming.relay_refusal(&response);
            response.status
        }
        LegOutcome::Unreachable => {
            incoming.reject(StatusCode::REQUEST_TIMEOUT, None, None);
            StatusCode::REQUEST_TIMEOUT
        }
        LegOutcome::NoAnswer(cancelling) | LegOutcome::CallerCancelled(cancelling) => {
            record_cancelled(&shared.settling, call, index, cancelling);
            StatusCode::REQUEST_TERMINATED
        }
    }
}
