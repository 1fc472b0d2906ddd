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
use tracing::debug;

use super::message::grammar::split_list;
use super::message::header::{CSeq, Via};
use super::message::{Headers, Method, Request, Response};
use super::timer_queue::TimerQueue;
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

enum Pending {
    /// A non-INVITE request awaiting its final response.
    NonInvite(oneshot::Sender<Response>),
    /// An INVITE: responses stream to the TU; after a non-2xx final, retransmitted finals are
    /// answered with the same ACK (Timer D).
    Invite {
        responses: mpsc::UnboundedSender<Response>,
        request: Arc<Request>,
        link: Link,
        proceeding: bool,
        ack: Option<Bytes>,
        /// Timers A and B, and on a stream the watch on its connection until a response comes;
        /// stopped by the first response so no task sleeps out Timer B.
        timer: Option<tokio::task::AbortHandle>,
    },
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
    /// Timer D: completed INVITE transactions forgotten after absorbing retransmitted finals.
    forget: TimerQueue<Key>,
}

fn key_of(headers: &Headers) -> Option<Key> {
    let branch = headers.parsed::<Via>()?.branch()?.to_owned();
    Some((branch, headers.parsed::<CSeq>()?.method))
}

impl ClientTransactions {
    /// An empty table using `timers`.
    pub fn new(timers: Timers) -> Arc<Self> {
        Arc::new_cyclic(|table: &std::sync::Weak<Self>| {
            let table = table.clone();
            let forget = TimerQueue::start(move |key: Key| {
                if let Some(table) = table.upgrade() {
                    table.pending().remove(&key);
                }
            });
            Self { pending: Mutex::new(HashMap::new()), timers, forget }
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
            Some(Pending::Invite { responses, request, link, proceeding, ack, timer }) => {
                if let Some(timer) = timer.take() {
                    timer.abort();
                }
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
                            self.forget.after(TIMER_D, branch);
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
        self.pending().insert(
            branch.clone(),
            Pending::Invite { responses, request, link: link.clone(), proceeding: false, ack: None, timer: None },
        );
        if let Err(error) = link.send(bytes.clone()) {
            self.pending().remove(&branch);
            return Err(error.into());
        }
        let table = self.clone();
        let timers = self.timers;
        let key = branch.clone();
        let task = tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + timers.t1 * 64;
            let mut interval = timers.t1;
            let reliable = link.transport().is_reliable();
            // Timer A (UDP only) until a provisional or final; Timer B gives up.
            loop {
                let wake = if reliable { deadline } else { (tokio::time::Instant::now() + interval).min(deadline) };
                tokio::select! {
                    () = tokio::time::sleep_until(wake) => {}
                    () = link.closed() => return table.connection_closed(&branch),
                }
                let mut pending = table.pending();
                match pending.get(&branch) {
                    Some(Pending::Invite { proceeding: false, ack: None, .. })
                        if tokio::time::Instant::now() < deadline =>
                    {
                        crate::metrics::retransmitted("request");
                        let _ = link.send(bytes.clone());
                        interval *= 2;
                    }
                    Some(Pending::Invite { proceeding: false, ack: None, .. }) => {
                        debug!(branch = %branch.0, "Timer B: no response to the INVITE");
                        // Dropping the sender closes the TU's channel with no final response.
                        pending.remove(&branch);
                        return;
                    }
                    _ => return,
                }
            }
        });
        if let Some(Pending::Invite { timer, .. }) = self.pending().get_mut(&key) {
            *timer = Some(task.abort_handle());
        } else {
            // Answered before the timer was registered.
            task.abort();
        }
        Ok(receiver)
    }
}

impl ClientTransactions {
    /// Ends the INVITE transaction `key` when its connection closed before any response (a
    /// transport error, RFC 3261 §17.1.4): the TU's channel closes, as after Timer B, at once
    /// rather than 32 s later, so that it can try another server. Once a response came, the
    /// server may still send the final one over a new connection (§18.2.2): the TU's own
    /// timers decide then.
    fn connection_closed(&self, key: &Key) {
        let mut pending = self.pending();
        if let Some(Pending::Invite { proceeding: false, ack: None, .. }) = pending.get(key) {
            debug!(branch = %key.0, "connection closed before a final response to the INVITE");
            pending.remove(key);
        }
    }

    /// Ends the INVITE transaction of `invite` without a final response (a CANCEL that got no
    /// 487 within 64·T1, RFC 3261 §9.1): its response channel closes.
    pub fn forget_invite(&self, invite: &Request) {
        if let Some(key) = key_of(&invite.headers) {
            if let Some(Pending::Invite { timer: Some(timer), .. }) = self.pending().remove(&key) {
                timer.abort();
            }
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
        assert!(arrivals(&peer, start, Duration::from_secs(10)).await.is_empty(), "Timer A goes on after a 100");
        assert!(clients.on_response(answer(&invite, StatusCode::BUSY_HERE)).is_none());
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

    /// A stream link whose connection closes when the returned writer's end is dropped.
    fn stream_link() -> (Link, crate::transport::QueueReceiver) {
        let (queue, writer) = crate::transport::send_queue();
        let addr = |port| std::net::SocketAddr::from(([127, 0, 0, 1], port));
        (Link::stream(crate::transport::Transport::Tcp, addr(5060), addr(40000), queue), writer)
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_closing_before_any_response_ends_the_invite_at_once() {
        let (link, writer) = stream_link();
        let clients = ClientTransactions::new(Timers::default());
        let mut responses = clients.send_invite(request("INVITE", "z9hG4bKc"), link).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let start = Instant::now();
        drop(writer);
        // A transport error (RFC 3261 §17.1.4): the TU hears so now, not after Timer B, so that
        // it can try another server.
        let ended = tokio::time::timeout(Duration::from_secs(40), responses.recv()).await;
        assert!(matches!(ended, Ok(None)), "{ended:?}");
        assert_eq!(Instant::now(), start);
        assert_eq!(clients.pending().len(), 0);
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
