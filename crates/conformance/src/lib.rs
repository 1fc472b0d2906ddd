//! `ringer conformance`: the emulated core played against any TAS, a verdict per documented
//! behaviour. The harness registers the TAS's subscribers in its own registry (as the TAS
//! would with UpsertRegistration), runs the emulated SBC with handsets for them, probes the TAS
//! over TLS as the SBC does, and places calls through the SBC with WebRTC-style media, then
//! reads what happened on each leg.
//!
//! The shared context the cases run in is in `harness`; the cases themselves, one file per
//! family, in `cases`; [`run`] starts the harness and runs the families in their fixed order.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod expect;
pub mod probe;
pub mod relay;
pub mod report;

mod cases;
mod config;
mod harness;

use cases::calls::Calls;
use cases::ingress::Ingress;
use cases::registration::{Deletions, Refreshes, Registrations};
use cases::robustness::Robustness;
use cases::run_family;
use cases::sip::Sip;
use cases::tls::Tls;
use harness::Harness;

pub use config::{GrpcSide, HarnessConfig, HarnessError};
pub use report::{CaseResult, Report, Verdict};

/// Runs every case against the TAS; `progress` hears each case's name as it starts.
pub async fn run(
    config: HarnessConfig,
    progress: impl Fn(&str) + Send + Sync + 'static,
) -> Result<Report, HarnessError> {
    let mut harness = Harness::launch(config, progress).await?;
    // The registrations first: the calls need them. Refresh and delete come last, after a
    // time to live has passed and once the TAS may be stopped.
    run_family(&Registrations, &mut harness).await;
    run_family(&Tls, &mut harness).await;
    run_family(&Sip, &mut harness).await;
    run_family(&Calls, &mut harness).await;
    run_family(&Ingress, &mut harness).await;
    run_family(&Robustness, &mut harness).await;
    run_family(&Refreshes, &mut harness).await;
    run_family(&Deletions, &mut harness).await;
    Ok(harness.finish().await)
}
