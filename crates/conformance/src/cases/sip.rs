//! The SIP family: OPTIONS answered 200 and a CRLFCRLF keep-alive answered with its CRLF pong,
//! each over a fresh TLS connection to the TAS. The OPTIONS check is also the robustness
//! family's proof that the TAS lives on.

use std::time::Duration;

use super::CaseFamily;
use crate::harness::{excerpt, Finding, Harness};
use crate::probe::{self, PROBE_TIMEOUT};

/// `sip.options` and `sip.keepalive`.
pub(crate) struct Sip;

impl CaseFamily for Sip {
    const PREFIX: &'static str = "sip.";

    async fn run(&self, harness: &mut Harness) {
        if let Some(started) = harness.start("sip.options") {
            let finding = match options(harness).await {
                Ok(evidence) => Finding::pass(evidence),
                Err(got) => Finding::fail("200 OK to OPTIONS (RFC 3261 §11)", got, Vec::new()),
            };
            harness.record("sip.options", "OPTIONS is answered 200", started, finding);
        }
        if let Some(started) = harness.start("sip.keepalive") {
            let finding = keepalive(harness).await;
            harness.record("sip.keepalive", "a CRLFCRLF keep-alive gets its CRLF pong", started, finding);
        }
    }
}

async fn keepalive(harness: &Harness) -> Finding {
    let (mut probe, evidence) = match harness.connect().await {
        Ok(connected) => connected,
        Err(error) => return Finding::fail("a TLS connection", error, Vec::new()),
    };
    if let Err(error) = probe.send(b"\r\n\r\n").await {
        return Finding::fail("a CRLF pong", error, evidence);
    }
    let pong = probe.read_raw(Duration::from_secs(2)).await;
    if pong.starts_with(b"\r\n") {
        Finding::pass(evidence)
    } else {
        Finding::fail(
            "CRLF in answer to a CRLFCRLF ping within 2 s (RFC 5626 §4.4.1)",
            format!("{:?}", String::from_utf8_lossy(&pong)),
            evidence,
        )
    }
}

/// OPTIONS to the TAS: the evidence when it is answered 2xx, else what came back.
pub(crate) async fn options(harness: &Harness) -> Result<Vec<String>, String> {
    let (mut probe, mut evidence) = harness.connect().await?;
    let request = probe::options(harness.config.target.as_str(), probe.local, "conformance-options");
    probe.send(request.as_bytes()).await?;
    let response = probe.final_response(PROBE_TIMEOUT).await?;
    evidence.push(format!("{} {}", response.status, response.reason));
    if response.status.is_success() {
        Ok(evidence)
    } else {
        Err(excerpt(&response.to_bytes()))
    }
}
