//! The user agent core shared by both sides of every call (RFC 3261 §8, §12): the dialogs
//! alive, the requests ringer sends inside them (BYE, re-INVITE, UPDATE, ACK) with their route
//! sets, and the session timers that refresh or end them. New calls come in through
//! [`crate::ua`] and go out through [`crate::uac`], both built on this.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tracing::{debug, info, warn};

use crate::client::{ClientTransactions, RequestError};
use crate::compose::{contact, origin_line, remote_target, via};
use crate::config::UaConfig;
use crate::dialog::{Dialog, DialogError, DialogId, DialogState};
use crate::message::header::{tag_of, CSeq};
use crate::message::{Headers, Method, Request, Response, StatusCode, Uri};
use crate::outbound::Outbound;
use crate::session_timer::{self, Agreed};
use crate::timer_queue::TimerQueue;
use crate::transport::{Link, Transport};

/// A 2xx to an INVITE not acknowledged yet (RFC 3261 §13.3.1.4): on UDP it is sent again from
/// T1, the wait doubling up to T2, until its ACK; without one by 64·T1 the dialog ends. It
/// waits in the user agent's queue, not in a task of its own: every answered call has one.
struct UnackedAnswer {
    dialog: Weak<Dialog>,
    /// The 2xx as sent; empty on a reliable transport, where it is not sent again.
    bytes: Bytes,
    /// The wait before the next retransmission.
    interval: Duration,
    /// 64·T1 after the 2xx first left.
    give_up: tokio::time::Instant,
    /// Which of the dialog's 2xx responses this is (`DialogState::unacked_generation`).
    generation: u64,
}

struct Shared {
    config: UaConfig,
    clients: Arc<ClientTransactions>,
    outbound: Arc<Outbound>,
    dialogs: Mutex<HashMap<DialogId, Arc<Dialog>>>,
    /// Every dialog's session timer (RFC 4028), in one queue rather than a task per dialog;
    /// each fires with the dialog and the setting it was set for.
    session_timers: TimerQueue<(Weak<Dialog>, u64)>,
    /// Every 2xx awaiting its ACK, in one queue; an ACK takes its entry out.
    unacked_answers: TimerQueue<UnackedAnswer>,
}

/// A user agent: its settings, its client transactions and connections, and its dialogs.
#[derive(Clone)]
pub struct UserAgent {
    shared: Arc<Shared>,
}

impl UserAgent {
    /// A UA sending its requests through `clients` and, when a dialog's connection has
    /// closed, over new connections made by `outbound`.
    pub fn new(config: UaConfig, clients: Arc<ClientTransactions>, outbound: Arc<Outbound>) -> Self {
        let shared = Arc::new_cyclic(|ua: &Weak<Shared>| {
            let (for_sessions, for_answers) = (ua.clone(), ua.clone());
            let session_timers = TimerQueue::start(move |(dialog, generation): (Weak<Dialog>, u64)| {
                if let (Some(shared), Some(dialog)) = (for_sessions.upgrade(), dialog.upgrade()) {
                    UserAgent { shared }.session_timer_due(dialog, generation);
                }
            });
            let unacked_answers = TimerQueue::start(move |unacked: UnackedAnswer| {
                if let (Some(shared), Some(dialog)) = (for_answers.upgrade(), unacked.dialog.upgrade()) {
                    UserAgent { shared }.answer_unacked(dialog, unacked);
                }
            });
            Shared { config, clients, outbound, dialogs: Mutex::new(HashMap::new()), session_timers, unacked_answers }
        });
        Self { shared }
    }

    fn dialogs(&self) -> MutexGuard<'_, HashMap<DialogId, Arc<Dialog>>> {
        self.shared.dialogs.lock()
    }

    /// Dialogs alive now.
    pub fn live_dialogs(&self) -> usize {
        self.dialogs().len()
    }

    /// Session timers (RFC 4028) waiting to refresh or end a dialog.
    pub fn waiting_session_timers(&self) -> usize {
        self.shared.session_timers.len()
    }

    /// 2xx responses to INVITEs waiting for their ACK.
    pub fn unacknowledged_answers(&self) -> usize {
        self.shared.unacked_answers.len()
    }

    /// How the UA presents itself and which extensions it uses.
    pub fn config(&self) -> &UaConfig {
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

    pub(crate) fn find_dialog(&self, id: &DialogId) -> Option<Arc<Dialog>> {
        self.dialogs().get(id).cloned()
    }

    /// Forgets dialog `id`, and its timers with it.
    pub(crate) fn remove_dialog(&self, id: &DialogId) -> Option<Arc<Dialog>> {
        let dialog = self.dialogs().remove(id)?;
        let mut state = dialog.state();
        state.forgotten = true;
        if let Some(key) = state.session_timer.take() {
            self.shared.session_timers.cancel(key);
        }
        if let Some(key) = state.unacked_answer.take() {
            self.shared.unacked_answers.cancel(key);
        }
        drop(state);
        Some(dialog)
    }

    pub(crate) fn insert_dialog(&self, dialog: Arc<Dialog>) {
        self.dialogs().insert(dialog.id.clone(), dialog);
    }

    /// A top Via for a request ringer sends on `link`, with a new branch.
    pub(crate) fn via(&self, link: &Link) -> String {
        via(self.config(), self.outbound().ports(), link)
    }

    /// Hangs up every dialog at once (at shutdown); returns how many BYEs got a 2xx.
    pub async fn hangup_all(&self) -> usize {
        let ids: Vec<DialogId> = self.dialogs().keys().cloned().collect();
        let mut byes = tokio::task::JoinSet::new();
        for id in ids {
            let ua = self.clone();
            byes.spawn(async move { ua.hangup(&id).await.is_ok_and(StatusCode::is_success) });
        }
        byes.join_all().await.into_iter().filter(|ok| *ok).count()
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
    /// The UAS core's part after sending `sent`, a 2xx to an INVITE in `dialog` (RFC 3261
    /// §13.3.1.4): on UDP it is sent again until the ACK; on any transport the dialog ends if
    /// no ACK comes within 64·T1. Nothing waits if the ACK is already in.
    pub(crate) fn await_ack(&self, dialog: &Arc<Dialog>, sent: Bytes) {
        let timers = self.config().timers;
        let mut state = dialog.state();
        if state.acked || state.forgotten || dialog.ended.is_cancelled() {
            return;
        }
        let now = tokio::time::Instant::now();
        let give_up = now + timers.t1 * 64;
        let (due, bytes) = match dialog.link.transport().is_reliable() {
            true => (give_up, Bytes::new()),
            false => (now + timers.t1, sent),
        };
        state.unacked_generation += 1;
        let generation = state.unacked_generation;
        let unacked = UnackedAnswer { dialog: Arc::downgrade(dialog), bytes, interval: timers.t1, give_up, generation };
        if let Some(key) = state.unacked_answer.replace(self.shared.unacked_answers.at(due, unacked)) {
            self.shared.unacked_answers.cancel(key);
        }
    }

    /// The ACK for `dialog`'s last 2xx arrived: its retransmissions stop (`state` is the
    /// dialog's, locked by the caller).
    pub(crate) fn answer_acknowledged(&self, state: &mut DialogState) {
        state.acked = true;
        if let Some(key) = state.unacked_answer.take() {
            self.shared.unacked_answers.cancel(key);
        }
    }

    /// A 2xx's timer fired with no ACK in: sent again and set again before 64·T1, the dialog
    /// ended after it.
    fn answer_unacked(&self, dialog: Arc<Dialog>, unacked: UnackedAnswer) {
        let mut state = dialog.state();
        // Fired for an earlier 2xx (taken from the queue just as its ACK came and a
        // re-INVITE's 2xx went out): the newer one's entry stays as it is.
        if unacked.generation != state.unacked_generation {
            return;
        }
        state.unacked_answer = None;
        if state.acked || state.forgotten || dialog.ended.is_cancelled() {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= unacked.give_up {
            drop(state);
            if self.find_dialog(&dialog.id).is_some() {
                warn!(call_id = %dialog.id.call_id, "no ACK for our 2xx: hanging up (RFC 3261 §13.3.1.4)");
                dialog.end("no ACK");
                let (ua, id) = (self.clone(), dialog.id.clone());
                tokio::spawn(async move {
                    let _ = ua.hangup(&id).await;
                });
            }
            return;
        }
        let interval = (unacked.interval * 2).min(self.config().timers.t2);
        let due = (now + interval).min(unacked.give_up);
        let bytes = unacked.bytes.clone();
        state.unacked_answer = Some(self.shared.unacked_answers.at(due, UnackedAnswer { interval, ..unacked }));
        // Sent without the dialog's lock: the send may mirror to HEP as well.
        drop(state);
        crate::metrics::retransmitted("response");
        let _ = dialog.link.send(bytes);
    }

    /// Starts, changes or stops `dialog`'s session timer (RFC 4028) as just agreed; the
    /// session counts as refreshed now.
    pub(crate) fn set_session_timer(&self, dialog: &Arc<Dialog>, agreed: Option<Agreed>) {
        let mut state = dialog.state();
        state.session = agreed;
        state.refreshed_at = tokio::time::Instant::now();
        state.retry_at = None;
        self.schedule_session_timer(dialog, &mut state);
    }

    /// Sets `dialog`'s session timer for its next action, in place of the one waiting: the
    /// refresher refreshes at half the interval (or when a failed try is due again); the
    /// other side, if no refresh came in time, ends the session (RFC 4028 §10). None without
    /// a session timer, or once the dialog has ended.
    fn schedule_session_timer(&self, dialog: &Arc<Dialog>, state: &mut DialogState) {
        if let Some(key) = state.session_timer.take() {
            self.shared.session_timers.cancel(key);
        }
        state.session_timer_generation += 1;
        let Some(agreed) = state.session else { return };
        if state.forgotten || dialog.ended.is_cancelled() {
            return;
        }
        let due = state.retry_at.unwrap_or(state.refreshed_at + agreed.next_action());
        let event = (Arc::downgrade(dialog), state.session_timer_generation);
        state.session_timer = Some(self.shared.session_timers.at(due, event));
    }

    /// `dialog`'s session timer set as `generation` is due: the refresher refreshes, the other
    /// side ends the session with BYE. Each runs in a task of its own, for as long as it takes.
    fn session_timer_due(&self, dialog: Arc<Dialog>, generation: u64) {
        let agreed = {
            let mut state = dialog.state();
            // Set again since (refreshed, changed or stopped) while this one was firing.
            if state.session_timer_generation != generation || dialog.ended.is_cancelled() {
                return;
            }
            state.session_timer = None;
            let Some(agreed) = state.session else { return };
            agreed
        };
        let ua = self.clone();
        tokio::spawn(async move {
            let ended = match agreed.we_refresh {
                true => ua.refresh_session(&dialog).await,
                false => {
                    Some(format!("session expired: no refresh within {} s (RFC 4028 §10)", agreed.interval.as_secs()))
                }
            };
            if let Some(reason) = ended {
                if dialog.ended.is_cancelled() {
                    return;
                }
                warn!(call_id = %dialog.id.call_id, %reason, "ending the call");
                let _ = ua.hangup_because(&dialog.id, &reason).await;
            }
        });
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
    pub(crate) async fn update_session(
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
            if response.status.is_success() {
                if let Some(target) = remote_target(&response.headers) {
                    dialog.state().remote_target = target;
                }
                if is_invite {
                    let ack = self.in_dialog_request(dialog, &link, Method::Ack, cseq, None)?;
                    crate::metrics::sent_request(&Method::Ack);
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
        Err(DialogError::Refused(StatusCode::SESSION_INTERVAL_TOO_SMALL))
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
            Ok(response) if matches!(response.status.as_u16(), 408 | 481) => {
                return Some(format!("session refresh answered {} (RFC 4028 §10)", response.status));
            }
            Err(DialogError::Request(RequestError::Timeout)) => {
                return Some("session refresh got no answer (RFC 4028 §10)".into());
            }
            // Glare with the peer's own re-INVITE or one of ours: again in 2.1 to 4 s (RFC 3261 §14.1).
            Ok(response) if response.status == 491 => Duration::from_millis(rand::random_range(2100..=4000)),
            Err(DialogError::Busy) => Duration::from_millis(rand::random_range(2100..=4000)),
            Ok(response) => {
                warn!(call_id = %dialog.id.call_id, status = response.status.as_u16(), %method, "session refresh refused");
                Duration::from_secs(1)
            }
            Err(error) => {
                warn!(call_id = %dialog.id.call_id, %error, %method, "session refresh not sent");
                Duration::from_secs(1)
            }
        };
        // The session was not refreshed: its deadline stands; only the next try moves.
        let mut state = dialog.state();
        state.retry_at = Some(tokio::time::Instant::now() + retry_in);
        self.schedule_session_timer(dialog, &mut state);
        None
    }
}

impl UserAgent {
    /// Sends BYE in dialog `id` (over its connection while open, else a new one) and forgets
    /// the dialog.
    pub async fn hangup(&self, id: &DialogId) -> Result<StatusCode, DialogError> {
        self.hangup_because(id, "BYE from ringer").await
    }

    /// As [`UserAgent::hangup`], the dialog ending with `reason`.
    pub(crate) async fn hangup_because(&self, id: &DialogId, reason: &str) -> Result<StatusCode, DialogError> {
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
        info!(call_id = %id.call_id, status = response.status.as_u16(), "call ended by BYE from ringer");
        Ok(response.status)
    }

    /// Where a dialog's requests go when its connection has closed: the first route when
    /// proxies record-routed (RFC 3261 §12.2.1.1), else the core when configured, else the
    /// peer's Contact.
    fn next_hop(&self, dialog: &Dialog) -> Uri {
        let route = dialog.route_set.route(&dialog.state().remote_target);
        match self.outbound().core() {
            Some(core) if dialog.route_set.is_empty() => core.clone(),
            _ => route.next_hop,
        }
    }

    /// The dialog's link while open, else a new connection to the next hop.
    pub(crate) async fn dialog_link(&self, dialog: &Dialog) -> Result<Link, DialogError> {
        if dialog.link.is_open() {
            return Ok(dialog.link.clone());
        }
        Ok(self.outbound().link_to(&self.next_hop(dialog)).await?)
    }

    /// A request inside `dialog`, to be sent on `link`: Request-URI and Route from the route
    /// set and the remote target.
    pub(crate) fn in_dialog_request(
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
        headers.push_typed(&CSeq { number: cseq, method: method.clone() });
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

    /// A retransmitted 2xx for a call ringer placed gets the same ACK again.
    pub(crate) fn reack(&self, response: &Response) {
        let invite = response.headers.parsed::<CSeq>().is_some_and(|cseq| cseq.method == Method::Invite);
        if !response.status.is_success() || !invite {
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
                crate::metrics::retransmitted("request");
                let _ = dialog.link.send(ack);
            }
        }
    }
}

/// Requests larger than this go over a stream instead of UDP (RFC 3261 §18.1.1: MTU 1500 less 200).
const UDP_REQUEST_LIMIT: usize = 1300;

/// The same SIP URI with `transport=tcp`, for a request too large for UDP.
fn with_transport_tcp(target: &Uri) -> Uri {
    match target {
        Uri::Sip(sip) if !sip.secure => {
            let mut sip = sip.clone();
            sip.params.set("transport", Some("tcp".into()));
            Uri::Sip(sip)
        }
        _ => target.clone(),
    }
}
