//! `ringer` driven directly as the core drives it: leg 2 INVITEs with MO and MT prefixes over
//! a real TCP connection, leg 3 coming back on it (no `sip.core_uri` set), and the answers a
//! call for no subscriber or the wrong direction gets.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::sip::{Peer, WAIT};
use ringer::config::serve::ServeConfig;
use ringer::sip::message::{Message, Request, Response, StatusCode};
use ringer::tas::Tas;

const SESSION_ID: &str = "0123456789abcdef0123456789abcdef;remote=00000000000000000000000000000000";

async fn tas(extra: &str) -> Tas {
    let toml = format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\nmedia_address = \"127.0.0.1\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"22\"\n\
         [[subscriber]]\nphone_number = \"+4799990002\"\nroute_type = \"loop-mo\"\nmo_prefix = \"12\"\n{extra}"
    );
    let config: ServeConfig = toml::from_str(&toml).expect("config");
    config.validate().expect("valid");
    ringer::tas::start_sip(&config).await.expect("TAS starts")
}

fn addr(tas: &Tas) -> SocketAddr {
    tas.endpoint.tcp_addr.expect("TCP listener")
}

/// A leg 2 INVITE as the core sends it.
fn leg2(uri: &str, from: &str, call_id: &str, extra: &str) -> String {
    let body = common::sip::SDP_OFFER;
    format!(
        "INVITE {uri} SIP/2.0\r\n\
         Via: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{call_id}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{from}@core.test;user=phone>;tag=core1\r\n\
         To: <{uri}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 INVITE\r\n\
         Contact: <sip:127.0.0.1:5099;transport=tcp>\r\n\
         P-Asserted-Identity: <sip:{from}@core.test;user=phone>\r\n\
         {extra}Content-Type: application/sdp\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Reads until a request arrives; responses on the way are returned beside it.
async fn next_request(peer: &mut Peer) -> (Request, Vec<Response>) {
    let mut responses = Vec::new();
    loop {
        match peer.recv_within(WAIT).await {
            Some(Message::Request(request)) => return (request, responses),
            Some(Message::Response(response)) => responses.push(response),
            None => panic!("no request; responses so far: {responses:?}"),
        }
    }
}

/// A response to `request` with `status`, as the core's leg 3 side sends it.
fn answer(request: &Request, status: u16, reason: &str, body: &str) -> String {
    let header = |name: &str| request.headers.get(name).expect(name).to_owned();
    let content_type = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".into() };
    format!(
        "SIP/2.0 {status} {reason}\r\nVia: {}\r\nFrom: {}\r\nTo: {};tag=bob1\r\nCall-ID: {}\r\nCSeq: {}\r\n\
         Contact: <sip:127.0.0.1:5099;transport=tcp>\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        header("Via"),
        header("From"),
        header("To"),
        header("Call-ID"),
        header("CSeq"),
        body.len()
    )
}

/// A request of the core inside the leg 2 dialog `leg2-mo`.
fn in_leg2(method: &str, cseq: u32, uri: &str, tag: &str) -> String {
    format!(
        "{method} sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{method}2\r\nMax-Forwards: 70\r\n\
         From: <sip:+4799990001@core.test;user=phone>;tag=core1\r\nTo: <{uri}>;tag={tag}\r\nCall-ID: leg2-mo\r\n\
         CSeq: {cseq} {method}\r\nContent-Length: 0\r\n\r\n"
    )
}

const ANSWER_SDP: &str =
    "v=0\r\no=bob 2 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 50000 RTP/AVP 0\r\n";

#[tokio::test]
async fn mo_prefix_loops_back_as_leg_3_and_the_call_completes() {
    let tas = tas("").await;
    let mut core = Peer::tcp(addr(&tas)).await;
    let uri = "sip:+114712345678@127.0.0.1;user=phone";
    core.send(leg2(uri, "+4799990001", "leg2-mo", &format!("Session-ID: {SESSION_ID}\r\n")).as_bytes()).await;
    let (leg3, _) = next_request(&mut core).await;
    assert_eq!(leg3.uri.to_string(), "sip:+4712345678@127.0.0.1;user=phone", "prefix stripped");
    assert_eq!(leg3.headers.get("Session-ID"), Some(SESSION_ID), "leg 2's Session-ID carried");
    assert_ne!(leg3.headers.get("Call-ID"), Some("leg2-mo"), "a B2BUA's own Call-ID");
    assert_eq!(leg3.headers.values("Via").len(), 1, "only the TAS's own Via");
    assert!(!leg3.headers.get("From").unwrap_or_default().contains("tag=core1"), "its own From tag");
    assert!(leg3.headers.get("P-Asserted-Identity").unwrap_or_default().contains("+4799990001"));
    assert_eq!(&leg3.body[..], common::sip::SDP_OFFER.as_bytes(), "SDP passed through unchanged");
    assert_eq!(leg3.headers.get("Max-Forwards"), Some("69"));

    core.send(answer(&leg3, 180, "Ringing", "").as_bytes()).await;
    core.send(answer(&leg3, 200, "OK", ANSWER_SDP).as_bytes()).await;
    let mut statuses = Vec::new();
    let ok = loop {
        let response = core.response().await;
        statuses.push(response.status.as_u16());
        if response.status >= 200 {
            break response;
        }
    };
    assert!(statuses.contains(&180), "the 180 was relayed: {statuses:?}");
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(&ok.body[..], ANSWER_SDP.as_bytes(), "the answer passed through unchanged");
    let tag = common::sip::to_tag(&ok);
    // Leg 3's 2xx answered its offer: the TAS ACKs it at once, without waiting for leg 2's ACK
    // (a late or lost one would leave the far end retransmitting its 200).
    let (leg3_ack, _) = next_request(&mut core).await;
    assert_eq!(leg3_ack.method.as_str(), "ACK");
    assert_eq!(leg3_ack.headers.get("Call-ID"), leg3.headers.get("Call-ID"));
    assert!(leg3_ack.body.is_empty(), "nothing to answer: leg 3's INVITE carried the offer");
    let ack = in_leg2("ACK", 1, uri, &tag);
    core.send(ack.as_bytes()).await;
    // BYE on leg 2 ends leg 3 too.
    let bye = in_leg2("BYE", 2, uri, &tag);
    core.send(bye.as_bytes()).await;
    let (leg3_bye, responses) = next_request(&mut core).await;
    assert_eq!(leg3_bye.method.as_str(), "BYE");
    let mut bye_ok: Vec<u16> = responses.iter().map(|r| r.status.as_u16()).collect();
    core.send(answer(&leg3_bye, 200, "OK", "").as_bytes()).await;
    if bye_ok.is_empty() {
        bye_ok.push(core.response().await.status.as_u16());
    }
    assert_eq!(bye_ok, [200], "BYE on leg 2 answered");
    assert!(
        common::poll_until(WAIT, || tas.endpoint.live_dialogs() == 0 && tas.endpoint.clients().in_progress() == 0)
            .await
    );
    let record = &tas.router.records()[0];
    assert_eq!(record.prefix.as_ref().map(|p| p.as_str()), Some("11"));
    assert_eq!(record.outcome.status, Some(StatusCode::OK));
}

#[tokio::test]
async fn mt_prefix_in_a_tel_uri_and_a_refusal_relayed() {
    let tas = tas("").await;
    let mut core = Peer::tcp(addr(&tas)).await;
    core.send(leg2("tel:+224799990001", "+4712345678", "leg2-mt", &format!("Session-ID: {SESSION_ID}\r\n")).as_bytes())
        .await;
    let (leg3, _) = next_request(&mut core).await;
    assert_eq!(leg3.uri.to_string(), "tel:+4799990001");
    core.send(answer(&leg3, 486, "Busy Here", "").as_bytes()).await;
    // The ACK of leg 3's 486 and the 486 relayed on leg 2 come in either order.
    let (mut ack, mut busy) = (None, None);
    while ack.is_none() || busy.is_none() {
        match core.recv_within(WAIT).await {
            Some(Message::Request(request)) => ack = Some(request),
            Some(Message::Response(response)) if response.status >= 200 => busy = Some(response),
            Some(Message::Response(_)) => {}
            None => panic!("ACK {ack:?} and 486 {busy:?} expected"),
        }
    }
    let (ack, busy) = (ack.expect("ACK"), busy.expect("486"));
    assert_eq!((busy.status.as_u16(), busy.reason.as_str()), (486, "Busy Here"));
    assert_eq!(ack.method.as_str(), "ACK", "the TAS acknowledges leg 3's 486");
}

#[tokio::test]
async fn calls_for_no_subscriber_or_the_wrong_direction_are_refused() {
    let tas = tas("").await;
    let mut core = Peer::tcp(addr(&tas)).await;
    let cases = [
        ("sip:+994712345678@127.0.0.1;user=phone", "+4711111111", 404, "unknown number"),
        ("sip:service@127.0.0.1", "+4711111111", 404, "no number at all"),
        // Loop-MO brings no calls the subscriber receives.
        ("sip:+4799990002@127.0.0.1;user=phone", "+4711111111", 403, "an MT call for a loop-mo subscriber"),
    ];
    for (index, (uri, from, status, what)) in cases.into_iter().enumerate() {
        core.send(leg2(uri, from, &format!("refused-{index}"), "").as_bytes()).await;
        let response = core.final_response().await;
        assert_eq!(response.status.as_u16(), status, "{what}");
    }
    core.send(
        leg2("sip:+114712345678@127.0.0.1;user=phone", "+4799990001", "hops", "")
            .replace("Max-Forwards: 70", "Max-Forwards: 0")
            .as_bytes(),
    )
    .await;
    assert_eq!(core.final_response().await.status.as_u16(), 483, "no hops left for leg 3");
    assert!(common::poll_until(WAIT, || tas.endpoint.pending_invites() == 0).await);
}

#[tokio::test]
async fn the_answer_for_unknown_numbers_is_configurable() {
    let tas = tas("[calls]\nunknown_number = \"reject 403 Not Our Subscriber\"\n").await;
    let mut core = Peer::tcp(addr(&tas)).await;
    core.send(leg2("sip:+994712345678@127.0.0.1;user=phone", "+4711111111", "unknown", "").as_bytes()).await;
    let response = core.final_response().await;
    assert_eq!((response.status.as_u16(), response.reason.as_str()), (403, "Not Our Subscriber"));
}

/// A UAS behind a record-routing proxy: the 200 carries the request's Record-Route values in
/// order, and once the connection the call came on has closed, ringer's BYE goes to the first
/// route (a loose router) with the route set in Route and the caller's Contact as Request-URI.
#[tokio::test]
async fn requests_in_a_dialog_follow_its_route_set_after_the_connection_closed() {
    let tas = tas("[[subscriber]]\nphone_number = \"+4799990003\"\nroute_type = \"loop-mt\"\nmt_prefix = \"23\"\nmt = \"answer announcement\"\n").await;
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("proxy listener");
    let proxy_port = proxy.local_addr().expect("addr").port();
    let routes = format!(
        "Record-Route: <sip:127.0.0.1:{proxy_port};transport=tcp;lr>\r\nRecord-Route: <sip:192.0.2.7;lr;ftag=core1>\r\n"
    );
    let uri = "sip:+234799990003@127.0.0.1;user=phone";
    let mut core = Peer::tcp(addr(&tas)).await;
    core.send(leg2(uri, "+4712345678", "routed", &routes).as_bytes()).await;
    let ok = core.final_response().await;
    assert_eq!(ok.status.as_u16(), 200);
    let copied: Vec<&str> = ok.headers.get_all("Record-Route").collect();
    assert_eq!(
        copied,
        [format!("<sip:127.0.0.1:{proxy_port};transport=tcp;lr>").as_str(), "<sip:192.0.2.7;lr;ftag=core1>"]
    );
    let tag = common::sip::to_tag(&ok);
    core.send(in_leg2("ACK", 1, uri, &tag).replace("Call-ID: leg2-mo", "Call-ID: routed").as_bytes()).await;
    drop(core);
    // The announcement ends and ringer hangs up: over a new connection to the first route.
    let (stream, _) = tokio::time::timeout(Duration::from_secs(20), proxy.accept())
        .await
        .expect("ringer connects to the first route")
        .expect("accept");
    let mut proxy = Peer::from_tcp(stream);
    let (bye, _) = next_request(&mut proxy).await;
    assert_eq!(bye.method.as_str(), "BYE");
    assert_eq!(bye.uri.to_string(), "sip:127.0.0.1:5099;transport=tcp", "the caller's Contact");
    let route: Vec<&str> = bye.headers.get_all("Route").collect();
    assert_eq!(route, copied, "the route set, in order");
    proxy.send(answer(&bye, 200, "OK", "").as_bytes()).await;
    assert!(common::poll_until(WAIT, || tas.endpoint.live_dialogs() == 0).await);
}

/// A response to `request` (leg 3, from the core's side) with `extra` headers and `body`.
fn answer_with(request: &Request, status: u16, reason: &str, extra: &str, body: &str) -> String {
    answer(request, status, reason, body).replacen("Contact:", &format!("{extra}Contact:"), 1)
}

/// Sends leg 2 with 100rel; answers leg 3 with a reliable 183 carrying early media (PRACKed by
/// ringer with the INVITE's CSeq in RAck) and then 200 (ACKed with the INVITE's CSeq, not the
/// PRACK's). Returns the core's connection, leg 2's reliable 183 and leg 3's INVITE.
async fn leg2_waiting_for_its_prack(tas: &Tas, call_id: &str) -> (Peer, Response, Request) {
    let mut core = Peer::tcp(addr(tas)).await;
    let uri = "sip:+114712345678@127.0.0.1;user=phone";
    let extra = format!("Session-ID: {SESSION_ID}\r\nSupported: 100rel\r\n");
    core.send(leg2(uri, "+4799990001", call_id, &extra).as_bytes()).await;
    let (leg3, _) = next_request(&mut core).await;
    assert!(common::sip::lists(&leg3.headers, "Supported", "100rel"), "the caller offered 100rel, so leg 3 does");
    core.send(answer_with(&leg3, 183, "Session Progress", "Require: 100rel\r\nRSeq: 7\r\n", ANSWER_SDP).as_bytes())
        .await;
    let (prack, _) = next_request(&mut core).await;
    assert_eq!(prack.method.as_str(), "PRACK");
    assert_eq!(prack.headers.get("RAck"), Some("7 1 INVITE"));
    core.send(answer(&prack, 200, "OK", "").as_bytes()).await;
    // Leg 2 gets the 183 reliably, carrying the early media.
    let reliable = loop {
        let response = core.response().await;
        if response.status == 183 {
            break response;
        }
    };
    assert_eq!(reliable.headers.get("Require"), Some("100rel"));
    assert!(reliable.headers.get("RSeq").is_some() && !reliable.body.is_empty(), "{reliable:?}");
    core.send(answer(&leg3, 200, "OK", ANSWER_SDP).as_bytes()).await;
    let (ack, _) = next_request(&mut core).await;
    assert_eq!((ack.method.as_str(), ack.headers.get("CSeq")), ("ACK", Some("1 ACK")), "the INVITE's CSeq");
    // The 2xx for leg 2 waits: its 183 carried SDP and is not PRACKed yet (RFC 3262 §3).
    if let Some(early) = core.recv_within(std::time::Duration::from_millis(300)).await {
        assert!(!matches!(&early, Message::Response(r) if r.status == 200), "2xx before the PRACK: {early:?}");
    }
    (core, reliable, leg3)
}

#[tokio::test]
async fn a_2xx_waits_for_the_prack_of_a_reliable_183_with_sdp() {
    let tas = tas("").await;
    let (mut core, reliable, _) = leg2_waiting_for_its_prack(&tas, "held-prack").await;
    let rseq = reliable.headers.get("RSeq").expect("RSeq");
    let tag = common::sip::to_tag(&reliable);
    let prack = in_leg2("PRACK", 2, "sip:+114712345678@127.0.0.1;user=phone", &tag)
        .replace("Call-ID: leg2-mo", "Call-ID: held-prack")
        .replace("Content-Length: 0", &format!("RAck: {rseq} 1 INVITE\r\nContent-Length: 0"));
    core.send(prack.as_bytes()).await;
    let mut statuses = Vec::new();
    while !statuses.iter().any(|(status, method): &(u16, String)| *status == 200 && method == "INVITE") {
        let response = core.response().await;
        let method = response.headers.get("CSeq").unwrap_or_default().rsplit(' ').next().unwrap_or_default().to_owned();
        statuses.push((response.status.as_u16(), method));
    }
    assert!(statuses.contains(&(200, "PRACK".into())), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&(200, "INVITE".into())), "the 2xx after the PRACK: {statuses:?}");
}

#[tokio::test]
async fn a_cancel_drops_a_2xx_held_for_its_prack() {
    let tas = tas("").await;
    let (mut core, reliable, leg3) = leg2_waiting_for_its_prack(&tas, "held-cancel").await;
    let cancel = leg2("sip:+114712345678@127.0.0.1;user=phone", "+4799990001", "held-cancel", "")
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL");
    let cancel = cancel.split("Content-Type:").next().unwrap_or_default().to_owned() + "Content-Length: 0\r\n\r\n";
    core.send(cancel.as_bytes()).await;
    // 200 for the CANCEL, 487 for the INVITE, never its 2xx; leg 3 is hung up.
    let mut seen = Vec::new();
    let mut leg3_bye = false;
    while !(seen.contains(&487) && leg3_bye) {
        match core.recv_within(WAIT).await {
            Some(Message::Response(response)) => {
                assert!(!(response.status == 200 && response.headers.get("CSeq") == Some("1 INVITE")), "{response:?}");
                seen.push(response.status.as_u16());
            }
            Some(Message::Request(request)) if request.method.as_str() == "BYE" => {
                assert_eq!(request.headers.get("Call-ID"), leg3.headers.get("Call-ID"));
                core.send(answer(&request, 200, "OK", "").as_bytes()).await;
                leg3_bye = true;
            }
            Some(Message::Request(request)) => panic!("unexpected {request:?}"),
            None => panic!("saw {seen:?}, leg 3 BYE {leg3_bye}"),
        }
    }
    let _ = reliable;
    assert!(common::poll_until(WAIT, || tas.endpoint.live_dialogs() == 0 && tas.endpoint.pending_invites() == 0).await);
}
