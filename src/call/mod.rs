//! Calls: what the TAS does with an INVITE. [`routing`] tells caller from answerer; until
//! behaviours arrive, every INVITE gets the configured [`DefaultAction`].

pub mod routing;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::Deserialize;
use tracing::info;

use crate::media::sdp::decline_all;
use crate::sip::message::reason_phrase;
use crate::sip::dialog::{DialogId, OfferAnswer};
use crate::sip::ua::{PendingInvite, SessionHandler};

/// What to do with every INVITE.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum DefaultAction {
    /// Refuse with a final status (400-699) and reason phrase.
    Reject {
        /// The status.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// Answer 200 with an SDP answer that declines every offered stream (media comes later).
    Answer,
}

impl FromStr for DefaultAction {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("answer") {
            return Ok(DefaultAction::Answer);
        }
        let rest = text
            .strip_prefix("reject")
            .ok_or_else(|| format!("action {text:?}: expected \"answer\" or \"reject <code> [reason]\""))?
            .trim();
        let (code, reason) = rest.split_once(' ').map(|(c, r)| (c, r.trim())).unwrap_or((rest, ""));
        let status: u16 = code.parse().map_err(|_| format!("action {text:?}: {code:?} is not a status code"))?;
        if !(400..=699).contains(&status) {
            return Err(format!("action {text:?}: a rejection is 400 to 699"));
        }
        let reason = if reason.is_empty() { reason_phrase(status).to_owned() } else { reason.to_owned() };
        Ok(DefaultAction::Reject { status, reason })
    }
}

impl TryFrom<String> for DefaultAction {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

impl fmt::Display for DefaultAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DefaultAction::Answer => f.write_str("answer"),
            DefaultAction::Reject { status, reason } => write!(f, "reject {status} {reason}"),
        }
    }
}

/// Applies one [`DefaultAction`] to every call.
pub struct DefaultActionHandler {
    action: DefaultAction,
    /// The address written into SDP answers.
    media_address: String,
    sessions: AtomicU64,
}

impl DefaultActionHandler {
    /// A handler applying `action`; `media_address` goes into the SDP answers.
    pub fn new(action: DefaultAction, media_address: String) -> Self {
        Self { action, media_address, sessions: AtomicU64::new(1) }
    }

    fn declined(&self, offer: &Bytes) -> Option<Bytes> {
        let offer = std::str::from_utf8(offer).ok()?;
        let session = self.sessions.fetch_add(1, Ordering::Relaxed);
        decline_all(offer, session, &self.media_address).map(Bytes::from)
    }
}

impl SessionHandler for DefaultActionHandler {
    fn on_invite(&self, invite: PendingInvite) {
        let call_id = invite.essentials().call_id.clone();
        match &self.action {
            DefaultAction::Reject { status, reason } => {
                info!(%call_id, status, "call rejected (default action)");
                invite.reject(*status, Some(reason), None);
            }
            DefaultAction::Answer => match self.declined(&invite.request().body) {
                Some(answer) => {
                    info!(%call_id, "call answered with every stream declined (no media apps yet)");
                    invite.answer(answer);
                }
                None => {
                    info!(%call_id, "INVITE without a usable SDP offer refused");
                    invite.reject(488, None, Some("an SDP offer with at least one media line is required"));
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

    fn on_ended(&self, dialog: &DialogId, reason: &str) {
        info!(call_id = %dialog.call_id, reason, "call ended");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_parse() {
        assert_eq!("answer".parse(), Ok(DefaultAction::Answer));
        assert_eq!("reject 486".parse(), Ok(DefaultAction::Reject { status: 486, reason: "Busy Here".into() }));
        assert_eq!(
            "reject 603 Not Today".parse(),
            Ok(DefaultAction::Reject { status: 603, reason: "Not Today".into() })
        );
        for bad in ["reject", "reject 200", "reject abc", "hang up"] {
            assert!(bad.parse::<DefaultAction>().is_err(), "{bad}");
        }
    }
}
