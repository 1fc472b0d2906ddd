//! Two calls back to back (a B2BUA): an incoming INVITE and one ringer placed for it, each with
//! its own Call-ID, tags and Via. [`ring`] relays the outgoing leg's progress until its final
//! answer; [`join`] then answers the incoming leg with the same SDP and keeps the two dialogs
//! together: the ACK end to end, re-offers relayed, BYE from either side ends both.

use std::time::Duration;

use tracing::{debug, info};

use super::dialog::{CallHandle, OfferAnswer};
use super::message::{Response, Uri};
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
    InviteSpec { uri, from, to, max_forwards, headers, body: request.body.clone() }
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
pub async fn ring(caller: &PendingInvite, mut leg: OutgoingCall, no_answer: Option<Duration>) -> LegOutcome {
    let timer = async {
        match no_answer {
            Some(time) => tokio::time::sleep(time).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(timer);
    // The last session description of the outgoing leg's early dialog: a 2xx after a reliable
    // provisional response may leave it out, the caller's 2xx may not (RFC 3264 §5).
    let mut early_sdp = None;
    // The caller's PRACK body, awaited when the outgoing leg's provisional carried the offer.
    let mut answer_from_caller: Option<tokio::sync::oneshot::Receiver<bytes::Bytes>> = None;
    loop {
        let caller_answered = async {
            match answer_from_caller.as_mut() {
                Some(answer) => answer.await,
                None => std::future::pending::<Result<bytes::Bytes, tokio::sync::oneshot::error::RecvError>>().await,
            }
        };
        tokio::select! {
            biased;
            () = caller.cancelled() => {
                return LegOutcome::CallerCancelled(cancel_in_background(leg));
            }
            () = &mut timer => {
                debug!(call_id = leg.call_id(), "no answer in time: cancelling");
                return LegOutcome::NoAnswer(cancel_in_background(leg));
            }
            answer = caller_answered => {
                // The caller's PRACK carried the answer to the outgoing leg's offer: its PRACK does too.
                answer_from_caller = None;
                leg.prack(answer.unwrap_or_default());
            }
            progress = leg.next() => match progress {
                Progress::Provisional(response) => {
                    let sdp = Some(response.body.clone()).filter(|body| !body.is_empty());
                    if sdp.is_some() {
                        early_sdp.clone_from(&sdp);
                    }
                    let prack = caller.provisional(response.status, sdp);
                    if leg.awaits_answer() {
                        match prack {
                            Some(prack) => answer_from_caller = Some(prack),
                            // The caller takes no reliable provisional response, so no answer
                            // can come from it: acknowledge without one (RFC 3262 §5 asks one).
                            None => leg.prack(bytes::Bytes::new()),
                        }
                    }
                }
                Progress::Answered(call, mut response) => {
                    if response.body.is_empty() {
                        if let Some(sdp) = early_sdp {
                            response.body = sdp;
                        }
                    }
                    return LegOutcome::Answered(call, response);
                }
                Progress::Failed(response) => return LegOutcome::Refused(response),
                Progress::Cancelled | Progress::TimedOut => return LegOutcome::Unreachable,
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
                Progress::Cancelled => return Some(487),
                // A 2xx that crossed the CANCEL (hung up by now) or a refusal of its own.
                Progress::Answered(_, response) | Progress::Failed(response) => return Some(response.status),
                Progress::TimedOut => return None,
            }
        }
    }))
}

/// A leg being cancelled in the background.
#[derive(Debug)]
pub struct Cancelling(tokio::task::JoinHandle<Option<u16>>);

impl Cancelling {
    /// The leg's final status once the CANCEL has played out (487 when it took); `None` when
    /// no final response came (RFC 3261 §9.1: given up after 64·T1).
    pub async fn outcome(self) -> Option<u16> {
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
        Err(error) => OfferAnswer::NotAcceptable(format!("the other side refused the offer: {error}")),
    }
}
