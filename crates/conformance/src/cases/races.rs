//! The BYE races (RFC 5407): for each subscriber whose calls the TAS takes, a re-INVITE with a
//! BYE right behind it, and (where a far end answered through leg 3) BYEs from both ends at
//! once. Every request gets its final response and nothing is left open. The call family runs
//! them after each subscriber's calls.

use std::time::Duration;

use bytes::Bytes;

use domain::types::{Direction, Msisdn, Registration, RouteType};
use sip::message::StatusCode;

use super::media::connect_media;
use super::placing::{place, Established, Placed};
use super::CaseFamily;
use crate::harness::{poll_until, Finding, Harness};
use crate::relay;
use crate::report::Verdict;

/// `call.race.<race>.<number>` for one subscriber.
pub(crate) struct Races<'a> {
    pub(crate) registration: &'a Registration,
    pub(crate) number: &'a Msisdn,
}

impl CaseFamily for Races<'_> {
    const PREFIX: &'static str = "call.race.";

    async fn run(&self, harness: &mut Harness) {
        let number = self.number;
        let direction = match self.registration.route_type {
            RouteType::LoopMo => Some(Direction::Originating),
            RouteType::Ingress => None,
            _ => Some(Direction::Terminating),
        };
        for race in [Race::ByeCrossesReinvite, Race::ByeFromBothEnds] {
            let name = format!("call.race.{}.{number}", race.name());
            let Some(started) = harness.start(&name) else { continue };
            let finding = match direction {
                Some(direction) => run_race(harness, number, direction, race).await,
                None => Finding::skip("Ingress calls start at the TAS"),
            };
            harness.record(&name, race.description(), started, finding);
        }
    }
}

async fn run_race(harness: &mut Harness, number: &Msisdn, direction: Direction, race: Race) -> Finding {
    let mut up = match place(harness, number, direction).await {
        Placed::Up(up) => *up,
        Placed::Over(Finding { verdict: Verdict::Pass, .. }) => {
            return Finding::skip("the TAS refuses this call: nothing to race")
        }
        Placed::Over(_) => return Finding::skip("the call itself fails (see the call cases)"),
    };
    if let Err(error) = connect_media(&mut up).await {
        return up.abandon(Finding::skip(format!("no media to race over: {error}"))).await;
    }
    let Established { call, mut peer, relay, mut evidence, far_end, .. } = up;
    let finding = match race {
        Race::ByeCrossesReinvite => {
            let offer = match peer.reoffer().await {
                Ok(offer) => offer,
                Err(error) => {
                    let _ = call.hangup().await;
                    peer.close().await;
                    return Finding::fail("a WebRTC re-offer", error.to_string(), evidence);
                }
            };
            let offer = match &relay {
                Some(relay) => relay::through(&offer, relay.tas_side()),
                None => offer,
            };
            let towards_tas = harness.sbc().interconnect.clients().clone();
            let before = towards_tas.in_progress();
            let (reinvite, (crossed, bye)) = tokio::join!(
                tokio::time::timeout(Duration::from_secs(10), call.reinvite(Bytes::from(offer.to_string()))),
                async {
                    // The BYE leaves the moment the core has relayed the re-INVITE to the
                    // TAS, so that both reach it before it can answer.
                    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
                    let crossed =
                        poll_until(deadline, Duration::from_millis(1), || towards_tas.in_progress() > before).await;
                    (crossed, call.hangup().await)
                }
            );
            if !crossed {
                evidence.push("the re-INVITE was not seen going to the TAS before the BYE".into());
            }
            evidence.push(match &reinvite {
                Ok(Ok(_)) => "re-INVITE answered 200".to_owned(),
                Ok(Err(error)) => format!("re-INVITE ended: {error}"),
                Err(_) => "re-INVITE unanswered after 10 s".to_owned(),
            });
            evidence
                .push(format!("BYE: {}", bye.as_ref().map(StatusCode::to_string).unwrap_or_else(|e| e.to_string())));
            match (reinvite, bye) {
                (Err(_), _) => Some("the re-INVITE got no final response after the BYE".to_owned()),
                (_, Ok(status)) if status.is_success() => None,
                (_, bye) => Some(format!("BYE answered {bye:?}")),
            }
        }
        Race::ByeFromBothEnds if !far_end => {
            let _ = call.hangup().await;
            peer.close().await;
            return Finding {
                evidence,
                ..Finding::skip("the TAS answers this call itself: no far end to hang up with the caller")
            };
        }
        Race::ByeFromBothEnds => {
            // The far end's BYE is on its way the moment the caller's leaves.
            harness.sbc().handsets().hang_up_all();
            let bye = call.hangup().await;
            evidence.push(format!(
                "caller's BYE: {}",
                bye.as_ref().map(StatusCode::to_string).unwrap_or_else(|e| e.to_string())
            ));
            match bye {
                // The far end's BYE may reach the caller first: then the caller's crosses
                // it (481 is right) or is never sent.
                Ok(status) if status.is_success() || status == StatusCode::CALL_DOES_NOT_EXIST => None,
                Err(sip::dialog::DialogError::NoDialog) => None,
                bye => Some(format!("BYE answered {bye:?}")),
            }
        }
    };
    peer.close().await;
    drop(relay);
    if let Some(got) = finding {
        return Finding::fail(race.expected(), got, evidence);
    }
    harness.settled(race.expected(), evidence).await
}

/// The BYE races the harness runs (RFC 5407).
#[derive(Debug, Clone, Copy)]
enum Race {
    /// A re-INVITE with the caller's BYE right behind it.
    ByeCrossesReinvite,
    /// The caller and the far end hang up at the same moment.
    ByeFromBothEnds,
}

impl Race {
    fn name(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => "bye-reinvite",
            Race::ByeFromBothEnds => "bye-bye",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => "a BYE crossing a re-INVITE: both answered, nothing left open",
            Race::ByeFromBothEnds => "BYE from both ends at once: both answered, nothing left open",
        }
    }

    fn expected(self) -> &'static str {
        match self {
            Race::ByeCrossesReinvite => {
                "the re-INVITE answered (200, or 487 once the BYE came: RFC 3261 §15.1.2), the BYE answered 200, and every leg ended (RFC 5407 §3.5)"
            }
            Race::ByeFromBothEnds => {
                "each BYE answered (200, or 481 for a dialog already gone: RFC 5407 §3.3.2) and every leg ended"
            }
        }
    }
}
