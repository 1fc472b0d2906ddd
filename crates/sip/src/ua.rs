//! The UAS side of the user agent (RFC 3261 §8.2, §12, §13.3): which requests are allowed,
//! what an OPTIONS answers, requests inside dialogs (BYE, re-INVITE, UPDATE, PRACK), CANCEL,
//! the 2xx retransmission until the ACK, and reliable provisional responses. New INVITEs go up
//! to a [`SessionHandler`] as a [`PendingInvite`]; calls ringer places start in [`crate::uac`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::call::CallHandle;
use crate::compose::{
    accepts_sdp, addressed_securely, allows_update, build_response, contact, grant_session_timer, is_sdp, origin_line,
    remote_target, with_allow,
};
use crate::config::{UaConfig, ACCEPT, ALLOW};
use crate::core::UserAgent;
use crate::dialog::{Dialog, DialogId, DialogParts, DialogState, IncomingOffer, OfferAnswer};
use crate::message::header::{lists_option, MinSe, RAck};
use crate::message::validate::Essentials;
use crate::message::{new_tag, Method, Request, Response, StatusCode, Uri};
use crate::route::{copy_record_route, RouteSet};
use crate::session_timer::{self, Support, UasTimer};
use crate::transaction::{IncomingRequest, ServerTransaction, TransactionUser};
use crate::transport::Link;

mod prack;
use prack::Reliable;

/// The layer above: decides what to do with new calls and with offers inside them.
pub trait SessionHandler: Send + Sync + 'static {
    /// A new INVITE; answer it (now or later) through `invite`.
    fn on_invite(&self, invite: PendingInvite);
    /// A new offer inside an established dialog (unless the call's offers were taken with
    /// [`CallHandle::offers`]).
    fn on_offer(&self, dialog: &DialogId, offer: &Bytes) -> OfferAnswer;
}

/// What a CANCEL needs of a pending INVITE: its token, the request to answer 487, our tag,
/// and its reliable provisional responses (a 2xx held behind one is dropped).
struct PendingEntry {
    cancelled: CancellationToken,
    /// The INVITE's transaction, to end it when the server stops before the call layer does.
    transaction: ServerTransaction,
    request: Arc<Request>,
    local_tag: String,
    reliable: Option<Arc<Reliable>>,
}

/// An early dialog on our side: the Call-ID and our tag.
type EarlyKey = (String, String);

fn early_key(call_id: &str, local_tag: &str) -> EarlyKey {
    (call_id.to_owned(), local_tag.to_owned())
}

struct Shared {
    ua: UserAgent,
    handler: Arc<dyn SessionHandler>,
    /// INVITEs awaiting the call layer, by transaction id.
    pending: Mutex<HashMap<u64, PendingEntry>>,
    /// The reliable provisional responses of INVITEs not yet answered, for their PRACKs.
    early: Mutex<HashMap<EarlyKey, Arc<Reliable>>>,
    /// Stopping: new INVITEs and OPTIONS get 503 with this Retry-After.
    draining: Mutex<Option<Duration>>,
}

impl Shared {
    fn early(&self) -> MutexGuard<'_, HashMap<EarlyKey, Arc<Reliable>>> {
        self.early.lock()
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, PendingEntry>> {
        self.pending.lock()
    }

    fn config(&self) -> &UaConfig {
        self.ua.config()
    }
}

/// The UAS: a [`TransactionUser`] for the transaction layer, passing new calls to its handler.
#[derive(Clone)]
pub struct Uas {
    shared: Arc<Shared>,
}

impl Uas {
    /// The UAS of `ua`, passing new calls to `handler`.
    pub fn new(ua: UserAgent, handler: Arc<dyn SessionHandler>) -> Self {
        Self {
            shared: Arc::new(Shared {
                ua,
                handler,
                pending: Mutex::new(HashMap::new()),
                early: Mutex::new(HashMap::new()),
                draining: Mutex::new(None),
            }),
        }
    }

    /// The user agent it answers for.
    pub fn user_agent(&self) -> &UserAgent {
        &self.shared.ua
    }

    /// INVITEs not yet answered.
    pub fn pending_invites(&self) -> usize {
        self.shared.pending().len()
    }

    /// Takes no new calls from now on: each new INVITE, and each OPTIONS probe, gets 503 with
    /// `retry_after` (RFC 3261 §21.5.4), on which the sender tries another server (RFC 3263
    /// §4.3) and a load balancer's probe marks this one down; dialogs under way go on.
    pub fn stop_taking_calls(&self, retry_after: Duration) {
        *self.shared.draining.lock() = Some(retry_after);
    }

    /// Ends every INVITE still waiting for the call layer with 503 (the server is stopping);
    /// returns how many.
    pub fn end_pending_invites(&self) -> usize {
        let entries: Vec<PendingEntry> = self.shared.pending().drain().map(|(_, entry)| entry).collect();
        let count = entries.len();
        for entry in entries {
            self.end_pending(entry, StatusCode::SERVICE_UNAVAILABLE);
        }
        count
    }

    /// Answers a pending INVITE with `status` and tells the call layer it is over.
    fn end_pending(&self, entry: PendingEntry, status: StatusCode) {
        let PendingEntry { cancelled, transaction, request, local_tag, reliable } = entry;
        if let Some(response) = build_response(self.shared.config(), &request, status, Some(&local_tag), None) {
            transaction.respond(response);
        }
        // A 2xx held behind an unacknowledged provisional response is never sent.
        if let Some(reliable) = reliable {
            reliable.abandon();
        }
        cancelled.cancel();
    }

    /// The 503 for a new INVITE or OPTIONS while stopping, if stopping.
    fn refuse_while_draining(&self, request: &Request) -> Option<Response> {
        let retry_after = (*self.shared.draining.lock())?;
        if !matches!(request.method, Method::Invite | Method::Options) {
            return None;
        }
        let tag = (request.method == Method::Invite).then(new_tag);
        let mut response =
            build_response(self.shared.config(), request, StatusCode::SERVICE_UNAVAILABLE, tag.as_deref(), None)?;
        response.headers.push("Retry-After", retry_after.as_secs().max(1).to_string());
        Some(response)
    }

    fn refuse_early(&self, incoming: &IncomingRequest) -> Option<Response> {
        let request = &incoming.request;
        let reply = |status: StatusCode| build_response(self.shared.config(), request, status, None, None);
        let config = self.shared.config();
        match &request.method {
            Method::Invite | Method::Bye | Method::Cancel | Method::Options | Method::Update | Method::Prack => {}
            Method::Extension(_) => return reply(StatusCode::NOT_IMPLEMENTED).map(with_allow),
            _ => return reply(StatusCode::METHOD_NOT_ALLOWED).map(with_allow),
        }
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel { .. }) {
            return reply(StatusCode::UNSUPPORTED_URI_SCHEME);
        }
        let understood = |tag: &&str| {
            config
                .extensions()
                .iter()
                .any(|(support, known)| *support != Support::Off && tag.eq_ignore_ascii_case(known))
        };
        let unsupported: Vec<&str> =
            request.headers.values("Require").into_iter().filter(|tag| !understood(tag)).collect();
        if !unsupported.is_empty() {
            let mut response = reply(StatusCode::BAD_EXTENSION)?;
            response.headers.push("Unsupported", unsupported.join(", "));
            return Some(response);
        }
        // Extensions this UA requires of the peers that start calls with it (RFC 3261 §21.4.16).
        if request.method == Method::Invite && incoming.essentials.to.tag().is_none() {
            let supports = |tag: &str| {
                lists_option(&request.headers, "Supported", tag) || lists_option(&request.headers, "Require", tag)
            };
            let missing: Vec<&str> = config
                .extensions()
                .iter()
                .filter(|(support, tag)| *support == Support::Required && !supports(tag))
                .map(|(_, tag)| *tag)
                .collect();
            if !missing.is_empty() {
                let mut response = reply(StatusCode::EXTENSION_REQUIRED)?;
                response.headers.push("Require", missing.join(", "));
                return Some(response);
            }
        }
        if matches!(request.method, Method::Invite | Method::Update) {
            if let UasTimer::TooSmall(min_se) = session_timer::as_uas(&request.headers, &config.session_timer) {
                let mut response = reply(StatusCode::SESSION_INTERVAL_TOO_SMALL)?;
                response.headers.push_typed(&MinSe(min_se));
                return Some(response);
            }
            if !request.body.is_empty() && !is_sdp(request.headers.get("Content-Type")) {
                let mut response = reply(StatusCode::UNSUPPORTED_MEDIA_TYPE)?;
                response.headers.push("Accept", ACCEPT);
                return Some(response);
            }
            if let Some(encoding) = request.headers.get("Content-Encoding") {
                if !encoding.eq_ignore_ascii_case("identity") {
                    let mut response = reply(StatusCode::UNSUPPORTED_MEDIA_TYPE)?;
                    response.headers.push("Accept-Encoding", "identity");
                    return Some(response);
                }
            }
            let accept: Vec<&str> = request.headers.values("Accept");
            if request.headers.get("Accept").is_some() && !accept.iter().any(|media| accepts_sdp(media)) {
                return reply(StatusCode::NOT_ACCEPTABLE);
            }
        }
        None
    }

    fn in_dialog(&self, incoming: IncomingRequest, to_tag: &str) {
        let IncomingRequest { request, essentials, transaction } = incoming;
        let id = DialogId {
            call_id: essentials.call_id.clone(),
            local_tag: to_tag.to_owned(),
            remote_tag: essentials.from.tag().unwrap_or_default().to_owned(),
        };
        let config = self.shared.config();
        let respond = |status: StatusCode, body: Option<Bytes>| {
            if let Some(response) = build_response(config, &request, status, None, body) {
                transaction.respond(response);
            }
        };
        if request.method == Method::Prack {
            self.prack(&id, &request, &transaction);
            return;
        }
        let Some(dialog) = self.shared.ua.find_dialog(&id) else {
            respond(StatusCode::CALL_DOES_NOT_EXIST, None);
            return;
        };
        {
            let mut state = dialog.state();
            if essentials.cseq.number <= state.remote_cseq && request.method != Method::Cancel {
                drop(state);
                warn!(call_id = %id.call_id, "in-dialog request with an old CSeq");
                respond(StatusCode::SERVER_INTERNAL_ERROR, None);
                return;
            }
            state.remote_cseq = essentials.cseq.number;
        }
        match request.method {
            Method::Bye => {
                self.shared.ua.remove_dialog(&id);
                respond(StatusCode::OK, None);
                // A BYE in the early dialog of a 2xx still held: the INVITE ends 487 (§15.1.2).
                let held = self.shared.early().remove(&early_key(&id.call_id, &id.local_tag));
                if let Some(reliable) = held {
                    if let Some(entry) = self.shared.pending().remove(&reliable.transaction_id()) {
                        if let Some(response) = build_response(
                            config,
                            &entry.request,
                            StatusCode::REQUEST_TERMINATED,
                            Some(&entry.local_tag),
                            None,
                        ) {
                            reliable.abandon_with(response);
                        }
                    }
                }
                info!(call_id = %id.call_id, "call ended by BYE from the peer");
                dialog.end(crate::dialog::BYE_FROM_PEER);
            }
            Method::Options => respond(StatusCode::OK, None),
            Method::Invite | Method::Update => {
                let is_invite = request.method == Method::Invite;
                let mut state = dialog.state();
                if state.offer_pending || (is_invite && !state.acked) {
                    drop(state);
                    respond(StatusCode::REQUEST_PENDING, None);
                    return;
                }
                if request.body.is_empty() {
                    // An offerless re-INVITE gets our session as the offer (its ACK answers);
                    // an UPDATE without a body is a session refresh, answered without one.
                    let sdp = state.local_sdp.clone();
                    state.offer_pending = is_invite;
                    // A re-INVITE's 2xx waits for its ACK; an UPDATE has none.
                    state.acked &= !is_invite;
                    drop(state);
                    self.send_success(&dialog, &transaction, &request, is_invite.then_some(sdp), is_invite);
                    return;
                }
                // The same session description again (same o= line, RFC 3264 §8): a session
                // refresh (RFC 4028), answered here with ours, not passed up or across a B2BUA.
                if state.remote_origin.is_some() && state.remote_origin == origin_line(&request.body) {
                    let sdp = state.local_sdp.clone();
                    // A re-INVITE's 2xx waits for its ACK; an UPDATE has none.
                    state.acked &= !is_invite;
                    drop(state);
                    self.send_success(&dialog, &transaction, &request, Some(sdp), is_invite);
                    return;
                }
                let taken = state.offers.clone();
                drop(state);
                let Some(offers) = taken else {
                    let answer = self.shared.handler.on_offer(&id, &request.body);
                    self.answer_offer(&dialog, &transaction, &request, answer);
                    return;
                };
                // The layer above answers later (a B2BUA asks the other leg first).
                let (reply, answer) = tokio::sync::oneshot::channel();
                let _ = offers.send(IncomingOffer { sdp: request.body.clone(), reply });
                let ua = self.clone();
                tokio::spawn(async move {
                    match answer.await {
                        Ok(answer) => ua.answer_offer(&dialog, &transaction, &request, answer),
                        // Dropped unanswered: the call is ending under it (a BYE crossed it);
                        // RFC 3261 §15.1.2 ends pending requests with 487.
                        Err(_) => {
                            if let Some(response) =
                                build_response(ua.shared.config(), &request, StatusCode::REQUEST_TERMINATED, None, None)
                            {
                                transaction.respond(response);
                            }
                        }
                    }
                });
            }
            _ => respond(StatusCode::METHOD_NOT_ALLOWED, None),
        }
    }

    /// A PRACK (RFC 3262 §4): 200 when it acknowledges the reliable provisional response
    /// awaiting one (or repeats the last one's PRACK, also once the call is answered), 481
    /// when it names none, 400 without a readable RAck.
    fn prack(&self, id: &DialogId, request: &Request, transaction: &ServerTransaction) {
        let early = self.shared.early().get(&early_key(&id.call_id, &id.local_tag)).cloned();
        let rack = request.headers.parsed::<RAck>();
        let mut released = None;
        let status = match (rack, early) {
            (None, _) => StatusCode::BAD_REQUEST,
            (Some(rack), Some(reliable)) => {
                let (acknowledged, release) = reliable.on_prack(&rack, request.body.clone());
                released = release;
                match acknowledged {
                    prack::Acknowledged::Yes => StatusCode::OK,
                    // The provisional response carried our answer: a body now is a new offer,
                    // which ringer does not take before the call is answered (RFC 3262 §5).
                    prack::Acknowledged::WithOffer => StatusCode::NOT_ACCEPTABLE_HERE,
                    prack::Acknowledged::No => StatusCode::CALL_DOES_NOT_EXIST,
                }
            }
            (Some(_), None) if self.shared.ua.find_dialog(id).is_some() => StatusCode::OK,
            (Some(_), None) => StatusCode::CALL_DOES_NOT_EXIST,
        };
        if let Some(mut response) = build_response(self.shared.config(), request, status, None, None) {
            match status {
                StatusCode::BAD_REQUEST => response.reason = "Bad Request (RAck missing or malformed)".into(),
                StatusCode::NOT_ACCEPTABLE_HERE => response.headers.push(
                    "Warning",
                    "399 ringer \"no new offer in PRACK: the provisional response carried the answer\"",
                ),
                _ => {}
            }
            transaction.respond(response);
        }
        // The 2xx held behind the acknowledged response goes after the PRACK's own answer.
        if let Some(answer) = released {
            answer(prack::Held::Send);
        }
    }

    fn answer_offer(
        &self,
        dialog: &Arc<Dialog>,
        transaction: &ServerTransaction,
        request: &Request,
        answer: OfferAnswer,
    ) {
        let is_invite = request.method == Method::Invite;
        match answer {
            OfferAnswer::Accept(sdp) => {
                {
                    let mut state = dialog.state();
                    state.local_sdp = sdp.clone();
                    state.remote_origin = origin_line(&request.body);
                    // A re-INVITE's 2xx waits for its ACK; an UPDATE has none.
                    state.acked &= !is_invite;
                }
                self.send_success(dialog, transaction, request, Some(sdp), is_invite);
            }
            OfferAnswer::Pending => {
                if let Some(response) =
                    build_response(self.shared.config(), request, StatusCode::REQUEST_PENDING, None, None)
                {
                    transaction.respond(response);
                }
            }
            OfferAnswer::NotAcceptable(warning) => {
                if let Some(mut response) =
                    build_response(self.shared.config(), request, StatusCode::NOT_ACCEPTABLE_HERE, None, None)
                {
                    response.headers.push("Warning", format!("304 ringer \"{warning}\""));
                    transaction.respond(response);
                }
            }
        }
    }

    /// The 2xx to a re-INVITE or UPDATE in `dialog`, with `sdp` when it carries one, and the
    /// session timer agreed anew (every successful one is a refresh, RFC 4028 §10).
    fn send_success(
        &self,
        dialog: &Arc<Dialog>,
        transaction: &ServerTransaction,
        request: &Request,
        sdp: Option<Bytes>,
        is_invite: bool,
    ) {
        let Some(mut response) =
            build_response(self.shared.config(), request, StatusCode::OK, Some(&dialog.id.local_tag), sdp)
        else {
            return;
        };
        let agreed = grant_session_timer(self.shared.config(), request, &mut response);
        // re-INVITE and UPDATE are target refreshes (RFC 3261 §12.2.2, RFC 3311 §5.2).
        if let Some(target) = remote_target(&request.headers) {
            dialog.state().remote_target = target;
        }
        // A 2xx to a target refresh carries our Contact (RFC 3261 §12.2.2, RFC 3311 §5.2).
        let contact = contact(
            self.shared.config(),
            self.shared.ua.outbound().ports(),
            transaction.link(),
            addressed_securely(request),
        );
        response.headers.push("Contact", contact);
        if let Some(sent) = transaction.send_response(response) {
            if is_invite {
                self.shared.ua.await_ack(dialog, sent);
            }
            self.shared.ua.set_session_timer(dialog, agreed);
        }
    }
}

impl TransactionUser for Uas {
    fn on_request(&self, incoming: IncomingRequest) {
        if let Some(response) = self.refuse_early(&incoming) {
            debug!(method = %incoming.request.method, status = response.status.as_u16(), "refused");
            incoming.transaction.respond(response);
            return;
        }
        if let Some(tag) = incoming.essentials.to.tag().map(str::to_owned) {
            self.in_dialog(incoming, &tag);
            return;
        }
        if let Some(response) = self.refuse_while_draining(&incoming.request) {
            debug!(method = %incoming.request.method, "stopping: refused with 503");
            incoming.transaction.respond(response);
            return;
        }
        let config = self.shared.config();
        match incoming.request.method {
            Method::Options => {
                if let Some(mut response) = build_response(config, &incoming.request, StatusCode::OK, None, None) {
                    let ports = self.shared.ua.outbound().ports();
                    let secure = addressed_securely(&incoming.request);
                    response.headers.push("Contact", contact(config, ports, incoming.transaction.link(), secure));
                    incoming.transaction.respond(response);
                }
            }
            Method::Invite => {
                let cancelled = CancellationToken::new();
                let request = Arc::new(incoming.request);
                let local_tag = new_tag();
                // Provisional responses go reliably where the caller supports 100rel.
                let supports_100rel = lists_option(&request.headers, "Supported", "100rel");
                let requires_100rel = lists_option(&request.headers, "Require", "100rel");
                let reliable = match config.rel100 != Support::Off && (supports_100rel || requires_100rel) {
                    true => {
                        let timeout =
                            build_response(config, &request, StatusCode::SERVER_TIMEOUT, Some(&local_tag), None);
                        timeout.map(|mut timeout| {
                            timeout
                                .headers
                                .push("Warning", "399 ringer \"no PRACK for a reliable provisional response\"");
                            let reliable = Reliable::new(
                                incoming.essentials.cseq.number,
                                !request.body.is_empty(),
                                incoming.transaction.clone(),
                                config.timers.t1,
                                cancelled.clone(),
                                timeout,
                            );
                            let key = early_key(&incoming.essentials.call_id, &local_tag);
                            self.shared.early().insert(key, reliable.clone());
                            reliable
                        })
                    }
                    false => None,
                };
                let all_reliable = requires_100rel || (reliable.is_some() && config.rel100 == Support::Required);
                self.shared.pending().insert(
                    incoming.transaction.id(),
                    PendingEntry {
                        cancelled: cancelled.clone(),
                        transaction: incoming.transaction.clone(),
                        request: request.clone(),
                        local_tag: local_tag.clone(),
                        reliable: reliable.clone(),
                    },
                );
                let invite = PendingInvite {
                    shared: self.shared.clone(),
                    received_at: tokio::time::Instant::now(),
                    local_tag,
                    cancelled,
                    request,
                    essentials: incoming.essentials,
                    transaction: incoming.transaction,
                    reliable,
                    all_reliable,
                    answer_held: false,
                };
                self.shared.handler.on_invite(invite);
            }
            // BYE and UPDATE outside a dialog.
            _ => {
                if let Some(response) =
                    build_response(config, &incoming.request, StatusCode::CALL_DOES_NOT_EXIST, None, None)
                {
                    incoming.transaction.respond(response);
                }
            }
        }
    }

    fn on_ack(&self, request: Request, essentials: Essentials, _link: &Link) {
        let id = DialogId {
            call_id: essentials.call_id,
            local_tag: essentials.to.tag().unwrap_or_default().to_owned(),
            remote_tag: essentials.from.tag().unwrap_or_default().to_owned(),
        };
        let Some(dialog) = self.shared.ua.find_dialog(&id) else {
            debug!(call_id = %id.call_id, "ACK for no dialog dropped");
            return;
        };
        let mut state = dialog.state();
        self.shared.ua.answer_acknowledged(&mut state);
        // The ACK closes our offer either way; one without an answer leaves the old session.
        if state.offer_pending && request.body.is_empty() {
            warn!(call_id = %id.call_id, "ACK without the answer to our offer; keeping the previous session");
        }
        state.offer_pending = false;
        if state.ack_body.is_none() {
            state.ack_body = Some(request.body);
            drop(state);
            dialog.confirmed.cancel();
        } else {
            drop(state);
        }
    }

    fn on_stray_response(&self, response: Response) {
        self.shared.ua.reack(&response);
    }

    fn on_cancel(&self, invite: ServerTransaction) {
        let Some(entry) = self.shared.pending().remove(&invite.id()) else { return };
        info!(call_id = entry.request.headers.get("Call-ID").unwrap_or_default(), "call cancelled by the caller");
        self.end_pending(entry, StatusCode::REQUEST_TERMINATED);
    }
}

/// An INVITE waiting for the call layer's decision. Dropping it unanswered sends a 500.
pub struct PendingInvite {
    shared: Arc<Shared>,
    received_at: tokio::time::Instant,
    local_tag: String,
    cancelled: CancellationToken,
    request: Arc<Request>,
    essentials: Essentials,
    transaction: ServerTransaction,
    /// Its reliable provisional responses, when the caller supports 100rel.
    reliable: Option<Arc<Reliable>>,
    /// Every provisional response goes reliably (the caller requires 100rel, or we do).
    all_reliable: bool,
    /// The 2xx waits for a PRACK: the INVITE is not over when this is dropped.
    answer_held: bool,
}

impl PendingInvite {
    /// The user agent that received it (to place the calls it leads to).
    pub fn user_agent(&self) -> &UserAgent {
        &self.shared.ua
    }

    /// The INVITE.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// When the INVITE arrived.
    pub fn received_at(&self) -> tokio::time::Instant {
        self.received_at
    }

    /// Its typed essentials.
    pub fn essentials(&self) -> &Essentials {
        &self.essentials
    }

    /// The link it came on.
    pub fn link(&self) -> &Link {
        self.transaction.link()
    }

    /// Resolves when the caller CANCELs (the 487 is sent by then).
    pub fn cancelled(&self) -> tokio_util::sync::WaitForCancellationFuture<'_> {
        self.cancelled.cancelled()
    }

    /// Sends a provisional response (180, 183), with SDP for early media. It goes reliably
    /// (RFC 3262) when the caller supports 100rel and it carries SDP, or when 100rel is
    /// required; then the returned receiver hears the body of its PRACK (the answer, when the
    /// provisional carried the offer).
    pub fn provisional(&self, status: StatusCode, sdp: Option<Bytes>) -> Option<oneshot::Receiver<Bytes>> {
        let mut response = build_response(self.shared.config(), &self.request, status, Some(&self.local_tag), sdp)?;
        let ports = self.shared.ua.outbound().ports();
        let secure = addressed_securely(&self.request);
        response.headers.push("Contact", contact(self.shared.config(), ports, self.transaction.link(), secure));
        // A provisional response with a To tag makes an early dialog (RFC 3261 §12.1.1).
        if status > 100 {
            copy_record_route(&self.request.headers, &mut response.headers);
        }
        match &self.reliable {
            Some(reliable) if status > 100 && (self.all_reliable || !response.body.is_empty()) => {
                let (answer_to, answer) = oneshot::channel();
                reliable.send(response, Some(answer_to));
                Some(answer)
            }
            _ => {
                self.transaction.respond(response);
                None
            }
        }
    }

    /// Answers 200 with `sdp` and creates the dialog; `None` if the INVITE was already ended (CANCEL).
    ///
    /// While a reliable provisional response with SDP awaits its PRACK, the 2xx waits too
    /// (RFC 3262 §3): the dialog exists at once, and ends if no PRACK comes.
    pub fn answer(mut self, sdp: Bytes) -> Option<CallHandle> {
        let config = self.shared.config();
        let mut response =
            build_response(config, &self.request, StatusCode::OK, Some(&self.local_tag), Some(sdp.clone()))?;
        let secure = addressed_securely(&self.request);
        response
            .headers
            .push("Contact", contact(config, self.shared.ua.outbound().ports(), self.transaction.link(), secure));
        response.headers.push("Allow", ALLOW);
        response.headers.push("Supported", config.supported());
        copy_record_route(&self.request.headers, &mut response.headers);
        let agreed = grant_session_timer(config, &self.request, &mut response);
        let id = DialogId {
            call_id: self.essentials.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.essentials.from.tag().unwrap_or_default().to_owned(),
        };
        let mut state = DialogState::new(
            self.essentials.cseq.number,
            0,
            sdp,
            remote_target(&self.request.headers).unwrap_or_else(|| self.request.uri.clone()),
        );
        state.remote_origin = origin_line(&self.request.body);
        let dialog = Dialog::new(DialogParts {
            id: id.clone(),
            link: self.transaction.link().clone(),
            remote_uri: self.request.headers.get("From").unwrap_or_default().to_owned(),
            local_uri: response.headers.get("To").unwrap_or_default().to_owned(),
            route_set: RouteSet::of_uas(&self.request.headers),
            invite_had_offer: !self.request.body.is_empty(),
            invite_cseq: self.essentials.cseq.number,
            peer_allows_update: allows_update(&self.request.headers),
            state,
        });
        // The dialog exists before the 2xx leaves, so a fast ACK or BYE finds it.
        self.shared.ua.insert_dialog(dialog.clone());
        let ua = self.shared.ua.clone();
        let send = {
            let (shared, dialog, transaction) = (self.shared.clone(), dialog.clone(), self.transaction.clone());
            let early = early_key(&self.essentials.call_id, &self.local_tag);
            move |outcome: prack::Held| {
                shared.early().remove(&early);
                shared.pending().remove(&transaction.id());
                if outcome == prack::Held::Send {
                    if let Some(sent) = transaction.send_response(response) {
                        shared.ua.await_ack(&dialog, sent);
                        shared.ua.set_session_timer(&dialog, agreed);
                        return;
                    }
                }
                shared.ua.remove_dialog(&dialog.id);
                dialog.end(match outcome {
                    prack::Held::NoPrack => "no PRACK for a provisional response with SDP",
                    _ => "cancelled before the answer",
                });
            }
        };
        let send = match &self.reliable {
            Some(reliable) => reliable.hold_answer(Box::new(send)),
            None => Some(Box::new(send) as prack::HeldAnswer),
        };
        let Some(send) = send else {
            // The PendingInvite's part ends here; the pending entry stays for a CANCEL.
            self.answer_held = true;
            return Some(CallHandle { dialog, ua });
        };
        // Sent now: a 2xx that could not go (the INVITE ended under it) took the dialog away.
        send(prack::Held::Send);
        match self.shared.ua.find_dialog(&id).is_some() {
            true => Some(CallHandle { dialog, ua }),
            false => None,
        }
    }

    /// Answers with a final non-2xx status; `reason` overrides the standard phrase, `warning`
    /// adds a Warning header (e.g. for 488).
    pub fn reject(self, status: StatusCode, reason: Option<&str>, warning: Option<&str>) {
        if let Some(mut response) =
            build_response(self.shared.config(), &self.request, status, Some(&self.local_tag), None)
        {
            if let Some(reason) = reason {
                response.reason = reason.to_owned();
            }
            if let Some(warning) = warning {
                response.headers.push("Warning", format!("399 ringer \"{warning}\""));
            }
            self.transaction.respond(response);
        }
    }
}

impl PendingInvite {
    /// Answers with the final non-2xx `response` another leg gave: its status, reason phrase
    /// and Warning headers (a B2BUA relaying a refusal).
    pub fn relay_refusal(self, response: &Response) {
        if let Some(mut relayed) =
            build_response(self.shared.config(), &self.request, response.status, Some(&self.local_tag), None)
        {
            relayed.reason = response.reason.clone();
            for warning in response.headers.get_all("Warning") {
                relayed.headers.push("Warning", warning);
            }
            self.transaction.respond(relayed);
        }
    }
}

impl Drop for PendingInvite {
    fn drop(&mut self) {
        // A held 2xx keeps its entries until it is sent or dropped.
        if self.answer_held {
            return;
        }
        self.shared.pending().remove(&self.transaction.id());
        if let Some(reliable) = &self.reliable {
            reliable.finish();
            self.shared.early().remove(&early_key(&self.essentials.call_id, &self.local_tag));
        }
        if !self.transaction.is_final() {
            // Never leave the caller ringing because a handler forgot the call.
            if let Some(response) = build_response(
                self.shared.config(),
                &self.request,
                StatusCode::SERVER_INTERNAL_ERROR,
                Some(&self.local_tag),
                None,
            ) {
                self.transaction.respond(response);
            }
        }
    }
}
