//! The self-care page in headless Chromium (Debian's, over chromedriver), on the lab's HTTP
//! listener: a wrong PIN refused, the right one logs in; forwarding set on the page sends the
//! next call through the emulated core to the colleague; a message plays in the page's audio
//! element (the browser loads and decodes it); a greeting is uploaded from a file; a subscriber
//! without a PIN logs in once with a PIN the emulated core's SmsService delivered, then sets
//! their own. Screenshots: `target/test-output/selfcare-*.png`.

mod common;

use std::time::Duration;

use common::browser::Browser;
use common::lab::{final_of, handset, subscriber, Lab};
use common::msisdn;
use ringer::config::core::HandsetMode;
use ringer::media::apps::{tone, wav_bytes};
use ringer::sip::uac::Progress;
use ringer::store::{MessageState, VoicemailRow};
use ringer::tas::settings::{ForwardTarget, SubscriberSettings};

const OWNER: &str = "+4799990401";
const COLLEAGUE: &str = "+4799990402";
/// A subscriber with no PIN yet: the first login is by SMS.
const NEWCOMER: &str = "+4799990403";
const STRANGER: &str = "+4711111115";
const PIN: &str = "4321";

async fn lab() -> Lab {
    let store = tempfile::tempdir().expect("tempdir").keep();
    Lab::start_adjusted(
        &[
            subscriber(OWNER, "loop-mt", "", "22", "", "\"loop\""),
            subscriber(NEWCOMER, "loop-mt", "", "22", "", "\"loop\""),
        ],
        vec![handset(OWNER, HandsetMode::Answer), handset(COLLEAGUE, HandsetMode::Answer)],
        Vec::new(),
        |config| {
            config.mailbox_store = Some(format!("sqlite://{}/ringer.db", store.display()));
            config.voicemail.notification.sms_from = Some("Ringer".into());
        },
    )
    .await
}

/// Where a stranger's call to the owner rings.
async fn where_a_call_goes(lab: &Lab) -> String {
    let mut call = lab.call(STRANGER, OWNER);
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    lab.sbc().handsets().received().last().expect("a handset rang").request_uri.clone()
}

async fn log_in(browser: &Browser, base: &str, number: &str, pin: &str) -> String {
    browser.open(&format!("{base}/me")).await;
    browser.type_into("#number", number).await;
    browser.type_into("#pin", pin).await;
    browser.click("#login").await;
    browser.text().await
}

#[tokio::test]
async fn a_subscriber_logs_in_sets_forwarding_plays_a_message_and_uploads_a_greeting() {
    let Some(browser) = Browser::start().await else { return };
    let lab = lab().await;
    let lab_mailboxes = lab.mailboxes.as_ref().expect("mailboxes");
    let store = lab_mailboxes.mailboxes.store();
    let base = format!("http://{}", lab_mailboxes.http);
    store.set_pin_hash(OWNER, &ringer::tas::mailbox::pin::hash(PIN).expect("hash")).await.expect("PIN");
    let message = VoicemailRow {
        id: "m1".into(),
        subscriber: OWNER.into(),
        caller: Some(STRANGER.into()),
        callee: Some(OWNER.into()),
        direction: Some("MT".into()),
        recorded_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 1500,
        codec: "PCMA".into(),
        partial: false,
        instance: "test".into(),
        state: MessageState::New,
    };
    assert!(store.add_voicemail(&message, &wav_bytes(&tone(700.0, 1500, 9000.0))).await.expect("message"));

    let refused = log_in(&browser, &base, OWNER, "9999").await;
    browser.screenshot("selfcare-wrong-pin").await;
    assert!(refused.contains("Login incorrect"), "{refused}");
    assert!(browser.find("#owner").await.is_none(), "not logged in");

    let page = log_in(&browser, &base, OWNER, PIN).await;
    browser.screenshot("selfcare-dashboard").await;
    assert!(page.contains(&format!("Logged in as {OWNER}")), "{page}");
    assert!(where_a_call_goes(&lab).await.starts_with(&format!("sip:{OWNER}@")), "the phone, before");

    browser.type_into("#forward_always", COLLEAGUE).await;
    browser.click("#save-settings").await;
    let saved = browser.text().await;
    browser.screenshot("selfcare-forwarding-set").await;
    assert!(saved.contains("Settings saved"), "{saved}");
    let settings = SubscriberSettings::read(store, &msisdn(OWNER)).await.expect("settings");
    assert_eq!(settings.forward_always, Some(ForwardTarget::Number(msisdn(COLLEAGUE))));
    let reached = where_a_call_goes(&lab).await;
    assert!(reached.starts_with(&format!("sip:{COLLEAGUE}@")), "forwarded by the page's setting: {reached}");

    // The page's player loads the message: the browser decodes it and knows its length.
    let duration = browser
        .execute_async(
            "const done = arguments[arguments.length - 1]; const audio = document.querySelector('audio');\
             audio.onloadedmetadata = () => done(audio.duration); audio.onerror = () => done(-1);\
             audio.preload = 'auto'; audio.load();",
        )
        .await;
    let duration = duration.as_f64().expect("a duration");
    assert!((duration - 1.5).abs() < 0.1, "the 1.5 s message: {duration}");
    assert_eq!(store.voicemail("m1").await.expect("read").expect("kept").0.state, MessageState::Heard);

    // A greeting uploaded from a file.
    let file = tempfile::Builder::new().suffix(".wav").tempfile().expect("file");
    std::fs::write(file.path(), wav_bytes(&tone(1000.0, 800, 9000.0))).expect("WAV");
    browser.type_into("#greeting", file.path().to_str().expect("utf-8")).await;
    browser.click("#upload").await;
    let uploaded = browser.text().await;
    browser.screenshot("selfcare-greeting-uploaded").await;
    assert!(uploaded.contains("Greeting saved"), "{uploaded}");
    assert_eq!(store.greetings(OWNER).await.expect("greetings"), ["unavailable"]);

    // A bad number is named, and nothing changes.
    browser.type_into("#forward_busy", "my colleague").await;
    browser.click("#save-settings").await;
    assert!(browser.text().await.contains("When I am busy"), "the field named");
    assert_eq!(SubscriberSettings::read(store, &msisdn(OWNER)).await.expect("settings").forward_busy, None);
    assert!(lab.settled().await, "{}", lab.leftovers());
}

#[tokio::test]
async fn a_first_login_uses_a_pin_sent_by_sms_once() {
    let Some(browser) = Browser::start().await else { return };
    let lab = lab().await;
    let lab_mailboxes = lab.mailboxes.as_ref().expect("mailboxes");
    let base = format!("http://{}", lab_mailboxes.http);
    browser.open(&format!("{base}/me")).await;
    browser.type_into("#sms-number", NEWCOMER).await;
    browser.click("#send-pin").await;
    assert!(browser.text().await.contains("a PIN is on its way"));
    // A stranger's number gets the same page and no SMS.
    browser.type_into("#sms-number", STRANGER).await;
    browser.click("#send-pin").await;
    assert!(browser.text().await.contains("a PIN is on its way"));
    // Sent after the page answers (a stranger's page must come as fast).
    common::eventually(Duration::from_secs(10), "the PIN sent", || !lab.core.sms().sent().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = lab.core.sms().sent();
    assert_eq!(sent.len(), 1, "one SMS, to the subscriber only: {:?}", sent.iter().map(|s| &s.to).collect::<Vec<_>>());
    assert_eq!(sent[0].to, msisdn(NEWCOMER));
    let code: String = sent[0].content.chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(code.len(), 6, "{}", sent[0].content);

    let page = log_in(&browser, &base, NEWCOMER, &code).await;
    browser.screenshot("selfcare-first-login").await;
    assert!(page.contains("set your own PIN"), "{page}");
    browser.type_into("#new-pin", "8642").await;
    browser.click("#set-pin").await;
    assert!(browser.text().await.contains("PIN changed"));
    browser.click("#logout").await;
    // The SMS PIN worked once; the subscriber's own PIN works from now on.
    assert!(log_in(&browser, &base, NEWCOMER, &code).await.contains("Login incorrect"));
    assert!(log_in(&browser, &base, NEWCOMER, "8642").await.contains(&format!("Logged in as {NEWCOMER}")));
}
