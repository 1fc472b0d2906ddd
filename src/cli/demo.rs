//! `ringer demo`: the embedded call path on free ports, one call per route type and direction
//! through it, and a table of what happened.

use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use ringer::lab::samples::*;
use ringer::lab::{Lab, LabConfig, LabPorts};
use ringer::sip::message::StatusCode;
use ringer::sip::uac::{OutgoingCall, Progress};
use ringer::types::Msisdn;

/// An offer as a desk phone sends it (the media itself comes with the media apps).
fn offer() -> Bytes {
    let offer = ringer::sdp::plain_audio_offer(1, std::net::IpAddr::from([127, 0, 0, 1]), 40000, &[8, 0]);
    Bytes::from(offer.to_string())
}

struct DemoCall {
    route_type: &'static str,
    direction: &'static str,
    from: &'static str,
    to: &'static str,
    /// Placed by the TAS (Ingress) rather than by Alice.
    from_tas: bool,
}

const CALLS: [DemoCall; 11] = [
    DemoCall { route_type: "loop", direction: "MO", from: LOOP, to: BOB, from_tas: false },
    DemoCall { route_type: "loop", direction: "MT", from: ALICE, to: LOOP, from_tas: false },
    DemoCall { route_type: "loop-mo", direction: "MO", from: LOOP_MO, to: BOB, from_tas: false },
    DemoCall { route_type: "loop-mo", direction: "MT", from: ALICE, to: LOOP_MO, from_tas: false },
    DemoCall { route_type: "loop-mt", direction: "MO", from: LOOP_MT, to: BOB, from_tas: false },
    DemoCall { route_type: "loop-mt", direction: "MT", from: ALICE, to: LOOP_MT, from_tas: false },
    DemoCall { route_type: "fork", direction: "MO", from: FORK, to: BOB, from_tas: false },
    DemoCall { route_type: "fork", direction: "MT", from: ALICE, to: FORK, from_tas: false },
    DemoCall { route_type: "fallback", direction: "MO", from: FALLBACK, to: BOB, from_tas: false },
    DemoCall { route_type: "fallback", direction: "MT", from: ALICE, to: FALLBACK, from_tas: false },
    DemoCall { route_type: "ingress", direction: "TAS", from: TAS_NUMBER, to: INGRESS, from_tas: true },
];

/// Runs the demo; exits 0 when every call was answered.
pub(super) async fn run() -> anyhow::Result<ExitCode> {
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certs = ringer::tls::devcert::ensure(std::path::Path::new(super::serve::EMBEDDED_CERT_DIR), &names)?;
    let lab = Lab::start(LabConfig::samples(LabPorts::ANY), &certs).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !lab.registered() {
        anyhow::ensure!(tokio::time::Instant::now() < deadline, "the sample subscribers did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "{:<9} {:<4} {:<27} {:<11} {:<29} {:<7} {:<38} final",
        "route", "dir", "call", "core route", "legs (status)", "prefix", "TAS action"
    );
    let mut all_answered = true;
    for demo in &CALLS {
        let (from, to) = (Msisdn::parse(demo.from)?, Msisdn::parse(demo.to)?);
        let tas_records = lab.tas.router.records().len();
        let call = match demo.from_tas {
            true => lab.tas.call(&to, &from, offer()).await?,
            false => lab.call(&from, &to, offer())?,
        };
        let status = complete(call).await;
        all_answered &= status.is_success();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while lab.live_state() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let sbc_call = lab.sbc().and_then(|sbc| sbc.calls().last().cloned());
        let record = lab.tas.router.records().get(tas_records).cloned();
        let legs = sbc_call
            .as_ref()
            .map(|call| call.legs.iter().map(ToString::to_string).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        let route = sbc_call.as_ref().map(|call| call.route.to_string()).unwrap_or_default();
        let prefix = record.as_ref().and_then(|r| r.prefix.as_ref().map(|p| p.as_str().to_owned()));
        let action = record.as_ref().map(|r| r.outcome.actions.join(", then ")).unwrap_or_else(|| "-".into());
        println!(
            "{:<9} {:<4} {:<27} {:<11} {:<29} {:<7} {:<38} {}",
            demo.route_type,
            demo.direction,
            format!("{} -> {}", demo.from, demo.to),
            route,
            legs,
            prefix.unwrap_or_else(|| "-".into()),
            action,
            status
        );
    }
    lab.shutdown().await;
    Ok(if all_answered { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Follows a call to its final answer; an answered call is held briefly, then hung up.
async fn complete(mut call: OutgoingCall) -> StatusCode {
    loop {
        match tokio::time::timeout(Duration::from_secs(40), call.next()).await {
            Ok(Progress::Provisional(_)) => continue,
            Ok(Progress::Answered(dialog, response)) => {
                let _ = dialog.ack(None);
                tokio::time::sleep(Duration::from_millis(200)).await;
                let _ = dialog.hangup().await;
                return response.status;
            }
            Ok(Progress::Failed(response)) => return response.status,
            Ok(Progress::Cancelled) => return StatusCode::REQUEST_TERMINATED,
            Ok(Progress::TimedOut) | Err(_) => return StatusCode::REQUEST_TIMEOUT,
        }
    }
}
