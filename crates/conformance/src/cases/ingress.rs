//! The Ingress family: the TAS calls each Ingress subscriber through the core (leg 3 without a
//! Session-ID, which the core accepts only towards an Ingress registration) and the handset
//! answers. The harness cannot start these calls: it waits for them, as long as it is told to.

use std::time::Duration;

use domain::types::{Msisdn, RouteType};

use super::CaseFamily;
use crate::harness::{final_status, Finding, Harness};

/// `call.ingress.<number>`.
pub(crate) struct Ingress;

impl CaseFamily for Ingress {
    const PREFIX: &'static str = "call.ingress.";

    async fn run(&self, harness: &mut Harness) {
        let subscribers = harness.config.subscribers.clone();
        for registration in subscribers.iter().filter(|r| r.route_type == RouteType::Ingress) {
            let Some(number) = &registration.phone_number else { continue };
            let name = format!("call.ingress.{number}");
            let Some(started) = harness.start(&name) else { continue };
            let finding = match harness.config.ingress_wait {
                None => {
                    Finding::skip("Ingress calls start at the TAS: give --ingress-wait and have it call the subscriber")
                }
                Some(wait) => await_ingress(harness, number, wait).await,
            };
            harness.record(&name, "a TAS-originated call to the subscriber goes through the core", started, finding);
        }
    }
}

async fn await_ingress(harness: &Harness, number: &Msisdn, wait: Duration) -> Finding {
    let refused_before = harness.sbc().refused_leg3();
    let seen_before = harness.sbc().calls().iter().filter(|call| &call.callee == number).count();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let calls: Vec<_> = harness.sbc().calls().into_iter().filter(|call| &call.callee == number).collect();
        if let Some(call) = calls.get(seen_before).filter(|call| call.status.is_some()) {
            let mut evidence = vec![format!(
                "route {}, legs {}",
                call.route,
                call.legs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
            )];
            evidence.push(format!("final {}", final_status(call.status)));
            return Finding::pass(evidence);
        }
        if harness.sbc().refused_leg3() > refused_before {
            return Finding::fail(
                format!("an INVITE to {number}, an Ingress subscriber, which the core accepts without Session-ID"),
                "an INVITE the core refused (403): not to a registered Ingress number",
                Vec::new(),
            );
        }
        if tokio::time::Instant::now() >= deadline {
            return Finding::fail(
                format!("an INVITE from the TAS to {number} within {} s", wait.as_secs()),
                "none arrived",
                Vec::new(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
