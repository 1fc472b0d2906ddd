//! The interconnect side: an INVITE from a TAS is leg 3 of a call whose Session-ID the core
//! knows, a call to an Ingress subscriber, or refused.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tracing::{info, warn};

use super::access::MT_ROUTES;
use super::legs::{bridge, callee_leg, session_id_of};
use super::records::{set_leg_status, CallRoute, Leg, LegRecord, SbcCall};
use super::shared::Shared;
use crate::numbers::Called;
use crate::numbers::{addressed_number, caller};
use domain::types::RouteType;
use sip::message::header::{SessionId, TypedHeader};
use sip::message::StatusCode;
use sip::ua::PendingInvite;

/// An INVITE from a TAS: leg 3 of a call with a known Session-ID, an Ingress call, or refused.
pub(super) async fn from_tas(shared: Arc<Shared>, invite: PendingInvite) {
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
            callee: Called::Number(number.clone()),
            route: CallRoute::Ingress,
            prefix: None,
            session_id: session_id_of(invite.request()).unwrap_or_default(),
            legs: vec![LegRecord::new(Leg::TasToCore, invite.request().uri.to_string())],
            status: None,
            diverted: None,
        }),
        None => {
            shared.refused_leg3.fetch_add(1, Ordering::Relaxed);
            let why = match (invite.request().headers.get(SessionId::NAME), session_id_of(invite.request())) {
                (None, _) => "leg 3 must carry the Session-ID of leg 2 (RFC 7989)",
                (Some(_), None) => "leg 3's Session-ID is not 32 hex digits (RFC 7989 §4.1)",
                (Some(_), Some(_)) => "leg 3 carries a Session-ID that matches no call of the core",
            };
            warn!(%call_id, request_uri = %invite.request().uri, why, "INVITE from a TAS refused");
            invite.reject(StatusCode::FORBIDDEN, None, Some(why));
            return;
        }
    };
    let leg3_index = {
        let mut record = call.lock();
        if record.route != CallRoute::Ingress {
            record.legs.push(LegRecord::new(Leg::TasToCore, invite.request().uri.to_string()));
        }
        record.legs.len() - 1
    };
    info!(%call_id, %number, "leg 3 from the TAS");
    // Forwarded to another number with services of its own: the new callee's terminating
    // services apply (a new leg 2 to its TAS), as the operator's core does.
    let forwarded = call.lock().callee != number && shared.registration(&number, &MT_ROUTES).is_some();
    if forwarded {
        // Each TAS in a forwarding loop lowers Max-Forwards; at zero the core stops it, whatever
        // the TASs do.
        if sip::b2bua::max_forwards(&invite) == Some(0) {
            invite.reject(StatusCode::TOO_MANY_HOPS, None, Some("Max-Forwards reached zero"));
            set_leg_status(&call, leg3_index, StatusCode::TOO_MANY_HOPS);
            return;
        }
        let status = super::access::route(&shared, invite, number, Leg::TasToCore, false).await;
        set_leg_status(&call, leg3_index, status);
        return;
    }
    let status = match callee_leg(&shared, &invite, &number, &call).await {
        Ok((leg, index)) => bridge(&shared, invite, leg3_index, leg, &call, index).await,
        Err(why) => {
            let status = why.status();
            invite.reject(status, None, Some(&why.to_string()));
            status
        }
    };
    set_leg_status(&call, leg3_index, status);
    let mut record = call.lock();
    if record.route == CallRoute::Ingress {
        record.status = Some(status);
    }
}
