//! Feature codes dialled as calls: over WebRTC through the emulated core (a Loop subscriber
//! dials `*72` + a number, `*#72`, `*73`), each heard spoken back and changing where the next
//! call goes; and with SIPp (Debian `sip-tester`) playing the core, which writes the code in
//! leg 2 as it likes (`#` escaped), the TAS answering, speaking and hanging up without leg 3.

mod common;

use std::time::Duration;

use common::lab::{handset, subscriber, Lab};
use common::msisdn;
use common::sipp::{call_counts, tool};
use ringer::config::core::HandsetMode;
use ringer::config::serve::ServeConfig;
use ringer::media::peer::{Listener, PeerOptions};
use ringer::sip::uac::Progress;
use ringer::tas::settings::{ForwardTarget, SubscriberSettings};
use ringer::types::ServiceCode;

/// The subscriber who dials the codes: Loop both ways (MO prefix 21, MT prefix 22).
const OWNER: &str = "+4799990201";
/// Where the owner forwards to.
const COLLEAGUE: &str = "+4799990202";
/// A phone outside the TAS.
const STRANGER: &str = "+4711111113";

async fn lab() -> Lab {
    let store = tempfile::tempdir().expect("tempdir").keep();
    Lab::start_adjusted(
        &[subscriber(OWNER, "loop", "21", "22", "\"loop\"", "\"loop\"")],
        vec![handset(OWNER, HandsetMode::Answer), handset(COLLEAGUE, HandsetMode::Answer)],
        Vec::new(),
        |config| config.mailbox_store = Some(format!("sqlite://{}/ringer.db", store.display())),
    )
    .await
}

/// 100 ms windows (8 kHz) loud enough to be speech.
fn voiced(samples: &[i16]) -> Duration {
    let windows = samples
        .chunks_exact(800)
        .filter(|window| {
            let energy: f64 = window.iter().map(|s| f64::from(*s).powi(2)).sum::<f64>() / 800.0;
            energy.sqrt() > 300.0
        })
        .count();
    Duration::from_millis(windows as u64 * 100)
}

/// Everything heard until nothing comes for two seconds (the TAS has hung up).
async fn hear_all(ears: &mut Listener) -> Vec<i16> {
    let mut samples = Vec::new();
    while let Some(packet) = ears.next(Duration::from_secs(2)).await {
        samples.extend(packet);
        assert!(samples.len() < 8000 * 30, "still talking after 30 s");
    }
    samples
}

/// The owner dials `code` over WebRTC; returns how long speech was heard. The TAS must hang up.
async fn dial_code(lab: &Lab, code: &str) -> Duration {
    let access = lab.sbc().access.udp_addr.expect("SBC access");
    let code = ServiceCode::parse(code).expect("a code");
    let options = PeerOptions::sbc(std::net::IpAddr::from([127, 0, 0, 1]));
    let connected = lab.alice.dial(access, &msisdn(OWNER), &code, options, Duration::from_secs(10)).await;
    let mut connected = connected.expect("answered");
    let mut ears = connected.peer.take_listener();
    let heard = voiced(&hear_all(&mut ears).await);
    let ended = tokio::time::timeout(Duration::from_secs(5), connected.call.ended()).await;
    assert!(ended.is_ok(), "{code}: the TAS hangs up once it has spoken");
    connected.peer.close().await;
    heard
}

async fn settings(lab: &Lab) -> SubscriberSettings {
    let store = lab.mailboxes.as_ref().expect("mailboxes").mailboxes.store();
    SubscriberSettings::read(store, &msisdn(OWNER)).await.expect("settings")
}

/// Where a stranger's call to the owner rings, its History-Info and Diversion.
async fn where_a_call_goes(lab: &Lab) -> (String, Vec<String>, Vec<String>) {
    let mut call = lab.call(STRANGER, OWNER);
    let Progress::Answered(dialog, _) = common::lab::final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    let received = lab.sbc().handsets().received();
    let last = received.last().expect("a handset rang");
    (last.request_uri.clone(), last.history_info.clone(), last.diversion.clone())
}

#[tokio::test]
async fn forwarding_set_and_cleared_by_codes_changes_where_the_next_call_goes() {
    let lab = lab().await;
    let on = dial_code(&lab, &format!("*72{COLLEAGUE}")).await;
    // "All your calls are forwarded to" and eleven digits: several seconds of speech.
    assert!(on >= Duration::from_secs(5), "confirmation with the number spoken: {on:?}");
    assert_eq!(settings(&lab).await.forward_always, Some(ForwardTarget::Number(msisdn(COLLEAGUE))));
    let code_call = lab.sbc().calls().into_iter().find(|call| call.callee.to_string().starts_with("*72"));
    let legs: Vec<u8> = code_call.expect("the code call").legs.iter().map(|leg| leg.leg.number()).collect();
    assert_eq!(legs, [1, 2], "no leg 3 for a code");

    let (uri, history, diversion) = where_a_call_goes(&lab).await;
    assert!(uri.starts_with(&format!("sip:{COLLEAGUE}@")), "forwarded: {uri}");
    assert!(history.iter().any(|entry| entry.contains("cause=302")), "{history:?}");
    assert!(diversion.iter().any(|entry| entry.contains(OWNER) && entry.contains("unconditional")), "{diversion:?}");

    let query = dial_code(&lab, "*#72").await;
    assert!(query >= Duration::from_secs(5), "still on, the number spoken: {query:?}");

    // Forwarding to oneself is refused, and changes nothing.
    let refused = dial_code(&lab, &format!("*72{OWNER}")).await;
    assert!(refused >= Duration::from_millis(800) && refused < Duration::from_secs(4), "refusal: {refused:?}");
    assert_eq!(settings(&lab).await.forward_always, Some(ForwardTarget::Number(msisdn(COLLEAGUE))));

    let off = dial_code(&lab, "*73").await;
    assert!(off >= Duration::from_millis(800) && off < Duration::from_secs(4), "off, no number: {off:?}");
    assert_eq!(settings(&lab).await.forward_always, None);
    let (uri, _, _) = where_a_call_goes(&lab).await;
    assert!(uri.starts_with(&format!("sip:{OWNER}@")), "the owner's phone again: {uri}");

    // A caller whose calls do not go through this TAS: the core serves no codes itself.
    let access = lab.sbc().access.udp_addr.expect("SBC access");
    let code = ServiceCode::parse("*73").expect("a code");
    let mut stranger = lab.alice.invite(access, &msisdn(STRANGER), &code, bytes::Bytes::new()).expect("INVITE");
    let Progress::Failed(response) = common::lab::final_of(&mut stranger).await else { panic!("refused") };
    assert_eq!(response.status.as_u16(), 404);
    assert!(lab.settled().await, "{}", lab.leftovers());
}

/// ringer with a store, its subscriber +4799990001 Loop with MO prefix 21.
async fn tas_with_store(dir: &std::path::Path) -> (ringer::tas::Tas, ringer::store::Store) {
    let toml = "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\nmedia_address = \"127.0.0.1\"\n[media]\nbind_address = \"127.0.0.1\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"loop\"\nmo_prefix = \"21\"\n";
    let config: ServeConfig = toml::from_str(toml).expect("config");
    config.validate().expect("valid");
    let store = ringer::store::Store::open(&format!("sqlite://{}/ringer.db", dir.display())).await.expect("store");
    store.migrate().await.expect("migrate");
    let mailboxes = ringer::tas::mailbox::Mailboxes::new(store.clone(), &config.voicemail).expect("mailboxes");
    (ringer::tas::start_sip_with(&config, None, Some(mailboxes)).await.expect("TAS starts"), store)
}

#[tokio::test]
async fn codes_written_by_sipp_as_the_core_are_carried_out_and_answered() {
    let Some(sipp) = tool(&["sipp"], "sip-tester") else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let (tas, store) = tas_with_store(dir.path()).await;
    let owner = msisdn("+4799990001");
    // The set code as dialled, the query with `#` escaped as a SIP user part needs it (a short
    // number: each digit is spoken back).
    // The last: From names the owner, but the core asserts nobody: refused, nothing changed.
    for (scenario, service, expected) in [
        ("core_feature_code.xml", "+21*92+4790*20", Some(ForwardTarget::Number(msisdn("+4790")))),
        ("core_feature_code.xml", "+21*%2392%23", Some(ForwardTarget::Number(msisdn("+4790")))),
        ("core_feature_code.xml", "+21*93", None),
        ("core_feature_code_unasserted.xml", "+21*92+4711111111", None),
    ] {
        let scenario = format!("{}/scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"));
        let port = common::free_port().port().to_string();
        let target = tas.endpoint.tcp_addr.expect("TCP").to_string();
        let output = tokio::process::Command::new(&sipp)
            .args(["-sf", &scenario, "-t", "t1", "-i", "127.0.0.1", "-p", &port, "-key", "caller", "+4799990001"])
            .args(["-s", service, "-m", "1", "-nostdin", "-timeout", "30s", &target])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(40), output).await.expect("in time").expect("SIPp ran");
        let screen = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert_eq!(call_counts(&screen), (1, 0), "{service}: as {scenario} expects\n{screen}");
        let settings = SubscriberSettings::read(&store, &owner).await.expect("settings");
        assert_eq!(settings.forward_no_answer, expected, "{service}");
    }
    assert_eq!(SubscriberSettings::read(&store, &owner).await.expect("settings").no_answer_seconds, Some(20));
    let records = tas.router.records();
    assert_eq!(records.len(), 4);
    assert_eq!(records[3].outcome.status.map(|s| s.as_u16()), Some(404), "{:?}", records[3]);
    for record in &records[..3] {
        assert!(record.outcome.leg3_call_ids.is_empty(), "no leg 3: {record:?}");
        assert!(record.outcome.actions[0].starts_with("feature code *"), "{:?}", record.outcome.actions);
        assert_eq!(record.outcome.status.map(|s| s.as_u16()), Some(200));
    }
}
