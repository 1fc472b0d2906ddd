//! The operator's call path end to end on loopback: Alice → emulated SBC → ringer (TLS, leg 2)
//! → back to the SBC (leg 3) → the callee's handset (leg 4), for each route type, direction
//! and action.

mod common;

use std::time::Duration;

use common::lab::{final_of, handset, subscriber, Lab};
use ringer::config::core::HandsetMode;
use ringer::core::sbc::CallRoute;
use ringer::sip::message::StatusCode;
use ringer::sip::uac::Progress;

const ALICE: &str = "+4711111111";

#[tokio::test]
async fn loop_mt_reaches_the_callee_without_the_prefix() {
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "11", "22", "", "")],
        vec![handset("+4799990001", HandsetMode::Answer)],
    )
    .await;
    let mut call = lab.call(ALICE, "+4799990001");
    let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
    assert_eq!(response.status.as_u16(), 200);
    dialog.ack(None).expect("ACK");
    let received = lab.sbc().handsets().received();
    assert_eq!(received.len(), 1);
    assert!(received[0].request_uri.starts_with("sip:+4799990001@"), "{}", received[0].request_uri);
    let calls = lab.sbc().calls();
    assert_eq!(calls[0].route, CallRoute::Loop(ringer::call::routing::Direction::Terminating));
    let legs: Vec<u8> = calls[0].legs.iter().map(|leg| leg.leg.number()).collect();
    assert_eq!(legs, [1, 2, 3, 4]);
    assert!(calls[0].legs[1].request_uri.starts_with("sip:+224799990001@"), "{:?}", calls[0].legs);
    let stats = lab.tas.router.stats().view();
    assert_eq!((stats.request_hop.count, stats.answer_hop.count), (1, 1), "the relay's latency was measured");
    assert!(stats.request_hop.max_us > 0 && stats.request_hop.max_us < 5_000_000, "{stats:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

use ringer::call::routing::Direction;
use ringer::sip::uac::OutgoingCall;

const BOB: &str = "+4755555555";
const CAROL: &str = "+4766666666";

/// Calls `to`, expects a 2xx, ACKs it; returns the dialog.
async fn answered(lab: &Lab, from: &str, to: &str) -> ringer::sip::call::CallHandle {
    let mut call = lab.call(from, to);
    match final_of(&mut call).await {
        Progress::Answered(dialog, response) => {
            assert_eq!(response.status.as_u16(), 200);
            dialog.ack(None).expect("ACK");
            dialog
        }
        other => panic!("{to}: expected 200, got {other:?}"),
    }
}

/// Calls `to` and expects a final status.
async fn refused(lab: &Lab, from: &str, to: &str) -> u16 {
    let mut call: OutgoingCall = lab.call(from, to);
    match final_of(&mut call).await {
        Progress::Failed(response) => response.status.as_u16(),
        other => panic!("{to}: expected a refusal, got {other:?}"),
    }
}

/// The last call's legs as (leg, final status) now; 0 while a leg is under way.
fn legs_now(lab: &Lab) -> Vec<(u8, u16)> {
    let calls = lab.sbc().calls();
    calls
        .last()
        .expect("a call")
        .legs
        .iter()
        .map(|leg| (leg.leg.number(), leg.status.map_or(0, |s| s.as_u16())))
        .collect()
}

/// The last call's legs once each has its final status (a cancelled leg's 487 comes a moment
/// after the call it lost to was answered).
async fn legs(lab: &Lab) -> Vec<(u8, u16)> {
    common::poll_until(Duration::from_secs(5), || legs_now(lab).iter().all(|(_, status)| *status != 0)).await;
    legs_now(lab)
}

/// Checks the call record of a call that ended: its times in order, the fields every record
/// has, and `expected` (field → value) exactly.
fn assert_record(record: &serde_json::Value, expected: serde_json::Value) {
    let time = |key: &str| record[key].as_str().map(str::to_owned);
    let (invite, answered, ended) = (time("invite_at"), time("answered_at"), time("ended_at"));
    assert!(invite.is_some() && ended.is_some() && invite <= ended, "{record}");
    if answered.is_some() {
        assert!(invite <= answered && answered <= ended, "{record}");
        assert!(record["duration_ms"].as_i64().is_some(), "{record}");
    }
    assert!(record["call_id"].as_str().is_some_and(|id| !id.is_empty()), "{record}");
    assert!(record["request_uri"].as_str().is_some_and(|uri| uri.starts_with("sip:+")), "{record}");
    for (key, value) in expected.as_object().expect("an object of fields") {
        assert_eq!(&record[key], value, "{key} in {record}");
    }
}

async fn hang_up_and_settle(lab: &Lab, dialog: ringer::sip::call::CallHandle) {
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn loop_mo_goes_through_the_tas_and_bob_hangs_up() {
    let mut bob = handset(BOB, HandsetMode::Answer);
    bob.hang_up_after = Some(Duration::from_millis(300));
    let lab = Lab::start(&[subscriber("+4799990002", "loop-mo", "12", "", "", "")], vec![bob]).await;
    let dialog = answered(&lab, "+4799990002", BOB).await;
    let call = &lab.sbc().calls()[0];
    assert_eq!(call.route, CallRoute::Loop(Direction::Originating));
    assert!(call.legs[1].request_uri.starts_with("sip:+124755555555@"), "MO prefix in leg 2: {:?}", call.legs);
    assert!(call.legs[2].request_uri.starts_with("sip:+4755555555@"), "prefix stripped in leg 3: {:?}", call.legs);
    // Bob's BYE comes back through the core and the TAS to Alice.
    let reason = tokio::time::timeout(Duration::from_secs(5), dialog.ended()).await.expect("Bob's BYE reached Alice");
    assert_eq!(reason, "BYE from the peer");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    let record = &lab.tas.router.records()[0];
    assert_eq!(record.subscriber.as_ref().map(|(_, d)| *d), Some(Direction::Originating));
    assert_eq!(record.outcome.status, Some(StatusCode::OK));
    let records = lab.call_records_when(1).await;
    assert_record(
        &records[0],
        serde_json::json!({
            "subscriber": "+4799990002", "direction": "MO", "route_type": "loop-mo", "prefix": "12",
            "caller": "+4799990002", "callee": BOB, "actions": ["loop"], "final_status": 200,
            // The emulated handsets decline every stream: no codec agreed.
            "diversion_reason": null, "ended_by": "callee", "codec": null, "media": null,
        }),
    );
    assert_eq!(records[0]["leg3_call_ids"].as_array().map(Vec::len), Some(1), "{}", records[0]);
    assert!(records[0]["duration_ms"].as_i64().is_some_and(|ms| ms >= 250), "Bob hung up after 300 ms: {}", records[0]);
}

#[tokio::test]
async fn loop_mt_only_leaves_calls_the_subscriber_makes_alone() {
    let lab = Lab::start(
        &[subscriber("+4799990003", "loop-mt", "", "23", "", "")],
        vec![handset(BOB, HandsetMode::Answer), handset("+4799990003", HandsetMode::Answer)],
    )
    .await;
    // MO: the core does not involve the TAS.
    let dialog = answered(&lab, "+4799990003", BOB).await;
    assert_eq!(lab.sbc().calls()[0].route, CallRoute::Direct);
    assert_eq!(legs(&lab).await, [(1, 200), (4, 200)]);
    hang_up_and_settle(&lab, dialog).await;
    // MT: through the TAS with the MT prefix.
    let dialog = answered(&lab, BOB, "+4799990003").await;
    assert_eq!(lab.sbc().calls()[1].route, CallRoute::Loop(Direction::Terminating));
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200), (3, 200), (4, 200)]);
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn reject_relays_the_status_and_reason() {
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "11", "21", "\"reject 403 Barred\"", "\"reject 603\"")],
        vec![handset(BOB, HandsetMode::Answer), handset("+4799990001", HandsetMode::Answer)],
    )
    .await;
    assert_eq!(refused(&lab, ALICE, "+4799990001").await, 603);
    assert_eq!(legs(&lab).await, [(1, 603), (2, 603)]);
    assert_eq!(refused(&lab, "+4799990001", BOB).await, 403);
    assert!(lab.sbc().handsets().received().is_empty(), "nothing reached a handset");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    let records = lab.call_records_when(2).await;
    let refusal = |direction: &str, status: u16, action: &str| {
        serde_json::json!({
            "subscriber": "+4799990001", "direction": direction, "route_type": "loop", "actions": [action],
            "final_status": status, "answered_at": null, "ended_by": "tas", "codec": null, "media": null,
            "leg3_call_ids": [],
        })
    };
    assert_record(&records[0], refusal("MT", 603, "reject 603 Decline"));
    assert_record(&records[1], refusal("MO", 403, "reject 403 Barred"));
}

#[tokio::test]
async fn answer_takes_the_call_at_the_tas() {
    let lab = Lab::start(&[subscriber("+4799990001", "loop", "", "21", "", "\"answer voicemail\"")], vec![]).await;
    let mut call = lab.call(ALICE, "+4799990001");
    let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
    let sdp = String::from_utf8_lossy(&response.body).to_string();
    assert!(
        sdp.contains("m=audio ") && sdp.contains(" RTP/AVP 8") && !sdp.contains("m=audio 0 "),
        "voicemail takes the audio: {sdp}"
    );
    dialog.ack(None).expect("ACK");
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200)]);
    hang_up_and_settle(&lab, dialog).await;
    let records = lab.call_records_when(1).await;
    assert_record(
        &records[0],
        serde_json::json!({
            "subscriber": "+4799990001", "direction": "MT", "actions": ["answer voicemail"], "final_status": 200,
            "ended_by": "caller", "codec": "PCMA", "leg3_call_ids": [],
            // Alice sends no RTP: nothing received, nothing lost.
            "media": { "packets_received": 0, "packets_lost": 0, "loss": 0.0, "jitter_ms": 0.0 },
        }),
    );
}

#[tokio::test]
async fn voicemail_refuses_a_webrtc_offer_without_a_common_codec() {
    let lab = Lab::start(&[subscriber("+4799990001", "loop", "", "21", "", "\"answer voicemail\"")], vec![]).await;
    let offer = "v=0\r\no=sbc 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
                 m=audio 40000 UDP/TLS/RTP/SAVPF 9 18\r\na=rtpmap:9 G722/8000\r\na=rtpmap:18 G729/8000\r\na=rtcp-mux\r\n";
    let mut call = lab.call_offering(ALICE, "+4799990001", offer);
    let Progress::Failed(response) = final_of(&mut call).await else { panic!("expected 488") };
    assert_eq!(response.status.as_u16(), 488);
    let warning = response.headers.get("Warning").unwrap_or_default();
    assert!(warning.contains("PCMA, PCMU, opus"), "the Warning says what ringer has: {warning}");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn forward_retargets_with_history_info_and_diversion() {
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "", "21", "", &format!("\"forward {CAROL}\""))],
        vec![handset(CAROL, HandsetMode::Answer)],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990001").await;
    let received = &lab.sbc().handsets().received()[0];
    assert!(received.request_uri.starts_with(&format!("sip:{CAROL}@")), "{}", received.request_uri);
    assert_eq!(received.diversion.len(), 1, "{received:?}");
    assert!(received.diversion[0].contains("+4799990001") && received.diversion[0].contains("reason=unconditional"));
    let history = received.history_info.join(",");
    assert!(history.contains("index=1") && history.contains("index=1.1") && history.contains("cause=302"), "{history}");
    hang_up_and_settle(&lab, dialog).await;
    let records = lab.call_records_when(1).await;
    assert_record(
        &records[0],
        serde_json::json!({
            "subscriber": "+4799990001", "direction": "MT", "callee": "+4799990001", "caller": ALICE,
            "actions": [format!("forward {CAROL}")], "diversion_reason": "unconditional", "final_status": 200,
            "ended_by": "caller", "codec": null,
        }),
    );
    assert_eq!(records[0]["leg3_call_ids"].as_array().map(Vec::len), Some(1), "{}", records[0]);
}

#[tokio::test]
async fn forward_on_busy_and_on_unreachable() {
    let cfb = format!("{{ action = \"loop\", on_busy = \"forward {CAROL}\" }}");
    let cfnrc = format!("{{ action = \"loop\", on_unreachable = \"forward {CAROL}\" }}");
    let lab = Lab::start(
        &[
            subscriber("+4799990001", "loop-mt", "", "21", "", &cfb),
            subscriber("+4799990002", "loop-mt", "", "22", "", &cfnrc),
        ],
        vec![
            handset("+4799990001", HandsetMode::Busy),
            handset("+4799990002", HandsetMode::Unreachable),
            handset(CAROL, HandsetMode::Answer),
        ],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990001").await;
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200), (3, 486), (4, 486), (3, 200), (4, 200)]);
    let carol =
        lab.sbc().handsets().received().into_iter().find(|call| call.number.as_str() == CAROL).expect("Carol rang");
    assert!(carol.diversion[0].contains("reason=user-busy"), "{:?}", carol.diversion);
    assert!(carol.history_info.join(",").contains("cause=486"), "{:?}", carol.history_info);
    hang_up_and_settle(&lab, dialog).await;

    let dialog = answered(&lab, ALICE, "+4799990002").await;
    let carol = lab
        .sbc()
        .handsets()
        .received()
        .into_iter()
        .filter(|call| call.number.as_str() == CAROL)
        .nth(1)
        .expect("Carol rang again");
    assert!(carol.diversion[0].contains("reason=unavailable"), "{:?}", carol.diversion);
    hang_up_and_settle(&lab, dialog).await;
    let records = lab.call_records_when(2).await;
    let forwarded = |subscriber: &str, reason: &str| {
        serde_json::json!({
            "subscriber": subscriber, "route_type": "loop-mt",
            "actions": ["loop", format!("forward {CAROL} ({reason})")], "diversion_reason": reason,
            "final_status": 200, "ended_by": "caller",
        })
    };
    assert_record(&records[0], forwarded("+4799990001", "user-busy"));
    assert_record(&records[1], forwarded("+4799990002", "unavailable"));
    assert_eq!(records[0]["leg3_call_ids"].as_array().map(Vec::len), Some(2), "{}", records[0]);
}

#[tokio::test]
async fn no_answer_goes_to_voicemail_and_cancels_the_phone() {
    let chain = "{ action = \"loop\", no_answer_after = \"300ms\", on_busy = \"answer voicemail\", on_no_answer = \"answer voicemail\" }";
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "", "21", "", chain)],
        vec![handset("+4799990001", HandsetMode::NoAnswer)],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990001").await;
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200), (3, 487), (4, 487)]);
    let record = &lab.tas.router.records()[0];
    assert_eq!(record.outcome.actions, ["loop", "answer voicemail (no-answer)"]);
    hang_up_and_settle(&lab, dialog).await;
    let records = lab.call_records_when(1).await;
    assert_record(
        &records[0],
        serde_json::json!({
            "subscriber": "+4799990001", "actions": ["loop", "answer voicemail (no-answer)"],
            "diversion_reason": "no-answer", "final_status": 200, "ended_by": "caller", "codec": "PCMA",
        }),
    );
}

#[tokio::test]
async fn cancel_from_alice_before_answer_ends_every_leg() {
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "", "21", "", "")],
        vec![handset("+4799990001", HandsetMode::NoAnswer)],
    )
    .await;
    let mut call = lab.call(ALICE, "+4799990001");
    match tokio::time::timeout(Duration::from_secs(5), call.next()).await.expect("ringing") {
        Progress::Provisional(response) => assert_eq!(response.status.as_u16(), 180),
        other => panic!("expected 180, got {other:?}"),
    }
    // The handset's 180 has come all the way back; make sure the handset leg exists before CANCEL.
    assert!(common::poll_until(Duration::from_secs(5), || legs_now(&lab).len() == 4).await, "{:?}", legs_now(&lab));
    call.cancel();
    assert!(matches!(final_of(&mut call).await, Progress::Cancelled));
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    assert_eq!(legs(&lab).await, [(1, 487), (2, 487), (3, 487), (4, 487)]);
    assert_eq!(lab.tas.router.records()[0].outcome.status, Some(StatusCode::REQUEST_TERMINATED));
    let records = lab.call_records_when(1).await;
    assert_record(
        &records[0],
        serde_json::json!({
            "subscriber": "+4799990001", "actions": ["loop"], "final_status": 487, "answered_at": null,
            "ended_by": "caller", "codec": null, "media": null,
        }),
    );
    assert_eq!(records[0]["leg3_call_ids"].as_array().map(Vec::len), Some(1), "{}", records[0]);
}

#[tokio::test]
async fn fork_subscriber_answers_first_and_the_tas_leg_gets_487() {
    let lab = Lab::start(
        &[subscriber("+4799990004", "fork", "", "24", "", "{ action = \"answer voicemail\", ring_time = \"10s\" }")],
        vec![handset("+4799990004", HandsetMode::Answer)],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990004").await;
    assert_eq!(lab.sbc().calls()[0].route, CallRoute::Fork(Direction::Terminating));
    assert!(common::poll_until(Duration::from_secs(5), || lab.tas.router.records().len() == 1).await);
    assert_eq!(
        lab.tas.router.records()[0].outcome.status,
        Some(StatusCode::REQUEST_TERMINATED),
        "the TAS leg was cancelled"
    );
    assert_eq!(legs(&lab).await, [(1, 200), (2, 487), (4, 200)]);
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn a_fork_subscribers_own_call_is_forked_to_the_tas_which_declines_its_copy() {
    let lab =
        Lab::start(&[subscriber("+4799990004", "fork", "14", "24", "", "")], vec![handset(BOB, HandsetMode::Answer)])
            .await;
    let dialog = answered(&lab, "+4799990004", BOB).await;
    let call = &lab.sbc().calls()[0];
    assert_eq!(
        (call.route, call.prefix.as_ref().map(|p| p.as_str())),
        (CallRoute::Fork(Direction::Originating), Some("14"))
    );
    assert!(call.legs.iter().any(|leg| leg.leg.number() == 2 && leg.request_uri.contains("+144755555555")), "{call:?}");
    assert!(common::poll_until(Duration::from_secs(5), || lab.tas.router.records().len() == 1).await);
    let record = &lab.tas.router.records()[0];
    assert_eq!(record.subscriber.as_ref().map(|(_, direction)| *direction), Some(Direction::Originating));
    assert_eq!(
        record.outcome.status,
        Some(StatusCode::TEMPORARILY_UNAVAILABLE),
        "declined with 480 so that the callee's branch carries the call"
    );
    assert_eq!(legs(&lab).await, [(1, 200), (2, 480), (4, 200)]);
    hang_up_and_settle(&lab, dialog).await;
    // With `fork_mo` off the core sends such calls straight to the callee.
    lab.sbc().set_fork_mo(false);
    let dialog = answered(&lab, "+4799990004", BOB).await;
    assert_eq!(lab.sbc().calls()[1].route, CallRoute::Direct);
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn fork_tas_answers_first_and_the_phone_is_cancelled() {
    let lab = Lab::start(
        &[subscriber("+4799990004", "fork", "", "24", "", "\"answer voicemail\"")],
        vec![handset("+4799990004", HandsetMode::NoAnswer)],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990004").await;
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200), (4, 487)]);
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn fallback_on_busy_and_on_no_answer() {
    let lab = Lab::start_with(
        &[
            subscriber("+4799990005", "fallback", "", "25", "", ""),
            subscriber("+4799990006", "fallback", "", "26", "", ""),
        ],
        vec![handset("+4799990005", HandsetMode::Busy), handset("+4799990006", HandsetMode::NoAnswer)],
        Duration::from_millis(300),
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990005").await;
    assert_eq!(lab.sbc().calls()[0].route, CallRoute::Fallback);
    assert_eq!(legs(&lab).await, [(1, 200), (4, 486), (2, 200)]);
    hang_up_and_settle(&lab, dialog).await;
    let dialog = answered(&lab, ALICE, "+4799990006").await;
    assert_eq!(legs(&lab).await, [(1, 200), (4, 487), (2, 200)]);
    assert!(lab.sbc().calls()[1].legs[2].request_uri.starts_with("sip:+264799990006@"));
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn ingress_lets_the_tas_call_the_subscriber() {
    let lab = Lab::start(
        &[subscriber("+4799990006", "ingress", "", "", "", "")],
        vec![handset("+4799990006", HandsetMode::Answer)],
    )
    .await;
    let to = common::msisdn("+4799990006");
    let from = common::msisdn("+4799999999");
    let offer = bytes::Bytes::from_static(common::lab::OFFER.as_bytes());
    let mut call = lab.tas.call(&to, &from, offer).await.expect("call placed");
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    assert_eq!(lab.sbc().calls()[0].route, CallRoute::Ingress);
    assert_eq!(legs(&lab).await, [(3, 200), (4, 200)]);
    assert_eq!(lab.sbc().refused_leg3(), 0);
    hang_up_and_settle(&lab, dialog).await;
}

#[tokio::test]
async fn a_tas_call_without_session_id_is_refused_and_counted() {
    // Not an Ingress subscriber: a TAS-originated INVITE must be a leg 3 with leg 2's Session-ID.
    let lab =
        Lab::start(&[subscriber("+4799990001", "loop", "", "21", "", "")], vec![handset(BOB, HandsetMode::Answer)])
            .await;
    let offer = bytes::Bytes::from_static(common::lab::OFFER.as_bytes());
    let mut call = lab.tas.call(&common::msisdn(BOB), &common::msisdn("+4799990001"), offer).await.expect("sent");
    match final_of(&mut call).await {
        Progress::Failed(response) => {
            assert_eq!(response.status.as_u16(), 403);
            assert!(response.headers.get("Warning").unwrap_or_default().contains("Session-ID"));
        }
        other => panic!("expected 403, got {other:?}"),
    }
    assert_eq!(lab.sbc().refused_leg3(), 1);
    assert!(lab.sbc().handsets().received().is_empty());
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn calls_without_registrations_go_straight_through() {
    let lab = Lab::start(&[], vec![handset(BOB, HandsetMode::Busy)]).await;
    assert_eq!(refused(&lab, ALICE, BOB).await, 486);
    assert_eq!(lab.sbc().calls()[0].route, CallRoute::Direct);
    assert_eq!(legs(&lab).await, [(1, 486), (4, 486)]);
    assert_eq!(refused(&lab, ALICE, "+4700000000").await, 404, "no handset, no route");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn a_re_invite_is_relayed_across_every_leg() {
    let lab = Lab::start(
        &[subscriber("+4799990001", "loop", "", "21", "", "")],
        vec![handset("+4799990001", HandsetMode::Answer)],
    )
    .await;
    let dialog = answered(&lab, ALICE, "+4799990001").await;
    // Let the ACK travel to the handset before offering again (a re-INVITE before it gets 491).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let offer = bytes::Bytes::from_static(
        b"v=0\r\no=alice 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40002 RTP/AVP 8\r\n",
    );
    let answer = tokio::time::timeout(Duration::from_secs(10), dialog.reinvite(offer))
        .await
        .expect("in time")
        .expect("re-INVITE accepted");
    let answer = String::from_utf8_lossy(&answer).to_string();
    // The handset declines what it cannot play: its answer, relayed back unchanged, says so.
    assert!(answer.contains("m=audio 0 RTP/AVP 8"), "the handset's answer came back: {answer}");
    hang_up_and_settle(&lab, dialog).await;
}

/// An SBC that requires 100rel and session timers of every leg: ringer, as UAS on leg 2, sends
/// its provisional responses reliably and grants a session timer; as UAC on leg 3, it PRACKs
/// the SBC's reliable 180 and keeps the timer the SBC grants.
#[tokio::test]
async fn an_sbc_requiring_100rel_and_timers_gets_them_on_every_leg() {
    use ringer::config::ExtensionUse;
    let lab = Lab::start_adjusted(
        &[subscriber("+4799990001", "loop", "11", "22", "", "")],
        vec![handset("+4799990001", HandsetMode::Answer)],
        Vec::new(),
        |config| {
            config.sbc_extensions.rel100 = ExtensionUse::Required;
            config.sbc_extensions.session_timer = ExtensionUse::Required;
        },
    )
    .await;
    let mut call = lab.call(ALICE, "+4799990001");
    let mut provisional = Vec::new();
    let answered = loop {
        match final_of_or_provisional(&mut call).await {
            Progress::Provisional(response) => provisional.push(response),
            Progress::Answered(dialog, response) => break (dialog, response),
            other => panic!("{other:?}; left: {}", lab.leftovers()),
        }
    };
    let (dialog, response) = answered;
    assert!(response.headers.get("Session-Expires").is_some(), "a session timer granted: {response:?}");
    assert!(provisional.iter().any(|r| r.status == 180 && r.headers.get("RSeq").is_some()), "{provisional:?}");
    dialog.ack(None).expect("ACK");
    assert_eq!(legs(&lab).await, [(1, 200), (2, 200), (3, 200), (4, 200)]);
    hang_up_and_settle(&lab, dialog).await;
}

/// The next provisional or final progress of `call`.
async fn final_of_or_provisional(call: &mut ringer::sip::uac::OutgoingCall) -> Progress {
    tokio::time::timeout(Duration::from_secs(20), call.next()).await.expect("progress within 20 s")
}

/// Every leg 3 the TAS placed, across the calls the core saw (a forwarded leg 3 also starts
/// the call the core routes to the new callee: counted once).
fn legs_3(lab: &Lab) -> usize {
    lab.sbc().calls().iter().flat_map(|call| call.legs.iter().skip(1)).filter(|leg| leg.leg.number() == 3).count()
}

/// Forwards between subscribers come back through the core to the TAS (the new callee's
/// terminating services), so a forwarding loop would never end by itself: a call is not
/// forwarded again once it shows `calls.max_diversions` diversions, nor to a number already
/// in its history; `calls.on_diversion_limit` answers it instead.
#[tokio::test]
async fn forwarding_stops_at_the_diversion_limit_and_at_a_loop() {
    let forward = |number: &str, prefix: &str, to: &str| {
        subscriber(number, "loop-mt", "", prefix, "", &format!("\"forward {to}\""))
    };
    let subscribers = [
        // A chain of four: 1 → 2 → 3 → 4.
        forward("+4799990401", "41", "+4799990402"),
        forward("+4799990402", "42", "+4799990403"),
        forward("+4799990403", "43", "+4799990404"),
        forward("+4799990404", "44", "+4799990405"),
        // Two forwarding to each other.
        forward("+4799990411", "45", "+4799990412"),
        forward("+4799990412", "46", "+4799990411"),
    ];
    let lab = Lab::start_adjusted(&subscribers, Vec::new(), Vec::new(), |config| {
        config.calls.max_diversions = 2;
        config.calls.on_diversion_limit = "reject 482 Loop Detected".parse().expect("action");
    })
    .await;

    // The chain: two diversions (1 → 2 → 3), then 3 may not forward.
    let mut call = lab.call(ALICE, "+4799990401");
    let Progress::Failed(response) = final_of(&mut call).await else { panic!("not refused") };
    assert_eq!((response.status.as_u16(), response.reason.as_str()), (482, "Loop Detected"));
    assert_eq!(legs_3(&lab), 2, "one leg 3 per diversion allowed: {:?}", lab.sbc().calls());
    let legs_2 = lab.sbc().calls().iter().filter(|call| call.legs.iter().any(|leg| leg.leg.number() == 2)).count();
    assert_eq!(legs_2, 3, "the core brought the call to the TAS for 1, 2 and 3");

    // The pair: 11 → 12, and 12 may not send it back to 11.
    let mut call = lab.call(ALICE, "+4799990411");
    let Progress::Failed(response) = final_of(&mut call).await else { panic!("not refused") };
    assert_eq!(response.status.as_u16(), 482);
    assert_eq!(legs_3(&lab), 3, "one more leg 3 only: {:?}", lab.sbc().calls());
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
