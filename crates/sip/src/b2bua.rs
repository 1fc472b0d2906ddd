//! Two calls back to back (a B2BUA): an incoming INVITE and one ringer placed for it, each with
//! its own Call-ID, tags and Via. [`ring`] relays the outgoing leg's progress until its final
//! answer; [`join`] then answers the incoming leg with the same SDP and keeps the two dialogs
//! together: the ACK end to end, re-offers relayed, BYE from either side ends both.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::call::CallHandle;
use super::dialog::{DialogError, OfferAnswer};
use super::message::header::lists_option;
use super::message::{Response, StatusCode, Uri};
use super::ua::PendingInvite;
use super::uac::{InviteSpec, OutgoingCall, Progress};

/// The outgoing leg's INVITE for `incoming`, to `uri`: the same From and To (without their
/// tags), the headers named in `carried`, the SDP unchanged, and Max-Forwards one less (69 when
/// the incoming one has none or an unreadable one; callers refuse 0 beforehand with 483).
pub fn onward(incoming: &PendingInvite, uri: Uri, carried: &[&str]) -> InviteSpec {
    let request = incoming.request();
    let essentials = incoming.essentials();
    let mut from = essentials.from.clone();
    from.params.remove("tag");
    let mut to = essentials.to.clone();
    to.params.remove("tag");
    let headers = carried
        .iter()
        .flat_map(|name| request.headers.get_all(name).map(|value| ((*name).to_owned(), value.to_owned())))
        .collect();
    let max_forwards = max_forwards(incoming).unwrap_or(70).saturating_sub(1);
    let offer_100rel =
        lists_option(&request.headers, "Supported", "100rel") || lists_option(&request.headers, "Require", "100rel");
    InviteSpec { uri, from, to, max_forwards, headers, body: request.body.clone(), offer_100rel }
}

/// The incoming INVITE's Max-Forwards, when it has a readable one.
pub fn max_forwards(incoming: &PendingInvite) -> Option<u8> {
    incoming.request().headers.get("Max-Forwards").and_then(|value| value.trim().parse().ok())
}

/// How the outgoing leg ended its ringing.
#[derive(Debug)]
pub enum LegOutcome {
    /// It answered: the dialog waits for its ACK, which [`join`] sends.
    Answered(CallHandle, Response),
    /// It refused with a final response (486, 603...).
    Refused(Response),
    /// It rang for the whole no-answer time and was cancelled.
    NoAnswer(Cancelling),
    /// It could not be reached or sent no final response.
    Unreachable,
    /// The incoming leg was cancelled by its caller; the outgoing one is being cancelled.
    CallerCancelled(Cancelling),
}

/// Relays `leg`'s provisional responses (with any early-media SDP) to `caller` until its final
/// response, `no_answer` running out, or `caller` being cancelled. `caller` is not answered here.
pub async fn ring(caller: &PendingInvite, leg: OutgoingCall, no_answer: Option<Duration>) -> LegOutcome {
    let timer = async {
        match no_answer {
            Some(time) => tokio::time::sleep(time).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    let mut leg = RelayedLeg::new(leg);
    tokio::select! {
        biased;
        () = caller.cancelled() => LegOutcome::CallerCancelled(cancel_in_background(leg.into_leg())),
        () = &mut timer => {
            debug!(call_id = leg.call_id(), "no answer in time: cancelling");
            LegOutcome::NoAnswer(cancel_in_background(leg.into_leg()))
        }
        progress = leg.settle(caller) => match progress {
            Progress::Answered(call, response) => LegOutcome::Answered(call, response),
            Progress::Failed(response) => LegOutcome::Refused(response),
            Progress::Provisional(_) | Progress::Cancelled | Progress::TimedOut => LegOutcome::Unreachable,
        },
    }
}

/// An outgoing leg whose early responses are relayed to the caller of its incoming leg: each
/// provisional response with its early media (reliably where the caller takes 100rel); a
/// reliable one that carried the offer PRACKed with the answer from the caller's PRACK; and
/// the early session description put into a 2xx that left it out (the caller's 2xx may not,
/// RFC 3264 §5).
pub struct RelayedLeg {
    leg: OutgoingCall,
    early_sdp: Option<Bytes>,
    /// The caller's PRACK body, awaited when the leg's provisional response carried the offer.
    answer_from_caller: Option<oneshot::Receiver<Bytes>>,
}

impl RelayedLeg {
    /// `leg`, nothing relayed yet.
    pub fn new(leg: OutgoingCall) -> Self {
        Self { leg, early_sdp: None, answer_from_caller: None }
    }

    /// The leg's Call-ID.
    pub fn call_id(&self) -> &str {
        self.leg.call_id()
    }

    /// The leg itself (to cancel it).
    pub fn into_leg(self) -> OutgoingCall {
        self.leg
    }

    /// Waits for the leg's final progress (never [`Progress::Provisional`]), relaying its
    /// provisional responses to `caller` on the way. Safe to drop and call again.
    pub async fn settle(&mut self, caller: &PendingInvite) -> Progress {
        loop {
            let (leg, answer_slot) = (&mut self.leg, &mut self.answer_from_caller);
            let caller_answered = async {
                match answer_slot.as_mut() {
                    Some(answer) => answer.await.unwrap_or_default(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                answer = caller_answered => {
                    // The caller's PRACK carried the answer to the leg's offer: its PRACK does too.
                    self.answer_from_caller = None;
                    self.leg.prack(answer);
                }
                progress = leg.next() => match progress {
                    Progress::Provisional(response) => self.relay(caller, response),
                    Progress::Answered(call, mut response) => {
                        if response.body.is_empty() {
                            if let Some(sdp) = self.early_sdp.take() {
                                response.body = sdp;
                            }
                        }
                        return Progress::Answered(call, response);
                    }
                    other => return other,
                },
            }
        }
    }

    fn relay(&mut self, caller: &PendingInvite, response: Response) {
        let sdp = Some(response.body).filter(|body| !body.is_empty());
        if sdp.is_some() {
            self.early_sdp.clone_from(&sdp);
        }
        let prack = caller.provisional(response.status, sdp);
        if self.leg.awaits_answer() {
            match prack {
                Some(prack) => self.answer_from_caller = Some(prack),
                // The caller took no reliable provisional response, so no answer can come from
                // it (leg 3 offers 100rel only when its caller does, so this is rare).
                None => self.leg.prack(Bytes::new()),
            }
        }
    }
}

/// Cancels `leg` and follows it to its end without holding up the caller.
pub fn cancel_in_background(mut leg: OutgoingCall) -> Cancelling {
    leg.cancel();
    Cancelling(tokio::spawn(async move {
        loop {
            match leg.next().await {
                Progress::Provisional(_) => continue,
                Progress::Cancelled => return Some(StatusCode::REQUEST_TERMINATED),
                // A 2xx that crossed the CANCEL (hung up by now) or a refusal of its own.
                Progress::Answered(_, response) | Progress::Failed(response) => return Some(response.status),
                Progress::TimedOut => return None,
            }
        }
    }))
}

/// A leg being cancelled in the background.
#[derive(Debug)]
pub struct Cancelling(tokio::task::JoinHandle<Option<StatusCode>>);

impl Cancelling {
    /// The leg's final status once the CANCEL has played out (487 when it took); `None` when
    /// no final response came (RFC 3261 §9.1: given up after 64·T1).
    pub async fn outcome(self) -> Option<StatusCode> {
        self.0.await.ok().flatten()
    }
}

/// How a joined call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinEnd {
    /// The incoming leg was gone before it could be answered (a CANCEL crossed the 2xx).
    NotAnswered,
    /// The incoming leg's caller never ACKed the 2xx.
    NoAck,
    /// The incoming leg ended first (its BYE), with this reason.
    CallerEnded(String),
    /// The outgoing leg ended first, with this reason.
    CalleeEnded(String),
}

/// Answers `caller` with `answer`'s SDP and joins it to `callee` until either side ends.
pub async fn join(caller: PendingInvite, callee: CallHandle, answer: Response) -> JoinEnd {
    match caller.answer(answer.body.clone()) {
        Some(incoming) => hold(incoming, callee).await,
        None => {
            let _ = callee.ack(None);
            let _ = callee.hangup().await;
            JoinEnd::NotAnswered
        }
    }
}

/// Keeps `incoming` (answered with `callee`'s SDP) and `callee` together until either ends.
pub async fn hold(incoming: CallHandle, callee: CallHandle) -> JoinEnd {
    // The callee's 2xx is acknowledged at once when it completed the INVITE's offer, so a
    // late or lost ACK from the caller does not leave the callee retransmitting. Only a 2xx
    // that carried the offer (an INVITE without SDP) waits: its ACK carries the caller's answer.
    let answer_from_caller = !callee.invite_had_offer();
    if !answer_from_caller {
        let _ = callee.ack(None);
    }
    let Some(body) = incoming.acked().await else {
        if answer_from_caller {
            let _ = callee.ack(None);
        }
        let _ = callee.hangup().await;
        return JoinEnd::NoAck;
    };
    if answer_from_caller {
        let _ = callee.ack(Some(body).filter(|body| !body.is_empty()));
    }
    let mut caller_offers = incoming.offers();
    let mut callee_offers = callee.offers();
    let ended = loop {
        let (offer, to) = tokio::select! {
            reason = incoming.ended() => break Ended::Caller(reason),
            reason = callee.ended() => break Ended::Callee(reason),
            Some(offer) = caller_offers.recv() => (offer, &callee),
            Some(offer) = callee_offers.recv() => (offer, &incoming),
        };
        // The offer is relayed while both ends are still watched: a BYE that crosses it ends
        // the call at once, and the dropped offer is answered 487 (RFC 3261 §15.1.2).
        tokio::select! {
            answer = relay_offer(to, offer.sdp.clone()) => offer.answer(answer),
            reason = incoming.ended() => break Ended::Caller(reason),
            reason = callee.ended() => break Ended::Callee(reason),
        }
    };
    match ended {
        Ended::Caller(reason) => {
            info!(call_id = %callee.id().call_id, %reason, "caller side ended: hanging up the callee side");
            let _ = callee.hangup().await;
            JoinEnd::CallerEnded(reason)
        }
        Ended::Callee(reason) => {
            info!(call_id = %incoming.id().call_id, %reason, "callee side ended: hanging up the caller side");
            let _ = incoming.hangup().await;
            JoinEnd::CalleeEnded(reason)
        }
    }
}

/// Which side of a joined call ended it, and why.
enum Ended {
    Caller(String),
    Callee(String),
}

async fn relay_offer(to: &CallHandle, sdp: bytes::Bytes) -> OfferAnswer {
    match to.reinvite(sdp).await {
        Ok(answer) => OfferAnswer::Accept(answer),
        // The other side's own re-INVITE (a refresh) is under way, or it answered 491.
        Err(DialogError::Busy | DialogError::Refused(StatusCode::REQUEST_PENDING)) => OfferAnswer::Pending,
        Err(error) => OfferAnswer::NotAcceptable(format!("the other side refused the offer: {error}")),
    }
}
