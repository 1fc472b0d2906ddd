//! Placing a call through the emulated SBC to or from a subscriber and judging it up to the
//! answer: what the TAS did with leg 2 (leg 3 with the Session-ID and the prefix stripped, its
//! own answer, a refusal), against what was declared. The call family and the race family both
//! start their calls here; neither is reached back from this file.

use bytes::Bytes;

use domain::types::{Direction, Msisdn};
use emulator::numbers::addressed_number;
use emulator::sbc::Leg;
use media::peer::{OfferingPeer, PeerOptions};
use sip::message::{StatusCode, Uri};
use sip::uac::Progress;

use crate::expect::Observed;
use crate::harness::{excerpt, final_status, Finding, Harness, ALICE, BOB};
use crate::relay;

/// A call the TAS took (answered itself or through leg 3), its media not yet checked.
pub(crate) struct Established {
    pub(crate) call: sip::call::CallHandle,
    pub(crate) peer: OfferingPeer,
    pub(crate) relay: Option<relay::MediaRelay>,
    /// The SDP answer as the TAS sent it.
    pub(crate) answer: sdp::SessionDescription,
    pub(crate) evidence: Vec<String>,
    /// Leg 3 was answered: a far end (a handset) is in the call.
    pub(crate) far_end: bool,
    /// What the TAS did with the call, for the report.
    pub(crate) outcome: Option<String>,
}

impl Established {
    /// Hangs up and closes the media, then returns `finding` with this call's evidence.
    pub(crate) async fn abandon(self, finding: Finding) -> Finding {
        let _ = self.call.hangup().await;
        self.peer.close().await;
        let mut evidence = self.evidence;
        evidence.extend(finding.evidence);
        Finding { verdict: finding.verdict, evidence, outcome: finding.outcome.or(self.outcome) }
    }
}

/// How a placed call went: up, or finished with a finding.
pub(crate) enum Placed {
    Up(Box<Established>),
    Over(Finding),
}

/// The SDP in `body` when it can be read and has an audio stream.
pub(crate) fn audio_answer(body: &[u8]) -> Option<sdp::SessionDescription> {
    let answer = sdp::SessionDescription::parse(std::str::from_utf8(body).ok()?).ok()?;
    answer.media.iter().any(|media| media.kind == "audio").then_some(answer)
}

/// Places a call through the SBC to or from `number` and checks it up to the answer: leg 3
/// (Session-ID, prefix stripped), a final response in time, an SDP answer in a 2xx. A
/// refusal is a finished call that passed.
pub(crate) async fn place(harness: &mut Harness, number: &Msisdn, direction: Direction) -> Placed {
    let Some(access) = harness.sbc().access.udp_addr else {
        return Placed::Over(Finding::fail("the SBC's access side", "no UDP listener", Vec::new()));
    };
    let alice = Msisdn::parse(ALICE).unwrap_or_else(|_| unreachable!());
    let bob = Msisdn::parse(BOB).unwrap_or_else(|_| unreachable!());
    let (from, to) = match direction {
        Direction::Originating => (number.clone(), bob),
        Direction::Terminating => (alice, number.clone()),
    };
    let refused_before = harness.sbc().refused_leg3();
    let options = PeerOptions::sbc(harness.config.media_address);
    let (peer, offer) = match OfferingPeer::offer(options).await {
        Ok(made) => made,
        Err(error) => return Placed::Over(Finding::fail("a WebRTC offer", error.to_string(), Vec::new())),
    };
    // The media passes a relay that sees what the TAS sends before DTLS.
    let relay = match relay::first_candidate(&offer) {
        Some(candidate) => relay::MediaRelay::start(harness.config.media_address, candidate).await.ok(),
        None => None,
    };
    let offer = match &relay {
        Some(relay) => relay::through(&offer, relay.tas_side()),
        None => offer,
    };
    let mut evidence = Vec::new();
    let mut outgoing = match harness.caller.invite(access, &from, &to, Bytes::from(offer.to_string())) {
        Ok(outgoing) => outgoing,
        Err(error) => return Placed::Over(Finding::fail("leg 1 sent", error.to_string(), evidence)),
    };
    let wait = harness.config.answer_wait;
    let deadline = tokio::time::Instant::now() + wait;
    let outcome = loop {
        match tokio::time::timeout_at(deadline, outgoing.next()).await {
            Ok(Progress::Provisional(_)) => continue,
            Ok(progress) => break Some(progress),
            Err(_) => break None,
        }
    };
    let record = harness.sbc().calls().into_iter().rev().find(|call| call.callee == to);
    if let Some(record) = &record {
        evidence.push(format!(
            "route {}, prefix {}, legs {}",
            record.route,
            record.prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
            record.legs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
        ));
    }
    let leg3 = record.as_ref().and_then(|r| r.legs.iter().find(|leg| leg.leg == Leg::TasToCore).cloned());
    let judged = judge(harness, number, direction, &to, record.as_ref(), outcome.as_ref(), refused_before);
    let (failed, observed) = match judged {
        Ok(observed) => (None, Some(observed)),
        Err(failed) => (Some(failed), None),
    };
    if let Some(leg3) = &leg3 {
        evidence.push(format!("leg 3 to {}", leg3.request_uri));
    }
    let outcome_line = observed.as_ref().map(|observed| match (observed, &leg3, &outcome) {
        (Observed::Leg3(_), Some(leg3), Some(Progress::Answered(..))) if leg3.status.is_some_and(|s| s >= 300) => {
            format!("{observed}, refused {}; then answered by the TAS", final_status(leg3.status))
        }
        (Observed::Leg3(_), Some(leg3), _) if leg3.status.is_some_and(StatusCode::is_success) => {
            format!("{observed}, answered")
        }
        (Observed::Leg3(_), Some(leg3), _) => format!("{observed}, ended {}", final_status(leg3.status)),
        _ => observed.to_string(),
    });
    let (call, response) = match (outcome, failed) {
        (Some(Progress::Answered(call, response)), None) => (call, response),
        (outcome, failed) => {
            if let Some(Progress::Answered(call, _)) = &outcome {
                let _ = call.ack(None);
                let _ = call.hangup().await;
            }
            if outcome.is_none() {
                outgoing.cancel();
            }
            peer.close().await;
            let finding = match (failed, outcome) {
                // The caller's own account of a missing final response says more.
                (Some(failed), Some(_)) => failed,
                (None, Some(Progress::Failed(response))) => {
                    evidence.push(format!("refused: {} {}", response.status, response.reason));
                    return Placed::Over(Finding::pass(evidence).with_outcome(outcome_line));
                }
                (_, None) => Finding::fail(
                    format!("a final response within {} s", wait.as_secs()),
                    "none; the call was cancelled",
                    Vec::new(),
                ),
                (_, Some(other)) => Finding::fail("a final response", format!("{other:?}"), Vec::new()),
            };
            return Placed::Over(Finding { evidence, ..finding });
        }
    };
    let _ = call.ack(None);
    let answer = audio_answer(&response.body);
    let far_end = leg3.is_some_and(|leg| leg.status.is_none_or(|status| status < 300));
    let up = Established {
        call,
        peer,
        relay,
        answer: answer.clone().unwrap_or_default(),
        evidence,
        far_end,
        outcome: outcome_line,
    };
    if answer.is_none() {
        let got = excerpt(&response.to_bytes());
        return Placed::Over(
            up.abandon(Finding::fail(
                "an SDP answer with the audio stream in the 2xx to an INVITE that offered (RFC 3264 §5)",
                got,
                Vec::new(),
            ))
            .await,
        );
    }
    let mut up = up;
    up.evidence.push(format!("answered {} {}", response.status, response.reason));
    Placed::Up(Box::new(up))
}

/// What the TAS did with a call placed to or from `number` for `callee`, from the core's
/// record of it; a finding when that already fails the case: leg 3 without the call's
/// Session-ID, a leg 2 the TAS never answered (the core's own 503 or 408 is not the TAS's
/// refusal), leg 3 to a number the prefix was not removed from, or an outcome other than
/// the one declared for the subscriber and direction.
fn judge(
    harness: &Harness,
    number: &Msisdn,
    direction: Direction,
    callee: &Msisdn,
    record: Option<&emulator::sbc::SbcCall>,
    outcome: Option<&Progress>,
    refused_before: u64,
) -> Result<Observed, Finding> {
    let fail = |expected: String, got: String| Err(Finding::fail(expected, got, Vec::new()));
    if harness.sbc().refused_leg3() > refused_before {
        return fail(
            "leg 3 carries leg 2's Session-ID (spec: the core matches leg 3 to its call by Session-ID)".into(),
            "the TAS sent an INVITE with no known Session-ID; the core refused it 403".into(),
        );
    }
    let legs = record.map(|record| record.legs.as_slice()).unwrap_or_default();
    let Some(leg2) = legs.iter().rev().find(|leg| leg.leg == Leg::CoreToTas) else {
        return fail(
            format!("leg 2 to the TAS for this {direction} call"),
            "the core sent no leg 2: no registration of the TAS routed the call".into(),
        );
    };
    if let Some(why) = &leg2.by_core {
        return fail(
            "the TAS answers leg 2 (a final response of its own)".into(),
            format!("{why}; the caller's {} came from the emulated core, not from the TAS", final_status(leg2.status)),
        );
    }
    let observed = match (legs.iter().find(|leg| leg.leg == Leg::TasToCore), outcome) {
        (Some(leg3), _) => match Uri::parse(&leg3.request_uri).ok().as_ref().and_then(addressed_number) {
            Some(target) => Observed::Leg3(target),
            None => {
                return fail("leg 3 to an E.164 number (+ and digits)".into(), leg3.request_uri.clone());
            }
        },
        // Where the core forked the call, another branch may have answered it.
        (None, Some(Progress::Answered(..))) => match leg2.status {
            Some(status) if status.is_success() => Observed::Answered,
            Some(StatusCode::REQUEST_TERMINATED) | None => Observed::Cancelled,
            Some(status) => Observed::Refused(status.as_u16()),
        },
        (None, Some(Progress::Failed(response))) => Observed::Refused(match leg2.status {
            Some(status) if status >= 300 => status.as_u16(),
            _ => response.status.as_u16(),
        }),
        // No final response, or none the caller could use: the caller's account says so.
        (None, _) => return Err(Finding::fail("a final response", "none", Vec::new())),
    };
    match harness.config.expectations.get(&(number.clone(), direction)) {
        Some(declared) if !declared.matches(&observed, callee) => {
            fail(format!("{declared} for {direction} calls of {number} (as declared)"), observed.to_string())
        }
        None => match &observed {
            Observed::Leg3(target) if target != callee => fail(
                format!(
                    "leg 3 to {callee}, the number with the prefix removed (spec: the TAS strips the prefix); \
                     declare expect-{}=forward:NUMBER if the TAS forwards",
                    direction.to_string().to_lowercase()
                ),
                observed.to_string(),
            ),
            _ => Ok(observed),
        },
        Some(_) => Ok(observed),
    }
}
