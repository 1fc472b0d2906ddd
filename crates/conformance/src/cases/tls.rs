//! The TLS family: the TAS reachable as the core reaches it (its port, or DNS SRV), with TLS
//! 1.2+ and a certificate for its `sip_uri` host that chains to the configured CA.

use super::CaseFamily;
use crate::harness::{Finding, Harness};

/// `tls.certificate`.
pub(crate) struct Tls;

impl CaseFamily for Tls {
    const PREFIX: &'static str = "tls.";

    async fn run(&self, harness: &mut Harness) {
        let Some(started) = harness.start("tls.certificate") else { return };
        let finding = match harness.connect().await {
            Ok((_, evidence)) => Finding::pass(evidence),
            Err(error) => Finding::fail(
                format!(
                    "a TLS 1.2+ handshake with a certificate for {} that chains to {} (spec: the core verifies the TAS over TLS)",
                    harness.config.target.host(),
                    harness.config.ca_file.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "the system roots".into())
                ),
                error,
                Vec::new(),
            ),
        };
        harness.record("tls.certificate", "TLS 1.2+, certificate valid for the sip_uri host", started, finding);
    }
}
