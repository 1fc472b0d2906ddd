//! SIPp (Debian `sip-tester`) against the endpoint: its built-in `uac` over UDP and TCP, a reject
//! scenario, a caller slow to acknowledge the 2xx, and TLS through Debian's `stunnel4` (Debian
//! builds SIPp without TLS).
//! Under CI=true a missing peer is a failure, never a skip.

mod common;

use common::sipp::{call_counts, tool};

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ringer::call::DefaultActionHandler;
use ringer::sip::config::UaConfig;
use ringer::sip::endpoint::{self, Endpoint, EndpointConfig};
use ringer::sip::transport::policy::PeerPolicy;
use ringer::sip::transport::stream::StreamLimits;
use tokio::process::Command;

const CALLS: u32 = 500;
const RATE: u32 = 50;

async fn endpoint(action: &str, certs: Option<&Path>) -> Endpoint {
    let handler = Arc::new(DefaultActionHandler::new(action.parse().expect("action"), [127, 0, 0, 1].into()));
    let tls = certs.map(|dir| {
        let files = ringer::tls::devcert::ensure(dir, &["tas.example.com".into()]).expect("certs");
        let chain = ringer::tls::load_chain(&files.server_cert).expect("chain");
        let key = ringer::tls::load_key(&files.server_key).expect("key");
        ("127.0.0.1:0".parse().expect("addr"), ringer::tls::server_config(chain, key, None).expect("tls"))
    });
    let config = EndpointConfig {
        hep: None,
        tls,
        tcp: Some("127.0.0.1:0".parse().expect("addr")),
        udp: Some("127.0.0.1:0".parse().expect("addr")),
        policy: PeerPolicy::default(),
        limits: StreamLimits::default(),
        ua: UaConfig::new("tas.example.com", "ringer-test"),
        outbound: ringer::sip::outbound::OutboundSettings { tls: None, core: None, dns_server: None },
    };
    endpoint::start(config, handler).await.expect("endpoint")
}

async fn run_sipp(sipp: &Path, scenario: &[&str], transport: &str, target: std::net::SocketAddr) -> (u32, u32, String) {
    run_sipp_calls(sipp, scenario, transport, target, (CALLS, RATE)).await
}

/// Runs `calls` calls at `rate` calls/s; the successful and failed calls and SIPp's screen.
async fn run_sipp_calls(
    sipp: &Path,
    scenario: &[&str],
    transport: &str,
    target: std::net::SocketAddr,
    (calls, rate): (u32, u32),
) -> (u32, u32, String) {
    let local_port = common::free_port().port().to_string();
    let calls = calls.to_string();
    let rate = rate.to_string();
    let target = target.to_string();
    let mut args: Vec<&str> = scenario.to_vec();
    args.extend(["-t", transport, "-p", &local_port, "-i", "127.0.0.1", "-r", &rate, "-m", &calls]);
    args.extend(["-nostdin", "-timeout", "60s", "-timeout_error", &target]);
    let output = tokio::time::timeout(
        Duration::from_secs(90),
        Command::new(sipp).args(&args).stdin(Stdio::null()).kill_on_drop(true).output(),
    )
    .await
    .expect("SIPp finished in time")
    .expect("SIPp ran");
    let screen = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let (ok, failed) = call_counts(&screen);
    assert_eq!(output.status.code(), Some(0), "SIPp reported failures:\n{screen}");
    (ok, failed, screen)
}

async fn assert_all_calls_succeed(
    endpoint: &Endpoint,
    sipp: &Path,
    scenario: &[&str],
    transport: &str,
    target: std::net::SocketAddr,
) {
    let (ok, failed, screen) = run_sipp(sipp, scenario, transport, target).await;
    assert_eq!((ok, failed), (CALLS, 0), "{screen}");
    common::eventually(Duration::from_secs(40), "no dialog or INVITE left behind", || {
        endpoint.live_dialogs() == 0 && endpoint.pending_invites() == 0
    })
    .await;
}

fn reject_scenario() -> String {
    format!("{}/scenarios/uac_reject.xml", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn sipp_uac_over_udp_and_tcp_every_call_answered() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let endpoint = endpoint("answer", None).await;
    assert_all_calls_succeed(&endpoint, &sipp, &["-sn", "uac"], "u1", endpoint.udp_addr.expect("udp")).await;
    assert_all_calls_succeed(&endpoint, &sipp, &["-sn", "uac"], "t1", endpoint.tcp_addr.expect("tcp")).await;
}

#[tokio::test]
async fn sipp_against_a_reject_rule_over_udp_and_tcp() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let endpoint = endpoint("reject 486", None).await;
    let scenario = reject_scenario();
    assert_all_calls_succeed(&endpoint, &sipp, &["-sf", &scenario], "u1", endpoint.udp_addr.expect("udp")).await;
    assert_all_calls_succeed(&endpoint, &sipp, &["-sf", &scenario], "t1", endpoint.tcp_addr.expect("tcp")).await;
}

/// The messages and retransmissions SIPp's screen counts on the first row that begins with
/// `row` (such as `200 <-`).
fn message_row(screen: &str, row: &str) -> Option<(u32, u32)> {
    let line = screen.lines().find(|line| line.trim_start().starts_with(row))?;
    // The label's own fields (`200`, `<----------`) come first.
    let mut numbers = line.split_whitespace().skip(2).filter_map(|field| field.parse().ok());
    Some((numbers.next()?, numbers.next()?))
}

/// SIPp holds its ACK for 2.5 s, halfway between ringer's second retransmission of the 2xx
/// and its third: over UDP the 2xx comes again after T1 and 3·T1 (RFC 3261 §13.3.1.4), which
/// SIPp counts as the 200's retransmissions; over TCP it comes once. Every call is then
/// acknowledged and ended by SIPp's BYE.
#[tokio::test]
async fn sipp_slow_to_acknowledge_sees_the_2xx_again_over_udp_only() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let endpoint = endpoint("answer", None).await;
    let scenario = format!("{}/scenarios/uac_late_ack.xml", env!("CARGO_MANIFEST_DIR"));
    const LATE_CALLS: u32 = 20;
    for (transport, target, retransmissions) in
        [("u1", endpoint.udp_addr.expect("udp"), 2 * LATE_CALLS), ("t1", endpoint.tcp_addr.expect("tcp"), 0)]
    {
        let scenario = ["-sf", scenario.as_str(), "-s", "+4799990001"];
        let (ok, failed, screen) = run_sipp_calls(&sipp, &scenario, transport, target, (LATE_CALLS, 10)).await;
        assert_eq!((ok, failed), (LATE_CALLS, 0), "{screen}");
        assert_eq!(message_row(&screen, "200 <-"), Some((LATE_CALLS, retransmissions)), "{transport}: {screen}");
    }
    common::eventually(Duration::from_secs(10), "no dialog or 2xx left behind", || {
        endpoint.live_dialogs() == 0 && endpoint.unacknowledged_answers() == 0
    })
    .await;
}

#[tokio::test]
async fn sipp_over_tls_through_stunnel() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let Some(stunnel) = tool(&["stunnel4", "stunnel"], "stunnel4") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let endpoint = endpoint("answer", Some(dir.path())).await;
    let tls = endpoint.tls_addr.expect("tls");
    let accept = common::free_port();
    // stunnel verifies ringer's certificate against the development CA, as the core would.
    let config = format!(
        "foreground = yes\npid =\n[sip]\nclient = yes\naccept = {accept}\nconnect = {tls}\nCAfile = {}\nverifyChain = yes\ncheckHost = tas.example.com\n",
        dir.path().join("ca.pem").display()
    );
    let config_path = dir.path().join("stunnel.conf");
    std::fs::write(&config_path, config).expect("stunnel config");
    let _stunnel = Command::new(stunnel)
        .arg(&config_path)
        .kill_on_drop(true)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("stunnel");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(accept).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "stunnel did not listen");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_all_calls_succeed(&endpoint, &sipp, &["-sn", "uac"], "t1", accept).await;
    // Only stunnel's TLS connections reached ringer (SIPp's TCP ends at stunnel).
    assert!(endpoint.admitted_connections() >= 1, "the calls came over TLS");
}
