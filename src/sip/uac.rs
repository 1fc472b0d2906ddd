//! Calls ringer places (RFC 3261 §13.2): the INVITE, its responses, CANCEL (§9.1), and the
//! dialog a 2xx creates. The B2BUA's leg 3 and the emulated core's legs 2 and 4 start here.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::client::{cancel_for, RequestError};
use super::dialog::{CallHandle, Dialog, DialogId, DialogState};
use super::message::header::NameAddr;
use super::message::{new_tag, Headers, Method, Request, Response, Uri};
use super::route::RouteSet;
use super::transport::Link;
use super::ua::{contact, local_host, remote_target, UserAgent, ALLOW};

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
        headers.push("CSeq", "1 INVITE");
        let secure = matches!(&spec.uri, Uri::Sip(uri) if uri.secure);
        headers.push("Contact", contact(self.config(), self.outbound().ports(), &link, secure));
        headers.push("Allow", ALLOW);
        headers.push("User-Agent", self.config().server.clone());
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
        })
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
            match response.status {
                100..=199 => {
                    self.provisional_seen = true;
                    if self.cancel == CancelState::Waiting {
                        self.send_cancel();
                    }
                    if response.status > 100 && self.cancel == CancelState::NotAsked {
                        return Progress::Provisional(response);
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

    /// The dialog a 2xx creates (RFC 3261 §12.1.2).
    fn confirm(&self, response: &Response) -> CallHandle {
        let to = response.headers.get("To").unwrap_or_default().to_owned();
        let remote_tag = NameAddr::parse(&to).ok().and_then(|to| to.tag().map(str::to_owned)).unwrap_or_default();
        let from = self.request.headers.get("From").unwrap_or_default().to_owned();
        let local_tag = NameAddr::parse(&from).ok().and_then(|from| from.tag().map(str::to_owned)).unwrap_or_default();
        let dialog = Arc::new(Dialog {
            id: DialogId { call_id: self.call_id().to_owned(), local_tag, remote_tag },
            link: self.link.clone(),
            remote_uri: to,
            local_uri: from,
            route_set: RouteSet::of_uac(&response.headers),
            invite_had_offer: !self.request.body.is_empty(),
            state: Mutex::new(DialogState::new(
                0,
                1,
                self.request.body.clone(),
                remote_target(&response.headers).unwrap_or_else(|| self.request.uri.clone()),
            )),
            confirmed: CancellationToken::new(),
            ack_arrived: tokio::sync::Notify::new(),
            ended: CancellationToken::new(),
        });
        self.ua.insert_dialog(dialog.clone());
        CallHandle { dialog, ua: self.ua.clone() }
    }
}
