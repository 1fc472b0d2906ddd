//! Dialogs (RFC 3261 §12), on either side of a call: their state, the requests ringer sends in
//! them (BYE, re-INVITE, the ACK for a 2xx) and the events the layer above waits for (the ACK,
//! the end, a new offer from the peer).

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::client::RequestError;
use super::message::header::{tag_of, MAGIC_COOKIE};
use super::message::{new_tag, Headers, Method, Request, Response, Uri};
use super::outbound::ConnectError;
use super::route::RouteSet;
use super::session_timer::{self, Agreed};
use super::transport::{Link, Transport};
use super::ua::{contact, local_host, remote_target, UserAgent};

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
    pub(super) reply: oneshot::Sender<OfferAnswer>,
}

impl IncomingOffer {
    /// Answers the offer.
    pub fn answer(self, answer: OfferAnswer) {
        let _ = self.reply.send(answer);
    }
}

pub(super) struct DialogState {
    pub(super) remote_cseq: u32,
    pub(super) local_cseq: u32,
    pub(super) local_sdp: Bytes,
    /// We sent an offer (in a 2xx to an offerless re-INVITE) and await the answer in the ACK.
    pub(super) offer_pending: bool,
    /// The ACK for our last 2xx arrived (UAS), or we sent ours (UAC).
    pub(super) acked: bool,
    /// The body of the first ACK (the answer, when our 2xx carried the offer).
    pub(super) ack_body: Option<Bytes>,
    /// Our ACK for the peer's 2xx (UAC), sent again when the 2xx is retransmitted.
    pub(super) sent_ack: Option<Bytes>,
    /// Where offers go when the layer above took them.
    pub(super) offers: Option<mpsc::UnboundedSender<IncomingOffer>>,
    pub(super) end_reason: Option<String>,
    /// Where in-dialog requests go: the peer's Contact, updated by target refreshes (§12.2).
    pub(super) remote_target: Uri,
    /// The o= line of the peer's last session description: an offer with the same one is a
    /// session refresh, answered here (RFC 3264 §8).
    pub(super) remote_origin: Option<String>,
    /// The session timer agreed (RFC 4028), if any.
    pub(super) session: Option<Agreed>,
    /// When the session was last refreshed.
    pub(super) refreshed_at: tokio::time::Instant,
    /// Whether the task running the session timer was started.
    pub(super) timer_running: bool,
    /// When a refresh that failed without ending the session is tried again.
    pub(super) retry_at: Option<tokio::time::Instant>,
    /// One of our INVITEs (a re-INVITE, a refresh) is under way: no second one (RFC 3261 §14.1).
    pub(super) invite_in_progress: bool,
}

impl DialogState {
    pub(super) fn new(remote_cseq: u32, local_cseq: u32, local_sdp: Bytes, remote_target: Uri) -> Self {
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
            timer_running: false,
            retry_at: None,
            invite_in_progress: false,
        }
    }

    /// The CSeq number of the next request we send in the dialog.
    pub(super) fn next_cseq(&mut self) -> u32 {
        self.local_cseq = self.local_cseq.max(1) + 1;
        self.local_cseq
    }
}

/// The o= line of a session description: its originator, session id and version, which stay
/// the same while the description does not change (RFC 3264 §8).
pub(super) fn origin_line(sdp: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(sdp).ok()?;
    text.lines().map(str::trim_end).find(|line| line.starts_with("o=")).map(str::to_owned)
}

pub(super) struct Dialog {
    pub(super) id: DialogId,
    pub(super) link: Link,
    /// The peer's address (with tag), our To in requests we send.
    pub(super) remote_uri: String,
    /// Our address (with tag), our From in requests we send.
    pub(super) local_uri: String,
    /// The route set (RFC 3261 §12.1), in the order requests carry it.
    pub(super) route_set: RouteSet,
    /// The INVITE that made the dialog carried an SDP offer (else its 2xx did, and the ACK
    /// carries the answer).
    pub(super) invite_had_offer: bool,
    /// The CSeq number of the INVITE that made the dialog: its ACK carries it.
    pub(super) invite_cseq: u32,
    /// The peer allows UPDATE (its Allow in the dialog-creating message): session refreshes
    /// use it rather than a re-INVITE (RFC 4028 §7.1).
    pub(super) peer_allows_update: bool,
    pub(super) state: Mutex<DialogState>,
    /// The session timer was agreed anew (wakes the task that runs it).
    pub(super) timer_changed: tokio::sync::Notify,
    /// The first ACK arrived (UAS).
    pub(super) confirmed: CancellationToken,
    /// Any ACK arrived (wakes the 2xx retransmission of a re-INVITE too).
    pub(super) ack_arrived: tokio::sync::Notify,
    pub(super) ended: CancellationToken,
}

/// What a new dialog is made of, on either side.
pub(super) struct DialogParts {
    pub(super) id: DialogId,
    pub(super) link: Link,
    pub(super) remote_uri: String,
    pub(super) local_uri: String,
    pub(super) route_set: RouteSet,
    pub(super) invite_had_offer: bool,
    pub(super) invite_cseq: u32,
    pub(super) peer_allows_update: bool,
    pub(super) state: DialogState,
}

impl Dialog {
    pub(super) fn new(parts: DialogParts) -> Arc<Self> {
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
            timer_changed: tokio::sync::Notify::new(),
            confirmed: CancellationToken::new(),
            ack_arrived: tokio::sync::Notify::new(),
            ended: CancellationToken::new(),
        })
    }

    pub(super) fn state(&self) -> MutexGuard<'_, DialogState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the dialog ended (once); the first reason given is kept.
    pub(super) fn end(&self, reason: &str) {
        let mut state = self.state();
        if state.end_reason.is_none() {
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
    Refused(u16),
    /// Another INVITE of ours is under way in the dialog (RFC 3261 §14.1).
    #[error("another INVITE is under way in the dialog")]
    Busy,
}

impl From<ConnectError> for DialogError {
    fn from(error: ConnectError) -> Self {
        DialogError::Unreachable(error.to_string())
    }
}

/// A call in a dialog (answered by ringer, or answered by the peer ringer called): to end it,
/// renegotiate, and wait for what the peer does.
#[derive(Clone)]
pub struct CallHandle {
    pub(super) dialog: Arc<Dialog>,
    pub(super) ua: UserAgent,
}

impl std::fmt::Debug for CallHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallHandle({:?})", self.dialog.id)
    }
}

impl CallHandle {
    /// The dialog.
    pub fn id(&self) -> &DialogId {
        &self.dialog.id
    }

    /// The link the dialog's requests use while open.
    pub fn link(&self) -> &Link {
        &self.dialog.link
    }

    /// Ends the call with BYE; returns the BYE's final status.
    pub async fn hangup(&self) -> Result<u16, DialogError> {
        self.ua.hangup(&self.dialog.id).await
    }

    /// Resolves when the dialog ends, with why (BYE from the peer, our BYE, no ACK...).
    pub async fn ended(&self) -> String {
        self.dialog.ended.cancelled().await;
        self.dialog.state().end_reason.clone().unwrap_or_default()
    }

    /// Whether the dialog has ended.
    pub fn is_ended(&self) -> bool {
        self.dialog.ended.is_cancelled()
    }

    /// Resolves with the body of the ACK for our 2xx (empty when it carried none), or `None`
    /// when the dialog ended without one.
    pub async fn acked(&self) -> Option<Bytes> {
        tokio::select! {
            biased;
            () = self.dialog.confirmed.cancelled() => Some(self.dialog.state().ack_body.clone().unwrap_or_default()),
            () = self.dialog.ended.cancelled() => None,
        }
    }

    /// Whether the INVITE that made the dialog carried the SDP offer; when it did not, the 2xx
    /// carried it and the ACK must carry the answer (RFC 3264 §5, RFC 3261 §13.2.2.4).
    pub fn invite_had_offer(&self) -> bool {
        self.dialog.invite_had_offer
    }

    /// Sends the ACK for the peer's 2xx (a call ringer placed), with `body` when the 2xx carried
    /// an offer; retransmitted 2xx get the same ACK again. Its CSeq is the INVITE's (RFC 3261
    /// §13.2.2.4), whatever PRACKs came between.
    pub fn ack(&self, body: Option<Bytes>) -> Result<(), DialogError> {
        let dialog = &self.dialog;
        let ack = self.ua.in_dialog_request(dialog, &dialog.link, Method::Ack, dialog.invite_cseq, body)?;
        let bytes = Bytes::from(ack.to_bytes());
        {
            let mut state = dialog.state();
            state.sent_ack = Some(bytes.clone());
            state.acked = true;
        }
        dialog.link.send(bytes).map_err(|error| DialogError::Request(error.into()))
    }

    /// Takes the peer's new offers (re-INVITE, UPDATE) from here on, instead of the session
    /// handler.
    pub fn offers(&self) -> mpsc::UnboundedReceiver<IncomingOffer> {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.dialog.state().offers = Some(sender);
        receiver
    }

    /// Sends a re-INVITE with `sdp` and returns the peer's answer (the 2xx is ACKed here).
    /// Refused with [`DialogError::Busy`] while another INVITE of ours is under way in the
    /// dialog (RFC 3261 §14.1).
    pub async fn reinvite(&self, sdp: Bytes) -> Result<Bytes, DialogError> {
        let response = self.ua.update_session(&self.dialog, Method::Invite, Some(sdp)).await?;
        match response.status {
            200..=299 => Ok(response.body),
            status => Err(DialogError::Refused(status)),
        }
    }
}

/// Clears a dialog's "INVITE under way" mark when the transaction is over, however it ends.
struct InviteUnderWay<'a>(&'a Dialog);

impl Drop for InviteUnderWay<'_> {
    fn drop(&mut self) {
        self.0.state().invite_in_progress = false;
    }
}

impl UserAgent {
    /// Starts, changes or stops `dialog`'s session timer (RFC 4028) as just agreed; the
    /// session counts as refreshed now.
    pub(super) fn set_session_timer(&self, dialog: &Arc<Dialog>, agreed: Option<Agreed>) {
        let start = {
            let mut state = dialog.state();
            state.session = agreed;
            state.refreshed_at = tokio::time::Instant::now();
            state.retry_at = None;
            let start = agreed.is_some() && !state.timer_running;
            state.timer_running |= start;
            start
        };
        dialog.timer_changed.notify_waiters();
        if start {
            tokio::spawn(run_session_timer(self.clone(), dialog.clone()));
        }
    }

    /// Session-Expires (`interval`, else the one agreed, else ours), Min-SE and the timer
    /// option tag for a re-INVITE or UPDATE in `dialog`, which refreshes the session when it
    /// succeeds.
    fn push_session_timer(&self, dialog: &Dialog, request: &mut Request, interval: Option<Duration>) {
        let config = &self.config().session_timer;
        let agreed = dialog.state().session.map(|agreed| agreed.interval);
        let interval = interval.or(agreed).unwrap_or(config.interval);
        for (name, value) in session_timer::request_headers(config, interval, None) {
            request.headers.push(name, value);
        }
    }

    /// Sends a re-INVITE or UPDATE in `dialog` (with `sdp` as the offer, if any) and returns
    /// the final response. A 2xx updates the remote target, the peer's session description
    /// and the session timer (every successful one refreshes the session, RFC 4028 §10), and a
    /// re-INVITE's 2xx is ACKed; a 422 is retried once with the Min-SE it asked (§7.4).
    async fn update_session(
        &self,
        dialog: &Arc<Dialog>,
        method: Method,
        sdp: Option<Bytes>,
    ) -> Result<Response, DialogError> {
        let is_invite = method == Method::Invite;
        let _under_way = match is_invite {
            true => {
                let mut state = dialog.state();
                if state.invite_in_progress {
                    return Err(DialogError::Busy);
                }
                state.invite_in_progress = true;
                drop(state);
                Some(InviteUnderWay(dialog))
            }
            false => None,
        };
        let mut interval = None;
        for attempt in 0..2 {
            let cseq = dialog.state().next_cseq();
            let link = self.dialog_link(dialog).await?;
            let mut request = self.in_dialog_request(dialog, &link, method.clone(), cseq, sdp.clone())?;
            self.push_session_timer(dialog, &mut request, interval);
            let response = match is_invite {
                true => {
                    let mut responses = self.clients().send_invite(request, link.clone())?;
                    loop {
                        match responses.recv().await {
                            Some(response) if response.status < 200 => continue,
                            Some(response) => break response,
                            None => return Err(DialogError::Request(RequestError::Timeout)),
                        }
                    }
                }
                false => self.clients().send(&request, &link).await?,
            };
            if response.status == 422 && attempt == 0 {
                let asked = interval.unwrap_or(self.config().session_timer.interval);
                if let Some(larger) = session_timer::after_too_small(&response.headers, asked) {
                    interval = Some(larger);
                    continue;
                }
            }
            if (200..300).contains(&response.status) {
                if let Some(target) = remote_target(&response.headers) {
                    dialog.state().remote_target = target;
                }
                if is_invite {
                    let ack = self.in_dialog_request(dialog, &link, Method::Ack, cseq, None)?;
                    let _ = link.send(Bytes::from(ack.to_bytes()));
                }
                if let Some(sdp) = sdp {
                    let mut state = dialog.state();
                    state.local_sdp = sdp;
                    state.remote_origin = origin_line(&response.body);
                }
                // A 2xx without Session-Expires leaves no timer (RFC 4028 §7.2), unless we
                // refresh: then ours goes on.
                let agreed = session_timer::as_uac(&response.headers, &self.config().session_timer);
                let ours = dialog.state().session.filter(|agreed| agreed.we_refresh);
                self.set_session_timer(dialog, agreed.or(ours));
            }
            return Ok(response);
        }
        Err(DialogError::Refused(422))
    }

    /// Refreshes `dialog`'s session (RFC 4028 §7.1, §8.1): an UPDATE without a body where the
    /// peer allows it, else a re-INVITE offering the same session description. Returns why the
    /// dialog must end, when it must; a refusal that leaves the session up schedules a retry.
    async fn refresh_session(&self, dialog: &Arc<Dialog>) -> Option<String> {
        let (method, body) = match dialog.peer_allows_update {
            true => (Method::Update, None),
            false => (Method::Invite, Some(dialog.state().local_sdp.clone())),
        };
        let retry_in = match self.update_session(dialog, method.clone(), body).await {
            Ok(response) if response.status < 300 => {
                debug!(call_id = %dialog.id.call_id, %method, "session refreshed");
                return None;
            }
            Ok(response) if matches!(response.status, 408 | 481) => {
                return Some(format!("session refresh answered {} (RFC 4028 §10)", response.status));
            }
            Err(DialogError::Request(RequestError::Timeout)) => {
                return Some("session refresh got no answer (RFC 4028 §10)".into());
            }
            // Glare with the peer's own re-INVITE or one of ours: again in 2.1 to 4 s (RFC 3261 §14.1).
            Ok(response) if response.status == 491 => Duration::from_millis(rand::random_range(2100..=4000)),
            Err(DialogError::Busy) => Duration::from_millis(rand::random_range(2100..=4000)),
            Ok(response) => {
                warn!(call_id = %dialog.id.call_id, status = response.status, %method, "session refresh refused");
                Duration::from_secs(1)
            }
            Err(error) => {
                warn!(call_id = %dialog.id.call_id, %error, %method, "session refresh not sent");
                Duration::from_secs(1)
            }
        };
        // The session was not refreshed: its deadline stands; only the next try moves.
        dialog.state().retry_at = Some(tokio::time::Instant::now() + retry_in);
        dialog.timer_changed.notify_waiters();
        None
    }
}

/// Runs `dialog`'s session timer until the dialog ends or the timer is given up: the refresher
/// refreshes at half the interval (again after a failed try); the other side, when no refresh
/// came in time, ends the session with BYE (RFC 4028 §10).
async fn run_session_timer(ua: UserAgent, dialog: Arc<Dialog>) {
    loop {
        let changed = dialog.timer_changed.notified();
        let (agreed, due) = {
            let mut state = dialog.state();
            let Some(agreed) = state.session else {
                // Checked and cleared under one lock: a timer set now starts a new task.
                state.timer_running = false;
                return;
            };
            (agreed, state.retry_at.unwrap_or(state.refreshed_at + agreed.next_action()))
        };
        tokio::select! {
            () = dialog.ended.cancelled() => return,
            () = changed => continue,
            () = tokio::time::sleep_until(due) => {}
        }
        let ended = match agreed.we_refresh {
            true => ua.refresh_session(&dialog).await,
            false => Some(format!("session expired: no refresh within {} s (RFC 4028 §10)", agreed.interval.as_secs())),
        };
        if let Some(reason) = ended {
            if dialog.ended.is_cancelled() {
                return;
            }
            warn!(call_id = %dialog.id.call_id, %reason, "ending the call");
            let _ = ua.hangup_because(&dialog.id, &reason).await;
            ua.handler().on_ended(&dialog.id, &reason);
            return;
        }
    }
}

impl UserAgent {
    /// Sends BYE in dialog `id` (over its connection while open, else a new one) and forgets
    /// the dialog.
    pub async fn hangup(&self, id: &DialogId) -> Result<u16, DialogError> {
        self.hangup_because(id, "BYE from ringer").await
    }

    /// As [`UserAgent::hangup`], the dialog ending with `reason`.
    pub(super) async fn hangup_because(&self, id: &DialogId, reason: &str) -> Result<u16, DialogError> {
        let dialog = self.remove_dialog(id).ok_or(DialogError::NoDialog)?;
        dialog.end(reason);
        let cseq = dialog.state().next_cseq();
        let mut link = self.dialog_link(&dialog).await?;
        let mut bye = self.in_dialog_request(&dialog, &link, Method::Bye, cseq, None)?;
        if link.transport() == Transport::Udp && bye.to_bytes().len() > UDP_REQUEST_LIMIT {
            link = self.outbound().link_to(&with_transport_tcp(&self.next_hop(&dialog))).await?;
            bye = self.in_dialog_request(&dialog, &link, Method::Bye, cseq, None)?;
        }
        let response = self.clients().send(&bye, &link).await?;
        info!(call_id = %id.call_id, status = response.status, "call ended by BYE from ringer");
        Ok(response.status)
    }

    /// Where a dialog's requests go when its connection has closed: the first route when
    /// proxies record-routed (RFC 3261 §12.2.1.1), else the core when configured, else the
    /// peer's Contact.
    fn next_hop(&self, dialog: &Dialog) -> String {
        let route = dialog.route_set.route(&dialog.state().remote_target);
        match self.outbound().core() {
            Some(core) if dialog.route_set.is_empty() => core.to_owned(),
            _ => route.next_hop.to_string(),
        }
    }

    /// The dialog's link while open, else a new connection to the next hop.
    pub(super) async fn dialog_link(&self, dialog: &Dialog) -> Result<Link, DialogError> {
        if dialog.link.is_open() {
            return Ok(dialog.link.clone());
        }
        Ok(self.outbound().link_to(&self.next_hop(dialog)).await?)
    }

    /// A request inside `dialog`, to be sent on `link`: Request-URI and Route from the route
    /// set and the remote target.
    pub(super) fn in_dialog_request(
        &self,
        dialog: &Dialog,
        link: &Link,
        method: Method,
        cseq: u32,
        body: Option<Bytes>,
    ) -> Result<Request, DialogError> {
        let remote_target = dialog.state().remote_target.clone();
        let route = dialog.route_set.route(&remote_target);
        let mut headers = Headers::new();
        headers.push("Via", self.via(link));
        headers.push("Max-Forwards", "70");
        for value in &route.routes {
            headers.push("Route", value.clone());
        }
        headers.push("From", dialog.local_uri.clone());
        headers.push("To", dialog.remote_uri.clone());
        headers.push("Call-ID", dialog.id.call_id.clone());
        headers.push("CSeq", format!("{cseq} {method}"));
        // Target refresh requests carry our Contact (RFC 3261 §12.2.1.1, RFC 3311 §5.1).
        if matches!(method, Method::Invite | Method::Update) {
            let secure = remote_target.scheme() == "sips";
            headers.push("Contact", contact(self.config(), self.outbound().ports(), link, secure));
        }
        headers.push("User-Agent", self.config().server.clone());
        let body = body.unwrap_or_default();
        if !body.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        Ok(Request { method, uri: route.request_uri, headers, body })
    }

    /// A top Via for a request ringer sends on `link`, with a new branch.
    pub(super) fn via(&self, link: &Link) -> String {
        let port = self.outbound().ports().of(link.transport()).unwrap_or(link.local().port());
        format!(
            "SIP/2.0/{} {}:{};branch={}{};rport",
            link.transport(),
            local_host(self.config(), link),
            port,
            MAGIC_COOKIE,
            new_tag()
        )
    }

    /// A retransmitted 2xx for a call ringer placed gets the same ACK again.
    pub(super) fn reack(&self, response: &Response) {
        let cseq = response.headers.get("CSeq").unwrap_or_default();
        if !(200..300).contains(&response.status) || !cseq.ends_with("INVITE") {
            return;
        }
        let tag = |name: &str| tag_of(&response.headers, name);
        let id = DialogId {
            call_id: response.headers.get("Call-ID").unwrap_or_default().to_owned(),
            local_tag: tag("From"),
            remote_tag: tag("To"),
        };
        if let Some(dialog) = self.find_dialog(&id) {
            if let Some(ack) = dialog.state().sent_ack.clone() {
                let _ = dialog.link.send(ack);
            }
        }
    }
}

/// Requests larger than this go over a stream instead of UDP (RFC 3261 §18.1.1: MTU 1500 less 200).
const UDP_REQUEST_LIMIT: usize = 1300;

/// The same SIP URI with `transport=tcp`, for a request too large for UDP.
fn with_transport_tcp(target: &str) -> String {
    match Uri::parse(target) {
        Ok(Uri::Sip(mut sip)) if !sip.secure => {
            sip.params.set("transport", Some("tcp".into()));
            sip.to_string()
        }
        _ => target.to_owned(),
    }
}
