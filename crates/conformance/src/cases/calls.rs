//! The call family: for each subscriber, a call in each direction its route type brings, with
//! leg 2's Request-URI in both forms the core uses (`sip:` and `tel:`), checked leg by leg, for
//! its media, a mid-call re-offer and the BYE across; then the route type's own cases (a
//! Fallback phone ringing unanswered, a Fork leg cancelled while it rings) and the subscriber's
//! BYE races, in that order.

use std::time::Duration;

use bytes::Bytes;

use domain::types::{Direction, Msisdn, RouteType};
use emulator::config::HandsetMode;
use media::peer::{OfferingPeer, PeerOptions};
use sip::uac::Progress;

use super::media::{audio_both_ways, reoffer};
use super::placing::{place, Established, Placed};
use super::races::Races;
use super::{run_family, CaseFamily};
use crate::harness::{final_status, poll_until, Finding, Harness, ALICE, POLL};
use crate::report::Verdict;
use emulator::sbc::Leg;
use sip::message::StatusCode;

/// `call.<route>.<mo|mt>.<sip|tel>.<number>`, `call.fallback.no-answer.<number>`,
/// `call.fork.cancel.<number>` and the races, subscriber by subscriber.
pub(crate) struct Calls;

impl CaseFamily for Calls {
    const PREFIX: &'static str = "call.";

    async fn run(&self, harness: &mut Harness) {
        let subscribers = harness.config.subscribers.clone();
        for registration in &subscribers {
            let Some(number) = &registration.phone_number else { continue };
            for direction in [Direction::Originating, Direction::Terminating] {
                let short = match direction {
                    Direction::Originating => "mo",
                    Direction::Terminating => "mt",
                };
                let brings = match direction {
                    // The harness's core forks a Fork subscriber's own calls to the TAS too.
                    Direction::Originating => {
                        matches!(registration.route_type, RouteType::Loop | RouteType::LoopMo | RouteType::Fork)
                    }
                    Direction::Terminating => {
                        !matches!(registration.route_type, RouteType::LoopMo | RouteType::Ingress)
                    }
                };
                let route = registration.route_type.name().replace('_', "-");
                // Leg 2's Request-URI in both forms the core uses.
                for (form, tel) in [("sip", false), ("tel", true)] {
                    let name = format!("call.{route}.{short}.{form}.{number}");
                    let Some(started) = harness.start(&name) else { continue };
                    harness.sbc().set_leg2_tel(tel);
                    let finding = match brings {
                        true => call(harness, number, direction).await,
                        false => Finding::skip(format!("route type {route} brings no {} calls", short.to_uppercase())),
                    };
                    harness.sbc().set_leg2_tel(false);
                    let description = format!(
                        "leg 2 ({form}: URI) with the prefix; leg 3 or a final answer; media; re-INVITE; BYE across"
                    );
                    harness.record(&name, &description, started, finding);
                }
            }
            if registration.route_type == RouteType::Fallback {
                let name = format!("call.fallback.no-answer.{number}");
                if let Some(started) = harness.start(&name) {
                    let finding = fallback_on_no_answer(harness, number).await;
                    harness.record(
                        &name,
                        "the phone rings unanswered; the TAS gets leg 2 and answers or refuses in time",
                        started,
                        finding,
                    );
                }
            }
            if registration.route_type == RouteType::Fork {
                let name = format!("call.fork.cancel.{number}");
                if let Some(started) = harness.start(&name) {
                    let finding = cancel_while_ringing(harness, number).await;
                    harness.record(&name, "CANCEL of the ringing TAS leg: 487, nothing left", started, finding);
                }
            }
            run_family(&Races { registration, number }, harness).await;
        }
    }
}

/// One call through the SBC to or from `number`, checked leg by leg.
async fn call(harness: &mut Harness, number: &Msisdn, direction: Direction) -> Finding {
    let mut up = match place(harness, number, direction).await {
        Placed::Up(up) => *up,
        Placed::Over(finding) => return finding,
    };
    let outcome = up.outcome.clone();
    let media = audio_both_ways(&mut up).await;
    if let Err(got) = media {
        return up
            .abandon(Finding::fail(
                "ICE and DTLS complete, no media before DTLS, and audio comes back that is not silence",
                got,
                Vec::new(),
            ))
            .await;
    }
    up.evidence.push("ICE, DTLS and audio both ways".into());
    // The core re-offers mid-call (session refresh, codec checks): the media must go on.
    let reoffer = reoffer(&up.call, &mut up.peer, up.relay.as_ref()).await;
    let Established { call, peer, mut evidence, .. } = up;
    let hangup = call.hangup().await;
    peer.close().await;
    let finding = match (reoffer, hangup) {
        (Err(got), _) => Finding::fail(
            "a re-INVITE mid-call answered 200 with SDP, the media going on (RFC 3261 §14.2)",
            got,
            evidence,
        ),
        (Ok(line), Ok(status)) if status.is_success() => {
            evidence.push(line);
            evidence.push(format!("BYE answered {status}"));
            harness.settled("every leg ended after the caller's BYE (the TAS relays BYE to leg 3)", evidence).await
        }
        (Ok(line), Ok(status)) => {
            evidence.push(line);
            Finding::fail("200 to BYE", format!("{status}"), evidence)
        }
        (Ok(line), Err(error)) => {
            evidence.push(line);
            Finding::fail("200 to BYE", error.to_string(), evidence)
        }
    };
    finding.with_outcome(outcome)
}

/// A Fallback call whose phone rings unanswered (the other calls find it busy): the core
/// cancels it after its no-answer time and sends leg 2, which the TAS must take like any.
async fn fallback_on_no_answer(harness: &mut Harness, number: &Msisdn) -> Finding {
    harness.sbc().handsets().set_mode(number, HandsetMode::NoAnswer);
    let mut finding = call(harness, number, Direction::Terminating).await;
    harness.sbc().handsets().set_mode(number, HandsetMode::Busy);
    let record = harness.sbc().calls().into_iter().rev().find(|call| &call.callee == number);
    let phone =
        record.as_ref().and_then(|r| r.legs.iter().find(|leg| leg.leg == Leg::CoreToCallee).and_then(|leg| leg.status));
    if finding.verdict == Verdict::Pass && phone != Some(StatusCode::REQUEST_TERMINATED) {
        finding.verdict = Verdict::fail(
            "the phone cancelled after the no-answer time, then leg 2 to the TAS",
            format!("the phone's leg ended {}", final_status(phone)),
        );
    }
    finding
}

/// A Fork call cancelled while the TAS leg rings (the core cancels it when the phone
/// answers first): the TAS answers 487 and keeps no dialog.
async fn cancel_while_ringing(harness: &mut Harness, number: &Msisdn) -> Finding {
    let Some(access) = harness.sbc().access.udp_addr else {
        return Finding::fail("the SBC's access side", "no UDP listener", Vec::new());
    };
    let alice = Msisdn::parse(ALICE).unwrap_or_else(|_| unreachable!());
    let (peer, offer) = match OfferingPeer::offer(PeerOptions::sbc(harness.config.media_address)).await {
        Ok(made) => made,
        Err(error) => return Finding::fail("a WebRTC offer", error.to_string(), Vec::new()),
    };
    let mut evidence = Vec::new();
    let mut outgoing = match harness.caller.invite(access, &alice, number, Bytes::from(offer.to_string())) {
        Ok(outgoing) => outgoing,
        Err(error) => return Finding::fail("leg 1 sent", error.to_string(), evidence),
    };
    // Wait until the TAS leg rings (a provisional from it reaches the caller).
    let ringing = loop {
        match tokio::time::timeout(Duration::from_secs(10), outgoing.next()).await {
            Ok(Progress::Provisional(response)) if response.status > 100 => break Ok(response.status),
            Ok(Progress::Provisional(_)) => continue,
            Ok(Progress::Answered(call, _)) => {
                let _ = call.ack(None);
                let _ = call.hangup().await;
                break Err("answered before ringing");
            }
            Ok(_) => break Err("refused before ringing"),
            Err(_) => break Err("no provisional response in 10 s"),
        }
    };
    let status = match ringing {
        Ok(status) => status,
        Err(why) => {
            peer.close().await;
            return Finding { evidence, ..Finding::skip(format!("no ringing phase to cancel: {why}")) };
        }
    };
    evidence.push(format!("{status} relayed to the caller; CANCEL"));
    outgoing.cancel();
    let end = loop {
        match tokio::time::timeout(Duration::from_secs(10), outgoing.next()).await {
            Ok(Progress::Provisional(_)) => continue,
            Ok(progress) => break Some(progress),
            Err(_) => break None,
        }
    };
    peer.close().await;
    // The TAS leg's own final response, as the core got it.
    let leg2 = || {
        let record = harness.sbc().calls().into_iter().rev().find(|call| &call.callee == number);
        record.and_then(|r| r.legs.iter().find(|leg| leg.leg == Leg::CoreToTas).and_then(|leg| leg.status))
    };
    poll_until(tokio::time::Instant::now() + Duration::from_secs(5), POLL, || leg2().is_some()).await;
    let leg2 = leg2();
    evidence.push(format!("leg 2 final: {}", final_status(leg2)));
    if !matches!(end, Some(Progress::Cancelled)) || leg2 != Some(StatusCode::REQUEST_TERMINATED) {
        let leg2 = match leg2 {
            None => "with no final response within 5 s of the CANCEL".to_owned(),
            Some(status) => format!("with {status}"),
        };
        return Finding::fail(
            "487 Request Terminated on the TAS leg after CANCEL (RFC 3261 §9.2)",
            format!("leg 2 ended {leg2}; the caller saw {end:?}"),
            evidence,
        );
    }
    harness.settled("no dialog or transaction left after the CANCEL", evidence).await
}
