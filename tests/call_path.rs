//! The operator's call path end to end on loopback: Alice → emulated SBC → ringer (TLS, leg 2)
//! → back to the SBC (leg 3) → the callee's handset (leg 4), for each route type, direction
//! and action.

mod common;

use std::time::Duration;

use common::lab::{final_of, handset, subscriber, Lab};
use ringer::config::core::HandsetMode;
use ringer::core::sbc::CallRoute;
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
    assert_eq!(response.status, 200);
    dialog.ack(None).expect("ACK");
    let received = lab.sbc().handsets().received();
    assert_eq!(received.len(), 1);
    assert!(received[0].request_uri.starts_with("sip:+4799990001@"), "{}", received[0].request_uri);
    let calls = lab.sbc().calls();
    assert_eq!(calls[0].route, CallRoute::Loop(ringer::call::routing::Direction::Terminating));
    let legs: Vec<u8> = calls[0].legs.iter().map(|leg| leg.leg).collect();
    assert_eq!(legs, [1, 2, 3, 4]);
    assert!(calls[0].legs[1].request_uri.starts_with("sip:+224799990001@"), "{:?}", calls[0].legs);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
