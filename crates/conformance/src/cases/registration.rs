//! The gRPC families, run only when the harness serves SipBreakoutService: each claimed
//! subscriber registered by the TAS (first, since the calls need those registrations), then,
//! after every other case, each registration refreshed in time and finally deleted when the TAS
//! is stopped. The three share what the first one saw, kept in the harness.

use std::time::{Duration, Instant};

use domain::types::Registration;

use super::CaseFamily;
use crate::harness::{poll_until, Finding, Harness, POLL};

/// `grpc.registration.<number>`: UpsertRegistration with the claimed fields.
pub(crate) struct Registrations;

/// `grpc.refresh.<number>`: every registration refreshed before its time to live ran out.
pub(crate) struct Refreshes;

/// `grpc.delete.<number>`: every registration deleted when the TAS stops.
pub(crate) struct Deletions;

impl CaseFamily for Registrations {
    const PREFIX: &'static str = "grpc.registration.";

    /// With the gRPC side: each claimed subscriber registered by the TAS, with the claimed
    /// fields. Notes in the harness when each was first seen.
    async fn run(&self, harness: &mut Harness) {
        let Some(grpc) = harness.config.grpc.clone() else { return };
        let Some(registry) = harness.core.as_ref().map(|core| core.registry().clone()) else { return };
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + grpc.wait;
        for claimed in harness.config.subscribers.clone() {
            let Some(number) = claimed.phone_number.clone() else { continue };
            let name = format!("grpc.registration.{number}");
            let started = harness.start(&name);
            poll_until(deadline, POLL, || registry.lookup(&number).is_some()).await;
            let record = registry.lookup(&number);
            let expected = Registration { sip_uri: harness.config.target.clone(), ..claimed.clone() };
            let finding = match record {
                None => Finding::fail(
                    format!("UpsertRegistration for {number} within {} s", grpc.wait.as_secs()),
                    "no registration",
                    Vec::new(),
                ),
                Some(record) if record.registration != expected => Finding::fail(
                    format!("{expected:?}"),
                    format!("{:?}", record.registration),
                    vec!["the registration's fields differ from what the TAS claims".into()],
                ),
                Some(record) => {
                    seen.push((number.clone(), Instant::now()));
                    Finding::pass(vec![format!(
                        "{} {} mo={} mt={}",
                        record.registration.sip_uri.as_str(),
                        record.registration.route_type.name(),
                        record.registration.mo_prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
                        record.registration.mt_prefix.as_ref().map(|p| p.as_str()).unwrap_or("-"),
                    )])
                }
            };
            // The wait above is needed for the calls even when this case is left out.
            if let Some(started) = started {
                harness.record(
                    &name,
                    "UpsertRegistration with the claimed sip_uri, route type and prefixes",
                    started,
                    finding,
                );
            }
        }
        harness.registered = seen;
    }
}

impl CaseFamily for Refreshes {
    const PREFIX: &'static str = "grpc.refresh.";

    /// With the gRPC side: every registration refreshed before its time to live ran out.
    async fn run(&self, harness: &mut Harness) {
        let Some(grpc) = harness.config.grpc.clone() else { return };
        let Some(registry) = harness.core.as_ref().map(|core| core.registry().clone()) else { return };
        for (number, first_seen) in harness.registered.clone() {
            let name = format!("grpc.refresh.{number}");
            let Some(started) = harness.start(&name) else { continue };
            // Past one time to live from first sight, it lives only if refreshed.
            let lapse = first_seen + grpc.time_to_live + Duration::from_millis(500);
            tokio::time::sleep(lapse.saturating_duration_since(Instant::now())).await;
            let finding = match registry.lookup(&number) {
                Some(record) if record.upserts >= 2 => {
                    Finding::pass(vec![format!("{} upserts within {} s", record.upserts, first_seen.elapsed().as_secs())])
                }
                other => Finding::fail(
                    format!(
                        "a refresh (UpsertRegistration again) before the {} s time to live runs out (spec: registrations expire unless refreshed)",
                        grpc.time_to_live.as_secs()
                    ),
                    match other {
                        Some(record) => format!("{} upsert(s)", record.upserts),
                        None => "the registration lapsed".into(),
                    },
                    Vec::new(),
                ),
            };
            harness.record(&name, "the registration refreshed before its time to live", started, finding);
        }
    }
}

impl CaseFamily for Deletions {
    const PREFIX: &'static str = "grpc.delete.";

    /// With the gRPC side and a delete wait: the vendor stops the TAS as these cases start (the
    /// progress callback hears `grpc.delete.<number>`), and each registration it made is
    /// deleted rather than left to lapse.
    async fn run(&self, harness: &mut Harness) {
        let Some(grpc) = harness.config.grpc.clone() else { return };
        let Some(wait) = grpc.delete_wait else { return };
        let Some(registry) = harness.core.as_ref().map(|core| core.registry().clone()) else { return };
        let deadline = tokio::time::Instant::now() + wait;
        for (number, _) in harness.registered.clone() {
            let name = format!("grpc.delete.{number}");
            let Some(started) = harness.start(&name) else { continue };
            let finding = match poll_until(deadline, POLL, || registry.deletions(&number) > 0).await {
                true => Finding::pass(vec![format!("DeleteRegistration after {} ms", started.elapsed().as_millis())]),
                false => Finding::fail(
                    format!(
                        "DeleteRegistration for {number}, with the registered sip_uri, within {} s of the TAS being stopped (spec: DeleteRegistration removes it before the TTL expires)",
                        wait.as_secs()
                    ),
                    match registry.lookup(&number) {
                        Some(_) => "the registration is still there".to_owned(),
                        None => "no delete; the registration lapsed or was never there".to_owned(),
                    },
                    Vec::new(),
                ),
            };
            harness.record(&name, "the registration deleted when the TAS stops", started, finding);
        }
    }
}
