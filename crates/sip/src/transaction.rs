//! Server transactions (RFC 3261 §17.2, with RFC 6026's Accepted state): retransmissions are
//! answered from the last response, ACKs for non-2xx finals are absorbed, CANCEL is matched to
//! its INVITE, and on UDP finals are retransmitted (Timer G) until ACK or Timer H. Every timer
//! waits in one [`TimerQueue`] per layer, not in a task per transaction.
//!
//! Requests that start a transaction go up to a [`TransactionUser`].

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::{Mutex, MutexGuard};
use tokio::time::Instant;
use tracing::{debug, info};

use super::client::ClientTransactions;
use super::message::header::Via;
use super::message::validate::{validate_request, Essentials};
use super::message::{Message, Method, Request, Response, StatusCode};
use super::timer_queue::TimerQueue;
use super::timers::Timers;
use super::transport::{response_to, Handler, Link};

/// Identifies a server transaction (RFC 3261 §17.2.3, and §17.2.3's RFC 2543 fallback).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum TransactionKey {
    /// Branch with the magic cookie, sent-by (host lower-cased, port or 0), and the method
    /// (ACK folded into INVITE).
    Rfc3261 { branch: String, sent_by: (String, u16), method: Method },
    /// Without a usable branch: Call-ID, CSeq number, From tag, top Via and method.
    Rfc2543 { call_id: String, cseq: u32, from_tag: String, via: String, method: Method },
}

impl TransactionKey {
    fn of(essentials: &Essentials, method: &Method) -> Option<Self> {
        let via: &Via = essentials.vias.first()?;
        let method = match method {
            Method::Ack => Method::Invite,
            other => other.clone(),
        };
        if via.has_rfc3261_branch() {
            let sent_by = (via.host.to_ascii_lowercase(), via.port.unwrap_or(0));
            return Some(Self::Rfc3261 { branch: via.branch()?.to_owned(), sent_by, method });
        }
        Some(Self::Rfc2543 {
            call_id: essentials.call_id.clone(),
            cseq: essentials.cseq.number,
            from_tag: essentials.from.tag().unwrap_or_default().to_owned(),
            via: via.to_string(),
            method,
        })
    }

    fn with_method(&self, method: Method) -> Self {
        let mut key = self.clone();
        match &mut key {
            Self::Rfc3261 { method: m, .. } | Self::Rfc2543 { method: m, .. } => *m = method,
        }
        key
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No final response yet.
    Proceeding,
    /// A 2xx to INVITE was sent; retransmitted INVITEs are absorbed (RFC 6026).
    Accepted,
    /// A final response was sent; retransmissions get it again.
    Completed,
    /// The ACK for a non-2xx final arrived.
    Confirmed,
}

struct Inner {
    state: State,
    last_response: Option<Bytes>,
    cancelled: bool,
}

struct Transaction {
    id: u64,
    key: TransactionKey,
    is_invite: bool,
    link: Link,
    inner: Mutex<Inner>,
}

impl Transaction {
    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }
}

const SHARDS: usize = 32;

/// The transaction table, in shards so that connections do not contend on one lock.
struct Table {
    shards: Vec<Mutex<HashMap<TransactionKey, Arc<Transaction>>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Table {
    fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), hasher: Default::default() }
    }

    fn shard(&self, key: &TransactionKey) -> MutexGuard<'_, HashMap<TransactionKey, Arc<Transaction>>> {
        let index = (self.hasher.hash_one(key) as usize) % SHARDS;
        self.shards[index].lock()
    }

    fn get(&self, key: &TransactionKey) -> Option<Arc<Transaction>> {
        self.shard(key).get(key).cloned()
    }

    /// Removes `transaction`, unless its key now names another (a request that came again
    /// after the first was forgotten).
    fn remove(&self, transaction: &Arc<Transaction>) {
        let mut shard = self.shard(&transaction.key);
        if shard.get(&transaction.key).is_some_and(|found| Arc::ptr_eq(found, transaction)) {
            shard.remove(&transaction.key);
        }
    }

    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().len()).sum()
    }
}

/// A request that started a server transaction, with the means to answer it.
pub struct IncomingRequest {
    /// The request.
    pub request: Request,
    /// Its typed essentials.
    pub essentials: Essentials,
    /// The transaction, to respond on.
    pub transaction: ServerTransaction,
}

/// What sits above the transaction layer: the UAS core and dialogs.
pub trait TransactionUser: Send + Sync + 'static {
    /// A request that starts a new server transaction (never an ACK).
    fn on_request(&self, incoming: IncomingRequest);
    /// An ACK that matched no transaction: the ACK for a 2xx, end to end.
    fn on_ack(&self, request: Request, essentials: Essentials, link: &Link);
    /// A CANCEL matched this INVITE before its final response (the CANCEL is already answered).
    fn on_cancel(&self, invite: ServerTransaction);
    /// A response that matched no client transaction: a retransmitted 2xx to an INVITE, which
    /// the dialog answers with its ACK again (RFC 3261 §13.2.2.4).
    fn on_stray_response(&self, response: Response);
}

/// A handle on one server transaction.
#[derive(Clone)]
pub struct ServerTransaction {
    transaction: Arc<Transaction>,
    layer: Arc<Shared>,
}

impl std::fmt::Debug for ServerTransaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerTransaction({:?})", self.transaction.key)
    }
}

struct Shared {
    table: Table,
    timers: Timers,
    created: AtomicU64,
    queue: TimerQueue<ServerTimer>,
}

/// What a server transaction's timer does when it fires; each checks that it still applies.
enum ServerTimer {
    /// Timer G (UDP): the final response again while unacknowledged, then the next Timer G
    /// (`interval` doubled up to T2) as long as it comes before Timer H at `give_up`.
    Retransmit { transaction: Weak<Transaction>, interval: Duration, give_up: Instant },
    /// Timer H: no ACK for the final response came.
    GiveUp(Weak<Transaction>),
    /// Timers I, J and L: the time to absorb retransmissions is over.
    Forget(Weak<Transaction>),
}

impl Shared {
    fn fire(&self, timer: ServerTimer) {
        match timer {
            ServerTimer::Retransmit { transaction, interval, give_up } => {
                let Some(transaction) = transaction.upgrade() else { return };
                let bytes = {
                    let inner = transaction.inner();
                    match (inner.state, &inner.last_response) {
                        (State::Completed, Some(bytes)) => bytes.clone(),
                        _ => return,
                    }
                };
                crate::metrics::retransmitted("response");
                let _ = transaction.link.send(bytes);
                let interval = (interval * 2).min(self.timers.t2);
                if Instant::now() + interval < give_up {
                    let transaction = Arc::downgrade(&transaction);
                    self.queue.after(interval, ServerTimer::Retransmit { transaction, interval, give_up });
                }
            }
            ServerTimer::GiveUp(transaction) => {
                let Some(transaction) = transaction.upgrade() else { return };
                if transaction.inner().state == State::Completed {
                    debug!(key = ?transaction.key, "Timer H: no ACK for the final response");
                    self.table.remove(&transaction);
                }
            }
            ServerTimer::Forget(transaction) => {
                if let Some(transaction) = transaction.upgrade() {
                    self.table.remove(&transaction);
                }
            }
        }
    }
}

/// The transaction layer: a transport [`Handler`] that feeds a [`TransactionUser`].
pub struct TransactionLayer {
    shared: Arc<Shared>,
    user: Arc<dyn TransactionUser>,
    clients: Arc<ClientTransactions>,
}

impl TransactionLayer {
    /// A layer delivering requests to `user` and responses to `clients`.
    pub fn new(user: Arc<dyn TransactionUser>, clients: Arc<ClientTransactions>, timers: Timers) -> Self {
        let shared = Arc::new_cyclic(|layer: &Weak<Shared>| {
            let layer = layer.clone();
            Shared {
                table: Table::new(),
                timers,
                created: AtomicU64::new(0),
                queue: TimerQueue::start(move |timer| {
                    if let Some(shared) = layer.upgrade() {
                        shared.fire(timer);
                    }
                }),
            }
        });
        Self { shared, user, clients }
    }

    /// Server transactions alive now.
    pub fn live_transactions(&self) -> usize {
        self.shared.table.len()
    }

    fn on_request(&self, request: Request, link: &Link) {
        let essentials = match validate_request(&request) {
            Ok(essentials) => essentials,
            Err(rejection) => {
                info!(peer = %link.peer(), method = %request.method, reason = %rejection.reason, "request refused");
                if request.method != Method::Ack {
                    if let Some(response) = response_to(&request.headers, rejection.status, &rejection.reason) {
                        crate::metrics::sent_response(response.status);
                        let _ = link.send(Bytes::from(response.to_bytes()));
                    }
                }
                return;
            }
        };
        let Some(key) = TransactionKey::of(&essentials, &request.method) else { return };
        match request.method {
            Method::Ack => match self.shared.table.get(&key) {
                Some(transaction) => absorb_ack(&self.shared, &transaction),
                None => self.user.on_ack(request, essentials, link),
            },
            Method::Cancel => self.cancel(&request, &key, link),
            _ => {
                let mut shard = self.shared.table.shard(&key);
                if let Some(existing) = shard.get(&key).cloned() {
                    drop(shard);
                    // A retransmission: answer with the last response, where it came from
                    // (the peer's address may have changed behind a NAT).
                    if let Some(bytes) = existing.inner().last_response.clone() {
                        crate::metrics::retransmitted("response");
                        let _ = link.send(bytes);
                    }
                    return;
                }
                let id = self.shared.created.fetch_add(1, Ordering::Relaxed);
                let transaction = Arc::new(Transaction {
                    id,
                    key: key.clone(),
                    is_invite: request.method == Method::Invite,
                    link: link.clone(),
                    inner: Mutex::new(Inner { state: State::Proceeding, last_response: None, cancelled: false }),
                });
                shard.insert(key, transaction.clone());
                drop(shard);
                let handle = ServerTransaction { transaction, layer: self.shared.clone() };
                // 100 Trying stops the sender's INVITE retransmissions; it is left out only when
                // the TU answered while handling the request (RFC 3261 §17.2.1), which halves the
                // messages of an immediate reject.
                let trying = match request.method {
                    Method::Invite => response_to(&request.headers, StatusCode::TRYING, "Trying"),
                    _ => None,
                };
                self.user.on_request(IncomingRequest { request, essentials, transaction: handle.clone() });
                if let Some(trying) = trying {
                    if handle.transaction.inner().last_response.is_none() {
                        handle.respond(trying);
                    }
                }
            }
        }
    }

    fn cancel(&self, request: &Request, key: &TransactionKey, link: &Link) {
        let reply = |status: StatusCode, reason: &str| {
            if let Some(response) = response_to(&request.headers, status, reason) {
                let mut response = response;
                response.add_to_tag(&super::message::new_tag());
                crate::metrics::sent_response(response.status);
                let _ = link.send(Bytes::from(response.to_bytes()));
            }
        };
        let Some(invite) = self.shared.table.get(&key.with_method(Method::Invite)) else {
            reply(StatusCode::CALL_DOES_NOT_EXIST, "Call/Transaction Does Not Exist");
            return;
        };
        reply(StatusCode::OK, "OK");
        let pending = {
            let mut inner = invite.inner();
            let pending = inner.state == State::Proceeding && !inner.cancelled;
            inner.cancelled = true;
            pending
        };
        if pending {
            self.user.on_cancel(ServerTransaction { transaction: invite, layer: self.shared.clone() });
        }
    }
}

fn absorb_ack(shared: &Arc<Shared>, transaction: &Arc<Transaction>) {
    let mut inner = transaction.inner();
    if inner.state != State::Completed {
        return;
    }
    // Timer G, when it fires, finds the final acknowledged and stops.
    inner.state = State::Confirmed;
    drop(inner);
    // Timer I: absorb further ACK retransmissions for T4.
    let reliable = transaction.link.transport().is_reliable();
    linger(shared, transaction, reliable, Linger::Short);
}

/// Which linger time a transaction waits out.
enum Linger {
    /// T4 (Timer I).
    Short,
    /// 64·T1 (Timers J and L).
    Long,
}

/// Ends a transaction: at once on a reliable transport, which brings no retransmissions; on UDP
/// after its linger time, during which retransmissions are absorbed.
fn linger(shared: &Arc<Shared>, transaction: &Arc<Transaction>, reliable: bool, time: Linger) {
    if reliable {
        shared.table.remove(transaction);
        return;
    }
    let after = match time {
        Linger::Short => shared.timers.t4,
        Linger::Long => shared.timers.t1 * 64,
    };
    shared.queue.after(after, ServerTimer::Forget(Arc::downgrade(transaction)));
}

impl Handler for TransactionLayer {
    fn on_message(&self, message: Message, link: &Link) {
        crate::metrics::received(&message);
        match message {
            Message::Request(request) => {
                tracing::trace!(peer = %link.peer(), transport = %link.transport(), method = %request.method, "request");
                self.on_request(request, link)
            }
            Message::Response(response) => {
                if let Some(stray) = self.clients.on_response(response) {
                    debug!(peer = %link.peer(), status = stray.status.as_u16(), "response without a client transaction");
                    self.user.on_stray_response(stray);
                }
            }
        }
    }
}

impl ServerTransaction {
    /// A number unique to this transaction within the layer.
    pub fn id(&self) -> u64 {
        self.transaction.id
    }

    /// The link the request came on.
    pub fn link(&self) -> &Link {
        &self.transaction.link
    }

    /// Whether a final response was sent.
    pub fn is_final(&self) -> bool {
        self.transaction.inner().state != State::Proceeding
    }

    /// Sends `response` and moves the state machine; a response after the final one is refused.
    pub fn respond(&self, response: Response) -> bool {
        self.send_response(response).is_some()
    }

    /// As [`ServerTransaction::respond`], giving back the response as sent (the UA core sends
    /// a 2xx again until its ACK), or `None` when refused.
    pub(crate) fn send_response(&self, response: Response) -> Option<Bytes> {
        let shared = &self.layer;
        let transaction = &self.transaction;
        let reliable = transaction.link.transport().is_reliable();
        let mut inner = transaction.inner();
        if inner.state != State::Proceeding {
            return None;
        }
        let bytes = Bytes::from(response.to_bytes());
        crate::metrics::sent_response(response.status);
        if let Err(error) = transaction.link.send(bytes.clone()) {
            debug!(peer = %transaction.link.peer(), %error, "response not sent");
        }
        inner.last_response = Some(bytes.clone());
        if response.status < 200 {
            return Some(bytes);
        }
        let timers = shared.timers;
        if transaction.is_invite && response.status < 300 {
            // RFC 6026 Accepted: the TU retransmits the 2xx; the transaction only absorbs
            // retransmitted INVITEs, which reliable transports do not produce.
            inner.state = State::Accepted;
            // Retransmitted INVITEs are absorbed, not answered: the 2xx need not be kept.
            inner.last_response = None;
            drop(inner);
            linger(shared, transaction, reliable, Linger::Long);
        } else if transaction.is_invite {
            inner.state = State::Completed;
            drop(inner);
            // Timer G (UDP only) retransmits the final until the ACK; Timer H gives up.
            let give_up = Instant::now() + timers.t1 * 64;
            let weak = Arc::downgrade(transaction);
            if !reliable {
                let first = ServerTimer::Retransmit { transaction: weak.clone(), interval: timers.t1, give_up };
                shared.queue.after(timers.t1, first);
            }
            shared.queue.at(give_up, ServerTimer::GiveUp(weak));
        } else {
            inner.state = State::Completed;
            drop(inner);
            // Timer J: answer retransmitted requests from the stored response.
            linger(shared, transaction, reliable, Linger::Long);
        }
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    //! Timers G, H, I and J on tokio's paused clock: what the peer receives, and how long a
    //! transaction stays.

    use super::*;
    use crate::test_support::{arrivals, assert_schedule, millis, request, udp_link};
    use tokio::time::Instant;

    /// A TU that refuses INVITEs with 486 and answers anything else 200, at once.
    struct Refuser;

    impl TransactionUser for Refuser {
        fn on_request(&self, incoming: IncomingRequest) {
            let status = match incoming.request.method {
                Method::Invite => StatusCode::BUSY_HERE,
                _ => StatusCode::OK,
            };
            let response = response_to(&incoming.request.headers, status, status.reason_phrase()).unwrap();
            incoming.transaction.respond(response);
        }
        fn on_ack(&self, _: Request, _: Essentials, _: &Link) {}
        fn on_cancel(&self, _: ServerTransaction) {}
        fn on_stray_response(&self, _: Response) {}
    }

    fn layer() -> TransactionLayer {
        TransactionLayer::new(Arc::new(Refuser), ClientTransactions::new(Timers::default()), Timers::default())
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_sent_again_on_timer_g_until_timer_h() {
        let (link, peer) = udp_link().await;
        let layer = layer();
        let start = Instant::now();
        layer.on_message(Message::Request(request("INVITE", "z9hG4bKg")), &link);
        let seen = arrivals(&peer, start, Duration::from_secs(40)).await;
        // Timer G from T1 doubling to T2 (RFC 3261 §17.2.1); Timer H at 64·T1 gives up.
        let expected = [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];
        assert_schedule(&millis(&seen), &expected);
        assert!(seen.iter().all(|(_, message)| matches!(message, Message::Response(r) if r.status == 486)));
        assert_eq!(layer.live_transactions(), 0, "Timer H ends the transaction");
    }

    #[tokio::test(start_paused = true)]
    async fn the_ack_stops_timer_g_and_is_absorbed_for_timer_i() {
        let (link, peer) = udp_link().await;
        let layer = layer();
        let start = Instant::now();
        layer.on_message(Message::Request(request("INVITE", "z9hG4bKi")), &link);
        assert_schedule(&millis(&arrivals(&peer, start, Duration::from_millis(1000)).await), &[0, 500]);
        let acked_at = Instant::now();
        layer.on_message(Message::Request(request("ACK", "z9hG4bKi")), &link);
        assert!(arrivals(&peer, start, Duration::from_secs(4)).await.is_empty(), "Timer G goes on after the ACK");
        // Timer I: T4 (5 s) after the ACK.
        tokio::time::sleep_until(acked_at + Duration::from_millis(4_900)).await;
        assert_eq!(layer.live_transactions(), 1, "Timer I (T4) keeps the transaction");
        tokio::time::sleep_until(acked_at + Duration::from_millis(5_200)).await;
        assert_eq!(layer.live_transactions(), 0, "Timer I is over");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retransmitted_non_invite_gets_the_stored_response_until_timer_j() {
        let (link, peer) = udp_link().await;
        let layer = layer();
        let start = Instant::now();
        let options = request("OPTIONS", "z9hG4bKj");
        layer.on_message(Message::Request(options.clone()), &link);
        assert_schedule(&millis(&arrivals(&peer, start, Duration::from_secs(20)).await), &[0]);
        layer.on_message(Message::Request(options.clone()), &link);
        assert_schedule(&millis(&arrivals(&peer, start, Duration::from_secs(21)).await), &[20000]);
        // Timer J: 64·T1 after the final response, the layer forgets the request.
        tokio::time::sleep_until(start + Duration::from_millis(31_800)).await;
        assert_eq!(layer.live_transactions(), 1, "Timer J keeps the transaction");
        tokio::time::sleep_until(start + Duration::from_millis(32_200)).await;
        assert_eq!(layer.live_transactions(), 0, "Timer J is over");
    }
}
