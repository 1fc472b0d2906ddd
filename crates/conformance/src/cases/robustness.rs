//! The robustness family: malformed requests (of the kinds RFC 4475 lists) are refused with a
//! 4xx or dropped, and the TAS still answers OPTIONS afterwards.

use std::time::Duration;

use sip::message::Message;

use super::sip::options;
use super::CaseFamily;
use crate::harness::{Finding, Harness};

/// `robustness.malformed`.
pub(crate) struct Robustness;

impl CaseFamily for Robustness {
    const PREFIX: &'static str = "robustness.";

    /// Malformed requests are refused cleanly, and the TAS still answers OPTIONS afterwards.
    async fn run(&self, harness: &mut Harness) {
        let Some(started) = harness.start("robustness.malformed") else { return };
        let mut evidence = Vec::new();
        let mut failure = None;
        for (label, message) in MALFORMED {
            let result = async {
                let (mut probe, _) = harness.connect().await?;
                let text = message.replace("{local}", &probe.local.to_string());
                probe.send(text.as_bytes()).await?;
                match probe.next_message(Duration::from_secs(2)).await {
                    Ok(Message::Response(response)) if response.status.class() == 4 => {
                        Ok(format!("{label}: {} {}", response.status, response.reason))
                    }
                    Ok(Message::Response(response)) => Err(format!("{label}: {} {}", response.status, response.reason)),
                    Ok(Message::Request(request)) => {
                        Ok(format!("{label}: a {} request back, no answer", request.method))
                    }
                    // Dropping what cannot be answered (no usable Via) is fine; so is closing.
                    Err(why) => Ok(format!("{label}: no answer ({why})")),
                }
            }
            .await;
            match result {
                Ok(line) => evidence.push(line),
                Err(line) => {
                    failure.get_or_insert(line.clone());
                    evidence.push(line);
                }
            }
        }
        let finding = match (failure, options(harness).await) {
            (Some(got), _) => Finding::fail(
                "a 4xx response or silence to a malformed request (RFC 3261 §16.3, RFC 4475)",
                got,
                evidence,
            ),
            (None, Err(got)) => Finding::fail("OPTIONS still answered after malformed requests", got, evidence),
            (None, Ok(_)) => Finding::pass(evidence),
        };
        harness.record(
            "robustness.malformed",
            "malformed requests refused cleanly; the TAS lives on",
            started,
            finding,
        );
    }
}

/// Requests the TAS must refuse cleanly (from the kinds RFC 4475 lists); `{local}` is the
/// probe's address for the Via.
const MALFORMED: [(&str, &str); 3] = [
    (
        "CSeq method mismatch (RFC 4475 3.1.2.x)",
        "OPTIONS sip:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad1\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b1\r\nTo: <sip:tas@conformance.invalid>\r\nCall-ID: bad1@conformance\r\n\
         CSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "unknown Request-URI scheme (RFC 4475 3.3.2)",
        "OPTIONS nope:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad2\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b2\r\nTo: <sip:tas@conformance.invalid>\r\nCall-ID: bad2@conformance\r\n\
         CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ),
    (
        "no Call-ID",
        "OPTIONS sip:tas@conformance.invalid SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bKbad3\r\nMax-Forwards: 70\r\n\
         From: <sip:c@conformance.invalid>;tag=b3\r\nTo: <sip:tas@conformance.invalid>\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ),
];
