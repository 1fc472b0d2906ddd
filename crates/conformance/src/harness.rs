//! The shared context every case family runs in: the harness's configuration, the emulated SBC
//! (or the core holding one), the caller, the TLS settings for probing the TAS, and the report
//! the cases add their findings to. Also what more than one family needs: starting and
//! recording a case, the `--only` filter, waiting for the core to settle, finding the TAS and
//! connecting to it, and the fixed numbers of the harness's own handsets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use domain::types::{Msisdn, Registration, RouteType};
use emulator::caller::Caller;
use emulator::config::{HandsetConfig, HandsetMode, SbcConfig};
use emulator::registry::Registry;
use emulator::sbc::Sbc;
use sip::message::StatusCode;

use crate::config::{HarnessConfig, HarnessError};
use crate::probe::Probe;
use crate::report::{CaseResult, Report, Verdict};

/// The caller's number for MT calls: no registration.
pub(crate) const ALICE: &str = "+4711111111";
/// The callee of MO calls: a handset that answers.
pub(crate) const BOB: &str = "+4712340000";

/// A running harness.
pub(crate) struct Harness {
    pub(crate) config: HarnessConfig,
    /// The SBC when the harness registers the subscribers itself.
    own_sbc: Option<Sbc>,
    /// The core (its gRPC API, its SBC) when the TAS registers.
    pub(crate) core: Option<emulator::CoreHandle>,
    pub(crate) caller: Caller,
    tls: Arc<rustls::ClientConfig>,
    report: Report,
    progress: Box<dyn Fn(&str) + Send + Sync>,
    /// Each subscriber the TAS registered over gRPC and when it was first seen: the
    /// registration cases fill it, the refresh and delete cases work from it.
    pub(crate) registered: Vec<(Msisdn, Instant)>,
}

impl Harness {
    /// Starts the emulated SBC (or the core with one, when the TAS registers over gRPC) with a
    /// handset per subscriber, and the caller.
    pub(crate) async fn launch(
        config: HarnessConfig,
        progress: impl Fn(&str) + Send + Sync + 'static,
    ) -> Result<Harness, HarnessError> {
        let mut handsets = vec![handset(BOB, HandsetMode::Answer)];
        for registration in &config.subscribers {
            let Some(number) = &registration.phone_number else { continue };
            // The phone beside the TAS: it must leave the call to the TAS where the route type
            // rings both (Fork) or the phone first (Fallback).
            let mode = match registration.route_type {
                RouteType::Fork => HandsetMode::NoAnswer,
                RouteType::Fallback => HandsetMode::Busy,
                _ => HandsetMode::Answer,
            };
            handsets.push(HandsetConfig {
                number: number.clone(),
                mode,
                ring_time: Duration::from_millis(50),
                hang_up_after: None,
            });
        }
        let sbc_config = SbcConfig {
            udp_listen: Some(SocketAddr::new(config.media_address, 0)),
            tcp_listen: None,
            tls_listen: None,
            interconnect_listen: config.interconnect,
            cert_file: Some(config.cert_file.clone()),
            key_file: Some(config.key_file.clone()),
            tas_ca_file: config.ca_file.clone(),
            domain: "core.ringer.invalid".into(),
            fallback_no_answer: Duration::from_secs(5),
            handsets,
            routes: Vec::new(),
            dns_server: None,
            leg2_tel: false,
            fork_mo: true,
            rel100: Default::default(),
            session_timer: Default::default(),
            session_expires: Duration::from_secs(1800),
            min_se: Duration::from_secs(90),
        };
        let (own_sbc, core) = match &config.grpc {
            None => {
                // The harness registers the claimed subscribers itself, as the TAS would.
                let registry = Arc::new(Registry::new(Duration::from_secs(3600)));
                for registration in &config.subscribers {
                    if let Some(number) = &registration.phone_number {
                        let registration = Registration { sip_uri: config.target.clone(), ..registration.clone() };
                        registry.upsert(number.clone(), registration);
                    }
                }
                (Some(emulator::sbc::start(&sbc_config, registry).await?), None)
            }
            Some(grpc) => {
                let core_config = emulator::config::CoreConfig {
                    grpc: emulator::config::GrpcListenConfig { listen: grpc.listen, tls: None },
                    time_to_live: grpc.time_to_live,
                    sbc: Some(sbc_config),
                    ..Default::default()
                };
                (None, Some(emulator::start(&core_config).await?))
            }
        };
        let caller = Caller::start(config.media_address, "ringer-conformance").await?;
        let tls = tls::client_config(config.ca_file.as_deref(), None)?;
        let report = Report { target: config.target.as_str().to_owned(), cases: Vec::new() };
        Ok(Harness { config, own_sbc, core, caller, tls, report, progress: Box::new(progress), registered: Vec::new() })
    }

    /// Stops the SBC, the caller and the core; the report of every case recorded.
    pub(crate) async fn finish(self) -> Report {
        self.sbc().shutdown();
        let Harness { report, caller, core, .. } = self;
        caller.shutdown();
        if let Some(core) = core {
            core.shutdown().await;
        }
        report
    }

    /// The cases recorded so far.
    pub(crate) fn cases(&self) -> &[CaseResult] {
        &self.report.cases
    }

    /// The emulated SBC the calls go through.
    pub(crate) fn sbc(&self) -> &Sbc {
        match (&self.own_sbc, &self.core) {
            (Some(sbc), _) => sbc,
            (None, Some(core)) => core.sbc().unwrap_or_else(|| unreachable!("the core was started with an SBC")),
            (None, None) => unreachable!("the harness runs an SBC or a core with one"),
        }
    }

    /// The call's last check: every dialog and transaction at the core ends within 5 s. A pass
    /// with `evidence`, or a failure against `expected` saying how many are still open.
    pub(crate) async fn settled(&self, expected: &str, evidence: Vec<String>) -> Finding {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        if poll_until(deadline, POLL, || self.sbc().live_state() == 0).await {
            return Finding::pass(evidence);
        }
        let open = self.sbc().live_state();
        Finding::fail(expected, format!("{open} dialogs or transactions still open at the core after 5 s"), evidence)
    }

    /// Adds case `name`, started at `started`, to the report with what it found.
    pub(crate) fn record(&mut self, name: &str, description: &str, started: Instant, finding: Finding) {
        self.report.cases.push(CaseResult {
            name: name.to_owned(),
            description: description.to_owned(),
            verdict: finding.verdict,
            evidence: finding.evidence,
            outcome: finding.outcome,
            duration: started.elapsed(),
        });
    }

    /// Starts case `name` (the progress callback hears it), or `None` when `only` leaves it out.
    pub(crate) fn start(&self, name: &str) -> Option<Instant> {
        if !wanted(&self.config.only, name) {
            return None;
        }
        (self.progress)(name);
        Some(Instant::now())
    }

    /// Where the TAS is: its port, or DNS SRV `_sips._tcp` as the core resolves it.
    async fn address(&self) -> Result<(SocketAddr, Vec<String>), String> {
        let host = self.config.target.host().to_owned();
        let (server, port, evidence) = match self.config.target.port() {
            Some(port) => (host.clone(), port, vec![format!("{host}:{port} from the sip_uri")]),
            None => {
                match self.sbc().interconnect.user_agent().outbound().srv(&host, sip::transport::Transport::Tls).await {
                    Some((server, port)) => {
                        (server.clone(), port, vec![format!("SRV _sips._tcp.{host} → {server}:{port}")])
                    }
                    None => (host.clone(), 5061, vec![format!("no SRV record for _sips._tcp.{host}: port 5061")]),
                }
            }
        };
        let addr = tokio::net::lookup_host((server.as_str(), port))
            .await
            .map_err(|error| format!("{server}: {error}"))?
            .next()
            .ok_or_else(|| format!("{server}: no address"))?;
        Ok((addr, evidence))
    }

    /// A TLS connection to the TAS, as the core would open it, with how it was found.
    pub(crate) async fn connect(&self) -> Result<(Probe, Vec<String>), String> {
        let (addr, mut evidence) = self.address().await?;
        let probe = Probe::connect(addr, self.config.target.host(), self.tls.clone()).await?;
        evidence.push(format!("TLS {} with {addr}", probe.version));
        Ok((probe, evidence))
    }
}

fn handset(number: &str, mode: HandsetMode) -> HandsetConfig {
    let number = Msisdn::parse(number).unwrap_or_else(|_| unreachable!("{number} is E.164"));
    HandsetConfig { number, mode, ring_time: Duration::from_millis(50), hang_up_after: None }
}

/// What a case found: its verdict, the evidence on the way and, for a call, what the TAS did.
pub(crate) struct Finding {
    pub(crate) verdict: Verdict,
    pub(crate) evidence: Vec<String>,
    pub(crate) outcome: Option<String>,
}

impl Finding {
    pub(crate) fn pass(evidence: Vec<String>) -> Self {
        Finding { verdict: Verdict::Pass, evidence, outcome: None }
    }

    pub(crate) fn fail(expected: impl Into<String>, got: impl Into<String>, evidence: Vec<String>) -> Self {
        Finding { verdict: Verdict::fail(expected, got), evidence, outcome: None }
    }

    pub(crate) fn skip(reason: impl Into<String>) -> Self {
        Finding { verdict: Verdict::skip(reason), evidence: Vec::new(), outcome: None }
    }

    /// The same finding, saying what the TAS did with the call.
    pub(crate) fn with_outcome(self, outcome: Option<String>) -> Self {
        Finding { outcome, ..self }
    }
}

/// How often the harness looks again at what it waits for.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Polls `condition` every `every` until it holds (true) or `deadline` passes (false).
pub(crate) async fn poll_until(
    deadline: tokio::time::Instant,
    every: Duration,
    mut condition: impl FnMut() -> bool,
) -> bool {
    while !condition() {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
    true
}

/// Whether case `name` is one of `only` (a name, or a prefix ending in `*`); all are when
/// `only` is empty.
fn wanted(only: &[String], name: &str) -> bool {
    only.is_empty()
        || only.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => pattern == name,
        })
}

/// The first lines of a message, for a failure's "got".
pub(crate) fn excerpt(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).lines().take(14).collect::<Vec<_>>().join("\n")
}

/// A leg's or call's final status for the report: the code, or `none` while there is none.
pub(crate) fn final_status(status: Option<StatusCode>) -> String {
    status.map_or_else(|| "none".to_owned(), |status| status.to_string())
}

#[cfg(test)]
mod tests {
    use super::wanted;

    #[test]
    fn only_names_cases_by_name_or_prefix() {
        assert!(wanted(&[], "sip.options"), "no filter: every case");
        let only = ["call.race.*".to_owned(), "tls.certificate".to_owned()];
        assert!(wanted(&only, "call.race.bye-bye.+4799990001"));
        assert!(wanted(&only, "tls.certificate"));
        assert!(!wanted(&only, "tls.certificate.more"), "without `*` the whole name must match");
        assert!(!wanted(&only, "call.loop.mt.sip.+4799990001"));
    }
}
