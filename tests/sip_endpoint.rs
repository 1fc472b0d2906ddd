//! The SIP endpoint over real sockets on loopback: TLS, TCP and UDP; calls, rejects, CANCEL,
//! re-INVITE, OPTIONS, keep-alives, framing, bad input and limits.

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::eventually;
use common::sip::*;
use ringer::call::action::{Action, App};
use ringer::call::DefaultActionHandler;
use ringer::sip::config::UaConfig;
use ringer::sip::dialog::{DialogId, OfferAnswer};
use ringer::sip::endpoint::{self, Endpoint, EndpointConfig};
use ringer::sip::message::{Message, StatusCode};
use ringer::sip::timers::Timers;
use ringer::sip::transport::policy::PeerPolicy;
use ringer::sip::transport::stream::StreamLimits;
use ringer::sip::ua::{PendingInvite, SessionHandler};
use tempfile::TempDir;

const ANY: &str = "127.0.0.1:0";

struct Lab {
    endpoint: Endpoint,
    ca: PathBuf,
    _dir: TempDir,
}

fn fast_timers() -> Timers {
    Timers { t1: Duration::from_millis(50), t2: Duration::from_millis(200), t4: Duration::from_millis(250) }
}

async fn lab_with(handler: Arc<dyn SessionHandler>, tweak: impl FnOnce(&mut EndpointConfig, &std::path::Path)) -> Lab {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_env("RINGER_LOG"))
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().expect("tempdir");
    let files = ringer::tls::devcert::generate(&["tas.example.com".into(), "127.0.0.1".into()])
        .expect("certs")
        .write_to(dir.path())
        .expect("written");
    let chain = ringer::tls::load_chain(&files.server_cert).expect("chain");
    let key = ringer::tls::load_key(&files.server_key).expect("key");
    let tls = ringer::tls::server_config(chain, key, None).expect("server config");
    let mut config = EndpointConfig {
        hep: None,
        tls: Some((ANY.parse().expect("addr"), tls)),
        tcp: Some(ANY.parse().expect("addr")),
        udp: Some(ANY.parse().expect("addr")),
        policy: PeerPolicy::default(),
        limits: StreamLimits { message_timeout: Duration::from_millis(500), ..StreamLimits::default() },
        ua: UaConfig { timers: fast_timers(), ..UaConfig::new("tas.example.com", "ringer-test") },
        outbound: ringer::sip::outbound::OutboundSettings { tls: None, core: None, dns_server: None },
    };
    tweak(&mut config, dir.path());
    let endpoint = endpoint::start(config, handler).await.expect("endpoint starts");
    Lab { endpoint, ca: files.ca_cert, _dir: dir }
}

async fn lab(action: &str) -> Lab {
    let handler = Arc::new(DefaultActionHandler::new(action.parse().expect("action"), [127, 0, 0, 1].into()));
    lab_with(handler, |_, _| {}).await
}

impl Lab {
    async fn peers(&self) -> Vec<Peer> {
        vec![
            Peer::udp(self.endpoint.udp_addr.expect("udp")).await,
            Peer::tcp(self.endpoint.tcp_addr.expect("tcp")).await,
            Peer::tls(self.endpoint.tls_addr.expect("tls"), &self.ca, "tas.example.com").await,
        ]
    }

    async fn quiet(&self) {
        eventually(Duration::from_secs(8), "no transaction, dialog or pending INVITE left", || {
            self.endpoint.live_transactions() == 0
                && self.endpoint.live_dialogs() == 0
                && self.endpoint.pending_invites() == 0
        })
        .await;
    }
}

#[tokio::test]
async fn options_is_answered_with_capabilities_on_every_transport() {
    let lab = lab("answer").await;
    for mut peer in lab.peers().await {
        let transport = peer.transport();
        peer.send(request("OPTIONS", &format!("opt-{transport}"), 1, "opt", transport, None, "", "").as_bytes()).await;
        let response = peer.final_response().await;
        assert_eq!((response.status.as_u16(), response.reason.as_str()), (200, "OK"), "{transport}");
        let headers = &response.headers;
        assert_eq!(headers.get("Allow"), Some("INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK"));
        assert_eq!(headers.get("Accept"), Some("application/sdp"));
        assert_eq!(headers.get("Supported"), Some("100rel, timer"));
        assert_eq!(headers.get("Server"), Some("ringer-test"));
        assert_eq!(headers.get("Call-ID"), Some(format!("opt-{transport}").as_str()));
        assert_eq!(headers.get("CSeq"), Some("1 OPTIONS"));
        assert!(headers.get("Via").is_some_and(|via| via.contains("branch=z9hG4bKopt")));
        assert!(!to_tag(&response).is_empty());
        let contact = headers.get("Contact").expect("Contact");
        if transport == "TLS" {
            // A sip: Request-URI: a sip: Contact with transport=tls (RFC 3261 §12.1.1 asks
            // for SIPS only when the request was addressed to SIPS).
            assert!(contact.starts_with("<sip:tas.example.com:") && contact.ends_with(";transport=tls>"), "{contact}");
            let secure = request("OPTIONS", "opt-sips", 2, "opt2", transport, None, "", "").replacen(
                "OPTIONS sip:",
                "OPTIONS sips:",
                1,
            );
            peer.send(secure.as_bytes()).await;
            let response = peer.final_response().await;
            let contact = response.headers.get("Contact").expect("Contact");
            assert!(contact.starts_with("<sips:tas.example.com:"), "a sips: request gets a SIPS Contact: {contact}");
        } else {
            assert!(contact.contains(&format!(";transport={}>", transport.to_ascii_lowercase())), "{contact}");
        }
    }
    lab.quiet().await;
}

#[tokio::test]
async fn a_full_call_on_every_transport() {
    let lab = lab("answer").await;
    for mut peer in lab.peers().await {
        let t = peer.transport();
        let call_id = format!("call-{t}");
        peer.send(request("INVITE", &call_id, 1, "inv1", t, None, "", SDP_OFFER).as_bytes()).await;
        // Answered while the request is handled: no 100 Trying is needed (RFC 3261 §17.2.1).
        let ok = peer.response().await;
        assert_eq!(ok.status.as_u16(), 200, "{t}");
        let answer = std::str::from_utf8(&ok.body).expect("utf-8");
        assert!(answer.contains("m=audio 0 RTP/AVP 0\r\n"), "every stream declined: {answer}");
        assert_eq!(ok.headers.get("Content-Type"), Some("application/sdp"));
        assert!(ok.headers.get("Contact").is_some());
        let tag = to_tag(&ok);
        assert_eq!(lab.endpoint.live_dialogs(), 1);
        peer.send(request("ACK", &call_id, 1, "ack1", t, Some(&tag), "", "").as_bytes()).await;

        // A re-INVITE with a new offer and an UPDATE refresh, then BYE.
        peer.send(request("INVITE", &call_id, 2, "reinv", t, Some(&tag), "", SDP_OFFER).as_bytes()).await;
        let reinvite = peer.final_response().await;
        assert_eq!((reinvite.status.as_u16(), to_tag(&reinvite)), (200, tag.clone()), "{t}");
        assert!(!reinvite.body.is_empty());
        peer.send(request("ACK", &call_id, 2, "ack2", t, Some(&tag), "", "").as_bytes()).await;
        peer.send(request("UPDATE", &call_id, 3, "upd", t, Some(&tag), "", "").as_bytes()).await;
        assert_eq!(peer.final_response().await.status.as_u16(), 200, "{t}");
        peer.send(request("BYE", &call_id, 4, "bye", t, Some(&tag), "", "").as_bytes()).await;
        let bye = peer.final_response().await;
        assert_eq!((bye.status.as_u16(), bye.headers.get("CSeq")), (200, Some("4 BYE")), "{t}");
        // The dialog is gone: a second BYE gets 481.
        peer.send(request("BYE", &call_id, 5, "bye2", t, Some(&tag), "", "").as_bytes()).await;
        assert_eq!(peer.final_response().await.status.as_u16(), 481, "{t}");
    }
    lab.quiet().await;
}

#[tokio::test]
async fn rejects_carry_the_configured_status_and_reason() {
    let lab = lab("reject 603 Decline Everything").await;
    for mut peer in lab.peers().await {
        let t = peer.transport();
        peer.send(request("INVITE", &format!("rej-{t}"), 1, "rej", t, None, "", SDP_OFFER).as_bytes()).await;
        let response = peer.final_response().await;
        assert_eq!((response.status.as_u16(), response.reason.as_str()), (603, "Decline Everything"), "{t}");
        let tag = to_tag(&response);
        peer.send(request("ACK", &format!("rej-{t}"), 1, "rej", t, Some(&tag), "", "").as_bytes()).await;
    }
    lab.quiet().await;
}

#[tokio::test]
async fn udp_final_responses_are_retransmitted_until_the_ack() {
    let lab = lab("reject 486").await;
    let mut peer = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    peer.send(request("INVITE", "retx", 1, "retx", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 486);
    // Timer G: the 486 comes again (T1 = 50 ms here) while no ACK is sent.
    let again = peer.final_response().await;
    assert_eq!(again.status.as_u16(), 486);
    // A retransmitted INVITE gets the same final response, from the transaction.
    peer.send(request("INVITE", "retx", 1, "retx", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 486);
    let tag = to_tag(&again);
    peer.send(request("ACK", "retx", 1, "retx", "UDP", Some(&tag), "", "").as_bytes()).await;
    // After the ACK (and Timer I), nothing more arrives.
    tokio::time::sleep(Duration::from_millis(100)).await;
    while peer.recv_within(Duration::from_millis(50)).await.is_some() {}
    assert!(peer.recv_within(Duration::from_millis(600)).await.is_none(), "no retransmission after ACK");
    lab.quiet().await;
}

#[tokio::test]
async fn udp_2xx_is_retransmitted_until_the_ack() {
    let lab = lab("answer").await;
    let mut peer = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    peer.send(request("INVITE", "retx200", 1, "r200", "UDP", None, "", SDP_OFFER).as_bytes()).await;
    let first = peer.final_response().await;
    let second = peer.final_response().await;
    assert_eq!((first.status.as_u16(), second.status.as_u16()), (200, 200));
    let tag = to_tag(&second);
    peer.send(request("ACK", "retx200", 1, "a200", "UDP", Some(&tag), "", "").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(150)).await;
    while peer.recv_within(Duration::from_millis(20)).await.is_some() {}
    assert!(peer.recv_within(Duration::from_millis(800)).await.is_none(), "no 2xx after the ACK");
    peer.send(request("BYE", "retx200", 2, "b200", "UDP", Some(&tag), "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 200);
    lab.quiet().await;
}

/// Rings and waits: only a CANCEL ends the call.
struct RingForever;

impl SessionHandler for RingForever {
    fn on_invite(&self, invite: PendingInvite) {
        // Nothing is sent while the request is handled, so the transaction sends 100 at once.
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            invite.provisional(StatusCode::RINGING, None);
            invite.cancelled().await;
            drop(invite);
        });
    }
    fn on_offer(&self, _: &DialogId, _: &bytes::Bytes) -> OfferAnswer {
        OfferAnswer::NotAcceptable("test".into())
    }
}

#[tokio::test]
async fn cancel_before_the_answer_gives_487() {
    let lab = lab_with(Arc::new(RingForever), |_, _| {}).await;
    for mut peer in lab.peers().await {
        let t = peer.transport();
        let call_id = format!("cancel-{t}");
        peer.send(request("INVITE", &call_id, 1, "can", t, None, "", SDP_OFFER).as_bytes()).await;
        assert_eq!(peer.response().await.status.as_u16(), 100);
        let ringing = peer.response().await;
        assert_eq!(ringing.status.as_u16(), 180, "{t}");
        assert_eq!(lab.endpoint.pending_invites(), 1);
        peer.send(request("CANCEL", &call_id, 1, "can", t, None, "", "").as_bytes()).await;
        let mut statuses = vec![peer.final_response().await.status, peer.final_response().await.status];
        statuses.sort();
        assert_eq!(statuses, [200, 487], "{t}: 200 to the CANCEL, 487 to the INVITE");
        peer.send(request("ACK", &call_id, 1, "can", t, Some(&to_tag(&ringing)), "", "").as_bytes()).await;
        // A CANCEL for nothing gets 481.
        peer.send(request("CANCEL", "nothing", 1, "none", t, None, "", "").as_bytes()).await;
        assert_eq!(peer.final_response().await.status.as_u16(), 481, "{t}");
    }
    lab.quiet().await;
}

/// Stopping: a call still ringing goes on, new INVITEs and OPTIONS probes get 503 with
/// Retry-After (so the core and a dispatcher's probes move to another instance), and at the
/// end of the drain the ringing call gets 503 too.
#[tokio::test]
async fn a_stopping_endpoint_refuses_new_calls_and_probes_with_503_and_ends_ringing_ones() {
    let lab = lab_with(Arc::new(RingForever), |_, _| {}).await;
    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    peer.send(request("INVITE", "drain-ringing", 1, "dr1", "TCP", None, "", SDP_OFFER).as_bytes()).await;
    assert_eq!(peer.response().await.status.as_u16(), 100);
    let ringing = peer.response().await;
    assert_eq!(ringing.status.as_u16(), 180);
    lab.endpoint.stop_taking_calls(Duration::from_secs(45));
    for method in ["INVITE", "OPTIONS"] {
        let body = if method == "INVITE" { SDP_OFFER } else { "" };
        peer.send(request(method, &format!("drain-{method}"), 1, "dr2", "TCP", None, "", body).as_bytes()).await;
        let refused = peer.final_response().await;
        assert_eq!((refused.status.as_u16(), refused.headers.get("Retry-After")), (503, Some("45")), "{method}");
        assert_eq!(refused.headers.get("Call-ID"), Some(format!("drain-{method}").as_str()));
        if method == "INVITE" {
            assert!(!to_tag(&refused).is_empty(), "a final response to an INVITE carries a To tag");
            peer.send(request("ACK", "drain-INVITE", 1, "dr2", "TCP", Some(&to_tag(&refused)), "", "").as_bytes())
                .await;
        }
    }
    assert_eq!(lab.endpoint.pending_invites(), 1, "the ringing call goes on");
    assert_eq!(lab.endpoint.end_pending_invites(), 1);
    let ended = peer.final_response().await;
    assert_eq!((ended.status.as_u16(), ended.headers.get("Call-ID")), (503, Some("drain-ringing")));
    assert_eq!(to_tag(&ended), to_tag(&ringing), "the same early dialog's tag");
    peer.send(request("ACK", "drain-ringing", 1, "dr1", "TCP", Some(&to_tag(&ended)), "", "").as_bytes()).await;
    lab.quiet().await;
}

#[tokio::test]
async fn requests_the_ua_cannot_serve_get_the_right_status() {
    let lab = lab("answer").await;
    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    type Case = (String, u16, Option<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (
            request("MESSAGE", "m1", 1, "m1", "TCP", None, "", ""),
            405,
            Some(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK")),
        ),
        (
            request("FROBNICATE", "f1", 1, "f1", "TCP", None, "", ""),
            501,
            Some(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK")),
        ),
        (
            request("OPTIONS", "r1", 1, "r1", "TCP", None, "Require: 100rel, foo, timer\r\n", ""),
            420,
            Some(("Unsupported", "foo")),
        ),
        (
            request("INVITE", "s1", 1, "s1", "TCP", None, "Supported: timer\r\nSession-Expires: 30\r\n", SDP_OFFER),
            422,
            Some(("Min-SE", "90")),
        ),
        (request("PRACK", "p1", 2, "p1", "TCP", Some("unknown"), "RAck: 1 1 INVITE\r\n", ""), 481, None),
        (request("PRACK", "p2", 2, "p2", "TCP", Some("unknown"), "", ""), 400, None),
        (
            request("INVITE", "c1", 1, "c1", "TCP", None, "Content-Type: text/plain\r\n", "hello"),
            415,
            Some(("Accept", "application/sdp")),
        ),
        (request("INVITE", "a1", 1, "a1", "TCP", None, "Accept: text/html\r\n", SDP_OFFER), 406, None),
        (request("INVITE", "n1", 1, "n1", "TCP", None, "", ""), 488, None),
        (request("BYE", "b1", 1, "b1", "TCP", None, "", ""), 481, None),
        (request("BYE", "b2", 1, "b2", "TCP", Some("unknown"), "", ""), 481, None),
        (
            request("OPTIONS", "u1", 1, "u1", "TCP", None, "", "")
                .replace("OPTIONS sip:+4799990000@127.0.0.1", "OPTIONS mailto:x@example.com"),
            416,
            None,
        ),
    ];
    for (text, status, header) in cases {
        peer.send(text.as_bytes()).await;
        let response = peer.final_response().await;
        assert_eq!(response.status.as_u16(), status, "{}", text.lines().next().unwrap_or_default());
        if let Some((name, value)) = header {
            assert_eq!(response.headers.get(name), Some(value), "{name} on {status}");
        }
        if status >= 300 && text.starts_with("INVITE") {
            let tag = to_tag(&response);
            let call_id = response.headers.get("Call-ID").expect("Call-ID").to_owned();
            let branch = text
                .split("branch=z9hG4bK")
                .nth(1)
                .and_then(|s| s.split(";").next())
                .expect("branch")
                .trim_end_matches("TCP")
                .to_owned();
            peer.send(request("ACK", &call_id, 1, &branch, "TCP", Some(&tag), "", "").as_bytes()).await;
        }
    }
    lab.quiet().await;
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_fault() {
    let lab = lab("answer").await;
    let base = request("OPTIONS", "bad", 1, "bad", "UDP", None, "", "");
    let cases = [
        (base.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"), "CSeq method does not match the request method"),
        (base.replace("Call-ID: bad\r\n", ""), "Missing Call-ID header"),
        (base.replace("Max-Forwards: 70", "Max-Forwards: 700"), "Malformed Max-Forwards header"),
        (
            base.replace("OPTIONS sip:+4799990000@127.0.0.1 SIP/2.0", "OPTIONS  sip:x@y SIP/2.0"),
            "Malformed Request-Line",
        ),
        (base.replace("SIP/2.0\r\n", "SIP/3.0\r\n"), "Version Not Supported"),
    ];
    let mut peer = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    for (text, reason) in cases {
        peer.send(text.as_bytes()).await;
        let response = peer.final_response().await;
        assert!(response.status == 400 || response.status == 505, "{reason}: {}", response.status.as_u16());
        assert!(response.reason.starts_with(reason), "{} should name {reason}", response.reason);
    }
    // Garbage gets nothing (no Via to answer to), and the endpoint keeps serving.
    peer.send(b"\x00\x01garbage\r\n\r\n").await;
    peer.send(request("OPTIONS", "after", 1, "after", "UDP", None, "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.headers.get("Call-ID"), Some("after"));
}

#[tokio::test]
async fn stream_framing_keepalive_and_split_messages() {
    let lab = lab("answer").await;
    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    // CRLF CRLF ping gets a CRLF pong (RFC 5626 §3.5.1).
    peer.send(b"\r\n\r\n").await;
    let (pong, closed) = peer.read_raw(Duration::from_millis(300)).await;
    assert_eq!((pong.as_slice(), closed), (&b"\r\n"[..], false));
    // Two messages in one write.
    let two = format!(
        "{}{}",
        request("OPTIONS", "two-a", 1, "ta", "TCP", None, "", ""),
        request("OPTIONS", "two-b", 1, "tb", "TCP", None, "", "")
    );
    peer.send(two.as_bytes()).await;
    let first = peer.final_response().await;
    let second = peer.final_response().await;
    assert_eq!((first.headers.get("Call-ID"), second.headers.get("Call-ID")), (Some("two-a"), Some("two-b")));
    // One message over many writes, a byte at a time at first.
    let text = request("INVITE", "split", 1, "sp", "TCP", None, "", SDP_OFFER);
    for chunk in text.as_bytes().chunks(37) {
        peer.send(chunk).await;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(peer.final_response().await.status.as_u16(), 200);
}

#[tokio::test]
async fn oversized_and_stalled_messages_close_the_connection() {
    let lab = lab("answer").await;
    let tcp = lab.endpoint.tcp_addr.expect("tcp");
    // Over 64 KiB: 513, then closed.
    let mut peer = Peer::tcp(tcp).await;
    let body = "a".repeat(70_000);
    let text = request("OPTIONS", "big", 1, "big", "TCP", None, "", "")
        .replace("Content-Length: 0\r\n\r\n", &format!("Content-Length: {}\r\n\r\n", body.len()));
    peer.send(text.as_bytes()).await;
    let response = peer.response().await;
    assert_eq!((response.status.as_u16(), response.reason.as_str()), (513, "Message Too Large"));
    assert!(peer.read_raw(Duration::from_secs(2)).await.1, "closed after 513");
    // A stream with no Content-Length cannot be framed: 400, then closed.
    let mut peer = Peer::tcp(tcp).await;
    peer.send(
        request("OPTIONS", "nolen", 1, "nl", "TCP", None, "", "").replace("Content-Length: 0\r\n", "").as_bytes(),
    )
    .await;
    let response = peer.response().await;
    assert_eq!(
        (response.status.as_u16(), response.reason.as_str()),
        (400, "Missing Content-Length on a stream transport")
    );
    assert!(peer.read_raw(Duration::from_secs(2)).await.1);
    // A partial message that stalls is closed after the message timeout (500 ms here).
    let mut stalled = Peer::tcp(tcp).await;
    stalled.send(b"OPTIONS sip:x@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1").await;
    let (_, closed) = stalled.read_raw(Duration::from_secs(3)).await;
    assert!(closed, "stalled connection closed");
    eventually(Duration::from_secs(3), "connections released", || lab.endpoint.open_connections() == 0).await;
}

#[tokio::test]
async fn a_bad_tls_client_disturbs_no_one_else() {
    let lab = lab("answer").await;
    let tls = lab.endpoint.tls_addr.expect("tls");
    let mut good = Peer::tls(tls, &lab.ca, "tas.example.com").await;
    // Plaintext SIP on the TLS port: the handshake fails and the connection closes.
    let mut plain = Peer::tcp(tls).await;
    plain.send(request("OPTIONS", "plain", 1, "pl", "TCP", None, "", "").as_bytes()).await;
    let (_, closed) = plain.read_raw(Duration::from_secs(3)).await;
    assert!(closed, "plaintext on the TLS port is closed");
    // A client that does not trust our CA fails its own handshake.
    let other_ca = ringer::tls::devcert::generate(&["elsewhere".into()]).expect("certs");
    let dir = tempfile::tempdir().expect("tempdir");
    let files = other_ca.write_to(dir.path()).expect("written");
    let config = ringer::tls::client_config(Some(&files.ca_cert), None).expect("config");
    assert!(tls_connect(tls, config, "tas.example.com").await.is_err());
    // The good connection is unaffected.
    good.send(request("OPTIONS", "good", 1, "good", "TLS", None, "", "").as_bytes()).await;
    assert_eq!(good.final_response().await.status.as_u16(), 200);
}

#[tokio::test]
async fn peer_policy_refuses_before_reading_and_limits_connections() {
    let handler = Arc::new(DefaultActionHandler::new(Action::Answer(App::Voicemail), [127, 0, 0, 1].into()));
    let lab = lab_with(handler.clone(), |config, _| {
        config.policy.allow = vec!["192.0.2.0/24".parse().expect("net")];
    })
    .await;
    let mut refused = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    refused.send(request("OPTIONS", "r", 1, "r", "TCP", None, "", "").as_bytes()).await;
    let (bytes, closed) = refused.read_raw(Duration::from_secs(2)).await;
    assert!(closed && bytes.is_empty(), "refused peer closed without an answer");
    let mut udp = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    udp.send(request("OPTIONS", "r", 1, "r", "UDP", None, "", "").as_bytes()).await;
    assert!(udp.recv_within(Duration::from_millis(500)).await.is_none(), "UDP from a refused peer dropped");

    let limited = lab_with(handler, |config, _| {
        config.policy.max_connections_per_peer = 2;
    })
    .await;
    let tcp = limited.endpoint.tcp_addr.expect("tcp");
    let mut first = Peer::tcp(tcp).await;
    let _second = Peer::tcp(tcp).await;
    eventually(Duration::from_secs(2), "two admitted", || limited.endpoint.open_connections() == 2).await;
    let mut third = Peer::tcp(tcp).await;
    assert!(third.read_raw(Duration::from_secs(2)).await.1, "third connection from the same peer closed");
    first.send(request("OPTIONS", "ok", 1, "ok", "TCP", None, "", "").as_bytes()).await;
    assert_eq!(first.final_response().await.status.as_u16(), 200);
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_from_the_configured_ca() {
    let clients = ringer::tls::devcert::generate(&["core.example.net".into()]).expect("client certs");
    let client_dir = tempfile::tempdir().expect("tempdir");
    let client_files = clients.write_to(client_dir.path()).expect("written");
    let client_ca = client_files.ca_cert.clone();
    let handler = Arc::new(DefaultActionHandler::new(Action::Answer(App::Voicemail), [127, 0, 0, 1].into()));
    let lab = lab_with(handler, |config, dir| {
        let files = ringer::tls::devcert::generate(&["tas.example.com".into()])
            .expect("certs")
            .write_to(&dir.join("server"))
            .expect("w");
        let chain = ringer::tls::load_chain(&files.server_cert).expect("chain");
        let key = ringer::tls::load_key(&files.server_key).expect("key");
        let server = ringer::tls::server_config(chain, key, Some(&client_ca)).expect("mtls config");
        config.tls = Some((ANY.parse().expect("addr"), server));
        std::fs::copy(&files.ca_cert, dir.join("ca.pem")).expect("ca");
    })
    .await;
    let tls = lab.endpoint.tls_addr.expect("tls");
    let anonymous = ringer::tls::client_config(Some(&lab.ca), None).expect("config");
    let mut stream = tls_connect(tls, anonymous, "tas.example.com").await;
    if let Ok(stream) = stream.as_mut() {
        // TLS 1.3 reports the missing certificate after the handshake: the first read fails.
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = stream.write_all(request("OPTIONS", "x", 1, "x", "TLS", None, "", "").as_bytes()).await;
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buffer)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "no SIP answer without a client certificate");
    }
    let identity = (
        ringer::tls::load_chain(&client_files.server_cert).expect("chain"),
        ringer::tls::load_key(&client_files.server_key).expect("key"),
    );
    let with_cert = ringer::tls::client_config(Some(&lab.ca), Some(identity)).expect("config");
    let stream = tls_connect(tls, with_cert, "tas.example.com").await.expect("mutual TLS handshake");
    let mut peer = Peer::Stream { stream: Box::new(stream), buffer: bytes::BytesMut::new(), transport: "TLS" };
    peer.send(request("OPTIONS", "m", 1, "m", "TLS", None, "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 200);
}

#[tokio::test]
async fn responses_never_get_answers() {
    let lab = lab("answer").await;
    let mut peer = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    peer.send(b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: stray\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n").await;
    assert!(peer.recv_within(Duration::from_millis(300)).await.is_none());
    let _ = SocketAddr::from(([127, 0, 0, 1], 0));
    let _ = Message::Response;
}

/// Answers, then hangs up after a moment; reports each BYE's outcome.
struct AnswerThenHangUp {
    outcomes: tokio::sync::mpsc::UnboundedSender<Result<u16, String>>,
}

impl SessionHandler for AnswerThenHangUp {
    fn on_invite(&self, invite: PendingInvite) {
        let Some(call) = invite.answer(bytes::Bytes::from_static(
            b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n",
        )) else {
            return;
        };
        let outcomes = self.outcomes.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let _ = outcomes.send(call.hangup().await.map(u16::from).map_err(|error| error.to_string()));
        });
    }
    fn on_offer(&self, _: &DialogId, offer: &bytes::Bytes) -> OfferAnswer {
        OfferAnswer::Accept(offer.clone())
    }
}

fn ok_to(request: &ringer::sip::message::Request) -> Vec<u8> {
    ringer::sip::transport::response_to(&request.headers, StatusCode::OK, "OK").expect("response").to_bytes()
}

async fn expect_bye(peer: &mut Peer) -> ringer::sip::message::Request {
    match peer.recv_within(WAIT).await {
        Some(Message::Request(request)) if request.method == ringer::sip::message::Method::Bye => request,
        other => panic!("expected a BYE, got {other:?}"),
    }
}

#[tokio::test]
async fn ringer_hangs_up_with_bye_on_the_call_connection() {
    let (outcomes, mut results) = tokio::sync::mpsc::unbounded_channel();
    let lab = lab_with(Arc::new(AnswerThenHangUp { outcomes }), |_, _| {}).await;
    for mut peer in lab.peers().await {
        let t = peer.transport();
        let call_id = format!("bye-{t}");
        peer.send(
            request(
                "INVITE",
                &call_id,
                1,
                "byeinv",
                t,
                None,
                "Record-Route: <sip:proxy.example.com;lr>\r\n",
                SDP_OFFER,
            )
            .as_bytes(),
        )
        .await;
        let ok = peer.final_response().await;
        let tag = to_tag(&ok);
        peer.send(request("ACK", &call_id, 1, "byeack", t, Some(&tag), "", "").as_bytes()).await;
        let bye = expect_bye(&mut peer).await;
        assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:5099", "{t}: to the caller's Contact");
        assert_eq!(bye.headers.get("Call-ID"), Some(call_id.as_str()));
        assert!(
            bye.headers.get("From").is_some_and(|from| from.contains(&format!("tag={tag}"))),
            "{t}: our tag in From"
        );
        assert!(bye.headers.get("To").is_some_and(|to| to.contains("tag=alice1")), "{t}: their tag in To");
        assert_eq!(bye.headers.get("Route"), Some("<sip:proxy.example.com;lr>"), "{t}: the route set");
        assert!(bye
            .headers
            .get("Via")
            .is_some_and(|via| via.starts_with(&format!("SIP/2.0/{t} ")) && via.contains("branch=z9hG4bK")));
        if t == "UDP" {
            // Unanswered, the BYE is retransmitted (Timer E) with the same branch.
            let again = expect_bye(&mut peer).await;
            assert_eq!(again.headers.get("Via"), bye.headers.get("Via"));
        }
        peer.send(&ok_to(&bye)).await;
        let outcome = tokio::time::timeout(WAIT, results.recv()).await.expect("hang-up finished").expect("outcome");
        assert_eq!(outcome, Ok(200), "{t}");
    }
    lab.quiet().await;
}

#[tokio::test]
async fn a_bye_after_the_connection_closed_goes_over_a_new_one_to_the_contact() {
    let (outcomes, mut results) = tokio::sync::mpsc::unbounded_channel();
    let lab = lab_with(Arc::new(AnswerThenHangUp { outcomes }), |_, _| {}).await;
    let contact = tokio::net::TcpListener::bind(ANY).await.expect("listener");
    let contact_addr = contact.local_addr().expect("addr");
    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    let invite = request("INVITE", "reconnect", 1, "rc", "TCP", None, "", SDP_OFFER)
        .replace("Contact: <sip:alice@127.0.0.1:5099>", &format!("Contact: <sip:alice@{contact_addr};transport=tcp>"));
    peer.send(invite.as_bytes()).await;
    let ok = peer.final_response().await;
    peer.send(request("ACK", "reconnect", 1, "rcack", "TCP", Some(&to_tag(&ok)), "", "").as_bytes()).await;
    drop(peer);
    let (socket, _) = tokio::time::timeout(WAIT, contact.accept()).await.expect("ringer connects").expect("accept");
    let mut back = Peer::Stream { stream: Box::new(socket), buffer: bytes::BytesMut::new(), transport: "TCP" };
    let bye = expect_bye(&mut back).await;
    assert_eq!(bye.headers.get("Call-ID"), Some("reconnect"));
    back.send(&ok_to(&bye)).await;
    assert_eq!(tokio::time::timeout(WAIT, results.recv()).await.expect("done").expect("outcome"), Ok(200));
    lab.quiet().await;
}

#[tokio::test]
async fn a_burst_of_requests_in_one_write_gets_every_response() {
    let lab = lab("reject 486").await;
    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    // Far more requests than fit one read, all in one write: nothing may be dropped on a stream.
    let burst: String = (0..2000)
        .map(|i| request("OPTIONS", &format!("burst-{i}"), 1, &format!("b{i}"), "TCP", None, "", ""))
        .collect();
    peer.send(burst.as_bytes()).await;
    for i in 0..2000 {
        let response = peer.final_response().await;
        assert_eq!(
            (response.status.as_u16(), response.headers.get("Call-ID")),
            (200, Some(format!("burst-{i}").as_str()))
        );
    }
}

#[tokio::test]
async fn a_bye_goes_to_the_configured_core_over_verified_tls_once_the_call_connection_closed() {
    let (outcomes, mut results) = tokio::sync::mpsc::unbounded_channel();
    let core = std::net::TcpListener::bind(ANY).expect("core listener");
    core.set_nonblocking(true).expect("nonblocking");
    let core_addr = core.local_addr().expect("addr");
    let lab = lab_with(Arc::new(AnswerThenHangUp { outcomes }), |config, dir| {
        config.outbound.tls = Some(ringer::tls::client_config(Some(&dir.join("ca.pem")), None).expect("client tls"));
        config.outbound.core = ringer::sip::message::Uri::parse(&format!("sips:127.0.0.1:{}", core_addr.port())).ok();
    })
    .await;
    // The emulated core's side: a TLS server with a certificate from the same CA.
    let dir = lab.ca.parent().expect("cert dir").to_owned();
    let chain = ringer::tls::load_chain(&dir.join("server.pem")).expect("chain");
    let key = ringer::tls::load_key(&dir.join("server.key")).expect("key");
    let acceptor = tokio_rustls::TlsAcceptor::from(ringer::tls::server_config(chain, key, None).expect("server"));
    let core = tokio::net::TcpListener::from_std(core).expect("tokio listener");

    let mut peer = Peer::tcp(lab.endpoint.tcp_addr.expect("tcp")).await;
    peer.send(request("INVITE", "to-core", 1, "tc", "TCP", None, "", SDP_OFFER).as_bytes()).await;
    let ok = peer.final_response().await;
    peer.send(request("ACK", "to-core", 1, "tcack", "TCP", Some(&to_tag(&ok)), "", "").as_bytes()).await;
    drop(peer);
    let (socket, _) =
        tokio::time::timeout(WAIT, core.accept()).await.expect("ringer connects to the core").expect("accept");
    let tls = acceptor.accept(socket).await.expect("TLS from ringer");
    let mut back = Peer::Stream { stream: Box::new(tls), buffer: bytes::BytesMut::new(), transport: "TLS" };
    let bye = expect_bye(&mut back).await;
    assert!(
        bye.headers.get("Via").is_some_and(|via| via.starts_with("SIP/2.0/TLS tas.example.com:")),
        "{:?}",
        bye.headers.get("Via")
    );
    back.send(&ok_to(&bye)).await;
    assert_eq!(tokio::time::timeout(WAIT, results.recv()).await.expect("done").expect("outcome"), Ok(200));
}

fn outgoing_invite(to: std::net::SocketAddr, branch: &str) -> ringer::sip::message::Request {
    let text = format!(
        "INVITE sip:+4799990000@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK{branch}\r\nMax-Forwards: 70\r\n\
         From: <sip:tas@127.0.0.1>;tag=ringer1\r\nTo: <sip:+4799990000@{to}>\r\nCall-ID: leg3-{branch}\r\nCSeq: 7 INVITE\r\n\
         Route: <sip:core.example.net;lr>\r\nContent-Length: 0\r\n\r\n"
    );
    match ringer::sip::message::parse_datagram(text.as_bytes()) {
        Ok(Message::Request(request)) => request,
        other => panic!("test INVITE: {other:?}"),
    }
}

async fn expect_request(peer: &mut Peer, method: &str) -> ringer::sip::message::Request {
    match peer.recv_within(WAIT).await {
        Some(Message::Request(request)) if request.method.as_str() == method => request,
        other => panic!("expected {method}, got {other:?}"),
    }
}

#[tokio::test]
async fn client_invite_retransmits_until_a_response_and_acks_a_failure() {
    let lab = lab("answer").await;
    let mut callee = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    let callee_addr: std::net::SocketAddr = callee.local().parse().expect("addr");
    let link = lab.endpoint.udp_link(callee_addr).expect("udp link");
    let mut responses = lab.endpoint.clients().send_invite(outgoing_invite(callee_addr, "a1"), link).expect("sent");
    let first = expect_request(&mut callee, "INVITE").await;
    // Timer A: unanswered, the INVITE comes again (T1 = 50 ms here), same branch.
    let again = expect_request(&mut callee, "INVITE").await;
    assert_eq!(again.headers.get("Via"), first.headers.get("Via"));
    callee
        .send(
            &ringer::sip::transport::response_to(&first.headers, StatusCode::TRYING, "Trying").expect("100").to_bytes(),
        )
        .await;
    assert_eq!(
        tokio::time::timeout(WAIT, responses.recv()).await.expect("in time").map(|r| r.status.as_u16()),
        Some(100)
    );
    let mut busy =
        ringer::sip::transport::response_to(&first.headers, StatusCode::BUSY_HERE, "Busy Here").expect("486");
    busy.headers.set("To", format!("{};tag=bob", first.headers.get("To").expect("To")));
    // Drain INVITE retransmissions that crossed the 100.
    while let Some(Message::Request(_)) = callee.recv_within(Duration::from_millis(150)).await {}
    callee.send(&busy.to_bytes()).await;
    assert_eq!(
        tokio::time::timeout(WAIT, responses.recv()).await.expect("in time").map(|r| r.status.as_u16()),
        Some(486)
    );
    let ack = expect_request(&mut callee, "ACK").await;
    assert_eq!(ack.headers.get("Via"), first.headers.get("Via"), "the ACK for a failure shares the INVITE's branch");
    assert_eq!(ack.headers.get("CSeq"), Some("7 ACK"));
    assert!(ack.headers.get("To").is_some_and(|to| to.ends_with(";tag=bob")));
    assert_eq!(ack.headers.get("Route"), Some("<sip:core.example.net;lr>"));
    assert_eq!(ack.uri, first.uri);
    // Timer D: a retransmitted 486 gets the same ACK, and the TU hears nothing more.
    callee.send(&busy.to_bytes()).await;
    assert_eq!(expect_request(&mut callee, "ACK").await.headers.get("CSeq"), Some("7 ACK"));
    assert!(tokio::time::timeout(Duration::from_millis(200), responses.recv()).await.is_err());
}

#[tokio::test]
async fn client_invite_hands_a_2xx_to_the_tu_and_ends() {
    let lab = lab("answer").await;
    let mut callee = Peer::udp(lab.endpoint.udp_addr.expect("udp")).await;
    let callee_addr: std::net::SocketAddr = callee.local().parse().expect("addr");
    let link = lab.endpoint.udp_link(callee_addr).expect("udp link");
    let mut responses = lab.endpoint.clients().send_invite(outgoing_invite(callee_addr, "b1"), link).expect("sent");
    let invite = expect_request(&mut callee, "INVITE").await;
    let mut ok = ringer::sip::transport::response_to(&invite.headers, StatusCode::OK, "OK").expect("200");
    ok.headers.set("To", format!("{};tag=bob", invite.headers.get("To").expect("To")));
    callee.send(&ok.to_bytes()).await;
    assert_eq!(
        tokio::time::timeout(WAIT, responses.recv()).await.expect("in time").map(|r| r.status.as_u16()),
        Some(200)
    );
    assert!(tokio::time::timeout(WAIT, responses.recv()).await.expect("closed").is_none(), "the transaction ended");
    assert_eq!(lab.endpoint.clients().live(), 0);
    // No ACK from the transaction for a 2xx: that is the TU's, end to end.
    while let Some(message) = callee.recv_within(Duration::from_millis(200)).await {
        assert!(
            matches!(&message, Message::Request(r) if r.method.as_str() == "INVITE"),
            "only INVITE retransmissions: {message:?}"
        );
    }
}

#[tokio::test]
async fn shutdown_hangs_up_every_call() {
    let lab = lab("answer").await;
    let mut peers = lab.peers().await;
    for peer in peers.iter_mut() {
        let t = peer.transport();
        peer.send(request("INVITE", &format!("down-{t}"), 1, "down", t, None, "", SDP_OFFER).as_bytes()).await;
        let ok = peer.final_response().await;
        peer.send(request("ACK", &format!("down-{t}"), 1, "downack", t, Some(&to_tag(&ok)), "", "").as_bytes()).await;
    }
    assert_eq!(lab.endpoint.live_dialogs(), 3);
    let hangups = {
        let endpoint = &lab.endpoint;
        async move { endpoint.hangup_all().await }
    };
    let answer_byes = async {
        for peer in peers.iter_mut() {
            let bye = expect_bye(peer).await;
            peer.send(&ok_to(&bye)).await;
        }
    };
    let (ended, ()) = tokio::join!(hangups, answer_byes);
    assert_eq!(ended, 3);
    lab.quiet().await;
}

/// Takes every message and does nothing with it (the peer here only reads).
struct Discard;

impl ringer::sip::transport::Handler for Discard {
    fn on_message(&self, _message: Message, _link: &ringer::sip::transport::Link) {}
}

fn stream_context() -> ringer::sip::transport::stream::StreamContext {
    ringer::sip::transport::stream::StreamContext {
        handler: Arc::new(Discard),
        policy: Arc::new(PeerPolicy::default()),
        counter: Arc::new(ringer::sip::transport::policy::ConnectionCounter::default()),
        limits: StreamLimits::default(),
        shutdown: tokio_util::sync::CancellationToken::new(),
        mirror: None,
    }
}

const SENDERS: usize = 4;
const LINES_EACH: usize = 1500;
/// "S NNNNN " and 1,000 bytes of padding and a newline.
const LINE_BYTES: usize = 1009;

/// Sends `LINES_EACH` numbered lines of `LINE_BYTES` from each of `SENDERS` tasks at once, with
/// pauses, so that sending goes on while the peer's reading lets the socket fill and drain.
async fn send_numbered_lines(link: &ringer::sip::transport::Link) {
    let padding = "x".repeat(1000);
    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let (link, padding) = (link.clone(), padding.clone());
        tasks.push(tokio::spawn(async move {
            for line in 0..LINES_EACH {
                let text = format!("{sender} {line:05} {padding}\n");
                assert_eq!(text.len(), LINE_BYTES);
                link.send(bytes::Bytes::from(text)).expect("queued");
                if line % 10 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("sender");
    }
}

/// Reads all the senders' lines from `from` in gulps with pauses: the socket fills while it
/// pauses, then drains at once while queued lines still wait.
async fn read_slowly(mut from: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut received = vec![0u8; SENDERS * LINES_EACH * LINE_BYTES];
    let mut filled = 0;
    while filled < received.len() {
        let end = (filled + 64 * 1024).min(received.len());
        let read = from.read(&mut received[filled..end]).await.expect("read");
        assert_ne!(read, 0, "closed after {filled} bytes");
        filled += read;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    received
}

/// Every sender's lines arrived, each sender's in the order it sent them, none cut or mixed.
fn assert_complete_and_in_order(received: &[u8]) {
    let text = std::str::from_utf8(received).expect("text");
    let mut next = [0usize; SENDERS];
    for line in text.lines() {
        let mut fields = line.split(' ');
        let sender: usize = fields.next().and_then(|field| field.parse().ok()).expect("sender field");
        let number: usize = fields.next().and_then(|field| field.parse().ok()).expect("line field");
        assert_eq!(fields.next().map(str::len), Some(1000), "a whole line: {line:.40}");
        assert_eq!(number, next[sender], "sender {sender}'s lines out of order");
        next[sender] += 1;
    }
    assert_eq!(next, [LINES_EACH; SENDERS]);
}

/// Hands over the link of the first message that arrives.
struct FirstLink(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<ringer::sip::transport::Link>>>);

impl ringer::sip::transport::Handler for FirstLink {
    fn on_message(&self, _message: Message, link: &ringer::sip::transport::Link) {
        if let Some(sender) = self.0.lock().unwrap().take() {
            let _ = sender.send(link.clone());
        }
    }
}

/// What concurrent senders put on one connection waits in its send queue for the writer task,
/// which writes bursts together. With a small send buffer and a peer that reads in gulps with
/// pauses (so the socket fills and drains many times while they send), the lines of four
/// senders all arrive, each sender's in order: nothing accepted is lost, cut or overtaken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_over_a_full_tcp_socket_arrive_whole_and_in_order() {
    use tokio::io::AsyncWriteExt;
    // Accepted connections keep the listener's send buffer: fixed and small, where loopback's
    // would grow to megabytes and never fill.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 * 1024).unwrap();
    socket.bind(ANY.parse().unwrap()).unwrap();
    let listener = socket.listen(8).unwrap();
    let addr = listener.local_addr().unwrap();
    let (first, link) = tokio::sync::oneshot::channel();
    let context = ringer::sip::transport::stream::StreamContext {
        handler: Arc::new(FirstLink(std::sync::Mutex::new(Some(first)))),
        ..stream_context()
    };
    tokio::spawn(ringer::sip::transport::stream::serve(listener, None, context));
    let mut peer = tokio::net::TcpStream::connect(addr).await.unwrap();
    peer.write_all(
        b"OPTIONS sip:ringer@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bKlines\r\n\
          Max-Forwards: 70\r\nFrom: <sip:peer@127.0.0.1>;tag=1\r\nTo: <sip:ringer@127.0.0.1>\r\n\
          Call-ID: lines\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    )
    .await
    .unwrap();
    let link = tokio::time::timeout(Duration::from_secs(5), link).await.unwrap().unwrap();
    let ((), received) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(send_numbered_lines(&link), read_slowly(peer))
    })
    .await
    .expect("every line arrives");
    assert_complete_and_in_order(&received);
}

/// The same over TLS to OpenSSL's `s_server`, a peer nobody here wrote, which writes what it
/// decrypts to a pipe read in gulps: it stops reading the socket whenever the pipe is full, and
/// TLS records wait in the connection besides the socket's buffers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sends_over_a_full_tls_connection_reach_openssl_whole_and_in_order() {
    let Some(openssl) = common::sipp::tool(&["openssl"], "openssl") else { return };
    ringer::tls::install_crypto_provider();
    let dir = TempDir::new().unwrap();
    let certs = ringer::tls::devcert::generate(&["localhost".to_owned()]).unwrap().write_to(dir.path()).unwrap();
    let addr = common::free_port();
    let mut server = tokio::process::Command::new(openssl)
        .args(["s_server", "-quiet", "-naccept", "1", "-accept", &addr.to_string()])
        .arg("-cert")
        .arg(&certs.server_cert)
        .arg("-key")
        .arg(&certs.server_key)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    let config = ringer::tls::client_config(Some(&certs.ca_cert), None).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut link = None;
    for _ in 0..100 {
        let connector = Some((tokio_rustls::TlsConnector::from(config.clone()), name.clone()));
        match ringer::sip::transport::stream::connect(addr, connector, stream_context(), Duration::from_secs(5)).await {
            Ok(connected) => {
                link = Some(connected);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let link = link.expect("openssl s_server listening");
    let out = server.stdout.take().unwrap();
    let ((), received) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(send_numbered_lines(&link), read_slowly(out))
    })
    .await
    .expect("every line arrives");
    assert_complete_and_in_order(&received);
}
