//! Reliable provisional responses on the UAS side (RFC 3262 §3): each 18x sent reliably gets
//! the next RSeq and is retransmitted (every transport, T1 doubling) until its PRACK; the next
//! one waits behind it, and so does a 2xx while the unacknowledged one carried SDP. With no
//! PRACK after 64·T1 the INVITE is refused with 504.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::message::header::{RAck, RSeq};
use crate::message::{Method, Response};
use crate::transaction::ServerTransaction;

/// What becomes of a 2xx held back behind a provisional response with SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Held {
    /// Its PRACK came: send the 2xx.
    Send,
    /// None came within 64·T1: the INVITE is refused (504).
    NoPrack,
    /// The caller cancelled, or hung up the early dialog: the INVITE ends 487.
    Cancelled,
}

/// A 2xx held back until the PRACK of a provisional response with SDP.
pub(super) type HeldAnswer = Box<dyn FnOnce(Held) + Send>;

/// What a PRACK did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Acknowledged {
    /// It acknowledged the response awaiting one (or repeated the last acknowledgement).
    Yes,
    /// It acknowledged it, but carries a new offer where the response carried our answer.
    WithOffer,
    /// It names no response awaiting one.
    No,
}

/// The reliable provisional responses of one INVITE.
pub(super) struct Reliable {
    invite_cseq: u32,
    /// The INVITE carried the offer, so our provisional responses carry answers.
    invite_had_offer: bool,
    transaction: ServerTransaction,
    t1: Duration,
    /// Cancelled when no PRACK came: the layer above stops as for a CANCEL.
    given_up: CancellationToken,
    /// The final response sent when no PRACK came.
    timeout: Response,
    state: Mutex<State>,
}

struct State {
    next_rseq: u32,
    outstanding: Option<Outstanding>,
    queued: VecDeque<Queued>,
    last_acked: Option<u32>,
    held_answer: Option<HeldAnswer>,
    /// A final response went out (or was given up on): nothing more is sent.
    done: bool,
}

/// A provisional response waiting for its turn, whether it has SDP, and who hears its PRACK.
struct Queued {
    response: Response,
    answer_to: Option<oneshot::Sender<Bytes>>,
}

struct Outstanding {
    rseq: u32,
    has_sdp: bool,
    /// Hears the PRACK's body (the answer, when the provisional carried the offer).
    answer_to: Option<oneshot::Sender<Bytes>>,
}

impl Reliable {
    /// The reliable provisional responses to the INVITE numbered `invite_cseq` of `transaction`.
    pub(super) fn new(
        invite_cseq: u32,
        invite_had_offer: bool,
        transaction: ServerTransaction,
        t1: Duration,
        given_up: CancellationToken,
        timeout: Response,
    ) -> Arc<Self> {
        // RFC 3262 §3: the first RSeq is random, below 2^31.
        let next_rseq = rand::random_range(1..(1 << 31));
        let state = State {
            next_rseq,
            outstanding: None,
            queued: VecDeque::new(),
            last_acked: None,
            held_answer: None,
            done: false,
        };
        Arc::new(Self { invite_cseq, invite_had_offer, transaction, t1, given_up, timeout, state: Mutex::new(state) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    /// Sends `response` reliably, or queues it behind the one awaiting its PRACK; `answer_to`
    /// hears the body of its PRACK.
    pub(super) fn send(self: &Arc<Self>, response: Response, answer_to: Option<oneshot::Sender<Bytes>>) {
        let mut state = self.state();
        if state.done {
            return;
        }
        let queued = Queued { response, answer_to };
        match state.outstanding {
            Some(_) => state.queued.push_back(queued),
            None => self.transmit(&mut state, queued),
        }
    }

    fn transmit(self: &Arc<Self>, state: &mut State, queued: Queued) {
        let Queued { mut response, answer_to } = queued;
        let rseq = state.next_rseq;
        state.next_rseq = rseq.wrapping_add(1).max(1);
        response.headers.push("Require", "100rel");
        response.headers.push_typed(&RSeq(rseq));
        state.outstanding = Some(Outstanding { rseq, has_sdp: !response.body.is_empty(), answer_to });
        self.transaction.respond(response.clone());
        tokio::spawn(self.clone().retransmit(rseq, response));
    }

    /// Sends `response` again, T1 doubling, until its PRACK; gives up after 64·T1.
    async fn retransmit(self: Arc<Self>, rseq: u32, response: Response) {
        let deadline = tokio::time::Instant::now() + self.t1 * 64;
        let mut interval = self.t1;
        loop {
            tokio::time::sleep_until((tokio::time::Instant::now() + interval).min(deadline)).await;
            {
                let state = self.state();
                if state.done || state.outstanding.as_ref().map(|outstanding| outstanding.rseq) != Some(rseq) {
                    return;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                self.give_up();
                return;
            }
            self.transaction.respond(response.clone());
            interval *= 2;
        }
    }

    fn give_up(&self) {
        let held = {
            let mut state = self.state();
            state.done = true;
            state.outstanding = None;
            state.queued.clear();
            state.held_answer.take()
        };
        warn!("no PRACK for a reliable provisional response within 64*T1: refusing the INVITE (RFC 3262 §3)");
        if let Some(answer) = held {
            answer(Held::NoPrack);
        }
        self.transaction.respond(self.timeout.clone());
        self.given_up.cancel();
    }

    /// The transaction id of the INVITE.
    pub(super) fn transaction_id(&self) -> u64 {
        self.transaction.id()
    }

    /// The caller cancelled: a held 2xx is dropped, nothing more is sent.
    pub(super) fn abandon(&self) {
        let held = {
            let mut state = self.state();
            state.done = true;
            state.outstanding = None;
            state.queued.clear();
            state.held_answer.take()
        };
        if let Some(answer) = held {
            answer(Held::Cancelled);
        }
    }

    /// As [`Reliable::abandon`], ending the INVITE with `terminated` (487).
    pub(super) fn abandon_with(&self, terminated: Response) {
        self.abandon();
        self.transaction.respond(terminated);
        self.given_up.cancel();
    }

    /// A PRACK naming `rack`, with `body`: whether it acknowledges the response awaiting one
    /// (or, retransmitted, the last one acknowledged), and the 2xx it releases, to be sent once
    /// the PRACK is answered.
    pub(super) fn on_prack(self: &Arc<Self>, rack: &RAck, body: Bytes) -> (Acknowledged, Option<HeldAnswer>) {
        let mut state = self.state();
        let ours = rack.method == Method::Invite && rack.cseq == self.invite_cseq;
        let acknowledged = match state.outstanding.take() {
            Some(outstanding) if ours && outstanding.rseq == rack.rseq => outstanding,
            other => {
                state.outstanding = other;
                let repeated = ours && state.last_acked == Some(rack.rseq);
                return (if repeated { Acknowledged::Yes } else { Acknowledged::No }, None);
            }
        };
        state.last_acked = Some(acknowledged.rseq);
        // Our provisional responses carried answers: a body is a new offer, not an answer.
        let new_offer = self.invite_had_offer && !body.is_empty();
        if let (Some(answer_to), false) = (acknowledged.answer_to, new_offer) {
            let _ = answer_to.send(body);
        }
        let mut release = None;
        if let Some(next) = state.queued.pop_front() {
            self.transmit(&mut state, next);
        } else if let Some(answer) = state.held_answer.take() {
            state.done = true;
            release = Some(answer);
        }
        let acknowledged = if new_offer { Acknowledged::WithOffer } else { Acknowledged::Yes };
        (acknowledged, release)
    }

    /// Holds `answer` while a provisional response with SDP awaits its PRACK (a 2xx may not
    /// overtake it, RFC 3262 §3); gives it back when nothing does, to be sent at once.
    pub(super) fn hold_answer(&self, answer: HeldAnswer) -> Option<HeldAnswer> {
        let mut state = self.state();
        let waiting = state.outstanding.as_ref().is_some_and(|outstanding| outstanding.has_sdp)
            || state.queued.iter().any(|queued| !queued.response.body.is_empty());
        if waiting && !state.done {
            state.held_answer = Some(answer);
            return None;
        }
        state.done = true;
        state.queued.clear();
        Some(answer)
    }

    /// The INVITE got its final response: nothing more is sent.
    pub(super) fn finish(&self) {
        let mut state = self.state();
        state.done = true;
        state.queued.clear();
    }
}
