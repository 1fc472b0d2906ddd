//! Client transactions (RFC 3261 §17.1) for the requests the TAS sends: non-INVITE (BYE; Timers
//! E, F, K) and INVITE (leg 3; Timers A, B, D, with the ACK for a non-2xx final sent here).
//! Responses are matched by the branch of their top Via and the method of their CSeq (a CANCEL
//! shares its INVITE's branch, RFC 3261 §17.1.3).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use super::message::grammar::split_list;
use super::message::header::{CSeq, Via};
use super::message::{Headers, Method, Request, Response};
use super::timer_queue::{TimerKey, TimerQueue};
use super::timers::Timers;
use super::transport::{Link, SendError};

/// Why a request got no final response.
#[derive(Debug, Error)]
pub enum RequestError {
    /// It could not be sent.
    #[error("could not send: {0}")]
    Send(#[from] SendError),
    /// Timer F (or B): no final response in 64·T1, which counts as 408 Request Timeout.
    #[error("no response within 64*T1")]
    Timeout,
    /// The request has no top Via with a branch to match responses by.
    #[error("request without a Via branch")]
    NoBranch,
    /// The connection it went on closed before any response: a transport error (RFC 3261
    /// §17.1.4), which the TU takes as 503 and may try another server for.
    #[error("the connection closed before a final response")]
    ConnectionClosed,
}

// Most entries are INVITEs (the non-INVITEs, BYEs, end within a round trip): boxing the large
// variant would add an allocation to nearly every entry and save none.
#[allow(clippy::large_enum_variant)]
enum Pending {
    /// A non-INVITE request awaiting its final response.
    NonInvite(oneshot::Sender<Response>),
    /// An INVITE: responses stream to the TU; after a non-2xx final, retransmitted finals are
    /// answered with the same ACK (Timer D).
    Invite {
        responses: mpsc::UnboundedSender<Response>,
        request: Arc<Request>,
        link: Link,
        /// The INVITE as sent, for Timer A.
        bytes: Bytes,
        proceeding: bool,
        ack: Option<Bytes>,
        /// Timers A and B while they still apply (no response yet), cancelled by the first
        /// response: otherwise an answered INVITE's Timer B would wait out its 32 s.
        waiting: WaitingTimers,
    },
}

/// An INVITE's Timer A (the next resend, UDP only) and Timer B, as set in the timer queue.
#[derive(Default)]
struct WaitingTimers {
    resend: Option<TimerKey>,
    give_up: Option<TimerKey>,
}

/// What a client transaction's timer does when it fires: nothing, when the transaction has
/// moved on since (Timers A and B are cancelled by the first response, Timer D never).
#[derive(Debug)]
enum ClientTimer {
    /// Timer A (UDP): the INVITE sent again unless a response came, then again after twice
    /// `interval`, until Timer B.
    Resend { key: Key, interval: Duration, give_up: Instant },
    /// Timer B: no response at all to the INVITE.
    GiveUp(Key),
    /// Timer D: a completed INVITE forgotten after absorbing retransmitted finals.
    Forget(Key),
}

/// How long a completed INVITE transaction on UDP absorbs retransmitted finals (Timer D, at
/// least 32 s).
const TIMER_D: Duration = Duration::from_secs(32);

/// A client transaction's key: the top Via's branch and the CSeq method (RFC 3261 §17.1.3).
type Key = (String, Method);

/// The client transactions under way, by branch and method.
pub struct ClientTransactions {
    pending: Mutex<HashMap<Key, Pending>>,
    timers: Timers,
    /// The INVITE transactions' Timers A, B and D, in one queue served by one task.
    timer_queue: TimerQueue<ClientTimer>,
    /// Stream connections INVITEs went out on, each watched by one task (not one per INVITE)
    /// so that its closing ends the INVITEs still without a response.
    watched: Mutex<Vec<Link>>,
}

fn key_of(headers: &Headers) -> Option<Key> {
    let top_via = split_list(headers.get("Via")?).next()?;
    let branch = Via::branch_of(top_via)?.to_owned();
    Some((branch, headers.parsed::<CSeq>()?.method))
}

impl ClientTransactions {
    /// An empty table using `timers`.
    pub fn new(timers: Timers) -> Arc<Self> {
        Arc::new_cyclic(|table: &std::sync::Weak<Self>| {
            let table = table.clone();
            let timer_queue = TimerQueue::start(move |timer: ClientTimer| {
                if let Some(table) = table.upgrade() {
                    table.fire(timer);
                }
            });
            Self { pending: Mutex::new(HashMap::new()), timers, timer_queue, watched: Mutex::default() }
        })
    }

    fn pending(&self) -> MutexGuard<'_, HashMap<Key, Pending>> {
        self.pending.lock()
    }

    /// Client transactions alive, including INVITEs that only absorb retransmitted finals (Timer D).
    pub fn live(&self) -> usize {
        self.pending().len()
    }

    /// Client transactions still waiting for their final response.
    pub fn in_progress(&self) -> usize {
        self.pending().values().filter(|pending| !matches!(pending, Pending::Invite { ack: Some(_), .. })).count()
    }

    /// Hands a response to its transaction; gives it back if none matches (a stray response).
    pub fn on_response(self: &Arc<Self>, response: Response) -> Option<Response> {
        let Some(branch) = key_of(&response.headers) else { return Some(response) };
        let mut pending = self.pending();
        match pending.get_mut(&branch) {
            None => Some(response),
            Some(Pending::NonInvite(_)) if response.status < 200 => None,
            Some(Pending::NonInvite(_)) => {
                if let Some(Pending::NonInvite(reply)) = pending.remove(&branch) {
                    let _ = reply.send(response);
                }
                None
            }
            Some(Pending::Invite { ack: Some(ack), link, .. }) => {
                // Completed: a retransmitted final gets the same ACK again.
                crate::metrics::retransmitted("request");
                let _ = link.send(ack.clone());
                None
            }
            Some(Pending::Invite { responses, request, link, proceeding, ack, waiting, .. }) => {
                // Any response stops Timers A and B (RFC 3261 §17.1.1.2).
                self.cancel(waiting);
                match response.status.as_u16() {
                    100..=199 => *proceeding = true,
                    200..=299 => {
                        // The TU acknowledges a 2xx end to end; the transaction ends here.
                        let _ = responses.send(response);
                        pending.remove(&branch);
                        return None;
                    }
                    _ => {
                        crate::metrics::sent_request(&Method::Ack);
                        let bytes = Bytes::from(ack_for(request, &response).to_bytes());
                        let _ = link.send(bytes.clone());
                        *ack = Some(bytes);
                        let _ = responses.send(response);
                        // Timer D: absorb retransmitted finals for 32 s on UDP, none on streams.
                        if link.transport().is_reliable() {
                            pending.remove(&branch);
                        } else {
                            self.timer_queue.after(TIMER_D, ClientTimer::Forget(branch));
                        }
                        return None;
                    }
                }
                let _ = responses.send(response);
                None
            }
        }
    }

    /// Sends a non-INVITE request on `link` and waits for its final response. The request's top
    /// Via must carry a unique branch.
    pub async fn send(&self, request: &Request, link: &Link) -> Result<Response, RequestError> {
        let branch = key_of(&request.headers).ok_or(RequestError::NoBranch)?;
        let (reply, response) = oneshot::channel();
        self.pending().insert(branch.clone(), Pending::NonInvite(reply));
        crate::metrics::sent_request(&request.method);
        let bytes = Bytes::from(request.to_bytes());
        if let Err(error) = link.send(bytes.clone()) {
            self.pending().remove(&branch);
            return Err(error.into());
        }
        let timers = self.timers;
        let deadline = tokio::time::Instant::now() + timers.t1 * 64;
        let mut response = std::pin::pin!(response);
        let mut interval = timers.t1;
        loop {
            // Timer E on UDP; on streams only Timer F runs.
            let wake = if link.transport().is_reliable() {
                deadline
            } else {
                (tokio::time::Instant::now() + interval).min(deadline)
            };
            tokio::select! {
                answer = &mut response => return answer.map_err(|_| RequestError::Timeout),
                () = link.closed() => {
                    self.pending().remove(&branch);
                    debug!(branch = %branch.0, "connection closed before a final response");
                    return Err(RequestError::ConnectionClosed);
                }
                () = tokio::time::sleep_until(wake) => {
                    if tokio::time::Instant::now() >= deadline {
                        self.pending().remove(&branch);
                        debug!(branch = %branch.0, "Timer F: no final response");
                        return Err(RequestError::Timeout);
                    }
                    crate::metrics::retransmitted("request");
                    let _ = link.send(bytes.clone());
                    interval = (interval * 2).min(timers.t2);
                }
            }
        }
    }

    /// Sends an INVITE on `link`; its responses (provisional and final) arrive on the returned
    /// channel, which closes after the final one, or after Timer B with no final response.
    pub fn send_invite(
        self: &Arc<Self>,
        request: Request,
        link: Link,
    ) -> Result<mpsc::UnboundedReceiver<Response>, RequestError> {
        let branch = key_of(&request.headers).ok_or(RequestError::NoBranch)?;
        let (responses, receiver) = mpsc::unbounded_channel();
        crate::metrics::sent_request(&request.method);
        let bytes = Bytes::from(request.to_bytes());
        let request = Arc::new(request);
        let reliable = link.transport().is_reliable();
        // Set before the entry exists: the earliest, Timer A, is T1 away.
        let now = Instant::now();
        let give_up = now + self.timers.t1 * 64;
        let interval = self.timers.t1;
        let waiting = WaitingTimers {
            resend: (!reliable).then(|| {
                self.timer_queue.at(now + interval, ClientTimer::Resend { key: branch.clone(), interval, give_up })
            }),
            give_up: Some(self.timer_queue.at(give_up, ClientTimer::GiveUp(branch.clone()))),
        };
        self.pending().insert(
            branch.clone(),
            Pending::Invite {
                responses,
                request,
                link: link.clone(),
                bytes: bytes.clone(),
                proceeding: false,
                ack: None,
                waiting,
            },
        );
        if let Err(error) = link.send(bytes) {
            self.forget(&branch);
            return Err(error.into());
        }
        if reliable {
            self.watch(&link);
        }
        Ok(receiver)
    }

    /// What a timer does, if its transaction still waits for it.
    fn fire(&self, timer: ClientTimer) {
        let mut pending = self.pending();
        match timer {
            ClientTimer::Resend { key, interval, give_up } => {
                let Some(Pending::Invite { proceeding: false, ack: None, link, bytes, waiting, .. }) =
                    pending.get_mut(&key)
                else {
                    return;
                };
                crate::metrics::retransmitted("request");
                let _ = link.send(bytes.clone());
                // Doubling without the T2 cap (RFC 3261 §17.1.1.2); Timer B ends it.
                let interval = interval * 2;
                let next = Instant::now() + interval;
                waiting.resend =
                    (next < give_up).then(|| self.timer_queue.at(next, ClientTimer::Resend { key, interval, give_up }));
            }
            ClientTimer::GiveUp(key) => {
                if let Some(Pending::Invite { proceeding: false, ack: None, .. }) = pending.get(&key) {
                    debug!(branch = %key.0, "Timer B: no response to the INVITE");
                    // Dropping the sender closes the TU's channel with no final response.
                    pending.remove(&key);
                }
            }
            ClientTimer::Forget(key) => {
                pending.remove(&key);
            }
        }
    }

    /// Watches `link`'s connection, unless it is watched already.
    fn watch(self: &Arc<Self>, link: &Link) {
        let mut watched = self.watched.lock();
        if watched.iter().any(|known| known.same_connection(link)) {
            return;
        }
        watched.push(link.clone());
        let table = Arc::downgrade(self);
        let link = link.clone();
        tokio::spawn(async move {
            link.closed().await;
            if let Some(table) = table.upgrade() {
                table.connection_closed(&link);
            }
        });
    }
}

impl ClientTransactions {
    /// Ends the INVITE transactions on `link` when its connection closed before any response
    /// (a transport error, RFC 3261 §17.1.4): each TU's channel closes, as after Timer B, at
    /// once rather than 32 s later, so that it can try another server. Once a response came,
    /// the server may still send the final one over a new connection (§18.2.2): the TU's own
    /// timers decide then.
    fn connection_closed(&self, link: &Link) {
        self.watched.lock().retain(|known| !known.same_connection(link));
        self.pending().retain(|key, pending| match pending {
            Pending::Invite { proceeding: false, ack: None, link: on, waiting, .. } if on.same_connection(link) => {
                debug!(branch = %key.0, "connection closed before a final response to the INVITE");
                self.cancel(waiting);
                false
            }
            _ => true,
        });
    }

    /// Takes back an INVITE's Timers A and B, if still set.
    fn cancel(&self, waiting: &mut WaitingTimers) {
        for key in [waiting.resend.take(), waiting.give_up.take()].into_iter().flatten() {
            self.timer_queue.cancel(key);
        }
    }

    /// Ends the transaction `key` at once: its entry and its timers go.
    fn forget(&self, key: &Key) {
        if let Some(Pending::Invite { mut waiting, .. }) = self.pending().remove(key) {
            self.cancel(&mut waiting);
        }
    }

    /// Ends the INVITE transaction of `invite` without a final response (a CANCEL that got no
    /// 487 within 64·T1, RFC 3261 §9.1): its response channel closes.
    pub fn forget_invite(&self, invite: &Request) {
        if let Some(key) = key_of(&invite.headers) {
            self.forget(&key);
        }
    }
}

/// The CANCEL for `invite` (RFC 3261 §9.1): the same Request-URI, Call-ID, From, To, Route and
/// top Via, with CSeq method CANCEL.
pub fn cancel_for(invite: &Request) -> Request {
    let mut headers = Headers::new();
    // The top Via and the Routes are copied as sent, not rewritten: the CANCEL must match the
    // INVITE's transaction hop by hop (RFC 3261 §9.1).
    if let Some(via) = invite.headers.get("Via").and_then(|via| split_list(via).next()) {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "To", "Call-ID"] {
        if let Some(value) = invite.headers.get(name) {
            headers.push(name, value);
        }
    }
    let number = invite.headers.parsed::<CSeq>().map_or(1, |cseq| cseq.number);
    headers.push_typed(&CSeq { number, method: Method::Cancel });
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request { method: Method::Cancel, uri: invite.uri.clone(), headers, body: Bytes::new() }
}

/// The ACK for a non-2xx final response (RFC 3261 §17.1.1.3): same Request-URI, Call-ID, From,
/// Route and top Via as the INVITE, the response's To, and CSeq with method ACK.
fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = invite.headers.get("Via").and_then(|via| split_list(via).next()) {
        headers.push("Via", via);
    }
    headers.push("Max-Forwards", "70");
    for name in ["From", "Call-ID"] {
        if let Some(value) = invite.headers.get(name) {
            headers.push(name, value);
        }
    }
    if let Some(to) = response.headers.get("To") {
        headers.push("To", to);
    }
    let number = invite.headers.parsed::<CSeq>().map_or(1, |cseq| cseq.number);
    headers.push_typed(&CSeq { number, method: Method::Ack });
    for route in invite.headers.get_all("Route") {
        headers.push("Route", route);
    }
    Request { method: Method::Ack, uri: invite.uri.clone(), headers, body: Bytes::new() }
}

#[cfg(test)]
mod tests {
    //! Timers A, B, D, E and F on tokio's paused clock: what the peer receives, and when.

    use super::*;
    use crate::message::{Message, StatusCode};
    use crate::test_support::{arrivals, assert_schedule, millis, request, udp_link};
    use crate::transport::response_to;
    use tokio::time::Instant;

    fn answer(to: &Request, status: StatusCode) -> Response {
        let mut response = response_to(&to.headers, status, status.reason_phrase()).unwrap();
        response.headers.set("To", "<sip:bob@127.0.0.1>;tag=b1");
        response
    }

    #[tokio::test(start_paused = true)]
    async fn a_non_invite_is_sent_again_doubling_up_to_t2_and_given_up_at_64_t1() {
        let (link, peer) = udp_link().await;
        let clients = ClientTransactions::new(Timers::default());
        let start = Instant::now();
        let sender = clients.clone();
        let sending = tokio::spawn(async move { sender.send(&request("OPTIONS", "z9hG4bKe"), &link).await });
        let seen = arrivals(&peer, start, Duration::from_secs(40)).await;
        // Timer E from T1 doubling to T2 (RFC 3261 §17.1.2.2), Timer F at 64·T1.
        let expected = [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];
        assert_schedule(&millis(&seen), &expected);
        assert!(matches!(sending.await.unwrap(), Err(RequestError::Timeout)));
        assert_eq!(clients.pending().len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_response_ends_the_retransmissions_of_a_non_invite() {
        let (link, peer) = udp_link().await;
        let clients = ClientTransactions::new(Timers::default());
        let options = request("OPTIONS", "z9hG4bKf");
        let start = Instant::now();
        let sender = clients.clone();
        let sent = options.clone();
        let sending = tokio::spawn(async move { sender.send(&sent, &link).await });
        let first = arrivals(&peer, start, Duration::from_millis(1000)).await;
        assert_schedule(&millis(&first), &[0, 500]);
        assert!(clients.on_response(answer(&options, StatusCode::OK)).is_none());
        assert_eq!(sending.await.unwrap().unwrap().status, StatusCode::OK);
        assert!(arrivals(&peer, start, Duration::from_secs(40)).await.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_invite_doubles_without_cap_and_closes_at_timer_b() {
        let (link, peer) = udp_link().await;
        let clients = ClientTransactions::new(Timers::default());
        let start = Instant::now();
        let mut responses = clients.send_invite(request("INVITE", "z9hG4bKa"), link).unwrap();
        let watcher = tokio::spawn(async move { (responses.recv().await.is_none(), Instant::now()) });
        let seen = arrivals(&peer, start, Duration::from_secs(40)).await;
        // Timer A doubles with no T2 cap (§17.1.1.2); Timer B at 64·T1 ends the transaction.
        assert_schedule(&millis(&seen), &[0, 500, 1500, 3500, 7500, 15500, 31500]);
        let (closed, at) = watcher.await.unwrap();
        assert!(closed, "no response was expected");
        assert_eq!((at - start).as_secs(), 32);
    }

    #[tokio::test(start_paused = true)]
    async fn a_provisional_stops_timer_a_and_a_refusal_is_acked_again_until_timer_d() {
        let (link, peer) = udp_link().await;
        let clients = ClientTransactions::new(Timers::default());
        let invite = request("INVITE", "z9hG4bKp");
        let start = Instant::now();
        let mut responses = clients.send_invite(invite.clone(), link).unwrap();
        let sent = arrivals(&peer, start, Duration::from_millis(1000)).await;
        assert_schedule(&millis(&sent), &[0, 500]);
        assert!(clients.on_response(answer(&invite, StatusCode::TRYING)).is_none());
        assert_eq!(clients.timer_queue.len(), 0, "the 100 took Timers A and B back");
        assert!(arrivals(&peer, start, Duration::from_secs(10)).await.is_empty(), "Timer A goes on after a 100");
        assert!(clients.on_response(answer(&invite, StatusCode::BUSY_HERE)).is_none());
        assert_eq!(clients.timer_queue.len(), 1, "Timer D only");
        let refused_at = Instant::now();
        let acked = arrivals(&peer, start, Duration::from_secs(11)).await;
        let Some((_, Message::Request(ack))) = acked.first() else { panic!("no ACK: {acked:?}") };
        assert_eq!((ack.method.clone(), ack.headers.parsed::<CSeq>().map(|cseq| cseq.number)), (Method::Ack, Some(1)));
        assert_eq!(responses.recv().await.map(|response| response.status), Some(StatusCode::TRYING));
        assert_eq!(responses.recv().await.map(|response| response.status), Some(StatusCode::BUSY_HERE));
        // A retransmitted 486 inside Timer D (32 s on UDP) gets the ACK again; after it, none.
        tokio::time::sleep_until(refused_at + Duration::from_millis(31_900)).await;
        assert!(clients.on_response(answer(&invite, StatusCode::BUSY_HERE)).is_none());
        assert_eq!(arrivals(&peer, start, Duration::from_millis(41_950)).await.len(), 1);
        tokio::time::sleep_until(refused_at + Duration::from_millis(32_100)).await;
        assert!(clients.on_response(answer(&invite, StatusCode::BUSY_HERE)).is_some(), "Timer D is over");
    }

    #[tokio::test(start_paused = true)]
    async fn an_answered_invite_leaves_no_timer_waiting() {
        let (link, _peer) = udp_link().await;
        let clients = ClientTransactions::new(Timers::default());
        let invite = request("INVITE", "z9hG4bKok");
        let mut responses = clients.send_invite(invite.clone(), link).unwrap();
        assert_eq!(clients.timer_queue.len(), 2, "Timers A and B");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(clients.timer_queue.len(), 2, "Timer A set again, Timer B");
        assert!(clients.on_response(answer(&invite, StatusCode::OK)).is_none());
        assert_eq!(responses.recv().await.map(|response| response.status), Some(StatusCode::OK));
        // Neither waits out the 32 s of Timer B for a transaction that has ended.
        assert_eq!((clients.pending().len(), clients.timer_queue.len()), (0, 0));
    }

    /// A stream link whose connection closes when the returned writer's end is dropped.
    fn stream_link() -> (Link, crate::transport::QueueReceiver) {
        let (queue, writer) = crate::transport::send_queue();
        let addr = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        (Link::stream(crate::transport::Transport::Tcp, addr(5060), addr(40000), queue), writer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closing_before_any_response_ends_the_invite_at_once() {
        let (link, writer) = stream_link();
        let (other_link, _other_writer) = stream_link();
        let clients = ClientTransactions::new(Timers::default());
        let mut responses = clients.send_invite(request("INVITE", "z9hG4bKc"), link.clone()).unwrap();
        let mut second = clients.send_invite(request("INVITE", "z9hG4bKc2"), link).unwrap();
        let _elsewhere = clients.send_invite(request("INVITE", "z9hG4bKc3"), other_link).unwrap();
        // One watcher per connection, not per INVITE.
        assert_eq!(clients.watched.lock().len(), 2);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        drop(writer);
        // A transport error (RFC 3261 §17.1.4): the TU hears so now, not after Timer B, so that
        // it can try another server.
        let ended = tokio::time::timeout(Duration::from_secs(40), responses.recv()).await;
        assert!(matches!(ended, Ok(None)), "{ended:?}");
        assert_eq!(Instant::now(), start);
        assert!(second.recv().await.is_none());
        // The INVITE on the other connection waits on.
        assert_eq!(clients.pending().len(), 1);
        assert_eq!(clients.watched.lock().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_ringing_invite_outlives_its_connection() {
        let (link, writer) = stream_link();
        let clients = ClientTransactions::new(Timers::default());
        let invite = request("INVITE", "z9hG4bKr");
        let mut responses = clients.send_invite(invite.clone(), link).unwrap();
        assert!(clients.on_response(answer(&invite, StatusCode::RINGING)).is_none());
        assert_eq!(responses.recv().await.map(|response| response.status), Some(StatusCode::RINGING));
        drop(writer);
        // The server may send the final response over a new connection (§18.2.2).
        let waiting = tokio::time::timeout(Duration::from_secs(60), responses.recv()).await;
        assert!(waiting.is_err(), "the transaction ended with its connection: {waiting:?}");
        assert!(clients.on_response(answer(&invite, StatusCode::OK)).is_none());
        assert_eq!(responses.recv().await.map(|response| response.status), Some(StatusCode::OK));
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closing_under_a_non_invite_fails_it_at_once() {
        let (link, writer) = stream_link();
        let clients = ClientTransactions::new(Timers::default());
        let sender = clients.clone();
        let sending = tokio::spawn(async move { sender.send(&request("OPTIONS", "z9hG4bKg"), &link).await });
        tokio::time::sleep(Duration::from_secs(1)).await;
        drop(writer);
        assert!(matches!(sending.await.unwrap(), Err(RequestError::ConnectionClosed)));
        assert_eq!(clients.pending().len(), 0);
    }
}
