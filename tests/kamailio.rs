//! Kamailio 5.6 (Debian's) as a stateful, record-routing proxy between the emulated core and
//! ringer, the way operators and load balancers put proxies in front of application servers:
//! `record_route()` + `t_relay()`, two Record-Route values (TLS towards the core, TCP or TLS
//! towards ringer), in-dialog requests routed by `loose_route()` alone. SIPp plays Alice and
//! Bob. Each call must reach its ends, every ACK, BYE, re-INVITE and CANCEL must pass the proxy
//! (a UA that skips the route set sends them past it, and Kamailio answers 404), and nothing
//! may be left in ringer. Under CI=true a missing Kamailio or SIPp fails the test.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::kamailio::{Kamailio, ProxyPorts};
use common::lab::{subscriber, Lab};
use common::sipp::{client, finished, server, tool};
use ringer::config::core::SbcRoute;
use ringer::lab::{LabPorts, ProxyPath};
use ringer::sip::message::StatusCode;
use ringer::types::SipsUri;

const CALLS: u32 = 5;
const LOOP: &str = "+4799990001";
const LOOP_MO: &str = "+4799990002";
const ECHO: &str = "+4799990003";
const ALICE: &str = "+4711111111";
const BOB: &str = "+4755555555";

/// The lab with Kamailio between its core and ringer (`tcp` or `tls` on ringer's side), and
/// the SBC's calls to other numbers routed to SIPp's Bob on `bob_port`.
async fn behind_kamailio(transport: &'static str, bob_port: u16) -> Option<(Lab, Kamailio)> {
    let (core_side, tas_side, tas, interconnect) = (
        common::free_port().port(),
        common::free_port().port(),
        common::free_port().port(),
        common::free_port().port(),
    );
    let subscribers = [
        subscriber(LOOP, "loop", "11", "22", "", ""),
        subscriber(LOOP_MO, "loop-mo", "12", "", "", ""),
        subscriber(ECHO, "loop-mt", "", "23", "", "\"answer echo\""),
    ];
    let routes = vec![SbcRoute { prefix: "+".into(), target: format!("sip:127.0.0.1:{bob_port}") }];
    let lab = Lab::start_adjusted(&subscribers, Vec::new(), routes, |config| {
        config.ports = LabPorts {
            tas_tls: if transport == "tls" { tas } else { 0 },
            tas_plain: (transport == "tcp").then_some(tas),
            access: 0,
            interconnect,
        };
        config.proxy = Some(ProxyPath {
            registered: SipsUri::parse(&format!("sips:localhost:{core_side}")).expect("sip_uri"),
            core_uri: match transport {
                "tcp" => format!("sip:127.0.0.1:{tas_side};transport=tcp"),
                _ => format!("sips:127.0.0.1:{tas_side}"),
            },
        });
    })
    .await;
    let ports = ProxyPorts { core_side, core: interconnect, tas_side, tas, tas_transport: transport };
    let certs = &lab.certs;
    let kamailio = Kamailio::start(ports, &certs.server_cert, &certs.server_key, &certs.ca_cert).await?;
    Some((lab, kamailio))
}

/// Alice's `alice` scenario to `callee` against Bob's `bob` (if any), `CALLS` times; both
/// must succeed, nothing may be left anywhere, and Kamailio must have routed every in-dialog
/// request it got.
async fn run(lab: &Lab, kamailio: &Kamailio, alice: &str, bob: Option<(&str, u16)>, caller: &str, callee: &str) {
    let sipp = tool(&["sipp"], "sip-tester").expect("SIPp checked before");
    let dir = tempfile::tempdir().expect("temp dir");
    let bob = bob.map(|(scenario, port)| {
        let log: PathBuf = dir.path().join("bob.log");
        server(&sipp, scenario, "u1", port, CALLS, &log)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let access = lab.sbc().access.udp_addr.expect("access UDP");
    let (ok, failed, screen) = client(&sipp, alice, "u1", &[("caller", caller)], callee, access, CALLS).await;
    assert_eq!((ok, failed), (CALLS, 0), "{alice}: Alice's calls\n{screen}\n{}", kamailio.log());
    if let Some(bob) = bob {
        let (code, screen) = finished(bob).await;
        assert_eq!(code, Some(0), "Bob's calls\n{screen}\n{}", kamailio.log());
    }
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    assert!(kamailio.unroutable().is_empty(), "requests that skipped the proxy's route: {:?}", kamailio.unroutable());
}

/// How many requests of `method` Kamailio received.
fn seen(kamailio: &Kamailio, method: &str) -> usize {
    kamailio.log().lines().filter(|line| line.contains(&format!("KAMREQ {method} "))).count()
}

/// Every 2xx to an INVITE that crossed the proxy carried both Record-Route values it added
/// (RFC 3261 §12.1.1: the UAS copies them, in order, into the responses that make the dialog).
fn assert_record_route_copied(kamailio: &Kamailio) {
    let log = kamailio.log();
    let answers: Vec<&str> =
        log.lines().filter(|line| line.contains("KAMRPL 200 ") && line.contains(" INVITE)")).collect();
    assert!(!answers.is_empty(), "{log}");
    assert!(answers.iter().all(|line| line.ends_with("record-routes=2")), "{answers:#?}");
}

async fn skip_without_sipp() -> bool {
    tool(&["sipp"], "sip-tester").is_none()
}

#[tokio::test]
async fn loop_calls_end_with_the_callers_bye_through_a_record_routing_proxy() {
    if skip_without_sipp().await {
        return;
    }
    for transport in ["tcp", "tls"] {
        let bob_port = common::free_port().port();
        let Some((lab, kamailio)) = behind_kamailio(transport, bob_port).await else { return };
        // MT loop: Alice calls the subscriber; MO loop: the subscriber calls Bob.
        run(&lab, &kamailio, "alice_uac.xml", Some(("bob_uas.xml", bob_port)), ALICE, LOOP).await;
        run(&lab, &kamailio, "alice_uac.xml", Some(("bob_uas.xml", bob_port)), LOOP_MO, BOB).await;
        assert_record_route_copied(&kamailio);
        let calls = 2 * CALLS as usize;
        // Leg 2 (core to ringer) and leg 3 (ringer to core) both pass the proxy: each call's
        // INVITEs, the ACKs of their 2xx and the BYEs relayed by ringer to leg 3.
        assert_eq!(seen(&kamailio, "INVITE"), 2 * calls, "{transport}:\n{}", kamailio.log());
        assert_eq!(seen(&kamailio, "ACK"), 2 * calls, "{transport}: every 2xx ACKed through the proxy");
        assert_eq!(seen(&kamailio, "BYE"), 2 * calls, "{transport}: every BYE through the proxy");
    }
}

#[tokio::test]
async fn a_loop_call_ends_with_the_callees_bye_through_the_proxy() {
    if skip_without_sipp().await {
        return;
    }
    for transport in ["tcp", "tls"] {
        let bob_port = common::free_port().port();
        let Some((lab, kamailio)) = behind_kamailio(transport, bob_port).await else { return };
        run(&lab, &kamailio, "alice_waits_bye.xml", Some(("bob_hangs_up.xml", bob_port)), ALICE, LOOP).await;
        let calls = CALLS as usize;
        assert_eq!(
            seen(&kamailio, "BYE"),
            2 * calls,
            "{transport}: Bob's BYE crossed leg 3 and leg 2\n{}",
            kamailio.log()
        );
    }
}

#[tokio::test]
async fn re_invites_from_either_end_cross_the_proxy() {
    if skip_without_sipp().await {
        return;
    }
    for transport in ["tcp", "tls"] {
        let bob_port = common::free_port().port();
        let Some((lab, kamailio)) = behind_kamailio(transport, bob_port).await else { return };
        run(&lab, &kamailio, "alice_reinvite.xml", Some(("bob_answers_reinvite.xml", bob_port)), ALICE, LOOP).await;
        run(&lab, &kamailio, "alice_waits_bye.xml", Some(("bob_reinvite.xml", bob_port)), ALICE, LOOP).await;
        let calls = 2 * CALLS as usize;
        // Two initial INVITEs and two re-INVITEs (one per leg) per call.
        assert_eq!(seen(&kamailio, "INVITE"), 4 * calls, "{transport}:\n{}", kamailio.log());
        assert_eq!(seen(&kamailio, "ACK"), 4 * calls, "{transport}");
    }
}

#[tokio::test]
async fn a_cancel_before_the_answer_crosses_the_proxy() {
    if skip_without_sipp().await {
        return;
    }
    for transport in ["tcp", "tls"] {
        let bob_port = common::free_port().port();
        let Some((lab, kamailio)) = behind_kamailio(transport, bob_port).await else { return };
        run(&lab, &kamailio, "alice_cancel.xml", Some(("bob_rings.xml", bob_port)), ALICE, LOOP).await;
        let calls = CALLS as usize;
        assert_eq!(seen(&kamailio, "CANCEL"), 2 * calls, "{transport}:\n{}", kamailio.log());
        assert!(
            lab.sbc().calls().iter().all(|call| call.status.is_some_and(|status| status == 487)),
            "{:?}",
            lab.sbc().calls()
        );
    }
}

#[tokio::test]
async fn calls_ringer_answers_itself_are_acked_and_ended_through_the_proxy() {
    if skip_without_sipp().await {
        return;
    }
    for transport in ["tcp", "tls"] {
        let Some((lab, kamailio)) = behind_kamailio(transport, common::free_port().port()).await else { return };
        run(&lab, &kamailio, "alice_uac.xml", None, ALICE, ECHO).await;
        assert_record_route_copied(&kamailio);
        let calls = CALLS as usize;
        assert_eq!(
            seen(&kamailio, "ACK"),
            calls,
            "{transport}: the ACK reached ringer through the proxy\n{}",
            kamailio.log()
        );
        assert_eq!(seen(&kamailio, "BYE"), calls, "{transport}: the BYE reached ringer through the proxy");
        assert_eq!(
            lab.tas.router.records().iter().filter(|record| record.outcome.status == Some(StatusCode::OK)).count(),
            calls
        );
    }
}
