//! Voicemail as its owner uses it, end to end over WebRTC through the emulated core: the
//! greeting for why the call came (busy), the owner's menu by DTMF from their own phone and
//! from another with the PIN, the lockout after wrong PINs; and the HTTP API driven by curl.
//! What callers hear is checked by Goertzel: each greeting and message is a tone of its own.

mod common;

use std::time::Duration;

use common::audio::tone_share;
use common::curl::{api_on_store, token_for, Body};
use common::lab::{handset, subscriber, Lab};
use common::msisdn;
use ringer::config::core::HandsetMode;
use ringer::media::apps::{tone, wav_bytes};
use ringer::media::peer::{Listener, OfferingPeer, PeerOptions};
use ringer::sip::call::CallHandle;
use ringer::store::{MessageState, Store, VoicemailRow};
use ringer::tas::mailbox::greeting::GreetingKind;
use ringer::tas::mailbox::{api, pin, Mailboxes};

/// The subscriber whose mailbox the tests use: Loop both ways, its phone busy.
const OWNER: &str = "+4799990101";
/// The voicemail access number, a subscriber of its own (calls to it come as MT legs).
const ACCESS: &str = "+4799990100";
/// A phone outside the TAS.
const STRANGER: &str = "+4711111112";
/// The owner's PIN in these tests: eight digits, the longest, then `#`.
const PIN: &str = "24681357";

/// The owner's busy greeting, unavailable greeting and the caller's message: a tone each.
const BUSY_TONE: f64 = 700.0;
const UNAVAILABLE_TONE: f64 = 1700.0;
const MESSAGE_TONE: f64 = 1300.0;

fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}

/// Fallback subscribers: the core tries their phone first (busy; never answering), and
/// diverts to the TAS telling why.
const FALLBACK_BUSY: &str = "+4799990105";
const FALLBACK_NO_ANSWER: &str = "+4799990106";

/// The lab with the owner, the access number and the mailboxes in an SQLite store.
async fn mailbox_lab() -> Lab {
    mailbox_lab_with(|_| {}).await
}

/// As [`mailbox_lab`], the lab's config changed by `adjust`.
async fn mailbox_lab_with(adjust: impl FnOnce(&mut ringer::lab::LabConfig)) -> Lab {
    let subscribers = [
        subscriber(
            OWNER,
            "loop",
            "21",
            "22",
            "\"loop\"",
            "{ action = \"loop\", on_busy = \"answer voicemail\", on_no_answer = \"answer voicemail\" }",
        ),
        subscriber(ACCESS, "loop-mt", "", "20", "", "\"answer voicemail-main\""),
        subscriber(FALLBACK_BUSY, "fallback", "", "25", "", ""),
        subscriber(FALLBACK_NO_ANSWER, "fallback", "", "26", "", ""),
    ];
    let handsets = vec![
        handset(OWNER, HandsetMode::Busy),
        handset(FALLBACK_BUSY, HandsetMode::Busy),
        handset(FALLBACK_NO_ANSWER, HandsetMode::NoAnswer),
    ];
    let store = tempfile::tempdir().expect("tempdir").keep();
    Lab::start_adjusted(&subscribers, handsets, Vec::new(), |config| {
        config.mailbox_store = Some(format!("sqlite://{}/ringer.db", store.display()));
        config.voicemail.access_number = Some(msisdn(ACCESS));
        config.voicemail.pin_attempts = 3;
        config.fallback_no_answer = Duration::from_secs(1);
        adjust(config);
    })
    .await
}

fn mailboxes(lab: &Lab) -> &Mailboxes {
    &lab.mailboxes.as_ref().expect("the lab has mailboxes").mailboxes
}

fn store(lab: &Lab) -> &Store {
    mailboxes(lab).store()
}

/// A call from `from` to `to` through the core: the dialog, the peer (to send) and what it hears.
async fn dial(lab: &Lab, from: &str, to: &str) -> (CallHandle, OfferingPeer, Listener) {
    let access = lab.sbc().access.udp_addr.expect("SBC access");
    let options = PeerOptions::sbc(loopback());
    let connected = lab.alice.dial(access, &msisdn(from), &msisdn(to), options, Duration::from_secs(10)).await;
    let mut connected = connected.expect("connected");
    let ears = connected.peer.take_listener();
    (connected.call, connected.peer, ears)
}

/// What arrives for `span` (what ringer sent meanwhile, in order).
async fn listen(ears: &mut Listener, span: Duration) -> Vec<i16> {
    let deadline = tokio::time::Instant::now() + span;
    let mut samples = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return samples;
        }
        if let Some(packet) = ears.next(left).await {
            samples.extend(packet);
        }
    }
}

/// How long `frequency` was heard alone: 100 ms windows where it holds most of the energy.
fn tone_time(samples: &[i16], frequency: f64) -> Duration {
    let windows = samples
        .chunks_exact(800)
        .filter(|window| {
            let floats: Vec<f64> = window.iter().map(|s| f64::from(*s)).collect();
            tone_share(&floats, frequency) > 0.6
        })
        .count();
    Duration::from_millis(windows as u64 * 100)
}

/// Listens up to `limit` until `frequency` has been heard for `enough`.
async fn hear_tone(ears: &mut Listener, frequency: f64, enough: Duration, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut samples = Vec::new();
    while tokio::time::Instant::now() < deadline {
        samples.extend(listen(ears, Duration::from_millis(500)).await);
        if tone_time(&samples, frequency) >= enough {
            return true;
        }
    }
    false
}

async fn keys(peer: &mut OfferingPeer, keys: &str) {
    for key in keys.chars() {
        peer.send_dtmf(key).await;
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
}

/// The owner's messages the store lists (deleted ones are not).
async fn listed(lab: &Lab) -> Vec<VoicemailRow> {
    store(lab).voicemails(Some(OWNER)).await.expect("store")
}

async fn wait_for(limit: Duration, mut condition: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// `curl` against the lab's API with `token`; the status and the body.
async fn curl(lab: &Lab, token: &str, method: &str, path: &str, upload: Option<&std::path::Path>) -> (u16, String) {
    let http = lab.mailboxes.as_ref().expect("mailboxes").http;
    curl_at(http, token, method, path, upload).await
}

async fn curl_at(
    http: std::net::SocketAddr,
    token: &str,
    method: &str,
    path: &str,
    upload: Option<&std::path::Path>,
) -> (u16, String) {
    common::curl::curl(http, token, method, path, upload.map(Body::Wav)).await
}

/// A token for the owner's mailbox.
async fn owner_token(lab: &Lab) -> String {
    token_for(store(lab), Some(OWNER)).await
}

#[tokio::test]
async fn a_busy_owner_s_caller_hears_the_busy_greeting_and_the_owner_hears_and_deletes_the_message_by_phone() {
    let lab = mailbox_lab().await;
    let token = owner_token(&lab).await;
    // The owner uploads both greetings through the API: the busy one must be the one heard.
    for (kind, frequency) in [("busy", BUSY_TONE), ("unavailable", UNAVAILABLE_TONE)] {
        let file = lab.dir.path().join(format!("{kind}.wav"));
        std::fs::write(&file, wav_bytes(&tone(frequency, 1500, 12000.0))).expect("write");
        let path = format!("/api/v1/mailboxes/{OWNER}/greetings/{kind}");
        let (status, body) = curl(&lab, &token, "PUT", &path, Some(&file)).await;
        assert_eq!(status, 204, "{kind}: {body}");
    }

    // A caller to the busy owner: the busy greeting, beep, then the message.
    let (call, mut peer, mut ears) = dial(&lab, "+4711111111", OWNER).await;
    let greeting = listen(&mut ears, Duration::from_millis(1800)).await;
    assert!(tone_time(&greeting, BUSY_TONE) >= Duration::from_millis(1000), "the busy greeting");
    assert_eq!(tone_time(&greeting, UNAVAILABLE_TONE), Duration::ZERO, "not the unavailable one");
    peer.play(&tone(MESSAGE_TONE, 1500, 12000.0)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(call.hangup().await.expect("BYE"), 200);
    peer.close().await;
    assert!(wait_for(Duration::from_secs(10), async || listed(&lab).await.len() == 1).await, "message stored");
    let message = listed(&lab).await.remove(0);
    assert_eq!(message.state, MessageState::New);

    // The owner calls the access number from their own phone: no PIN; 1 plays the new message.
    let (call, peer, mut ears) = dial(&lab, OWNER, ACCESS).await;
    listen(&mut ears, Duration::from_millis(800)).await;
    play_and_delete(&lab, call, peer, ears).await;

    // Gone from the API too.
    let (status, body) = curl(&lab, &token, "GET", &format!("/api/v1/mailboxes/{OWNER}/messages"), None).await;
    assert_eq!((status, body.as_str()), (200, "[]"));
    let audio = format!("/api/v1/mailboxes/{OWNER}/messages/{}/audio", message.id);
    assert_eq!(curl(&lab, &token, "GET", &audio, None).await.0, 404);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

/// In the menu's main menu: `1` plays the one message (its tone heard after the envelope), `7`
/// deletes it (gone from the store's list); then hangs up.
async fn play_and_delete(lab: &Lab, call: CallHandle, mut peer: OfferingPeer, mut ears: Listener) {
    keys(&mut peer, "1").await;
    assert!(
        hear_tone(&mut ears, MESSAGE_TONE, Duration::from_millis(1000), Duration::from_secs(20)).await,
        "the message, after its envelope"
    );
    keys(&mut peer, "7").await;
    assert!(wait_for(Duration::from_secs(5), async || listed(lab).await.is_empty()).await, "deleted by phone");
    assert_eq!(call.hangup().await.expect("BYE"), 200);
    peer.close().await;
}

/// Puts a message of `MESSAGE_TONE` into the owner's mailbox.
async fn message_waiting(lab: &Lab) -> VoicemailRow {
    let row = VoicemailRow {
        id: "20261202T010000-0001".into(),
        subscriber: OWNER.into(),
        caller: Some("+4711111111".into()),
        callee: Some(OWNER.into()),
        direction: Some("MT".into()),
        recorded_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 1500,
        codec: "PCMA".into(),
        partial: false,
        instance: "test".into(),
        state: MessageState::New,
    };
    let audio = wav_bytes(&tone(MESSAGE_TONE, 1500, 12000.0));
    assert!(store(lab).add_voicemail(&row, &audio).await.expect("stored"));
    row
}

/// Whether ringer ends `call` within `limit`.
async fn ended_by_ringer(call: &CallHandle, limit: Duration) -> bool {
    tokio::time::timeout(limit, call.ended()).await.is_ok()
}

#[tokio::test]
async fn from_another_phone_the_pin_opens_the_mailbox_and_repeated_wrong_pins_lock_it() {
    let lab = mailbox_lab().await;
    store(&lab).set_pin_hash(OWNER, &pin::hash(PIN).expect("PIN")).await.expect("PIN stored");
    let message = message_waiting(&lab).await;
    let mailbox = &OWNER[1..];

    // Another phone: mailbox number and PIN, then 1 plays the message and 7 deletes it.
    let (call, mut peer, mut ears) = dial(&lab, STRANGER, ACCESS).await;
    listen(&mut ears, Duration::from_millis(500)).await;
    keys(&mut peer, &format!("{mailbox}#")).await;
    keys(&mut peer, &format!("{PIN}#")).await;
    listen(&mut ears, Duration::from_millis(800)).await;
    play_and_delete(&lab, call, peer, ears).await;
    assert_eq!(store(&lab).voicemail(&message.id).await.expect("store"), None);

    // Three wrong PINs: ringer says the mailbox is locked and hangs up.
    let (call, mut peer, mut ears) = dial(&lab, STRANGER, ACCESS).await;
    listen(&mut ears, Duration::from_millis(500)).await;
    for _ in 0..3 {
        keys(&mut peer, &format!("{mailbox}#")).await;
        keys(&mut peer, "1357#").await;
        listen(&mut ears, Duration::from_millis(300)).await;
    }
    assert!(ended_by_ringer(&call, Duration::from_secs(20)).await, "ringer hangs up after the lockout");
    peer.close().await;
    let state = store(&lab).pin_state(OWNER).await.expect("state");
    assert!(state.locked_until_ms > ringer::store::now_millis(), "{state:?}");

    // Locked: even the right PIN is refused, and the call ends instead of reaching the menu
    // (which would wait for keys).
    let (call, mut peer, mut ears) = dial(&lab, STRANGER, ACCESS).await;
    listen(&mut ears, Duration::from_millis(500)).await;
    keys(&mut peer, &format!("{mailbox}#{PIN}#")).await;
    assert!(ended_by_ringer(&call, Duration::from_secs(10)).await, "locked out");
    peer.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn the_api_lists_fetches_and_deletes_with_the_mailbox_s_token_and_refuses_others() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (database, http, serving) = api_on_store(dir.path(), api::router).await;
    let mine = token_for(&database, Some(OWNER)).await;
    let theirs = token_for(&database, Some(ACCESS)).await;
    let admin = token_for(&database, None).await;
    let row = VoicemailRow {
        id: "20261202T010000-0002".into(),
        subscriber: OWNER.into(),
        caller: Some("+4711111111".into()),
        recorded_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 1000,
        codec: "PCMA".into(),
        ..Default::default()
    };
    let samples = tone(MESSAGE_TONE, 1000, 12000.0);
    database.add_voicemail(&row, &wav_bytes(&samples)).await.expect("message");
    let messages = format!("/api/v1/mailboxes/{OWNER}/messages");
    let message = format!("{messages}/{}", row.id);

    let (status, body) = curl_at(http, &mine, "GET", &messages, None).await;
    assert_eq!(status, 200, "{body}");
    let listed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(listed[0]["id"], row.id.as_str(), "{body}");
    assert_eq!(listed[0]["caller"], "+4711111111", "{body}");
    assert_eq!(listed[0]["state"], "new", "{body}");

    // The audio as WAV: curl writes the bytes to a file, read back and checked by Goertzel.
    let wav = dir.path().join("message.wav");
    let url = format!("http://{http}{message}/audio");
    let fetched = tokio::process::Command::new("curl")
        .args(["-sS", "-f", "-H", &format!("Authorization: Bearer {mine}"), "-o"])
        .arg(&wav)
        .arg(&url)
        .status()
        .await
        .expect("curl");
    assert!(fetched.success());
    let heard: Vec<f64> = hound::WavReader::open(&wav)
        .expect("a WAV file")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    assert!(heard.len() >= 7_000 && tone_share(&heard, MESSAGE_TONE) > 0.8, "{} samples", heard.len());
    // And as Ogg/Opus.
    let ogg = dir.path().join("message.ogg");
    let fetched = tokio::process::Command::new("curl")
        .args(["-sS", "-f", "-H", &format!("Authorization: Bearer {mine}"), "-o"])
        .arg(&ogg)
        .arg(format!("{url}?format=opus"))
        .status()
        .await
        .expect("curl");
    assert!(fetched.success());
    let opus = std::fs::read(&ogg).expect("ogg");
    assert!(opus.starts_with(b"OggS") && opus.windows(8).any(|w| w == b"OpusHead"), "an Ogg/Opus file");

    // Another mailbox's token: 403; none or an unknown one: 401.
    assert_eq!(curl_at(http, &theirs, "GET", &messages, None).await.0, 403);
    assert_eq!(curl_at(http, &theirs, "DELETE", &message, None).await.0, 403);
    assert_eq!(curl_at(http, "rgr_unknown", "GET", &messages, None).await.0, 401);
    // Marked heard, then saved, by the owner; the admin sees it.
    assert_eq!(curl_at(http, &mine, "POST", &format!("{message}/heard"), None).await.0, 204);
    assert_eq!(curl_at(http, &mine, "POST", &format!("{message}/save"), None).await.0, 204);
    let (status, body) = curl_at(http, &admin, "GET", &messages, None).await;
    assert!(status == 200 && body.contains("\"saved\""), "{status} {body}");
    // Deleted: gone from the list and the audio; a second delete finds nothing.
    assert_eq!(curl_at(http, &mine, "DELETE", &message, None).await.0, 204);
    assert_eq!(curl_at(http, &mine, "GET", &messages, None).await, (200, "[]".into()));
    assert_eq!(curl_at(http, &mine, "GET", &format!("{message}/audio"), None).await.0, 404);
    assert_eq!(curl_at(http, &mine, "DELETE", &message, None).await.0, 404);
    // A greeting that is not audio, or of no known kind, is refused.
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"not audio").expect("write");
    let greetings = format!("/api/v1/mailboxes/{OWNER}/greetings");
    assert_eq!(curl_at(http, &mine, "PUT", &format!("{greetings}/busy"), Some(&junk)).await.0, 400);
    let good = dir.path().join("good.wav");
    std::fs::write(&good, wav_bytes(&samples)).expect("write");
    assert_eq!(curl_at(http, &mine, "PUT", &format!("{greetings}/loud"), Some(&good)).await.0, 400);
    assert_eq!(curl_at(http, &mine, "PUT", &format!("{greetings}/name"), Some(&good)).await.0, 204);
    assert_eq!(curl_at(http, &mine, "GET", &greetings, None).await, (200, "[\"name\"]".into()));
    serving.abort();
}

/// Stores `owner`'s busy and unavailable greetings, a tone each.
async fn greetings_of(lab: &Lab, owner: &str) {
    let mailboxes = mailboxes(lab);
    for (kind, frequency) in [(GreetingKind::Busy, BUSY_TONE), (GreetingKind::Unavailable, UNAVAILABLE_TONE)] {
        mailboxes.set_greeting(&msisdn(owner), kind, &tone(frequency, 1500, 12000.0)).await.expect("greeting stored");
    }
}

/// Which greeting a caller to `to` hears: the tone that fills its first 1.8 s.
async fn greeting_heard(lab: &Lab, to: &str) -> Option<f64> {
    let (call, peer, mut ears) = dial(lab, "+4711111111", to).await;
    let heard = listen(&mut ears, Duration::from_millis(1800)).await;
    let _ = call.hangup().await;
    peer.close().await;
    [BUSY_TONE, UNAVAILABLE_TONE]
        .into_iter()
        .find(|frequency| tone_time(&heard, *frequency) >= Duration::from_millis(1000))
}

#[tokio::test]
async fn a_fallback_call_gets_the_greeting_for_what_the_core_tells_in_history_info() {
    let lab = mailbox_lab().await;
    greetings_of(&lab, FALLBACK_BUSY).await;
    greetings_of(&lab, FALLBACK_NO_ANSWER).await;
    // The core rang the phone first: busy (cause 486), then no answer in time (cause 408).
    assert_eq!(greeting_heard(&lab, FALLBACK_BUSY).await, Some(BUSY_TONE), "busy");
    assert_eq!(greeting_heard(&lab, FALLBACK_NO_ANSWER).await, Some(UNAVAILABLE_TONE), "no answer");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn a_full_mailbox_says_so_and_takes_no_message() {
    let lab = mailbox_lab_with(|config| config.voicemail.max_messages = 1).await;
    greetings_of(&lab, OWNER).await;
    message_waiting(&lab).await;
    let (call, peer, mut ears) = dial(&lab, "+4711111111", OWNER).await;
    let heard = listen(&mut ears, Duration::from_millis(1500)).await;
    assert!(heard.len() >= 8000, "the announcement: {} samples", heard.len());
    assert_eq!(tone_time(&heard, BUSY_TONE), Duration::ZERO, "no greeting: nothing can be left");
    assert!(ended_by_ringer(&call, Duration::from_secs(15)).await, "ringer hangs up after the announcement");
    peer.close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(listed(&lab).await.len(), 1, "still the one message");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn without_the_owner_s_greetings_a_caller_hears_the_operator_s_recording_for_the_language() {
    let prompts = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(prompts.path().join("nb")).expect("folder");
    std::fs::write(prompts.path().join("nb/greeting-busy.wav"), wav_bytes(&tone(BUSY_TONE, 1500, 12000.0)))
        .expect("busy");
    let unavailable = wav_bytes(&tone(UNAVAILABLE_TONE, 1500, 12000.0));
    std::fs::write(prompts.path().join("nb/greeting-unavailable.wav"), unavailable).expect("unavailable");
    let folder = prompts.path().to_owned();
    let lab = mailbox_lab_with(move |config| {
        config.voicemail.prompts_dir = Some(folder);
        config.voicemail.language = "nb".into();
    })
    .await;
    // No greeting of their own: the system's, chosen by the same reasons.
    assert_eq!(greeting_heard(&lab, FALLBACK_BUSY).await, Some(BUSY_TONE), "busy");
    assert_eq!(greeting_heard(&lab, FALLBACK_NO_ANSWER).await, Some(UNAVAILABLE_TONE), "no answer");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn the_owner_records_the_busy_greeting_and_changes_the_pin_by_phone() {
    let lab = mailbox_lab().await;
    let (call, mut peer, mut ears) = dial(&lab, OWNER, ACCESS).await;
    listen(&mut ears, Duration::from_millis(800)).await;
    // 0: mailbox options; 2: the busy greeting. Speak after the beep, # to stop, 1 to keep it.
    keys(&mut peer, "0").await;
    listen(&mut ears, Duration::from_millis(800)).await;
    keys(&mut peer, "2").await;
    assert!(hear_tone(&mut ears, 1400.0, Duration::from_millis(300), Duration::from_secs(10)).await, "the beep");
    peer.play(&tone(BUSY_TONE, 1200, 12000.0)).await;
    keys(&mut peer, "#").await;
    listen(&mut ears, Duration::from_millis(800)).await;
    keys(&mut peer, "1").await;
    let owner = msisdn(OWNER);
    assert!(
        wait_for(Duration::from_secs(10), async || mailboxes(&lab)
            .greeting(&owner, GreetingKind::Busy)
            .await
            .is_some())
        .await,
        "the greeting kept"
    );
    let recorded = mailboxes(&lab).greeting(&owner, GreetingKind::Busy).await.unwrap_or_default();
    assert!(tone_time(&recorded, BUSY_TONE) >= Duration::from_millis(800), "what was said: {} samples", recorded.len());
    // 6: a new PIN, twice.
    listen(&mut ears, Duration::from_millis(800)).await;
    keys(&mut peer, "6").await;
    listen(&mut ears, Duration::from_millis(800)).await;
    keys(&mut peer, "1357#").await;
    listen(&mut ears, Duration::from_millis(800)).await;
    keys(&mut peer, "1357#").await;
    let changed = wait_for(Duration::from_secs(10), async || {
        let state = store(&lab).pin_state(OWNER).await.unwrap_or_default();
        state.pin_hash.is_some_and(|hash| pin::verify("1357", &hash))
    })
    .await;
    assert!(changed, "the new PIN stored (as a hash)");
    assert_eq!(call.hangup().await.expect("BYE"), 200);
    peer.close().await;
    // The next caller to the busy owner hears what the owner said.
    assert_eq!(greeting_heard(&lab, OWNER).await, Some(BUSY_TONE));
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
