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
use super::dialog::{CallHandle, Dialog, DialogId, DialogState, IncomingOffer, OfferAnswer};
use super::message::header::NameAddr;
use super::message::validate::Essentials;
use super::message::{new_tag, reason_phrase, Method, Request, Response, Uri};
use super::outbound::{ListeningPorts, Outbound};
use super::route::{copy_record_route, RouteSet};
use super::transaction::{IncomingRequest, ServerTransaction, Timers, TransactionUser};
use super::transport::{response_to, Link, Transport};

/// Methods this UA accepts.
pub const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";
/// Body types this UA understands.
pub const ACCEPT: &str = "application/sdp";
/// Option tags this UA supports (none yet).
pub const SUPPORTED: &str = "";

/// How the UA presents itself.
#[derive(Debug, Clone)]
pub struct UaConfig {
    /// The host in Contact on TLS (the certificate's name), and where no local address is known.
    pub contact_host: String,
    /// The Server header.
    pub server: String,
    /// Transaction timers, for the 2xx retransmission.
    pub timers: Timers,
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

/// What a CANCEL needs of a pending INVITE: its token, the request to answer 487, our tag.
struct PendingEntry {
    cancelled: CancellationToken,
    request: Arc<Request>,
    local_tag: String,
}

struct Shared {
    config: UaConfig,
    handler: Arc<dyn SessionHandler>,
    clients: Arc<ClientTransactions>,
    outbound: Arc<Outbound>,
    dialogs: Mutex<HashMap<DialogId, Arc<Dialog>>>,
    /// INVITEs awaiting the call layer, by transaction id.
    pending: Mutex<HashMap<u64, PendingEntry>>,
}

impl Shared {
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
        match &request.method {
            Method::Invite | Method::Bye | Method::Cancel | Method::Options | Method::Update => {}
            Method::Extension(_) => return reply(501).map(with_allow),
            _ => return reply(405).map(with_allow),
        }
        if !matches!(request.uri, Uri::Sip(_) | Uri::Tel { .. }) {
            return reply(416);
        }
        let required: Vec<&str> = request.headers.values("Require");
        if !required.is_empty() {
            let mut response = reply(420)?;
            response.headers.push("Unsupported", required.join(", "));
            return Some(response);
        }
        if matches!(request.method, Method::Invite | Method::Update) {
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
                    // A session refresh, or an offerless re-INVITE: offer what we have.
                    let sdp = state.local_sdp.clone();
                    state.offer_pending = is_invite;
                    state.acked = !is_invite;
                    drop(state);
                    self.send_success(&dialog, &transaction, &request, sdp, is_invite);
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
                    state.acked = !is_invite;
                }
                self.send_success(dialog, transaction, request, sdp, is_invite);
            }
            OfferAnswer::NotAcceptable(warning) => {
                if let Some(mut response) = build_response(&self.shared.config, request, 488, None, None) {
                    response.headers.push("Warning", format!("304 ringer \"{warning}\""));
                    transaction.respond(response);
                }
            }
        }
    }

    fn send_success(
        &self,
        dialog: &Arc<Dialog>,
        transaction: &ServerTransaction,
        request: &Request,
        sdp: Bytes,
        is_invite: bool,
    ) {
        let Some(mut response) =
            build_response(&self.shared.config, request, 200, Some(&dialog.id.local_tag), Some(sdp))
        else {
            return;
        };
        // re-INVITE and UPDATE are target refreshes (RFC 3261 §12.2.2, RFC 3311 §5.2).
        if let Some(target) = remote_target(&request.headers) {
            dialog.state().remote_target = target;
        }
        if is_invite {
            response.headers.push(
                "Contact",
                contact(
                    &self.shared.config,
                    self.shared.outbound.ports(),
                    transaction.link(),
                    addressed_securely(request),
                ),
            );
        }
        if is_invite {
            retransmit_until_ack(&self.shared, dialog.clone(), response.clone());
        }
        transaction.respond(response);
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
        response.headers.push("Supported", SUPPORTED);
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
                self.shared.pending().insert(
                    incoming.transaction.id(),
                    PendingEntry {
                        cancelled: cancelled.clone(),
                        request: request.clone(),
                        local_tag: local_tag.clone(),
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
        let Some(PendingEntry { cancelled, request, local_tag }) = self.shared.pending().remove(&invite.id()) else {
            return;
        };
        if let Some(response) = build_response(&self.shared.config, &request, 487, Some(&local_tag), None) {
            invite.respond(response);
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

    /// Sends a provisional response (180, 183), with SDP for early media.
    pub fn provisional(&self, status: u16, sdp: Option<Bytes>) {
        if let Some(mut response) =
            build_response(&self.shared.config, &self.request, status, Some(&self.local_tag), sdp)
        {
            let ports = self.shared.outbound.ports();
            let secure = addressed_securely(&self.request);
            response.headers.push("Contact", contact(&self.shared.config, ports, self.transaction.link(), secure));
            // A provisional response with a To tag makes an early dialog (RFC 3261 §12.1.1).
            if status > 100 {
                copy_record_route(&self.request.headers, &mut response.headers);
            }
            self.transaction.respond(response);
        }
    }

    /// Answers 200 with `sdp` and creates the dialog; `None` if the INVITE was already ended (CANCEL).
    pub fn answer(self, sdp: Bytes) -> Option<CallHandle> {
        let config = &self.shared.config;
        let mut response = build_response(config, &self.request, 200, Some(&self.local_tag), Some(sdp.clone()))?;
        let secure = addressed_securely(&self.request);
        response
            .headers
            .push("Contact", contact(config, self.shared.outbound.ports(), self.transaction.link(), secure));
        response.headers.push("Allow", ALLOW);
        response.headers.push("Supported", SUPPORTED);
        copy_record_route(&self.request.headers, &mut response.headers);
        let id = DialogId {
            call_id: self.essentials.call_id.clone(),
            local_tag: self.local_tag.clone(),
            remote_tag: self.essentials.from.tag().unwrap_or_default().to_owned(),
        };
        let dialog = Arc::new(Dialog {
            id: id.clone(),
            link: self.transaction.link().clone(),
            remote_uri: self.request.headers.get("From").unwrap_or_default().to_owned(),
            local_uri: response.headers.get("To").unwrap_or_default().to_owned(),
            route_set: RouteSet::of_uas(&self.request.headers),
            invite_had_offer: !self.request.body.is_empty(),
            state: Mutex::new(DialogState::new(
                self.essentials.cseq.number,
                0,
                sdp,
                remote_target(&self.request.headers).unwrap_or_else(|| self.request.uri.clone()),
            )),
            confirmed: CancellationToken::new(),
            ack_arrived: tokio::sync::Notify::new(),
            ended: CancellationToken::new(),
        });
        // The dialog exists before the 2xx leaves, so a fast ACK or BYE finds it.
        self.shared.dialogs().insert(id.clone(), dialog.clone());
        if !self.transaction.respond(response.clone()) {
            self.shared.dialogs().remove(&id);
            return None;
        }
        retransmit_until_ack(&self.shared, dialog.clone(), response);
        Some(CallHandle { dialog, ua: UserAgent { shared: self.shared.clone() } })
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
        self.shared.pending().remove(&self.transaction.id());
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
