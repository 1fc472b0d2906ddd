//! The call path with SIPp at its ends: Alice and Bob as SIPp scenarios around the emulated
//! core and ringer, and SIPp playing the core itself against ringer (leg 2 out, leg 3 back).
//! Under CI=true a missing SIPp is a failure, never a skip.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::lab::{subscriber, Lab};
use common::sipp::{finished, tool};
use ringer::config::core::SbcRoute;
use tokio::process::Child;

const CALLS: u32 = 20;

fn sipp_server(sipp: &Path, name: &str, transport: &str, port: u16, log: &Path) -> Child {
    common::sipp::server(sipp, name, transport, port, CALLS, log)
}

async fn sipp_client(
    sipp: &Path,
    name: &str,
    transport: &str,
    keys: &[(&str, &str)],
    service: &str,
    target: SocketAddr,
) -> (u32, u32, String) {
    common::sipp::client(sipp, name, transport, keys, service, target, CALLS).await
}

/// The Request-URIs a scenario logged (`R-URI <uri>` lines).
fn logged_uris(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter_map(|line| line.split("R-URI ").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default().to_owned())
        .collect()
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[tokio::test]
async fn alice_and_bob_as_sipp_through_the_core_and_ringer() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let bob_port = common::free_port().port();
    let lab = Lab::start_routed(
        &[
            subscriber("+4799990001", "loop", "11", "22", "", ""),
            subscriber("+4799990002", "loop-mo", "12", "", "", ""),
        ],
        Vec::new(),
        Duration::from_secs(30),
        vec![SbcRoute { prefix: "+".into(), target: format!("sip:127.0.0.1:{bob_port}") }],
    )
    .await;
    let access = lab.sbc().access.udp_addr.expect("access UDP");
    for (caller, callee, legs) in [("+4711111111", "+4799990001", "MT loop"), ("+4799990002", "+4755555555", "MO loop")]
    {
        let log = log_path(dir.path(), &format!("bob-{callee}.log"));
        let bob = sipp_server(&sipp, "bob_uas.xml", "u1", bob_port, &log);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ok, failed, screen) =
            sipp_client(&sipp, "alice_uac.xml", "u1", &[("caller", caller)], callee, access).await;
        assert_eq!((ok, failed), (CALLS, 0), "{legs}: Alice's calls\n{screen}");
        let (code, bob_screen) = finished(bob).await;
        assert_eq!(code, Some(0), "{legs}: Bob's calls\n{bob_screen}");
        let uris = logged_uris(&log);
        assert_eq!(uris.len(), CALLS as usize, "{legs}: {uris:?}");
        assert!(uris.iter().all(|uri| uri.starts_with(&format!("sip:{callee}@"))), "{legs}: prefix stripped: {uris:?}");
    }
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    let through_tas = lab.sbc().calls().iter().filter(|call| call.legs.iter().any(|leg| leg.leg.number() == 3)).count();
    assert_eq!(through_tas, 2 * CALLS as usize, "every call came back from the TAS as leg 3");
    // One record per call, as SIPp's ends made it: Bob's SDP chose PCMA, Alice hung up.
    let records = lab.call_records_when(2 * CALLS as usize).await;
    for (record, (subscriber, direction, caller)) in records.iter().zip(
        std::iter::repeat_n(("+4799990001", "MT", "+4711111111"), CALLS as usize)
            .chain(std::iter::repeat_n(("+4799990002", "MO", "+4799990002"), CALLS as usize)),
    ) {
        let expected = serde_json::json!({
            "subscriber": subscriber, "direction": direction, "caller": caller, "actions": ["loop"],
            "final_status": 200, "codec": "PCMA", "ended_by": "caller", "media": null,
        });
        for (key, value) in expected.as_object().expect("fields") {
            assert_eq!(&record[key], value, "{key} in {record}");
        }
        assert!(record["answered_at"].is_string() && record["duration_ms"].is_i64(), "{record}");
    }
}

#[tokio::test]
async fn sipp_as_the_core_drives_ringer_with_mo_and_mt_prefixes() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let leg3_port = common::free_port().port();
    let toml = format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\ncore_uri = \"sip:127.0.0.1:{leg3_port};transport=tcp\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"loop\"\nmo_prefix = \"11\"\nmt_prefix = \"22\"\n"
    );
    let config: ringer::config::serve::ServeConfig = toml::from_str(&toml).expect("config");
    let tas = ringer::tas::start_sip(&config).await.expect("TAS");
    let tas_addr = tas.endpoint.tcp_addr.expect("TCP");
    for (caller, service, expected) in
        [("+4799990001", "+114712345678", "sip:+4712345678@"), ("+4712345678", "+224799990001", "sip:+4799990001@")]
    {
        let log = log_path(dir.path(), &format!("leg3-{service}.log"));
        let leg3 = sipp_server(&sipp, "core_leg3.xml", "t1", leg3_port, &log);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (ok, failed, screen) =
            sipp_client(&sipp, "core_leg2.xml", "t1", &[("caller", caller)], service, tas_addr).await;
        assert_eq!((ok, failed), (CALLS, 0), "leg 2 {service}\n{screen}");
        let (code, leg3_screen) = finished(leg3).await;
        assert_eq!(code, Some(0), "leg 3 for {service}: Session-ID and R-URI checks\n{leg3_screen}");
        let uris = logged_uris(&log);
        assert_eq!(uris.len(), CALLS as usize, "{uris:?}");
        assert!(uris.iter().all(|uri| uri.starts_with(expected)), "{service} came back as {uris:?}");
    }
    assert!(
        common::poll_until(Duration::from_secs(10), || tas.endpoint.live_dialogs() == 0
            && tas.endpoint.pending_invites() == 0)
        .await,
        "no call left in ringer"
    );
}

/// Reliable provisional responses (RFC 3262) on every leg: SIPp's Bob sends his early media
/// in a reliable 183 and waits for its PRACK; the SBC and ringer relay it reliably leg by leg,
/// each leg PRACKed by the side that received it, up to SIPp's Alice, who PRACKs the SBC's.
#[tokio::test]
async fn reliable_early_media_is_prack_ed_on_every_leg_between_sipp_ends() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let bob_port = common::free_port().port();
    let lab = Lab::start_routed(
        &[subscriber("+4799990001", "loop", "11", "22", "", "")],
        Vec::new(),
        Duration::from_secs(30),
        vec![SbcRoute { prefix: "+".into(), target: format!("sip:127.0.0.1:{bob_port}") }],
    )
    .await;
    let access = lab.sbc().access.udp_addr.expect("access UDP");
    let log = log_path(dir.path(), "bob-100rel.log");
    let bob = sipp_server(&sipp, "bob_100rel.xml", "u1", bob_port, &log);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (ok, failed, screen) =
        sipp_client(&sipp, "alice_100rel.xml", "u1", &[("caller", "+4711111111")], "+4799990001", access).await;
    assert_eq!((ok, failed), (CALLS, 0), "Alice: the reliable 183 PRACKed and answered\n{screen}");
    let (code, bob_screen) = finished(bob).await;
    assert_eq!(code, Some(0), "Bob: every INVITE offered 100rel and every 183 got its PRACK\n{bob_screen}");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    let calls = lab.sbc().calls();
    assert_eq!(calls.len(), CALLS as usize);
    assert!(
        calls.iter().all(|call| call
            .legs
            .iter()
            .map(|leg| (leg.leg.number(), leg.status.map_or(0, |s| s.as_u16())))
            .eq([(1, 200), (2, 200), (3, 200), (4, 200)])),
        "{calls:?}"
    );
}
