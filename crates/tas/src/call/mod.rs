//! Calls: what the TAS does with an INVITE. [`routing`] tells caller from answerer and finds
//! the subscriber, [`action`] is what the subscriber's config asks for, and [`behaviour`]
//! carries it out. [`CallRouter`] ties them to the SIP layer.

pub mod action;
pub mod answer;
pub mod behaviour;
pub mod records;
pub mod router;
pub mod routing;
pub mod stats;

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tracing::info;

pub use router::{CallRecord, CallRouter};

use action::Action;
use sdp::{decline_all, SessionDescription};
use sip::dialog::{DialogId, OfferAnswer};
use sip::message::StatusCode;
use sip::ua::{PendingInvite, SessionHandler};

/// Applies one action to every call, whatever its number: `reject` or `answer` (a relay
/// action, which needs a subscriber, is refused with 501). For transport tests and benchmarks.
pub struct DefaultActionHandler {
    action: Action,
    /// The address written into SDP answers.
    media_address: std::net::IpAddr,
    sessions: AtomicU64,
}

impl DefaultActionHandler {
    /// A handler applying `action`; `media_address` goes into the SDP answers.
    pub fn new(action: Action, media_address: std::net::IpAddr) -> Self {
        Self { action, media_address, sessions: AtomicU64::new(1) }
    }

    fn declined(&self, offer: &Bytes) -> Option<Bytes> {
        let offer = SessionDescription::parse(std::str::from_utf8(offer).ok()?).ok()?;
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        decline_all(&offer, session, self.media_address).map(|answer| Bytes::from(answer.to_string()))
    }
}

impl SessionHandler for DefaultActionHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let call_id = invite.essentials().call_id.clone();
        match &self.action {
            // This handler has no media: an announcement is left out, the refusal stays.
            Action::Reject { status, reason } | Action::Announce { status, reason } => {
                info!(%call_id, status = status.as_u16(), "call rejected (default action)");
                invite.reject(*status, Some(reason), None);
            }
            Action::Loop | Action::Forward(_) => {
                invite.reject(StatusCode::NOT_IMPLEMENTED, None, Some("no subscriber to relay for"))
            }
            Action::Answer(_) => match self.declined(&invite.request().body) {
                Some(answer) => {
                    info!(%call_id, "call answered with every stream declined (this handler has no media)");
                    invite.answer(answer);
                }
                None => {
                    info!(%call_id, "INVITE without a usable SDP offer refused");
                    invite.reject(
                        StatusCode::NOT_ACCEPTABLE_HERE,
                        None,
                        Some("an SDP offer with at least one media line is required"),
                    );
                }
            },
        }
    }

    fn on_offer(&self, _dialog: &DialogId, offer: &Bytes) -> OfferAnswer {
        match self.declined(offer) {
            Some(answer) => OfferAnswer::Accept(answer),
            None => OfferAnswer::NotAcceptable("no usable SDP offer".into()),
        }
    }
}
