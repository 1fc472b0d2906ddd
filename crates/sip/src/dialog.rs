//! Dialogs (RFC 3261 §12), on either side of a call: their state, the requests ringer sends in
//! them (BYE, re-INVITE, the ACK for a 2xx) and the events the layer above waits for (the ACK,
//! the end, a new offer from the peer).

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::client::RequestError;
use crate::message::{StatusCode, Uri};
use crate::outbound::ConnectError;
use crate::route::RouteSet;
use crate::session_timer::Agreed;
use crate::transport::Link;

/// Why a dialog ended when the peer sent BYE (see [`crate::call::CallHandle::ended`]).
pub const BYE_FROM_PEER: &str = "BYE from the peer";

/// Identifies a dialog (RFC 3261 §12).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DialogId {
    /// Call-ID.
    pub call_id: String,
    /// Our tag (To of requests we receive as UAS, From of those we send as UAC).
    pub local_tag: String,
    /// The peer's tag.
    pub remote_tag: String,
}

/// What a session handler decides about an offer in a dialog (re-INVITE or UPDATE).
#[derive(Debug)]
pub enum OfferAnswer {
    /// Accept with this SDP answer.
    Accept(Bytes),
    /// Refuse with 488 and this Warning text.
    NotAcceptable(String),
    /// Refuse with 491 Request Pending: an offer of ours is under way (glare, RFC 3261 §14.1).
    Pending,
}

/// A new offer from the peer, for a layer that took the dialog's offers with
/// [`CallHandle::offers`]; it is answered 487 if dropped unanswered (the call is ending).
pub struct IncomingOffer {
    /// The offered SDP.
    pub sdp: Bytes,
    pub(crate) reply: oneshot::Sender<OfferAnswer>,
}

impl IncomingOffer {
    /// Answers the offer.
    pub fn answer(self, answer: OfferAnswer) {
        let _ = self.reply.send(answer);
    }
}

pub(crate) struct DialogState {
    pub(crate) remote_cseq: u32,
    pub(crate) local_cseq: u32,
    pub(crate) local_sdp: Bytes,
    /// We sent an offer (in a 2xx to an offerless re-INVITE) and await the answer in the ACK.
    pub(crate) offer_pending: bool,
    /// The ACK for our last 2xx arrived (UAS), or we sent ours (UAC).
    pub(crate) acked: bool,
    /// The body of the first ACK (the answer, when our 2xx carried the offer).
    pub(crate) ack_body: Option<Bytes>,
    /// Our ACK for the peer's 2xx (UAC), sent again when the 2xx is retransmitted.
    pub(crate) sent_ack: Option<Bytes>,
    /// Where offers go when the layer above took them.
    pub(crate) offers: Option<mpsc::UnboundedSender<IncomingOffer>>,
    pub(crate) end_reason: Option<String>,
    /// Where in-dialog requests go: the peer's Contact, updated by target refreshes (§12.2).
    pub(crate) remote_target: Uri,
    /// The o= line of the peer's last session description: an offer with the same one is a
    /// session refresh, answered here (RFC 3264 §8).
    pub(crate) remote_origin: Option<String>,
    /// The session timer agreed (RFC 4028), if any.
    pub(crate) session: Option<Agreed>,
    /// When the session was last refreshed.
    pub(crate) refreshed_at: tokio::time::Instant,
    /// The session timer's next deadline waiting in the user agent's queue, if any.
    pub(crate) session_timer: Option<crate::timer_queue::TimerKey>,
    /// Our last 2xx to an INVITE, waiting in the user agent's queue for its ACK, if any.
    pub(crate) unacked_answer: Option<crate::timer_queue::TimerKey>,
    /// Counts our 2xx responses to INVITEs: a timer fired for an earlier one does nothing.
    pub(crate) unacked_generation: u64,
    /// The user agent forgot the dialog (it ended): no timer is set for it any more.
    pub(crate) forgotten: bool,
    /// Counts the session timer's settings: a timer fired for an earlier one does nothing.
    pub(crate) session_timer_generation: u64,
    /// When a refresh that failed without ending the session is tried again.
    pub(crate) retry_at: Option<tokio::time::Instant>,
    /// One of our INVITEs (a re-INVITE, a refresh) is under way: no second one (RFC 3261 §14.1).
    pub(crate) invite_in_progress: bool,
}

impl DialogState {
    pub(crate) fn new(remote_cseq: u32, local_cseq: u32, local_sdp: Bytes, remote_target: Uri) -> Self {
        Self {
            remote_cseq,
            local_cseq,
            local_sdp,
            offer_pending: false,
            acked: false,
            ack_body: None,
            sent_ack: None,
            offers: None,
            end_reason: None,
            remote_target,
            remote_origin: None,
            session: None,
            refreshed_at: tokio::time::Instant::now(),
            session_timer: None,
            unacked_answer: None,
            unacked_generation: 0,
            forgotten: false,
            session_timer_generation: 0,
            retry_at: None,
            invite_in_progress: false,
        }
    }

    /// The CSeq number of the next request we send in the dialog.
    pub(crate) fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.max(1) + 1;
        self.local_cseq
    }
}

pub(crate) struct Dialog {
    pub(crate) id: DialogId,
    pub(crate) link: Link,
    /// The peer's address (with tag), our To in requests we send.
    pub(crate) remote_uri: String,
    /// Our address (with tag), our From in requests we send.
    pub(crate) local_uri: String,
    /// The route set (RFC 3261 §12.1), in the order requests carry it.
    pub(crate) route_set: RouteSet,
    /// The INVITE that made the dialog carried an SDP offer (else its 2xx did, and the ACK
    /// carries the answer).
    pub(crate) invite_had_offer: bool,
    /// The CSeq number of the INVITE that made the dialog: its ACK carries it.
    pub(crate) invite_cseq: u32,
    /// The peer allows UPDATE (its Allow in the dialog-creating message): session refreshes
    /// use it rather than a re-INVITE (RFC 4028 §7.1).
    pub(crate) peer_allows_update: bool,
    pub(crate) state: Mutex<DialogState>,
    /// The first ACK arrived (UAS).
    pub(crate) confirmed: CancellationToken,
    pub(crate) ended: CancellationToken,
}

/// What a new dialog is made of, on either side.
pub(crate) struct DialogParts {
    pub(crate) id: DialogId,
    pub(crate) link: Link,
    pub(crate) remote_uri: String,
    pub(crate) local_uri: String,
    pub(crate) route_set: RouteSet,
    pub(crate) invite_had_offer: bool,
    pub(crate) invite_cseq: u32,
    pub(crate) peer_allows_update: bool,
    pub(crate) state: DialogState,
}

impl Dialog {
    pub(crate) fn new(parts: DialogParts) -> Arc<Self> {
        let DialogParts {
            id,
            link,
            remote_uri,
            local_uri,
            route_set,
            invite_had_offer,
            invite_cseq,
            peer_allows_update,
            state,
        } = parts;
        Arc::new(Self {
            id,
            link,
            remote_uri,
            local_uri,
            route_set,
            invite_had_offer,
            invite_cseq,
            peer_allows_update,
            state: Mutex::new(state),
            confirmed: CancellationToken::new(),
            ended: CancellationToken::new(),
        })
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, DialogState> {
        self.state.lock()
    }

    /// Whether the peer ended the dialog (its BYE), rather than ringer or a timer.
    pub(crate) fn ended_by_peer(&self) -> bool {
        self.state().end_reason.as_deref() == Some(BYE_FROM_PEER)
    }

    /// Marks the dialog ended (once); the first reason given is kept.
    pub(crate) fn end(&self, reason: &str) {
        let mut state = self.state();
        if state.end_reason.is_none() {
            info!(call_id = %self.id.call_id, reason, "dialog ended");
            state.end_reason = Some(reason.to_owned());
        }
        state.offers = None;
        drop(state);
        self.ended.cancel();
    }
}

/// Why a request in a dialog did not complete.
#[derive(Debug, Error)]
pub enum DialogError {
    /// No such dialog (already ended).
    #[error("no such dialog")]
    NoDialog,
    /// The peer could not be reached.
    #[error("cannot reach the peer: {0}")]
    Unreachable(String),
    /// The request got no final response.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The peer refused a re-INVITE.
    #[error("re-INVITE refused with {0}")]
    Refused(StatusCode),
    /// Another INVITE of ours is under way in the dialog (RFC 3261 §14.1).
    #[error("another INVITE is under way in the dialog")]
    Busy,
}

impl From<ConnectError> for DialogError {
    fn from(error: ConnectError) -> Self {
        DialogError::Unreachable(error.to_string())
    }
}
