//! The dialog and B2BUA timers of a running endpoint, on tokio's paused clock with RFC 3261's
//! own values (T1 = 500 ms): the 2xx retransmitted until the ACK and the call ended at 64·T1
//! without one; session timers (RFC 4028) refreshed by ringer or ended when the peer does not
//! refresh; a B2BUA leg cancelled when its no-answer time runs out. The clock moves only when
//! every task waits, so minutes of protocol time take milliseconds and the schedule is exact.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::sip::*;
use ringer::sip::b2bua::{self, LegOutcome};
use ringer::sip::dialog::{DialogId, OfferAnswer};
use ringer::sip::endpoint::Endpoint;
use ringer::sip::message::{Message, Method, Request, Response, StatusCode, Uri};
use ringer::sip::transport::response_to;
use ringer::sip::ua::{PendingInvite, SessionHandler};
use tokio::time::Instant;

/// Answers every INVITE at once with a fixed SDP, and every re-offer the same way.
struct AnswerAtOnce;

impl SessionHandler for AnswerAtOnce {
    fn on_invite(&self, invite: PendingInvite) {
        tokio::spawn(async move {
            if let Some(call) = invite.answer(Bytes::from_static(SDP_OFFER.as_bytes())) {
                call.ended().await;
            }
        });
    }
    fn on_offer(&self, _: &DialogId, offer: &Bytes) -> OfferAnswer {
        OfferAnswer::Accept(offer.clone())
    }
}

/// Places the call onward to `callee` and gives it `no_answer` to answer, as the TAS's
/// forwarding does; the caller gets 480 when the time runs out.
struct Forwarder {
    callee: SocketAddr,
    no_answer: Duration,
    /// Where the cancelled leg's final status goes, once its CANCEL has played out.
    cancelled: std::sync::Mutex<Option<tokio::sync::oneshot::Sender<Option<StatusCode>>>>,
}

impl SessionHandler for Forwarder {
    fn on_invite(&self, invite: PendingInvite) {
        let (callee, no_answer, cancelled) =
            (self.callee, self.no_answer, self.cancelled.lock().expect("not poisoned").take());
        tokio::spawn(async move {
            let ua = invite.user_agent().clone();
            let Ok(target) = Uri::parse(&format!("sip:bob@{callee}")) else { return };
            let spec = b2bua::onward(&invite, target.clone(), &[]);
            let Ok(link) = ua.outbound().link_to(&target).await else { return };
            let Ok(leg) = ua.invite(spec, link) else { return };
            match b2bua::ring(&invite, leg, Some(no_answer)).await {
                LegOutcome::NoAnswer(cancelling) => {
                    invite.reject(StatusCode::TEMPORARILY_UNAVAILABLE, None, None);
                    if let Some(cancelled) = cancelled {
                        let _ = cancelled.send(cancelling.outcome().await);
                    }
                }
                // The test sees the caller's final response, and no leg outcome.
                _ => invite.reject(StatusCode::SERVER_INTERNAL_ERROR, None, Some("not the outcome under test")),
            }
        });
    }
    fn on_offer(&self, _: &DialogId, _: &Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("not in this test".into())
    }
}

/// The next message within `limit`, with when it came (since `start`).
async fn next(peer: &mut Peer, start: Instant, limit: Duration) -> Option<(Duration, Message)> {
    let message = peer.recv_within(limit).await?;
    Some((start.elapsed(), message))
}

/// The next request, skipping responses (retransmitted 2xx, 100 Trying).
async fn next_request(peer: &mut Peer, start: Instant, limit: Duration) -> (Duration, Request) {
    loop {
        match next(peer, start, limit).await {
            Some((at, Message::Request(request))) => return (at, request),
            Some((_, Message::Response(_))) => continue,
            None => panic!("no request within {limit:?}"),
        }
    }
}

fn ack_for(ok: &Response, call_id: &str) -> String {
    request("ACK", call_id, 1, &format!("{call_id}ack"), "UDP", Some(&to_tag(ok)), "", "")
}

/// When each 200 came (ms since `start`) until ringer's next request (the BYE of an
/// unacknowledged call), and when that came.
async fn oks_until_request(peer: &mut Peer, start: Instant) -> (Vec<u128>, Duration, Request) {
    let mut oks = Vec::new();
    loop {
        match next(peer, start, Duration::from_secs(40)).await {
            Some((at, Message::Response(response))) if response.status == StatusCode::OK => oks.push(at.as_millis()),
            Some((_, Message::Response(_))) => {}
            Some((at, Message::Request(request))) => return (oks, at, request),
            None => panic!("no BYE after the 2xx went unacknowledged; 2xx at {oks:?}"),
        }
    }
}

fn assert_near(at: Duration, expected: Duration) {
    let difference = at.abs_diff(expected);
    assert!(difference <= Duration::from_millis(20), "at {at:?}, expected {expected:?}");
}

#[tokio::test(start_paused = true)]
async fn an_unacked_2xx_is_sent_from_t1_doubling_to_t2_and_the_call_ends_with_bye_at_64_t1() {
    let endpoint = udp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    let start = Instant::now();
    peer.send(request("INVITE", "noack", 1, "noack", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    let (oks, bye_at, bye) = oks_until_request(&mut peer, start).await;
    // RFC 3261 §13.3.1.4: T1, doubling up to T2, for 64·T1; then the session ends with BYE.
    let expected = [0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500];
    assert_eq!(oks.len(), expected.len(), "2xx at {oks:?}");
    for (at, expected) in oks.iter().zip(expected) {
        assert_near(Duration::from_millis(*at as u64), Duration::from_millis(expected));
    }
    assert_eq!(bye.method, Method::Bye);
    assert_near(bye_at, Duration::from_secs(32));
    peer.send(&response_to(&bye.headers, StatusCode::OK, "OK").expect("response").to_bytes()).await;
}

/// Over TCP the 2xx is sent once (the transport is reliable), and the call still ends with BYE
/// at 64·T1 when no ACK comes (RFC 3261 §13.3.1.4, §17.2.1).
#[tokio::test(start_paused = true)]
async fn an_unacked_2xx_over_tcp_is_not_sent_again_and_the_call_ends_with_bye_at_64_t1() {
    let endpoint = tcp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::tcp(endpoint.tcp_addr.expect("tcp")).await;
    let start = Instant::now();
    peer.send(request("INVITE", "noack-tcp", 1, "noacktcp", "TCP", None, "", SDP_OFFER).as_bytes()).await;
    let (oks, bye_at, bye) = oks_until_request(&mut peer, start).await;
    assert_eq!(oks.len(), 1, "2xx at {oks:?}");
    assert_eq!(bye.method, Method::Bye);
    assert_near(bye_at, Duration::from_secs(32));
    assert_eq!(endpoint.unacknowledged_answers(), 0);
    peer.send(&response_to(&bye.headers, StatusCode::OK, "OK").expect("response").to_bytes()).await;
}

/// Every 2xx awaiting its ACK waits in one queue of the user agent (no task each), and its ACK
/// takes it out at once: an acknowledged call keeps no copy of its 2xx for the seconds its
/// retransmission timer had left.
#[tokio::test(start_paused = true)]
async fn an_acknowledged_2xx_leaves_nothing_waiting() {
    let endpoint = udp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    let mut oks = Vec::new();
    for call_id in ["acked-1", "acked-2"] {
        peer.send(request("INVITE", call_id, 1, call_id, "UDP", None, "", SDP_OFFER).as_bytes()).await;
        oks.push(peer.final_response().await);
    }
    assert_eq!(endpoint.unacknowledged_answers(), 2);
    peer.send(ack_for(&oks[0], "acked-1").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((endpoint.live_dialogs(), endpoint.unacknowledged_answers()), (2, 1));
    peer.send(ack_for(&oks[1], "acked-2").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!((endpoint.live_dialogs(), endpoint.unacknowledged_answers()), (2, 0));
}

/// A re-INVITE's 2xx is sent again until its own ACK as well (RFC 3261 §13.3.1.4 holds for
/// every 2xx to an INVITE), and not after it.
#[tokio::test(start_paused = true)]
async fn a_reinvites_2xx_is_sent_again_until_its_ack() {
    let endpoint = udp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    peer.send(request("INVITE", "reinvite", 1, "reinvite1", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    let ok = peer.final_response().await;
    let tag = to_tag(&ok);
    peer.send(ack_for(&ok, "reinvite").as_bytes()).await;
    let start = Instant::now();
    peer.send(request("INVITE", "reinvite", 2, "reinvite2", "UDP", Some(&tag), "", SDP_OFFER).as_bytes()).await;
    // The 2xx, then again after T1 and 3·T1; then the ACK.
    let mut oks = Vec::new();
    while oks.len() < 3 {
        match next(&mut peer, start, Duration::from_secs(5)).await {
            Some((at, Message::Response(response))) if response.status == StatusCode::OK => oks.push(at),
            Some(_) => {}
            None => panic!("the re-INVITE's 2xx came at {oks:?} only"),
        }
    }
    assert_near(oks[1], Duration::from_millis(500));
    assert_near(oks[2], Duration::from_millis(1500));
    peer.send(request("ACK", "reinvite", 2, "reinvite2-ack", "UDP", Some(&tag), "", "").as_bytes()).await;
    assert!(peer.recv_within(Duration::from_secs(5)).await.is_none(), "nothing after the ACK");
    assert_eq!((endpoint.live_dialogs(), endpoint.unacknowledged_answers()), (1, 0));
}

/// A BYE before the ACK ends the call and takes its 2xx's timer with it: nothing waits the
/// 64·T1 it had left (RFC 3261 §15: the callee may end the dialog before the ACK arrives; here
/// the caller does).
#[tokio::test(start_paused = true)]
async fn a_bye_before_the_ack_leaves_nothing_waiting() {
    let endpoint = tcp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::tcp(endpoint.tcp_addr.expect("tcp")).await;
    peer.send(request("INVITE", "bye-first", 1, "byefirst", "TCP", None, "", SDP_OFFER).as_bytes()).await;
    let ok = peer.final_response().await;
    assert_eq!(endpoint.unacknowledged_answers(), 1);
    peer.send(request("BYE", "bye-first", 2, "byefirst-bye", "TCP", Some(&to_tag(&ok)), "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.status, StatusCode::OK);
    assert_eq!((endpoint.live_dialogs(), endpoint.unacknowledged_answers()), (0, 0));
}

/// A call answered and ACKed with the session timer `session_expires` asked and granted as
/// asked; the endpoint (kept alive), the peer, and when the INVITE left.
async fn call_with_session_timer(call_id: &str, session_expires: &str) -> (Endpoint, Peer, Instant) {
    let endpoint = udp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    let start = Instant::now();
    let timer = format!("Supported: timer\r\nSession-Expires: {session_expires}\r\n");
    peer.send(request("INVITE", call_id, 1, call_id, "UDP", None, &timer, SDP_OFFER).as_bytes()).await;
    let ok = peer.final_response().await;
    assert_eq!(ok.headers.get("Session-Expires"), Some(session_expires));
    peer.send(ack_for(&ok, call_id).as_bytes()).await;
    (endpoint, peer, start)
}

#[tokio::test(start_paused = true)]
async fn a_session_the_peer_does_not_refresh_ends_with_bye_before_it_expires() {
    // RFC 4028 §10: the side that does not refresh sends BYE min(32 s, interval/3) before the
    // session expires, and not earlier: 120 − 32 = 88 s; 90 − 30 = 60 s.
    for (interval, bye_after) in [(120, 88), (90, 60)] {
        let call_id = format!("expiry{interval}");
        let asked = format!("{interval};refresher=uac");
        let (_endpoint, mut peer, start) = call_with_session_timer(&call_id, &asked).await;
        let (at, bye) = next_request(&mut peer, start, Duration::from_secs(100)).await;
        assert_eq!(bye.method, Method::Bye);
        assert_near(at, Duration::from_secs(bye_after));
        peer.send(&response_to(&bye.headers, StatusCode::OK, "OK").expect("response").to_bytes()).await;
    }
}

/// A dialog's session timer waits in one queue shared by every dialog (no task each), and
/// leaves it when the dialog ends: an ended call keeps nothing for the minutes its timer had
/// left.
#[tokio::test(start_paused = true)]
async fn an_ended_call_leaves_no_session_timer_waiting() {
    let endpoint = udp_endpoint(Arc::new(AnswerAtOnce)).await;
    let mut peer = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    let timer = "Supported: timer\r\nSession-Expires: 1800;refresher=uac\r\n";
    let mut tags = Vec::new();
    for call_id in ["queued-1", "queued-2"] {
        peer.send(request("INVITE", call_id, 1, call_id, "UDP", None, timer, SDP_OFFER).as_bytes()).await;
        let ok = peer.final_response().await;
        let tag = to_tag(&ok);
        peer.send(request("ACK", call_id, 1, &format!("{call_id}-ack"), "UDP", Some(&tag), "", "").as_bytes()).await;
        tags.push(tag);
    }
    assert_eq!((endpoint.live_dialogs(), endpoint.waiting_session_timers()), (2, 2));
    peer.send(request("BYE", "queued-1", 2, "queued-1-bye", "UDP", Some(&tags[0]), "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 200);
    assert_eq!((endpoint.live_dialogs(), endpoint.waiting_session_timers()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn ringer_refreshes_a_session_at_half_the_interval_when_it_is_the_refresher() {
    let (_endpoint, mut peer, start) = call_with_session_timer("refresh", "180;refresher=uas").await;
    for round in 1..=2u64 {
        // RFC 4028 §10: the refresher refreshes at half the interval, counted from the last one.
        let (at, refresh) = next_request(&mut peer, start, Duration::from_secs(200)).await;
        assert!(matches!(refresh.method, Method::Invite | Method::Update), "{refresh:?}");
        assert_near(at, Duration::from_secs(90 * round));
        let mut answer = response_to(&refresh.headers, StatusCode::OK, "OK").expect("response");
        // ringer is the UAC of its refresh: it goes on refreshing when the 2xx says `uac`.
        answer.headers.set("Session-Expires", "180;refresher=uac");
        answer.headers.set("Contact", "<sip:alice@127.0.0.1:5099>");
        if refresh.method == Method::Invite {
            answer.headers.set("Content-Type", "application/sdp");
            answer.body = Bytes::from_static(SDP_OFFER.as_bytes());
        }
        peer.send(&answer.to_bytes()).await;
        if refresh.method == Method::Invite {
            let (_, ack) = next_request(&mut peer, start, Duration::from_secs(1)).await;
            assert_eq!(ack.method, Method::Ack);
        }
    }
}

/// The far end of a B2BUA leg: a UDP socket that answers whoever sent to it.
struct Callee {
    socket: tokio::net::UdpSocket,
    ringer: Option<SocketAddr>,
}

impl Callee {
    async fn bind() -> Self {
        Self { socket: tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind"), ringer: None }
    }

    /// The next request within `limit`, with when it came.
    async fn request(&mut self, start: Instant, limit: Duration) -> (Duration, Request) {
        let mut buffer = vec![0u8; 65_535];
        loop {
            let received = tokio::time::timeout(limit, self.socket.recv_from(&mut buffer)).await;
            let Ok(Ok((length, from))) = received else { panic!("no request within {limit:?}") };
            self.ringer = Some(from);
            let message = ringer::sip::message::parse_datagram(&buffer[..length]).expect("ringer sends parseable SIP");
            if let Message::Request(request) = message {
                return (start.elapsed(), request);
            }
        }
    }

    async fn send(&self, response: &Response) {
        let ringer = self.ringer.expect("a request came first");
        self.socket.send_to(&response.to_bytes(), ringer).await.expect("send");
    }
}

#[tokio::test(start_paused = true)]
async fn a_b2bua_leg_unanswered_in_its_time_is_cancelled_and_the_caller_refused() {
    let mut callee = Callee::bind().await;
    let (cancelled, outcome) = tokio::sync::oneshot::channel();
    let forwarder = Forwarder {
        callee: callee.socket.local_addr().expect("addr"),
        no_answer: Duration::from_secs(20),
        cancelled: std::sync::Mutex::new(Some(cancelled)),
    };
    let endpoint = udp_endpoint(Arc::new(forwarder)).await;
    let mut caller = Peer::udp(endpoint.udp_addr.expect("udp")).await;
    let start = Instant::now();
    caller.send(request("INVITE", "noanswer", 1, "noanswer", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    let (_, invite) = callee.request(start, Duration::from_secs(1)).await;
    assert_eq!(invite.method, Method::Invite);
    let mut ringing = response_to(&invite.headers, StatusCode::RINGING, "Ringing").expect("response");
    ringing.add_to_tag("callee1");
    callee.send(&ringing).await;
    // The no-answer time runs from the INVITE: CANCEL at 20 s, and no retransmitted INVITE
    // before it (the 180 stopped Timer A).
    let (at, cancel) = callee.request(start, Duration::from_secs(30)).await;
    assert_eq!(cancel.method, Method::Cancel);
    assert_near(at, Duration::from_secs(20));
    callee.send(&response_to(&cancel.headers, StatusCode::OK, "OK").expect("response")).await;
    let mut terminated =
        response_to(&invite.headers, StatusCode::REQUEST_TERMINATED, "Request Terminated").expect("response");
    terminated.add_to_tag("callee1");
    callee.send(&terminated).await;
    let (_, ack) = callee.request(start, Duration::from_secs(1)).await;
    assert_eq!(ack.method, Method::Ack);
    let refused = caller.final_response().await;
    assert_eq!(refused.status, StatusCode::TEMPORARILY_UNAVAILABLE);
    assert_eq!(outcome.await.expect("the leg's outcome"), Some(StatusCode::REQUEST_TERMINATED));
}
