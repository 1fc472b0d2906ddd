//! Reliable provisional responses (RFC 3262) and session timers (RFC 4028) between ringer and
//! SIPp (Debian `sip-tester`) playing the core: scenarios in `scenarios/`, each call checked by
//! SIPp's own header checks. Under CI=true a missing SIPp is a failure, never a skip.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::sipp::{call_counts, tool};
use ringer::config::serve::ServeConfig;
use ringer::tas::Tas;
use tokio::process::Command;

/// ringer with a short session interval (tests may go below RFC 4028's 90 s): +4799990001
/// answers with the echo app, +4799990002 announces and refuses with 480.
async fn tas() -> Tas {
    let toml = "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\nmedia_address = \"127.0.0.1\"\nsession_expires = \"4s\"\nmin_se = \"2s\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"loop\"\nmt_prefix = \"22\"\nmt = \"answer echo\"\n\
         [[subscriber]]\nphone_number = \"+4799990002\"\nroute_type = \"loop\"\nmt_prefix = \"22\"\nmt = \"announce 480\"\n";
    let config: ServeConfig = toml::from_str(toml).expect("config");
    config.validate().expect("valid");
    ringer::tas::start_sip(&config).await.expect("TAS starts")
}

/// Runs `scenario` (with `keys`) against `tas` for `calls` calls to `service` over TCP;
/// returns (successful, failed, screen) and how long it took.
async fn sipp(
    sipp: &Path,
    tas: &Tas,
    scenario: &str,
    service: &str,
    calls: u32,
    keys: &[(&str, &str)],
) -> (u32, u32, String, Duration) {
    let scenario = format!("{}/scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(sipp);
    command.args(["-sf", &scenario, "-t", "t1", "-i", "127.0.0.1", "-p", &common::free_port().port().to_string()]);
    for (key, value) in keys {
        command.args(["-key", key, value]);
    }
    command.args(["-s", service, "-m", &calls.to_string(), "-r", "5", "-nostdin", "-timeout", "60s"]);
    command.arg("-timeout_error").arg(tas.endpoint.tcp_addr.expect("TCP").to_string());
    let started = Instant::now();
    let output =
        tokio::time::timeout(Duration::from_secs(90), command.stdin(Stdio::null()).kill_on_drop(true).output())
            .await
            .expect("SIPp finished in time")
            .expect("SIPp ran");
    let took = started.elapsed();
    let screen = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    let (ok, failed) = call_counts(&screen);
    (ok, failed, screen, took)
}

async fn settled(tas: &Tas) -> bool {
    common::poll_until(Duration::from_secs(10), || {
        tas.endpoint.live_dialogs() == 0 && tas.endpoint.pending_invites() == 0
    })
    .await
}

#[tokio::test]
async fn an_announcement_as_early_media_goes_reliably_to_a_core_that_supports_or_requires_100rel() {
    let Some(sipp_path) = tool(&["sipp"], "sip-tester") else { return };
    let tas = tas().await;
    for rel100 in ["Supported: 100rel", "Require: 100rel"] {
        let (ok, failed, screen, _) =
            sipp(&sipp_path, &tas, "core_100rel_announce.xml", "+224799990002", 3, &[("rel100", rel100)]).await;
        assert_eq!((ok, failed), (3, 0), "{rel100}: reliable 183, PRACK answered 200, then 480\n{screen}");
    }
    assert!(settled(&tas).await, "nothing left in ringer");
}

#[tokio::test]
async fn a_session_refreshed_by_the_core_expires_when_the_refreshes_stop() {
    let Some(sipp_path) = tool(&["sipp"], "sip-tester") else { return };
    let tas = tas().await;
    let (ok, failed, screen, took) = sipp(&sipp_path, &tas, "core_timer_expiry.xml", "+224799990001", 1, &[]).await;
    assert_eq!((ok, failed), (1, 0), "refresher=uac, UPDATE answered, then ringer's BYE\n{screen}");
    // 1.5 s to the refresh, then 4 s less a third (2.7 s) to the BYE.
    assert!(took >= Duration::from_millis(4000) && took < Duration::from_secs(8), "the BYE came after {took:?}");
    assert!(settled(&tas).await, "nothing left in ringer");
}

#[tokio::test]
async fn ringer_refreshes_a_session_for_a_core_without_timers_by_update_or_re_invite() {
    let Some(sipp_path) = tool(&["sipp"], "sip-tester") else { return };
    let tas = tas().await;
    for scenario in ["core_timer_tas_refreshes_update.xml", "core_timer_tas_refreshes_reinvite.xml"] {
        let (ok, failed, screen, took) = sipp(&sipp_path, &tas, scenario, "+224799990001", 1, &[]).await;
        assert_eq!((ok, failed), (1, 0), "{scenario}: refresher=uas and two refreshes\n{screen}");
        // Refreshes at half of 4 s: two take about 4 s.
        assert!(took >= Duration::from_millis(3500) && took < Duration::from_secs(10), "{scenario} took {took:?}");
    }
    assert!(settled(&tas).await, "nothing left in ringer");
}

#[tokio::test]
async fn too_small_a_session_interval_gets_422_with_min_se() {
    let Some(sipp_path) = tool(&["sipp"], "sip-tester") else { return };
    let tas = tas().await;
    let (ok, failed, screen, _) = sipp(&sipp_path, &tas, "core_timer_too_small.xml", "+224799990001", 3, &[]).await;
    assert_eq!((ok, failed), (3, 0), "422 with Min-SE\n{screen}");
    assert!(settled(&tas).await, "nothing left in ringer");
}

/// The core brings a call already diverted twice (History-Info causes, Diversion) to a
/// subscriber that forwards: with `calls.max_diversions = 2` ringer refuses it as configured
/// (482) instead of forwarding a third time, and sends nothing back towards the core.
#[tokio::test]
async fn a_call_diverted_as_often_as_allowed_is_not_forwarded_again() {
    let Some(sipp_path) = tool(&["sipp"], "sip-tester") else { return };
    let toml = "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\nmedia_address = \"127.0.0.1\"\n\
         [calls]\nmax_diversions = 2\non_diversion_limit = \"reject 482 Loop Detected\"\n\
         [[subscriber]]\nphone_number = \"+4799990003\"\nroute_type = \"loop-mt\"\nmt_prefix = \"22\"\nmt = \"forward +4799990009\"\n";
    let config: ServeConfig = toml::from_str(toml).expect("config");
    config.validate().expect("valid");
    let tas = ringer::tas::start_sip(&config).await.expect("TAS starts");
    let keys = [("caller", "+4712345678")];
    let (ok, failed, screen, _) = sipp(&sipp_path, &tas, "core_leg2_diverted.xml", "+224799990003", 3, &keys).await;
    assert_eq!((ok, failed), (3, 0), "{screen}");
    let records = tas.router.records();
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| r.outcome.leg3_call_ids.is_empty() && r.outcome.status.map(|s| s.as_u16()) == Some(482)),
        "no leg 3, 482: {records:?}"
    );
    assert!(settled(&tas).await);
}
