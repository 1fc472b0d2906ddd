//! `ringer conformance` against a TAS: ringer itself passes every case; deliberately broken
//! TASs fail the right ones (a harness that cannot fail is worthless).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::broken_tas as broken;
use common::fault_proxy;
use ringer::config::serve::ServeConfig;
use ringer::conformance::{self, HarnessConfig, Report, Verdict};
use ringer::tls::devcert::DevCertificateFiles;
use ringer::types::RouteType;

/// A ringer TAS config: three subscribers, leg 3 to the harness at `core`.
fn tas_config(dir: &Path, certs: &DevCertificateFiles, core: SocketAddr) -> String {
    format!(
        "[tas]\nsip_uri = \"sips:localhost:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntls_listen = \"127.0.0.1:0\"\ncert_file = \"{cert}\"\nkey_file = \"{key}\"\n\
         core_uri = \"sips:localhost:{port}\"\ncore_ca_file = \"{ca}\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{vm}\"\n\
         [[subscriber]]\nphone_number = \"+4799990051\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"21\"\n\
         [[subscriber]]\nphone_number = \"+4799990052\"\nroute_type = \"loop-mt\"\nmt_prefix = \"22\"\nmt = \"answer echo\"\n\
         [[subscriber]]\nphone_number = \"+4799990053\"\nroute_type = \"fallback\"\nmt_prefix = \"23\"\n\
         [[subscriber]]\nphone_number = \"+4799990054\"\nroute_type = \"fork\"\nmt_prefix = \"24\"\n\
         mt = {{ action = \"answer echo\", ring_time = \"1s\" }}\n\
         [[subscriber]]\nphone_number = \"+4799990055\"\nroute_type = \"ingress\"\n",
        cert = certs.server_cert.display(),
        key = certs.server_key.display(),
        ca = certs.ca_cert.display(),
        port = core.port(),
        vm = dir.join("voicemail").display(),
    )
}

struct Setup {
    dir: tempfile::TempDir,
    certs: DevCertificateFiles,
    config: ServeConfig,
    core: SocketAddr,
}

fn setup() -> Setup {
    ringer::tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let certs = ringer::tls::devcert::generate(&names).expect("certs").write_to(dir.path()).expect("write");
    let core = common::free_port();
    let path = dir.path().join("ringer.toml");
    std::fs::write(&path, tas_config(dir.path(), &certs, core)).expect("config");
    let config = ServeConfig::load(&path).expect("TAS config");
    Setup { dir, certs, config, core }
}

async fn run_harness_trusting(setup: &Setup, target: &str, ca: &Path) -> Report {
    let config = harness_config(setup, target, ca);
    tokio::time::timeout(Duration::from_secs(120), conformance::run(config, |_| {}))
        .await
        .expect("the harness finishes")
        .expect("the harness runs")
}

fn harness_config(setup: &Setup, target: &str, ca: &Path) -> HarnessConfig {
    HarnessConfig {
        target: ringer::types::SipsUri::parse(target).expect("target"),
        ca_file: Some(ca.to_owned()),
        subscribers: setup.config.registrations(),
        interconnect: setup.core,
        cert_file: setup.certs.server_cert.clone(),
        key_file: setup.certs.server_key.clone(),
        media_address: [127, 0, 0, 1].into(),
        ingress_wait: None,
        answer_wait: Duration::from_secs(30),
        only: Vec::new(),
        expectations: Default::default(),
        grpc: None,
    }
}

fn verdict<'a>(report: &'a Report, name: &str) -> &'a Verdict {
    &report.case(name).unwrap_or_else(|| panic!("no case {name} in\n{}", report.table())).verdict
}

#[tokio::test]
async fn ringer_passes_every_case() {
    let setup = setup();
    let tas = Arc::new(ringer::tas::start_sip(&setup.config).await.expect("TAS starts"));
    let port = tas.endpoint.tls_addr.expect("TLS").port();
    let mut config = harness_config(&setup, &format!("sips:localhost:{port}"), &setup.certs.ca_cert);
    config.ingress_wait = Some(Duration::from_secs(10));
    // What the config above makes the TAS do: every call case must show exactly that.
    use ringer::conformance::expect::Expectation;
    use ringer::types::Direction::{Originating as Mo, Terminating as Mt};
    for (number, direction, expected) in [
        ("+4799990051", Mo, Expectation::Loop),
        ("+4799990051", Mt, Expectation::Loop),
        ("+4799990052", Mt, Expectation::Answer),
        ("+4799990053", Mt, Expectation::Answer),
        ("+4799990054", Mt, Expectation::Answer),
    ] {
        config.expectations.insert((common::msisdn(number), direction), expected);
    }
    // When the harness waits for the Ingress call, the TAS places it (as `ringer call` does).
    let (ingress, mut placing) = tokio::sync::mpsc::unbounded_channel::<()>();
    let caller = tas.clone();
    tokio::spawn(async move {
        if placing.recv().await.is_some() {
            let (to, from) = (common::msisdn("+4799990055"), common::msisdn("+4799999999"));
            let mut call = caller
                .call(&to, &from, bytes::Bytes::from_static(common::lab::OFFER.as_bytes()))
                .await
                .expect("placed");
            if let ringer::sip::uac::Progress::Answered(dialog, _) = common::lab::final_of(&mut call).await {
                let _ = dialog.ack(None);
                let _ = dialog.hangup().await;
            }
        }
    });
    let progress = move |case: &str| {
        if case == "call.ingress.+4799990055" {
            let _ = ingress.send(());
        }
    };
    let report = tokio::time::timeout(Duration::from_secs(120), conformance::run(config, progress))
        .await
        .expect("the harness finishes")
        .expect("the harness runs");
    assert!(report.passed(), "{}", report.table());
    let outcome = |name: &str| report.case(name).and_then(|case| case.outcome.clone()).unwrap_or_default();
    assert_eq!(outcome("call.loop.mt.sip.+4799990051"), "leg 3 to +4799990051, answered", "{}", report.table());
    assert_eq!(outcome("call.loop-mt.mt.tel.+4799990052"), "answered by the TAS itself (no leg 3)");
    let ingress = report.case("call.ingress.+4799990055").expect("Ingress case");
    assert_eq!(ingress.verdict, Verdict::Pass, "{}", report.table());
    assert!(ingress.evidence.iter().any(|line| line.contains("ingress")), "{:?}", ingress.evidence);
    let mut names = vec![
        "tls.certificate".to_owned(),
        "sip.options".to_owned(),
        "sip.keepalive".to_owned(),
        "call.fork.cancel.+4799990054".to_owned(),
        "robustness.malformed".to_owned(),
    ];
    for form in ["sip", "tel"] {
        for call in ["loop.mo", "loop.mt"] {
            names.push(format!("call.{call}.{form}.+4799990051"));
        }
        names.push(format!("call.loop-mt.mt.{form}.+4799990052"));
        names.push(format!("call.fallback.mt.{form}.+4799990053"));
        names.push(format!("call.fork.mt.{form}.+4799990054"));
    }
    for name in &names {
        assert_eq!(verdict(&report, name), &Verdict::Pass, "{name}\n{}", report.table());
    }
    assert!(matches!(verdict(&report, "call.loop-mt.mo.sip.+4799990052"), Verdict::Skip { .. }));
    // The BYE races: a re-INVITE crossed by BYE wherever the TAS takes the call; BYEs from
    // both ends where a far end answered through leg 3 (the loop call).
    for number in ["+4799990051", "+4799990052", "+4799990054"] {
        let name = format!("call.race.bye-reinvite.{number}");
        assert_eq!(verdict(&report, &name), &Verdict::Pass, "{name}\n{}", report.table());
    }
    assert_eq!(verdict(&report, "call.race.bye-bye.+4799990051"), &Verdict::Pass, "{}", report.table());
    // Fallback after the phone rang unanswered: cancelled (its own 487), then the TAS answered.
    assert_eq!(verdict(&report, "call.fallback.no-answer.+4799990053"), &Verdict::Pass, "{}", report.table());
    let no_answer = report.case("call.fallback.no-answer.+4799990053").expect("case");
    assert!(no_answer.evidence.iter().any(|line| line.contains("4:487 2:200")), "{:?}", no_answer.evidence);
    assert!(
        matches!(verdict(&report, "call.race.bye-bye.+4799990052"), Verdict::Skip { .. }),
        "an echo has no far end"
    );
    let crossed = report.case("call.race.bye-reinvite.+4799990051").expect("case");
    assert!(crossed.evidence.iter().any(|line| line.starts_with("re-INVITE ")), "{:?}", crossed.evidence);
    // The loop call went out as leg 3 and came back; the echo was answered by the TAS itself.
    let loop_mt = report.case("call.loop.mt.sip.+4799990051").expect("case");
    assert!(loop_mt.evidence.iter().any(|line| line.starts_with("leg 3 to ")), "{:?}", loop_mt.evidence);
    // Its re-INVITE went through the TAS to the handset and back, the echo going on.
    let reinvite = loop_mt.evidence.iter().find(|line| line.starts_with("re-INVITE answered")).expect("re-INVITE");
    assert!(!reinvite.contains("/ 0 loud"), "{reinvite}");
    let junit = report.junit();
    assert!(junit.contains("failures=\"0\""), "{junit}");
    tas.endpoint.shutdown();
    drop(setup.dir);
}

/// The harness against ringer serving `setup`'s subscribers (those `keep` allows) behind a
/// [`fault_proxy`] with `fault`.
async fn proxied_report(fault: fault_proxy::Fault, keep: &[&str], only: &[&str]) -> Report {
    let mut setup = setup();
    setup.config.subscribers.retain(|s| keep.contains(&s.phone_number.as_str()));
    let tas = ringer::tas::start_sip(&setup.config).await.expect("TAS starts");
    let chain = ringer::tls::load_chain(&setup.certs.server_cert).expect("chain");
    let key = ringer::tls::load_key(&setup.certs.server_key).expect("key");
    let server = ringer::tls::server_config(chain, key, None).expect("server TLS");
    let client = ringer::tls::client_config(Some(&setup.certs.ca_cert), None).expect("client TLS");
    let proxy = fault_proxy::start(fault, server, client, tas.endpoint.tls_addr.expect("TLS")).await;
    let mut config = harness_config(&setup, &format!("sips:localhost:{}", proxy.port()), &setup.certs.ca_cert);
    config.answer_wait = Duration::from_secs(5);
    config.only = only.iter().map(|case| (*case).to_owned()).collect();
    let report = tokio::time::timeout(Duration::from_secs(150), conformance::run(config, |_| {}))
        .await
        .expect("the harness finishes")
        .expect("the harness runs");
    tas.endpoint.shutdown();
    report
}

#[tokio::test]
async fn no_487_after_cancel_fails_the_fork_cancel_case() {
    let report = proxied_report(
        fault_proxy::Fault::No487OnCancel,
        &["+4799990054"],
        &["call.fork.mt.sip.*", "call.fork.cancel.*"],
    )
    .await;
    assert!(report.case("tls.certificate").is_none(), "left out by `only`: {}", report.table());
    assert_eq!(verdict(&report, "call.fork.mt.sip.+4799990054"), &Verdict::Pass, "{}", report.table());
    let (expected, got) = failure(&report, "call.fork.cancel.+4799990054");
    assert!(expected.contains("487") && got.contains("no final response within 5 s"), "{expected} / {got}");
}

#[tokio::test]
async fn a_re_invite_forgotten_when_a_bye_crosses_it_fails_the_race_case() {
    let report = proxied_report(
        fault_proxy::Fault::ForgetsCrossedReinvite,
        &["+4799990052"],
        &["call.loop-mt.mt.sip.*", "call.race.*"],
    )
    .await;
    assert_eq!(verdict(&report, "call.loop-mt.mt.sip.+4799990052"), &Verdict::Pass, "{}", report.table());
    let (expected, got) = failure(&report, "call.race.bye-reinvite.+4799990052");
    // The core's own side (a B2BUA) ended the caller's re-INVITE at once: what stays open is
    // the TAS's leg.
    assert!(expected.contains("487") && got.contains("still open"), "{expected} / {got}");
}

#[tokio::test]
async fn a_bye_ignored_while_hanging_up_fails_the_race_case() {
    let report = proxied_report(
        fault_proxy::Fault::IgnoresByeWhileHangingUp,
        &["+4799990051"],
        &["call.loop.mt.sip.*", "call.race.*"],
    )
    .await;
    assert_eq!(verdict(&report, "call.loop.mt.sip.+4799990051"), &Verdict::Pass, "{}", report.table());
    assert_eq!(verdict(&report, "call.race.bye-reinvite.+4799990051"), &Verdict::Pass, "{}", report.table());
    let (expected, got) = failure(&report, "call.race.bye-bye.+4799990051");
    assert!(expected.contains("481") && got.contains("still open"), "{expected} / {got}");
}

async fn broken_report(fault: broken::Fault) -> (Report, Setup) {
    broken_report_with(fault, None).await
}

/// A certificate the TAS presents instead of the lab's, for `names`.
struct OtherCertificate<'a> {
    names: &'a [String],
    kind: CertificateKind,
    /// What the harness is given as `--ca`.
    trust: Trust,
}

/// How the TAS's certificate is made.
#[derive(Clone, Copy)]
enum CertificateKind {
    /// Signed by a CA of its own.
    Signed,
    /// Signed by a CA of its own, valid in 2019 only.
    Expired,
    /// Self-signed, as labs make them; `ca` marks it as a CA too (basicConstraints CA:TRUE).
    SelfSigned { ca: bool },
    /// A CA certificate (CA:TRUE, for `names`) signed by a root, served as the server's own.
    IntermediateCa,
}

/// What the harness trusts.
#[derive(Clone, Copy, PartialEq)]
enum Trust {
    /// The lab's CA, which did not sign this certificate.
    LabCa,
    /// The certificate's own CA.
    ItsCa,
    /// The server certificate itself (pinned).
    ItsCertificate,
}

/// Writes the certificate of `kind` for `names` into `dir`: its CA (or, when self-signed, the
/// certificate itself) as `ca.pem`, the server certificate and its key.
fn other_certificate(kind: CertificateKind, names: &[String], dir: &Path) -> DevCertificateFiles {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_params = || {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
    };
    let mut params = CertificateParams::new(names.to_vec()).expect("params");
    let key = KeyPair::generate().expect("key");
    let (ca_pem, certificate) = match kind {
        CertificateKind::SelfSigned { ca } => {
            if ca {
                params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            }
            let certificate = params.self_signed(&key).expect("self-signed");
            (certificate.pem(), certificate)
        }
        kind => {
            let ca_key = KeyPair::generate().expect("CA key");
            let ca = ca_params().self_signed(&ca_key).expect("CA");
            let issuer = Issuer::new(ca_params(), ca_key);
            match kind {
                CertificateKind::Expired => {
                    params.not_before = rcgen::date_time_ymd(2019, 1, 1);
                    params.not_after = rcgen::date_time_ymd(2020, 1, 1);
                }
                CertificateKind::IntermediateCa => params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained),
                _ => {}
            }
            (ca.pem(), params.signed_by(&key, &issuer).expect("certificate"))
        }
    };
    std::fs::create_dir_all(dir).expect("dir");
    let files = DevCertificateFiles {
        ca_cert: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
    };
    std::fs::write(&files.ca_cert, ca_pem).expect("write");
    std::fs::write(&files.server_cert, certificate.pem()).expect("write");
    std::fs::write(&files.server_key, key.serialize_pem()).expect("write");
    files
}

/// As [`broken_report`], the TAS presenting another certificate.
async fn broken_report_with(fault: broken::Fault, certificate: Option<OtherCertificate<'_>>) -> (Report, Setup) {
    use ringer::sip::endpoint::{self, EndpointConfig};
    let mut setup = setup();
    // A broken TAS loops the Fork subscriber's calls to a phone that never answers: slow, and
    // not what these tests are about; nor is Ingress.
    setup.config.subscribers.retain(|s| !matches!(s.route_type, RouteType::Fork | RouteType::Ingress));
    let mut ca = setup.certs.ca_cert.clone();
    if let Some(other) = &certificate {
        let dir = setup.dir.path().join("other");
        let files = other_certificate(other.kind, other.names, &dir);
        setup.config.sip.cert_file = Some(files.server_cert.clone());
        setup.config.sip.key_file = Some(files.server_key.clone());
        match other.trust {
            Trust::LabCa => {}
            Trust::ItsCa => ca = files.ca_cert.clone(),
            Trust::ItsCertificate => ca = files.server_cert.clone(),
        }
    }
    let handler = Arc::new(broken::BrokenTas { fault, core: format!("sips:localhost:{}", setup.core.port()) });
    let sip = &setup.config.sip;
    let chain = ringer::tls::load_chain(sip.cert_file.as_deref().expect("cert")).expect("chain");
    let key = ringer::tls::load_key(sip.key_file.as_deref().expect("key")).expect("key");
    let server = ringer::tls::server_config(chain, key, None).expect("server TLS");
    let client = ringer::tls::client_config(Some(&setup.certs.ca_cert), None).expect("client TLS");
    let endpoint = endpoint::start(
        EndpointConfig {
            hep: None,
            tls: Some((common::loopback_any_port(), server)),
            tcp: None,
            udp: None,
            policy: Default::default(),
            limits: Default::default(),
            ua: ringer::sip::config::UaConfig::new("localhost", "broken-tas"),
            outbound: ringer::sip::outbound::OutboundSettings {
                tls: Some(client),
                core: Some(ringer::sip::message::Uri::parse(&handler.core).expect("core URI")),
                dns_server: None,
            },
        },
        handler.clone(),
    )
    .await
    .expect("broken TAS starts");
    let port = endpoint.tls_addr.expect("TLS").port();
    let report = run_harness_trusting(&setup, &format!("sips:localhost:{port}"), &ca).await;
    endpoint.shutdown();
    (report, setup)
}

fn failure(report: &Report, name: &str) -> (String, String) {
    match verdict(report, name) {
        Verdict::Fail { expected, got } => (expected.clone(), got.clone()),
        other => panic!("{name}: {other:?}\n{}", report.table()),
    }
}

#[tokio::test]
async fn a_certificate_for_another_name_fails_the_tls_case() {
    let names = ["other.example.com".to_owned()];
    let other = OtherCertificate { names: &names, kind: CertificateKind::Signed, trust: Trust::ItsCa };
    let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(other)).await;
    let (expected, got) = failure(&report, "tls.certificate");
    assert!(
        expected.contains("localhost") && got.contains("does not name \"localhost\" (it names other.example.com)"),
        "{expected} / {got}"
    );
}

#[tokio::test]
async fn an_expired_certificate_fails_the_tls_case() {
    let names = ["localhost".to_owned()];
    let other = OtherCertificate { names: &names, kind: CertificateKind::Expired, trust: Trust::ItsCa };
    let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(other)).await;
    let (_, got) = failure(&report, "tls.certificate");
    assert!(got.contains("certificate expired on 2020-"), "{got}");
}

#[tokio::test]
async fn a_certificate_from_an_untrusted_ca_fails_the_tls_case() {
    let names = ["localhost".to_owned()];
    let other = OtherCertificate { names: &names, kind: CertificateKind::Signed, trust: Trust::LabCa };
    let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(other)).await;
    let (_, got) = failure(&report, "tls.certificate");
    // Same issuer name as the trusted CA, another key: not the CA the harness holds.
    assert!(got.contains("signed by an issuer the CA bundle does not hold"), "{got}");
}

#[tokio::test]
async fn a_self_signed_certificate_passes_when_given_as_the_ca_and_is_named_when_not() {
    let names = ["localhost".to_owned()];
    for ca in [false, true] {
        // Given itself with --ca, a self-signed certificate (even one marked as a CA, which
        // webpki alone refuses with CaUsedAsEndEntity) is trusted as is.
        let kind = CertificateKind::SelfSigned { ca };
        let pinned = OtherCertificate { names: &names, kind, trust: Trust::ItsCertificate };
        let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(pinned)).await;
        assert_eq!(verdict(&report, "tls.certificate"), &Verdict::Pass, "CA bit {ca}:\n{}", report.table());
        let unknown = OtherCertificate { names: &names, kind, trust: Trust::LabCa };
        let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(unknown)).await;
        let (_, got) = failure(&report, "tls.certificate");
        assert!(got.contains("self-signed and not in the CA bundle") && got.contains("--ca"), "{got}");
    }
}

#[tokio::test]
async fn a_ca_certificate_served_as_the_server_certificate_is_named() {
    let names = ["localhost".to_owned()];
    let other = OtherCertificate { names: &names, kind: CertificateKind::IntermediateCa, trust: Trust::ItsCa };
    let (report, _setup) = broken_report_with(broken::Fault::AnswerWithoutSdp, Some(other)).await;
    let (_, got) = failure(&report, "tls.certificate");
    assert!(got.contains("presented a CA certificate (basicConstraints CA:TRUE) as its own"), "{got}");
}

#[tokio::test]
async fn an_ingress_call_that_never_comes_fails() {
    let mut setup = setup();
    setup.config.subscribers.retain(|s| s.route_type == RouteType::Ingress);
    let tas = ringer::tas::start_sip(&setup.config).await.expect("TAS starts");
    let port = tas.endpoint.tls_addr.expect("TLS").port();
    let mut config = harness_config(&setup, &format!("sips:localhost:{port}"), &setup.certs.ca_cert);
    config.ingress_wait = Some(Duration::from_millis(500));
    let report = conformance::run(config, |_| {}).await.expect("the harness runs");
    let (expected, got) = failure(&report, "call.ingress.+4799990055");
    assert!(expected.contains("from the TAS to +4799990055") && got == "none arrived", "{expected} / {got}");
    tas.endpoint.shutdown();
}

#[tokio::test]
async fn a_2xx_without_sdp_fails_the_call_cases() {
    let (report, _setup) = broken_report(broken::Fault::AnswerWithoutSdp).await;
    let (expected, _) = failure(&report, "call.loop-mt.mt.sip.+4799990052");
    assert!(expected.contains("RFC 3264"), "{expected}");
    assert_eq!(verdict(&report, "tls.certificate"), &Verdict::Pass, "the rest is fine: {}", report.table());
}

#[tokio::test]
async fn a_refused_re_invite_fails_the_call_case() {
    let (report, _setup) = broken_report(broken::Fault::RefusesReoffers).await;
    let (expected, got) = failure(&report, "call.loop-mt.mt.sip.+4799990052");
    assert!(expected.contains("re-INVITE") && got.contains("488"), "{expected} / {got}");
}

#[tokio::test]
async fn media_before_dtls_fails_the_call_case() {
    let (report, _setup) = broken_report(broken::Fault::MediaBeforeDtls).await;
    let (expected, got) = failure(&report, "call.loop-mt.mt.sip.+4799990052");
    assert!(
        expected.contains("no media before DTLS") && got.contains("before the DTLS handshake"),
        "{expected} / {got}"
    );
}

#[tokio::test]
async fn leg_3_without_the_session_id_fails() {
    let (report, _setup) = broken_report(broken::Fault::NoSessionId).await;
    let (expected, got) = failure(&report, "call.loop.mt.sip.+4799990051");
    assert!(expected.contains("Session-ID") && got.contains("403"), "{expected} / {got}");
}

#[tokio::test]
async fn leg_3_with_the_prefix_kept_fails() {
    let (report, _setup) = broken_report(broken::Fault::PrefixKept).await;
    let (expected, got) = failure(&report, "call.loop.mt.sip.+4799990051");
    assert!(expected.contains("prefix") && got.contains("+214799990051"), "{expected} / {got}");
}

#[tokio::test]
async fn a_tas_that_completes_tls_and_then_says_nothing_fails_the_sip_cases() {
    let mut setup = setup();
    // A Fallback subscriber: the calls reach the TAS after the phone is busy or does not answer.
    setup.config.subscribers.retain(|s| s.phone_number.as_str() == "+4799990053");
    let chain = ringer::tls::load_chain(&setup.certs.server_cert).expect("chain");
    let key = ringer::tls::load_key(&setup.certs.server_key).expect("key");
    let acceptor = tokio_rustls::TlsAcceptor::from(ringer::tls::server_config(chain, key, None).expect("TLS"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // Completes every TLS handshake, then reads and never answers.
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut stream) = acceptor.accept(tcp).await {
                    let mut sink = [0u8; 4096];
                    while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stream, &mut sink).await {
                        if n == 0 {
                            break;
                        }
                    }
                }
            });
        }
    });
    let mut config = harness_config(&setup, &format!("sips:localhost:{port}"), &setup.certs.ca_cert);
    config.answer_wait = Duration::from_secs(8);
    config.only = ["tls.*", "sip.*", "robustness.*", "call.fallback.mt.sip.*", "call.fallback.no-answer.*"]
        .map(str::to_owned)
        .to_vec();
    let report = conformance::run(config, |_| {}).await.expect("the harness runs");
    assert_eq!(verdict(&report, "tls.certificate"), &Verdict::Pass, "{}", report.table());
    for case in ["call.fallback.mt.sip.+4799990053", "call.fallback.no-answer.+4799990053"] {
        let (expected, got) = failure(&report, case);
        assert!(expected.contains("within 8 s") && got.contains("cancelled"), "{case}: {expected} / {got}");
    }
    let (expected, got) = failure(&report, "sip.options");
    assert!(expected.contains("OPTIONS") && got.contains("nothing within"), "{expected} / {got}");
    let (expected, _) = failure(&report, "sip.keepalive");
    assert!(expected.contains("RFC 5626"), "{expected}");
    let (expected, _) = failure(&report, "robustness.malformed");
    assert!(expected.contains("OPTIONS still answered"), "{expected}");
}

/// The TAS of `setup` registering against the harness's own SipBreakoutService at `grpc`:
/// continuously (ringer's registrar), or once and never again.
async fn grpc_report(mut setup: Setup, registers: &[ringer::types::Registration], keeps_refreshing: bool) -> Report {
    let grpc = common::free_port();
    setup.config.core.endpoint = format!("http://{grpc}");
    let tas = ringer::tas::start_sip(&setup.config).await.expect("TAS starts");
    let port = tas.endpoint.tls_addr.expect("TLS").port();
    let target = format!("sips:localhost:{port}");
    let sip_uri = ringer::types::SipsUri::parse(&target).expect("sip_uri");
    let registrations: Vec<_> =
        registers.iter().map(|r| ringer::types::Registration { sip_uri: sip_uri.clone(), ..r.clone() }).collect();
    let mut config = harness_config(&setup, &target, &setup.certs.ca_cert);
    let ttl = Duration::from_secs(4);
    config.grpc = Some(conformance::GrpcSide {
        listen: grpc,
        time_to_live: ttl,
        wait: Duration::from_secs(10),
        delete_wait: Some(Duration::from_secs(3)),
    });
    let client = || {
        ringer::registrar::RegistrationClient::new(&setup.config.core, ringer::registrar::auth::Credentials::None)
            .expect("client")
    };
    // The harness says when to stop the TAS (its delete cases start).
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let registering = {
        let registrations = registrations.clone();
        let registrar_config = setup.config.registrar.clone();
        let client = client();
        tokio::spawn(async move {
            // The harness's gRPC API comes up with it: let it.
            tokio::time::sleep(Duration::from_millis(300)).await;
            match keeps_refreshing {
                true => {
                    let registrar = ringer::registrar::Registrar::start(client, registrar_config, registrations);
                    let _ = stopping.await;
                    registrar.shutdown().await
                }
                false => {
                    for registration in &registrations {
                        let _ = client.upsert(registration).await;
                    }
                    let _ = stopping.await;
                    Default::default()
                }
            }
        })
    };
    let stop = std::sync::Mutex::new(Some(stop));
    let progress = move |case: &str| {
        if case.starts_with("grpc.delete.") {
            if let Some(stop) = stop.lock().expect("lock").take() {
                let _ = stop.send(());
            }
        }
    };
    let report = conformance::run(config, progress).await.expect("the harness runs");
    registering.abort();
    tas.endpoint.shutdown();
    report
}

#[tokio::test]
async fn with_the_grpc_side_ringer_registers_refreshes_and_passes() {
    let mut setup = setup();
    setup.config.subscribers.retain(|s| s.phone_number.as_str() == "+4799990051");
    let registers = setup.config.registrations();
    let report = grpc_report(setup, &registers, true).await;
    assert!(report.passed(), "{}", report.table());
    assert_eq!(verdict(&report, "grpc.registration.+4799990051"), &Verdict::Pass);
    assert_eq!(verdict(&report, "grpc.refresh.+4799990051"), &Verdict::Pass);
    assert_eq!(verdict(&report, "grpc.delete.+4799990051"), &Verdict::Pass, "deleted at the registrar's shutdown");
    assert_eq!(verdict(&report, "call.loop.mt.sip.+4799990051"), &Verdict::Pass, "calls routed by its registration");
}

#[tokio::test]
async fn with_the_grpc_side_wrong_fields_and_no_refresh_fail() {
    let mut setup = setup();
    setup.config.subscribers.retain(|s| s.phone_number.as_str() == "+4799990051");
    // The TAS claims MT prefix 21 but registers 29, and never refreshes.
    let mut registers = setup.config.registrations();
    registers[0].mt_prefix = Some(ringer::types::Prefix::parse("29").expect("prefix"));
    let report = grpc_report(setup, &registers, false).await;
    let (_, got) = failure(&report, "grpc.registration.+4799990051");
    assert!(got.contains("29"), "{got}");
    assert!(report.case("grpc.refresh.+4799990051").is_none(), "no refresh check for a wrong registration");
}

#[tokio::test]
async fn with_the_grpc_side_a_registration_never_refreshed_fails() {
    let mut setup = setup();
    setup.config.subscribers.retain(|s| s.phone_number.as_str() == "+4799990051");
    let registers = setup.config.registrations();
    let report = grpc_report(setup, &registers, false).await;
    assert_eq!(verdict(&report, "grpc.registration.+4799990051"), &Verdict::Pass, "{}", report.table());
    let (expected, got) = failure(&report, "grpc.refresh.+4799990051");
    assert!(expected.contains("refresh") && (got.contains("lapsed") || got.contains("1 upsert")), "{expected} / {got}");
    // Stopped, it never deleted the registration either.
    let (expected, got) = failure(&report, "grpc.delete.+4799990051");
    assert!(expected.contains("DeleteRegistration") && got.contains("no delete"), "{expected} / {got}");
}
