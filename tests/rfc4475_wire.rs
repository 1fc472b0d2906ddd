//! Every RFC 4475 torture message sent to a running endpoint over a real UDP socket, with the
//! answer a UAS owes it asserted (RFC 4475 §3; the default action here is `reject 486`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::sip::Peer;
use ringer::call::DefaultActionHandler;
use ringer::sip::message::Message;

/// The answer owed to each file: a status, or silence (`None`: responses and unanswerable input).
const ANSWERS: &[(&str, Option<u16>)] = &[
    ("TC_WSINV", Some(481)),     // valid, but its To tag names no dialog here
    ("TC_INTMETH", Some(501)),   // an unknown method
    ("TC_ESC01_V", Some(486)),   // a valid INVITE: the default action
    ("TC_ESCNULL_V", Some(405)), // REGISTER: this UA is no registrar
    ("TC_ESC02_V", Some(501)),   // RE%47IST%45R is an extension method, not REGISTER
    ("TC_LWSDISP_V", Some(200)),
    ("TC_LONGREQ_V", Some(486)),
    ("TC_DBLREQ", Some(405)), // the REGISTER only; the INVITE after Content-Length is ignored
    ("TC_SEMIURI_V", Some(200)),
    ("TC_TRANSPORTS_V", Some(200)),
    ("TC_MPART01", Some(405)), // MESSAGE
    ("TC_UNREASON_V", None),
    ("TC_NOREASON_V", None),
    ("TC_BADINV01_I", Some(400)),
    ("TC_CLERR_I", Some(400)),
    ("TC_SCALAR02_V", Some(400)),
    ("TC_SCALARLG_V", None),
    ("TC_QUOTBAL_I", Some(400)),
    ("TC_LTGTRURI_I", Some(400)),
    ("TC_LWSRURI_I", Some(400)),
    ("TC_LWSSTART_V", Some(400)),
    ("TC_TRWS_I", Some(400)),
    ("TC_ESCRURI_V", Some(400)),
    ("TC_BADDATE_V", Some(486)), // the Date is ignored, as the RFC allows
    ("TC_REGBADCT_I", Some(400)),
    ("TC_BADASPEC_I", Some(400)),
    ("TC_BADDN_I", Some(400)),
    ("TC_BADVERS_V", Some(505)),
    ("TC_MISMATCH01_V", Some(400)),
    ("TC_MISMATCH02_V", Some(400)),
    ("TC_BIGCODE_V", None),
    ("TC_NCL_I", Some(400)),
    ("TC_BADBRANCH_V", Some(200)),
    ("TC_INSUF_I", Some(400)),
    ("TC_UNKSCM_V", Some(416)),
    ("TC_NOVELSC_V", Some(416)),
    ("TC_UNKSM2_V", Some(405)), // REGISTER is refused before its URIs matter
    ("TC_BEXT01_V", Some(420)),
    ("TC_INVUT_V", Some(415)),
    ("TC_REGAUT01_V", Some(405)),
    ("TC_MULTI01_I", Some(400)),
    ("TC_MCL01_I", Some(400)),
    ("TC_BCAST_V", None),
    ("TC_ZEROMF_V", Some(200)), // Max-Forwards 0 only matters to a proxy
    ("TC_CPARAM01_V", Some(405)),
    ("TC_CPARAM02_V", Some(405)),
    ("TC_REGESCRT_V", Some(405)),
    ("TC_SDP01_V", Some(406)),   // Accept excludes the SDP the answer would carry
    ("TC_INV2543_I", Some(486)), // RFC 2543: no branch, no Max-Forwards, no Content-Length
    ("TC_TEST_I", None),
];

#[tokio::test]
async fn every_torture_message_gets_the_answer_a_uas_owes_it() {
    let handler = Arc::new(DefaultActionHandler::new("reject 486".parse().expect("action"), [127, 0, 0, 1].into()));
    let endpoint = common::sip::udp_endpoint(handler).await;
    let server = endpoint.udp_addr.expect("udp");
    let dir = common::rfc4475_dir();
    assert_eq!(
        std::fs::read_dir(&dir)
            .expect("corpus")
            .filter(|e| e.as_ref().is_ok_and(|e| e.path().extension().is_some_and(|x| x == "dat")))
            .count(),
        ANSWERS.len()
    );
    let mut failures = Vec::new();
    for (name, expected) in ANSWERS {
        let bytes = std::fs::read(dir.join(format!("{name}.dat"))).expect("corpus file");
        let mut peer = Peer::udp(server).await;
        peer.send(&bytes).await;
        let mut answer = None;
        let limit = if expected.is_some() { Duration::from_secs(3) } else { Duration::from_millis(400) };
        while let Some(message) = peer.recv_within(limit).await {
            match message {
                Message::Response(response) if response.status >= 200 => {
                    answer = Some((response.status, response.reason.clone()));
                    break;
                }
                Message::Response(_) => continue,
                Message::Request(request) => panic!("{name}: a request came back: {}", request.method),
            }
        }
        if answer.as_ref().map(|(status, _)| status.as_u16()) != *expected {
            failures.push(format!("{name}: expected {expected:?}, got {answer:?}"));
        }
    }
    // The endpoint survived all of it.
    let mut peer = Peer::udp(server).await;
    peer.send(common::sip::request("OPTIONS", "alive", 1, "alive", "UDP", None, "", "").as_bytes()).await;
    assert_eq!(peer.final_response().await.status.as_u16(), 200);
    assert!(failures.is_empty(), "{} answers differ:\n{}", failures.len(), failures.join("\n"));
}
