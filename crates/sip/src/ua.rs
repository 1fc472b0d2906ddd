//! The user agent core (RFC 3261 §8): which requests are allowed, what an OPTIONS answers,
//! requests inside dialogs (BYE, re-INVITE, UPDATE), CANCEL, and the 2xx retransmission until
//! the ACK. New INVITEs go up to a [`SessionHandler`] as a [`PendingInvite`]; calls ringer
//! places itself start in [`super::uac`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::ClientTransactions;
use super::dialog::{origin_line, CallHandle, Dialog, DialogId, DialogParts, DialogState, IncomingOffer, OfferAnswer};
use super::message::header::NameAddr;
use super::message::header::{lists_option, RAck};
use super::message::validate::Essentials;
use super::message::{new_tag, reason_phrase, Method, Request, Response, Uri};
use super::outbound::{ListeningPorts, Outbound};
use super::route::{copy_record_route, RouteSet};
use super::session_timer::{self, Agreed, SessionTimerConfig, Support, UasTimer};
use super::transaction::{IncomingRequest, ServerTransaction, Timers, TransactionUser};
use super::transport::{response_to, Link, Transport};
use tokio::sync::oneshot;

mod prack;
use prack::Reliable;

/// Methods this UA accepts.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK";
/// Body types this UA understands.
pub const ACCEPT: &str = "application/sdp";

/// How the UA presents itself and which extensions it uses.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The host in Contact on TLS (the certificate's name), and where no local address is known.
    pub contact_host: String,
    /// The Server header.
    pub server: String,
    /// Transaction timers, for the 2xx retransmission.
    pub timers: Timers,
    /// Reliable provisional responses (RFC 3262, option tag `100rel`).
    pub rel100: Support,
    /// Session timers (RFC 4028, option tag `timer`).
    pub session_timer: SessionTimerConfig,
}

impl UaConfig {
    /// A UA presenting itself as `server`, with `contact_host` in its Contact, RFC 3261's
    /// timers, and 100rel and session timers supported with RFC 4028's intervals.
    pub fn new(contact_host: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            contact_host: contact_host.into(),
            server: server.into(),
            timers: Timers::default(),
            rel100: Support::Supported,
            session_timer: SessionTimerConfig::default(),
        }
    }

    /// The extensions this UA knows, with their option tags and how each is used.
    pub fn extensions(&self) -> [(Support, &'static str); 2] {
        [(self.rel100, "100rel"), (self.session_timer.support, "timer")]
    }

    /// The option tags of a Supported header.
    pub fn supported(&self) -> String {
        let tags = self.extensions();
        tags.iter().filter(|(support, _)| *support != Support::Off).map(|(_, tag)| *tag).collect::<Vec<_>>().join(", ")
    }
}

/// The layer above: decides what to do with new calls and with offers inside them.
pub trait SessionHandler: Send + Sync + 'static {
    /// A new INVITE; answer it (now or later) through `invite`.
    fn on_invite(&self, invite: PendingInvite);
    /// A new offer inside an established dialog (unless the call's offers were taken with
    /// [`CallHandle::offers`]).
    fn on_offer(&self, dialog: &DialogId, offer: &Bytes) -> OfferAnswer;
    /// The dialog ended (BYE from the peer, or no ACK for our 2xx).
    fn on_ended(&self, dialog: &DialogId, reason: &str);
}

/// What a CANCEL needs of a pending INVITE: its token, the request to answer 487, our tag,
/// and its reliable provisional responses (a 2xx held behind one is dropped).
struct PendingEntry {
    cancelled: CancellationToken,
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
    config: UaConfig,
    handler: Arc<dyn SessionHandler>,
    clients: Arc<ClientTransactions>,
    outbound: Arc<Outbound>,
    dialogs: Mutex<HashMap<DialogId, Arc<Dialog>>>,
    /// INVITEs awaiting the call layer, by transaction id.
    pending: Mutex<HashMap<u64, PendingEntry>>,
    /// The reliable provisional responses of INVITEs not yet answered, for their PRACKs.
    early: Mutex<HashMap<EarlyKey, Arc<Reliable>>>,
}

impl Shared {
    fn early(&self) -> MutexGuard<'_, HashMap<EarlyKey, Arc<Reliable>>> {
        self.early.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<u64, PendingEntry>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn dialogs(&self) -> MutexGuard<'_, HashMap<DialogId, Arc<Dialog>>> {
        self.dialogs.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The UAS core: a [`TransactionUser`] for the transaction layer.
#[derive(Clone)]
pub struct UserAgent {
    shared: Arc<Shared>,
}

impl UserAgent {
    /// A UA passing calls to `handler`, sending its own requests through `clients` and, when a
    /// dialog's connection has closed, over new connections made by `outbound`.
    pub fn new(
        config: UaConfig,
        handler: Arc<dyn SessionHandler>,
        clients: Arc<ClientTransactions>,
        outbound: Arc<Outbound>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                handler,
                clients,
                outbound,
                dialogs: Mutex::new(HashMap::new()),
                pending: Mutex::new(HashMap::new()),
                early: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Dialogs alive now.
    pub fn live_dialogs(&self) -> usize {
        self.shared.dialogs().len()
    }

    pub(super) fn config(&self) -> &UaConfig {
        &self.shared.config
    }

    pub(super) fn handler(&self) -> &Arc<dyn SessionHandler> {
        &self.shared.handler
    }

    /// The connections ringer opens.
    pub fn outbound(&self) -> &Arc<Outbound> {
        &self.shared.outbound
    }

    /// The client transactions.
    pub fn clients(&self) -> &Arc<ClientTransactions> {
        &self.shared.clients
    }

    pub(super) fn find_dialog(&self, id: &DialogId) -> Option<Arc<Dialog>> {
        self.shared.dialogs().get(id).cloned()
    }

    pub(super) fn remove_dialog(&self, id: &DialogId) -> Option<Arc<Dialog>> {
        self.shared.dialogs().remove(id)
    }

    pub(super) fn insert_dialog(&self, dialog: Arc<Dialog>) {
        self.shared.dialogs().insert(dialog.id.clone(), dialog);
    }

    /// INVITEs not yet answered.
    pub fn pending_invites(&self) -> usize {
        self.shared.pending().len()
    }

    fn refuse_early(&self, incoming: &IncomingRequest) -> Option<Response> {
        let request = &incoming.request;
        let reply = |status: u16| build_response(&self.shared.config, request, status, None, None);
        let config = &self.shared.config;
        match &request.method {
            Method::Invite | Method::Bye | Method::Cancel | Method::Options | Method::Update | Method::Prack => {}
            Method::Extension(_) => return reply(501).map(with_allow),
            _ => return reply(405).map(with_allow),
        }
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel { .. }) {
            return reply(416);
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
            let mut response = reply(420)?;
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
                let mut response = reply(421)?;
                response.headers.push("Require", missing.join(", "));
                return Some(response);
            }
        }
        if matches!(request.method, Method::Invite | Method::Update) {
            if let UasTimer::TooSmall(min_se) = session_timer::as_uas(&request.headers, &config.session_timer) {
                let mut response = reply(422)?;
                response.headers.push("Min-SE", min_se.to_string());
                return Some(response);
            }
            if !request.body.is_empty() && !is_sdp(request.headers.get("Content-Type")) {
                let mut response = reply(415)?;
                response.headers.push("Accept", ACCEPT);
                return Some(response);
            }
            if let Some(encoding) = request.headers.get("Content-Encoding") {
                if !encoding.eq_ignore_ascii_case("identity") {
                    let mut response = reply(415)?;
                    response.headers.push("Accept-Encoding", "identity");
                    return Some(response);
                }
            }
            let accept: Vec<&str> = request.headers.values("Accept");
            if request.headers.get("Accept").is_some() && !accept.iter().any(|media| accepts_sdp(media)) {
                return reply(406);
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
        let config = &self.shared.config;
        let respond = |status: u16, body: Option<Bytes>| {
            if let Some(response) = build_response(config, &request, status, None, body) {
                transaction.respond(response);
            }
        };
        if request.method == Method::Prack {
            self.prack(&id, &request, &transaction);
            return;
        }
        let Some(dialog) = self.shared.dialogs().get(&id).cloned() else {
            respond(481, None);
            return;
        };
        {
            let mut state = dialog.state();
            if essentials.cseq.number <= state.remote_cseq && request.method != Method::Cancel {
                drop(state);
                warn!(call_id = %id.call_id, "in-dialog request with an old CSeq");
                respond(500, None);
                return;
            }
            state.remote_cseq = essentials.cseq.number;
        }
        match request.method {
            Method::Bye => {
                self.shared.dialogs().remove(&id);
                respond(200, None);
                // A BYE in the early dialog of a 2xx still held: the INVITE ends 487 (§15.1.2).
                let held = self.shared.early().remove(&early_key(&id.call_id, &id.local_tag));
                if let Some(reliable) = held {
                    if let Some(entry) = self.shared.pending().remove(&reliable.transaction_id()) {
                        if let Some(response) =
                            build_response(config, &entry.request, 487, Some(&entry.local_tag), None)
                        {
                            reliable.abandon_with(response);
                        }
                    }
                }
                info!(call_id = %id.call_id, "call ended by BYE from the peer");
                dialog.end("BYE from the peer");
                self.shared.handler.on_ended(&id, "BYE from the peer");
            }
            Method::Options => respond(200, None),
            Method::Invite | Method::Update => {
                let is_invite = request.method == Method::Invite;
                let mut state = dialog.state();
                if state.offer_pending || (is_invite && !state.acked) {
                    drop(state);
                    respond(491, None);
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
                            if let Some(response) = build_response(&ua.shared.config, &request, 487, None, None) {
                                transaction.respond(response);
                            }
                        }
                    }
                });
            }
            _ => respond(405, None),
        }
    }

    /// A PRACK (RFC 3262 §4): 200 when it acknowledges the reliable provisional response
    /// awaiting one (or repeats the last one's PRACK, also once the call is answered), 481
    /// when it names none, 400 without a readable RAck.
    fn prack(&self, id: &DialogId, request: &Request, transaction: &ServerTransaction) {
        let early = self.shared.early().get(&early_key(&id.call_id, &id.local_tag)).cloned();
        let rack = request.headers.get("RAck").and_then(|value| RAck::parse(value).ok());
        let mut released = None;
        let status = match (rack, early) {
            (None, _) => 400,
            (Some(rack), Some(reliable)) => {
                let (acknowledged, release) = reliable.on_prack(&rack, request.body.clone());
                released = release;
                match acknowledged {
                    prack::Acknowledged::Yes => 200,
                    // The provisional response carried our answer: a body now is a new offer,
                    // which ringer does not take before the call is answered (RFC 3262 §5).
                    prack::Acknowledged::WithOffer => 488,
                    prack::Acknowledged::No => 481,
                }
            }
            (Some(_), None) if self.shared.dialogs().contains_key(id) => 200,
            (Some(_), None) => 481,
        };
        if let Some(mut response) = build_response(&self.shared.config, request, status, None, None) {
            match status {
                400 => response.reason = "Bad Request (RAck missing or malformed)".into(),
                488 => response.headers.push(
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
                if let Some(response) = build_response(&self.shared.config, request, 491, None, None) {
                    transaction.respond(response);
                }
            }
            OfferAnswer::NotAcceptable(warning) => {
                if let Some(mut response) = build_response(&self.shared.config, request, 488, None, None) {
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
        let Some(mut response) = build_response(&self.shared.config, request, 200, Some(&dialog.id.local_tag), sdp)
        else {
            return;
        };
        let agreed = grant_session_timer(&self.shared.config, request, &mut response);
        // re-INVITE and UPDATE are target refreshes (RFC 3261 §12.2.2, RFC 3311 §5.2).
        if let Some(target) = remote_target(&request.headers) {
            dialog.state().remote_target = target;
        }
        // A 2xx to a target refresh carries our Contact (RFC 3261 §12.2.2, RFC 3311 §5.2).
        let contact =
            contact(&self.shared.config, self.shared.outbound.ports(), transaction.link(), addressed_securely(request));
        response.headers.push("Contact", contact);
        if is_invite {
            retransmit_until_ack(&self.shared, dialog.clone(), response.clone());
        }
        if transaction.respond(response) {
            self.set_session_timer(dialog, agreed);
        }
    }
}

/// The session timer of a 2xx to `request` (RFC 4028 §9): Session-Expires, and `Require: timer`
/// when the UAC refreshes, added to `response`; what this side does, when a timer applies.
fn grant_session_timer(config: &UaConfig, request: &Request, response: &mut Response) -> Option<Agreed> {
    match session_timer::as_uas(&request.headers, &config.session_timer) {
        UasTimer::Agreed { session_expires, require, agreed } => {
            response.headers.push("Session-Expires", session_expires.to_string());
            if require {
                response.headers.push("Require", "timer");
            }
            Some(agreed)
        }
        // Refused with 422 before the request got this far.
        UasTimer::None | UasTimer::TooSmall(_) => None,
    }
}

fn with_allow(mut response: Response) -> Response {
    response.headers.push("Allow", ALLOW);
    response
}

fn is_sdp(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/sdp"))
}

fn accepts_sdp(media: &str) -> bool {
    let media = media.split(';').next().unwrap_or_default().trim();
    ["application/sdp", "application/*", "*/*"].iter().any(|ok| media.eq_ignore_ascii_case(ok))
}

/// A response to `request` as this UA sends it: copied headers, To tag, Server, and for
/// successful INVITE/UPDATE/OPTIONS a Contact, Allow, Accept and Supported.
fn build_response(
    config: &UaConfig,
    request: &Request,
    status: u16,
    tag: Option<&str>,
    body: Option<Bytes>,
) -> Option<Response> {
    let mut response = response_to(&request.headers, status, reason_phrase(status))?;
    match tag {
        Some(tag) => response.add_to_tag(tag),
        None => response.add_to_tag(&new_tag()),
    }
    response.headers.push("Server", config.server.clone());
    if (200..300).contains(&status) && request.method == Method::Options {
        response.headers.push("Allow", ALLOW);
        response.headers.push("Accept", ACCEPT);
        response.headers.push("Supported", config.supported());
    }
    if let Some(body) = body {
        response.headers.push("Content-Type", "application/sdp");
        response.body = body;
    }
    Some(response)
}

/// The host peers reach us at on `link`: the certificate's name on TLS, else the local address
/// (the configured host when bound to an unspecified address).
pub(super) fn local_host(config: &UaConfig, link: &Link) -> String {
    let local = link.local();
    match link.transport() {
        Transport::Tls => config.contact_host.clone(),
        _ if local.ip().is_unspecified() => config.contact_host.clone(),
        _ if local.is_ipv6() => format!("[{}]", local.ip()),
        _ => local.ip().to_string(),
    }
}

/// Our Contact on `link`: the listening port of its transport (a connection ringer opened has
/// an ephemeral local port that accepts nothing). Over TLS it is a SIPS URI when the request
/// that makes the dialog was addressed to one (RFC 3261 §12.1.1), else `sip:` with
/// `transport=tls`, which clients without SIPS support (baresip) can reach.
pub(super) fn contact(config: &UaConfig, ports: ListeningPorts, link: &Link, secure: bool) -> String {
    let port = ports.of(link.transport()).unwrap_or(link.local().port());
    let host = local_host(config, link);
    match link.transport() {
        Transport::Tls if secure => format!("<sips:{host}:{port};transport=tls>"),
        transport => format!("<sip:{host}:{port};transport={}>", transport.via_name().to_ascii_lowercase()),
    }
}

/// The URI of the first Contact in `headers`: the peer's remote target (RFC 3261 §12.1).
pub(super) fn remote_target(headers: &super::message::Headers) -> Option<Uri> {
    headers.values("Contact").first().and_then(|contact| NameAddr::parse(contact).ok()).map(|contact| contact.uri)
}

/// Whether the Allow header of `headers` lists UPDATE.
pub(super) fn allows_update(headers: &super::message::Headers) -> bool {
    headers.values("Allow").iter().any(|method| method.eq_ignore_ascii_case("UPDATE"))
}

/// Whether `request` was addressed to a SIPS URI: its Request-URI, or the top Record-Route.
pub(super) fn addressed_securely(request: &Request) -> bool {
    let record_route = request.headers.get("Record-Route").map(str::trim_start);
    matches!(&request.uri, Uri::Sip(uri) if uri.secure)
        || record_route.is_some_and(|route| route.starts_with("<sips:") || route.starts_with("sips:"))
}

/// On UDP the UAS core retransmits its 2xx until the ACK (RFC 3261 §13.3.1.4); without ACK
/// after 64·T1 the dialog ends. The wait ends as soon as the ACK arrives or the dialog ends.
fn retransmit_until_ack(shared: &Arc<Shared>, dialog: Arc<Dialog>, response: Response) {
    let bytes = Bytes::from(response.to_bytes());
    let shared = shared.clone();
    tokio::spawn(async move {
        let timers = shared.config.timers;
        let reliable = dialog.link.transport().is_reliable();
        let deadline = tokio::time::Instant::now() + timers.t1 * 64;
        let mut interval = timers.t1;
        loop {
            let acked = dialog.ack_arrived.notified();
            if dialog.state().acked || dialog.ended.is_cancelled() {
                return;
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                break;
            }
            let wake = if reliable { deadline } else { (now + interval).min(deadline) };
            tokio::select! {
                () = acked => continue,
                () = dialog.ended.cancelled() => return,
                () = tokio::time::sleep_until(wake) => {}
            }
            if !reliable && tokio::time::Instant::now() < deadline {
                let _ = dialog.link.send(bytes.clone());
                interval = (interval * 2).min(timers.t2);
            }
        }
        confirm_or_end(&shared, &dialog);
    });
}

fn confirm_or_end(shared: &Arc<Shared>, dialog: &Arc<Dialog>) {
    if dialog.state().acked {
        return;
    }
    if shared.dialogs().contains_key(&dialog.id) {
        warn!(call_id = %dialog.id.call_id, "no ACK for our 2xx: hanging up (RFC 3261 §13.3.1.4)");
        let ua = UserAgent { shared: shared.clone() };
        let id = dialog.id.clone();
        dialog.end("no ACK");
        tokio::spawn(async move {
            let _ = ua.hangup(&id).await;
            ua.shared.handler.on_ended(&id, "no ACK");
        });
    }
}

impl TransactionUser for UserAgent {
    fn on_request(&self, incoming: IncomingRequest) {
        if let Some(response) = self.refuse_early(&incoming) {
            debug!(method = %incoming.request.method, status = response.status, "refused");
            incoming.transaction.respond(response);
            return;
        }
        if let Some(tag) = incoming.essentials.to.tag().map(str::to_owned) {
            self.in_dialog(incoming, &tag);
            return;
        }
        let config = &self.shared.config;
        match incoming.request.method {
            Method::Options => {
                if let Some(mut response) = build_response(config, &incoming.request, 200, None, None) {
                    let ports = self.shared.outbound.ports();
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
                        let timeout = build_response(config, &request, 504, Some(&local_tag), None);
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
                if let Some(response) = build_response(config, &incoming.request, 481, None, None) {
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
        let Some(dialog) = self.shared.dialogs().get(&id).cloned() else {
            debug!(call_id = %id.call_id, "ACK for no dialog dropped");
            return;
        };
        let mut state = dialog.state();
        state.acked = true;
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
        dialog.ack_arrived.notify_waiters();
    }

    fn on_stray_response(&self, response: Response) {
        self.reack(&response);
    }

    fn on_cancel(&self, invite: ServerTransaction) {
        let Some(PendingEntry { cancelled, request, local_tag, reliable }) = self.shared.pending().remove(&invite.id())
        else {
            return;
        };
        if let Some(response) = build_response(&self.shared.config, &request, 487, Some(&local_tag), None) {
            invite.respond(response);
        }
        // A 2xx held behind an unacknowledged provisional response is never sent.
        if let Some(reliable) = reliable {
            reliable.abandon();
        }
        info!(call_id = request.headers.get("Call-ID").unwrap_or_default(), "call cancelled by the caller");
        cancelled.cancel();
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
    pub fn provisional(&self, status: u16, sdp: Option<Bytes>) -> Option<oneshot::Receiver<Bytes>> {
        let mut response = build_response(&self.shared.config, &self.request, status, Some(&self.local_tag), sdp)?;
        let ports = self.shared.outbound.ports();
        let secure = addressed_securely(&self.request);
        response.headers.push("Contact", contact(&self.shared.config, ports, self.transaction.link(), secure));
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
        let config = &self.shared.config;
        let mut response = build_response(config, &self.request, 200, Some(&self.local_tag), Some(sdp.clone()))?;
        let secure = addressed_securely(&self.request);
        response
            .headers
            .push("Contact", contact(config, self.shared.outbound.ports(), self.transaction.link(), secure));
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
        self.shared.dialogs().insert(id.clone(), dialog.clone());
        let ua = UserAgent { shared: self.shared.clone() };
        let send = {
            let (ua, dialog, transaction) = (ua.clone(), dialog.clone(), self.transaction.clone());
            let early = early_key(&self.essentials.call_id, &self.local_tag);
            move |outcome: prack::Held| {
                ua.shared.early().remove(&early);
                ua.shared.pending().remove(&transaction.id());
                if outcome == prack::Held::Send && transaction.respond(response.clone()) {
                    retransmit_until_ack(&ua.shared, dialog.clone(), response);
                    ua.set_session_timer(&dialog, agreed);
                    return;
                }
                ua.shared.dialogs().remove(&dialog.id);
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
        match self.shared.dialogs().contains_key(&id) {
            true => Some(CallHandle { dialog, ua }),
            false => None,
        }
    }

    /// Answers with a final non-2xx status; `reason` overrides the standard phrase, `warning`
    /// adds a Warning header (e.g. for 488).
    pub fn reject(self, status: u16, reason: Option<&str>, warning: Option<&str>) {
        if let Some(mut response) =
            build_response(&self.shared.config, &self.request, status, Some(&self.local_tag), None)
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
            build_response(&self.shared.config, &self.request, response.status, Some(&self.local_tag), None)
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
            if let Some(response) = build_response(&self.shared.config, &self.request, 500, Some(&self.local_tag), None)
            {
                self.transaction.respond(response);
            }
        }
    }
}

impl UserAgent {
    /// Hangs up every dialog at once (at shutdown); returns how many BYEs got a 2xx.
    pub async fn hangup_all(&self) -> usize {
        let ids: Vec<DialogId> = self.shared.dialogs().keys().cloned().collect();
        let mut byes = tokio::task::JoinSet::new();
        for id in ids {
            let ua = self.clone();
            byes.spawn(async move {
                let result = ua.hangup(&id).await;
                ua.shared.handler.on_ended(&id, "ringer shutting down");
                matches!(result, Ok(200..=299))
            });
        }
        byes.join_all().await.into_iter().filter(|ok| *ok).count()
    }
}
