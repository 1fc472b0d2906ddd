//! Calls ringer places (RFC 3261 §13.2): the INVITE, its responses, CANCEL (§9.1), and the
//! dialog a 2xx creates. The B2BUA's leg 3 and the emulated core's legs 2 and 4 start here.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::call::CallHandle;
use super::client::{cancel_for, RequestError};
use super::compose::{allows_update, contact, local_host, origin_line, remote_target};
use super::config::ALLOW;
use super::core::UserAgent;
use super::dialog::{Dialog, DialogId, DialogParts, DialogState};
use super::message::header::{lists_option, tag_of, CSeq, MinSe, NameAddr, RAck, RSeq, SessionExpires};
use super::message::{new_tag, Headers, Method, Request, Response, Uri};
use super::route::RouteSet;
use super::session_timer::{self, Support};
use super::transport::Link;

/// What to put in an INVITE ringer sends.
#[derive(Debug, Clone)]
pub struct InviteSpec {
    /// The Request-URI.
    pub uri: Uri,
    /// From, without a tag (one is added).
    pub from: NameAddr,
    /// To, without a tag.
    pub to: NameAddr,
    /// Max-Forwards (a B2BUA passes on the incoming value less one).
    pub max_forwards: u8,
    /// Further headers, in order (P-Asserted-Identity, Session-ID, History-Info, Diversion...).
    pub headers: Vec<(String, String)>,
    /// The SDP offer (empty for an offerless INVITE).
    pub body: Bytes,
    /// Offer reliable provisional responses (RFC 3262) when the UA uses them. A B2BUA offers
    /// them only when its own caller does: an 18x carrying the offer of an offerless INVITE
    /// must be PRACKed with an answer, which only such a caller can give.
    pub offer_100rel: bool,
}

/// What happened next to an INVITE ringer sent.
#[derive(Debug)]
pub enum Progress {
    /// A provisional response other than 100 (180 Ringing, 183 Session Progress).
    Provisional(Response),
    /// The callee answered: the dialog is up and waits for [`CallHandle::ack`].
    Answered(CallHandle, Response),
    /// A final non-2xx response (already ACKed by the transaction).
    Failed(Response),
    /// The INVITE was cancelled (487, or a 2xx that crossed the CANCEL and was hung up).
    Cancelled,
    /// No final response: Timer B, or 64·T1 after a CANCEL.
    TimedOut,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CancelState {
    NotAsked,
    /// Asked before any provisional: the CANCEL leaves when one arrives (§9.1).
    Waiting,
    Sent,
}

/// An INVITE under way.
pub struct OutgoingCall {
    ua: UserAgent,
    request: Arc<Request>,
    link: Link,
    responses: mpsc::UnboundedReceiver<Response>,
    provisional_seen: bool,
    cancel: CancelState,
    cancel_deadline: Option<tokio::time::Instant>,
    /// The last CSeq number used in the call (the INVITE's, then PRACKs'); the dialog goes on
    /// from it.
    cseq: u32,
    /// The RSeq of the last reliable provisional response acknowledged, per early dialog (To tag).
    rseqs: HashMap<String, u32>,
    /// A reliable provisional response that carried the offer (our INVITE had none): its PRACK
    /// waits for the answer, given with [`OutgoingCall::prack`].
    awaiting_answer: Option<Response>,
    /// The o= line of an early session description (a 2xx may leave it out).
    early_origin: Option<String>,
    /// A reliable provisional response carried a session description: the offer or answer of
    /// the INVITE is settled, and later ones carry no new offer.
    early_offer_seen: bool,
    /// The INVITE was sent again after a 422 (RFC 4028 §7.4); once is enough.
    resent_after_422: bool,
}

impl std::fmt::Debug for OutgoingCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutgoingCall({} via {:?})", self.request.uri, self.link)
    }
}

impl UserAgent {
    /// Sends an INVITE built from `spec` on `link`.
    pub fn invite(&self, spec: InviteSpec, link: Link) -> Result<OutgoingCall, RequestError> {
        let host = local_host(self.config(), &link);
        let mut from = spec.from;
        from.params.set("tag", Some(new_tag()));
        let mut headers = Headers::new();
        headers.push("Via", self.via(&link));
        headers.push("Max-Forwards", spec.max_forwards.to_string());
        headers.push("From", from.to_string());
        headers.push("To", spec.to.to_string());
        headers.push("Call-ID", format!("{}{}@{}", new_tag(), new_tag(), host.trim_matches(['[', ']'])));
        headers.push_typed(&CSeq { number: 1, method: Method::Invite });
        let secure = matches!(&spec.uri, Uri::Sip(uri) if uri.secure);
        headers.push("Contact", contact(self.config(), self.outbound().ports(), &link, secure));
        headers.push("Allow", ALLOW);
        headers.push("User-Agent", self.config().server.clone());
        self.push_extensions(&mut headers, spec.offer_100rel);
        let config = &self.config().session_timer;
        for (name, value) in session_timer::request_headers(config, config.interval, None) {
            // The option tag itself went with the others.
            if !matches!(name, "Supported" | "Require") {
                headers.push(name, value);
            }
        }
        for (name, value) in spec.headers {
            headers.push(&name, value);
        }
        if !spec.body.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        let request = Request { method: Method::Invite, uri: spec.uri, headers, body: spec.body };
        let responses = self.clients().send_invite(request.clone(), link.clone())?;
        Ok(OutgoingCall {
            ua: self.clone(),
            request: Arc::new(request),
            link,
            responses,
            provisional_seen: false,
            cancel: CancelState::NotAsked,
            cancel_deadline: None,
            cseq: 1,
            rseqs: HashMap::new(),
            awaiting_answer: None,
            early_origin: None,
            early_offer_seen: false,
            resent_after_422: false,
        })
    }

    /// Supported and Require for the extensions this UA uses in the calls it places (100rel
    /// only when `rel100`).
    fn push_extensions(&self, headers: &mut Headers, rel100: bool) {
        let offered: Vec<(Support, &str)> =
            self.config().extensions().into_iter().filter(|(_, tag)| rel100 || *tag != "100rel").collect();
        let listed = |wanted: fn(Support) -> bool| {
            offered.iter().filter(|(support, _)| wanted(*support)).map(|(_, tag)| *tag).collect::<Vec<_>>().join(", ")
        };
        let supported = listed(|support| support != Support::Off);
        if !supported.is_empty() {
            headers.push("Supported", supported);
        }
        let required = listed(|support| support == Support::Required);
        if !required.is_empty() {
            headers.push("Require", required);
        }
    }
}

impl OutgoingCall {
    /// The INVITE as sent.
    pub fn request(&self) -> &Request {
        &self.request
    }

    /// The Call-ID of the INVITE.
    pub fn call_id(&self) -> &str {
        self.request.headers.get("Call-ID").unwrap_or_default()
    }

    /// The link the INVITE went on.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Cancels the INVITE: at once if the callee sent a provisional response, else as soon as
    /// it does (RFC 3261 §9.1). [`Self::next`] then ends with [`Progress::Cancelled`].
    pub fn cancel(&mut self) {
        if self.cancel != CancelState::NotAsked {
            return;
        }
        self.cancel = CancelState::Waiting;
        if self.provisional_seen {
            self.send_cancel();
        }
    }

    fn send_cancel(&mut self) {
        self.cancel = CancelState::Sent;
        let t1 = self.ua.config().timers.t1;
        self.cancel_deadline = Some(tokio::time::Instant::now() + t1 * 64);
        let cancel = cancel_for(&self.request);
        let clients = self.ua.clients().clone();
        let link = self.link.clone();
        tokio::spawn(async move {
            if let Err(error) = clients.send(&cancel, &link).await {
                debug!(%error, "CANCEL got no answer");
            }
        });
    }

    /// Waits for what happens next; call again after [`Progress::Provisional`].
    pub async fn next(&mut self) -> Progress {
        loop {
            let received = match self.cancel_deadline {
                Some(deadline) => tokio::select! {
                    response = self.responses.recv() => response,
                    () = tokio::time::sleep_until(deadline) => {
                        self.ua.clients().forget_invite(&self.request);
                        return Progress::TimedOut;
                    }
                },
                None => self.responses.recv().await,
            };
            let Some(response) = received else { return Progress::TimedOut };
            match response.status.as_u16() {
                100..=199 => {
                    self.provisional_seen = true;
                    if self.cancel == CancelState::Waiting {
                        self.send_cancel();
                    }
                    if response.status > 100 && !self.acknowledge_provisional(&response) {
                        // A retransmission of a reliable one already acknowledged.
                        continue;
                    }
                    if let Some(origin) = origin_line(&response.body) {
                        self.early_origin = Some(origin);
                    }
                    if response.status > 100 && self.cancel == CancelState::NotAsked {
                        return Progress::Provisional(response);
                    }
                }
                422 if !self.resent_after_422 => {
                    // RFC 4028 §7.4: ask again with at least the Min-SE the UAS requires.
                    if let Some(progress) = self.resend_after_422(&response) {
                        return progress;
                    }
                }
                200..=299 => {
                    let call = self.confirm(&response);
                    if self.cancel == CancelState::NotAsked {
                        return Progress::Answered(call, response);
                    }
                    // The 2xx crossed our CANCEL: the call is up, so end it properly.
                    info!(call_id = %call.id().call_id, "answered after CANCEL: acknowledging and hanging up");
                    let _ = call.ack(None);
                    tokio::spawn(async move {
                        let _ = call.hangup().await;
                    });
                    return Progress::Cancelled;
                }
                487 if self.cancel != CancelState::NotAsked => return Progress::Cancelled,
                _ => return Progress::Failed(response),
            }
        }
    }

    /// Acknowledges a reliable provisional response (RFC 3262 §4) with PRACK, at once, or
    /// once the layer above gives the answer to the offer it carries; `false` for a
    /// retransmission or a response out of order, which the caller drops.
    fn acknowledge_provisional(&mut self, response: &Response) -> bool {
        let reliable = lists_option(&response.headers, "Require", "100rel") && self.ua.config().rel100 != Support::Off;
        let rseq = response.headers.parsed::<RSeq>().map(|RSeq(rseq)| rseq);
        let (true, Some(rseq)) = (reliable, rseq) else { return true };
        let tag = tag_of(&response.headers, "To");
        if let Some(last) = self.rseqs.get(&tag) {
            if rseq != last.wrapping_add(1) {
                return false;
            }
        }
        self.rseqs.insert(tag, rseq);
        let carries_offer = self.request.body.is_empty() && !response.body.is_empty() && !self.early_offer_seen;
        self.early_offer_seen |= !response.body.is_empty();
        match carries_offer {
            true => self.awaiting_answer = Some(response.clone()),
            false => self.send_prack(response, rseq, Bytes::new()),
        }
        true
    }

    /// Whether a reliable provisional response carried the offer and its PRACK waits for
    /// the answer ([`OutgoingCall::prack`]).
    pub fn awaits_answer(&self) -> bool {
        self.awaiting_answer.is_some()
    }

    /// Sends the PRACK held for a reliable provisional response that carried the offer, with
    /// `answer` (RFC 3262 §5: the PRACK carries the answer to an offer in the provisional).
    pub fn prack(&mut self, answer: Bytes) {
        let Some(response) = self.awaiting_answer.take() else { return };
        let Some(RSeq(rseq)) = response.headers.parsed() else { return };
        self.send_prack(&response, rseq, answer);
    }

    /// A PRACK for `response` in its early dialog: its Contact as Request-URI, the route set
    /// of its Record-Route, the next CSeq, RAck naming it; sent in the background.
    fn send_prack(&mut self, response: &Response, rseq: u32, body: Bytes) {
        self.cseq += 1;
        let invite_cseq = self.invite_cseq();
        let target = remote_target(&response.headers).unwrap_or_else(|| self.request.uri.clone());
        let route = RouteSet::of_uac(&response.headers).route(&target);
        let mut headers = Headers::new();
        headers.push("Via", self.ua.via(&self.link));
        headers.push("Max-Forwards", "70");
        for value in &route.routes {
            headers.push("Route", value.clone());
        }
        for name in ["From", "Call-ID"] {
            headers.push(name, self.request.headers.get(name).unwrap_or_default());
        }
        headers.push("To", response.headers.get("To").unwrap_or_default());
        headers.push_typed(&CSeq { number: self.cseq, method: Method::Prack });
        headers.push_typed(&RAck { rseq, cseq: invite_cseq, method: Method::Invite });
        headers.push("User-Agent", self.ua.config().server.clone());
        if !body.is_empty() {
            headers.push("Content-Type", "application/sdp");
        }
        let prack = Request { method: Method::Prack, uri: route.request_uri, headers, body };
        let clients = self.ua.clients().clone();
        let link = self.link.clone();
        tokio::spawn(async move {
            match clients.send(&prack, &link).await {
                Ok(response) if response.status < 300 => {}
                Ok(response) => debug!(status = response.status.as_u16(), "PRACK refused"),
                Err(error) => debug!(%error, "PRACK got no answer"),
            }
        });
    }

    /// Sends the INVITE again after a 422, asking the Min-SE it gave: same Call-ID and From
    /// tag, the next CSeq, a new branch; `None` when it could not be (the 422 is then final).
    fn resend_after_422(&mut self, response: &Response) -> Option<Progress> {
        let config = &self.ua.config().session_timer;
        let asked = self
            .request
            .headers
            .parsed::<SessionExpires>()
            .map(|expires| std::time::Duration::from_secs(u64::from(expires.seconds)))
            .unwrap_or(config.interval);
        let Some(interval) = session_timer::after_too_small(&response.headers, asked) else {
            return Some(Progress::Failed(response.clone()));
        };
        self.resent_after_422 = true;
        self.cseq += 1;
        let mut request = (*self.request).clone();
        request.headers.set("Via", self.ua.via(&self.link));
        request.headers.set_typed(&CSeq { number: self.cseq, method: Method::Invite });
        for (name, value) in session_timer::request_headers(config, interval, None) {
            if !matches!(name, "Supported" | "Require") {
                request.headers.set(name, value);
            }
        }
        // The Min-SE the 422 asked for, not ours (RFC 4028 §7.4).
        request.headers.set_typed(&MinSe(u32::try_from(interval.as_secs()).unwrap_or(u32::MAX)));
        match self.ua.clients().send_invite(request.clone(), self.link.clone()) {
            Ok(responses) => {
                info!(call_id = %self.call_id(), seconds = interval.as_secs(), "422: INVITE sent again with a longer session interval");
                self.responses = responses;
                self.request = Arc::new(request);
                None
            }
            Err(_) => Some(Progress::Failed(response.clone())),
        }
    }

    /// The CSeq number of the INVITE now under way (2 and up after a 422).
    fn invite_cseq(&self) -> u32 {
        self.request.headers.parsed::<CSeq>().map_or(1, |cseq| cseq.number)
    }

    /// The dialog a 2xx creates (RFC 3261 §12.1.2).
    fn confirm(&self, response: &Response) -> CallHandle {
        let to = response.headers.get("To").unwrap_or_default().to_owned();
        let remote_tag = tag_of(&response.headers, "To");
        let from = self.request.headers.get("From").unwrap_or_default().to_owned();
        let local_tag = tag_of(&self.request.headers, "From");
        let mut state = DialogState::new(
            0,
            self.cseq,
            self.request.body.clone(),
            remote_target(&response.headers).unwrap_or_else(|| self.request.uri.clone()),
        );
        state.remote_origin = origin_line(&response.body).or_else(|| self.early_origin.clone());
        let dialog = Dialog::new(DialogParts {
            id: DialogId { call_id: self.call_id().to_owned(), local_tag, remote_tag },
            link: self.link.clone(),
            remote_uri: to,
            local_uri: from,
            route_set: RouteSet::of_uac(&response.headers),
            invite_had_offer: !self.request.body.is_empty(),
            invite_cseq: self.invite_cseq(),
            peer_allows_update: allows_update(&response.headers),
            state,
        });
        self.ua.insert_dialog(dialog.clone());
        self.ua.set_session_timer(&dialog, session_timer::as_uac(&response.headers, &self.ua.config().session_timer));
        CallHandle { dialog, ua: self.ua.clone() }
    }
}
