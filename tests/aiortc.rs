//! DTMF over WebRTC from an independent stack: aiortc (PyPI; `tests/peers/aiortc/dtmf_peer.py`,
//! installed by `scripts/test`) plays a WebRTC gateway. Its offer lists Opus, G.722, PCMU and
//! PCMA with telephone-event at 48000 and at 8000 Hz, as browsers and gateways write them;
//! ringer's voicemail must answer one codec with the telephone-event at that codec's clock
//! (RFC 4733 §7.1.1), each payload type once, and the caller's '#' must end the recording.
//! The script checks the answer and waits for ringer's BYE; the stored messages are checked here.
//! With `--keys` it drives the mailbox menu instead (number, PIN, choices).

mod common;

use std::path::PathBuf;
use std::time::Duration;

use ringer::config::serve::ServeConfig;

/// The Python with aiortc that `scripts/test` prepares, or `None` outside CI when it is missing.
fn aiortc_python() -> Option<PathBuf> {
    let python = std::env::var_os("RINGER_AIORTC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/peers/aiortc/bin/python"));
    let usable = std::process::Command::new(&python)
        .args(["-c", "import aiortc"])
        .output()
        .is_ok_and(|output| output.status.success());
    if !usable {
        let message = format!("no Python with aiortc at {} (./scripts/test installs it)", python.display());
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("SKIPPED outside CI: {message}");
        return None;
    }
    Some(python)
}

#[tokio::test]
async fn the_callers_hash_ends_voicemail_with_pcma_pcmu_and_opus_chosen_in_turn() {
    let Some(python) = aiortc_python() else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let voicemail = dir.path().join("voicemail");
    let toml = format!(
        "[tas]\nsip_uri = \"sips:tas.example.com:5061\"\n[core]\nendpoint = \"http://127.0.0.1:1\"\n\
         [sip]\ntcp_listen = \"127.0.0.1:0\"\nmedia_address = \"127.0.0.1\"\n\
         [media]\nbind_address = \"127.0.0.1\"\n[voicemail]\ndir = \"{}\"\n\
         [[subscriber]]\nphone_number = \"+4799990001\"\nroute_type = \"fallback\"\nmt_prefix = \"25\"\nmt = \"answer voicemail\"\n",
        voicemail.display()
    );
    let config: ServeConfig = toml::from_str(&toml).expect("config");
    let tas = ringer::tas::start_sip(&config).await.expect("TAS starts");
    let target = tas.endpoint.tcp_addr.expect("TCP").to_string();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiortc/dtmf_peer.py");
    for codec in ["PCMA", "PCMU", "OPUS"] {
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            tokio::process::Command::new(&python)
                .arg(&script)
                .args(["--target", &target, "--uri", &format!("sip:+254799990001@{target};user=phone")])
                .args(["--codec", codec, "--timeout", "10"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the aiortc peer finished in time")
        .expect("the aiortc peer ran");
        let printed = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "{codec}: the answer and the '#'\n{printed}");
        let chosen = match codec {
            "OPUS" => "telephone-event/48000",
            _ => "telephone-event/8000",
        };
        assert!(printed.contains(chosen), "{codec}: {chosen} answered\n{printed}");
    }
    // Three messages, each whole (ended by '#', not cut short) and from the gateway's caller.
    let mailbox = ringer::media::mailbox::Mailbox::open(&voicemail).expect("mailbox");
    let messages = mailbox.list(None).expect("messages");
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages.iter().all(|message| !message.partial && message.caller.as_deref() == Some("+4711111111")),
        "{messages:?}"
    );
}

/// The mailbox menu driven by aiortc's RFC 4733 keys over DTLS-SRTP: from a phone outside the
/// TAS the access number asks for the mailbox number and the PIN, then `1` plays the waiting
/// message, which the store then shows as heard.
#[tokio::test]
async fn aiortc_logs_in_to_a_mailbox_with_its_pin_and_plays_the_waiting_message() {
    use common::lab::{subscriber, Lab};
    use ringer::store::{MessageState, VoicemailRow};
    let Some(python) = aiortc_python() else { return };
    let (access, owner) = ("+4799990100", "+4799990101");
    let store = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/ringer.db", store.path().display());
    let subscribers = [
        subscriber(access, "loop-mt", "", "20", "", "\"answer voicemail-main\""),
        // The owner is a subscriber here: an asserted call from them would open the mailbox.
        subscriber(owner, "loop-mt", "", "21", "", "\"answer voicemail\""),
    ];
    let lab = Lab::start_adjusted(&subscribers, Vec::new(), Vec::new(), |config| {
        config.ports.tas_plain = Some(0);
        config.mailbox_store = Some(url);
        config.voicemail.access_number = Some(common::msisdn(access));
    })
    .await;
    let database = lab.mailboxes.as_ref().expect("mailboxes").mailboxes.store().clone();
    let pin = ringer::tas::mailbox::pin::hash("2468").expect("PIN");
    database.set_pin_hash(owner, &pin).await.expect("PIN stored");
    let message = VoicemailRow {
        id: "20261202T010000-0003".into(),
        subscriber: owner.into(),
        caller: Some("+4711111111".into()),
        recorded_at: "2026-12-02T01:00:00Z".into(),
        duration_ms: 1000,
        codec: "PCMA".into(),
        ..Default::default()
    };
    let audio = ringer::media::apps::wav_bytes(&ringer::media::apps::tone(1300.0, 1000, 12000.0));
    database.add_voicemail(&message, &audio).await.expect("message stored");

    let target = lab.tas.endpoint.tcp_addr.expect("TCP").to_string();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/aiortc/dtmf_peer.py");
    let call = |from: String, keys: String, listen: &'static str| {
        let (python, script, target) = (python.clone(), script.clone(), target.clone());
        async move {
            let output = tokio::time::timeout(
                Duration::from_secs(90),
                tokio::process::Command::new(&python)
                    .arg(&script)
                    .args(["--target", &target, "--uri", &format!("sip:+20{}@{target};user=phone", &access[1..])])
                    .args(["--from", &from, "--codec", "PCMA", "--tone", "0.5", "--keys", &keys, "--listen", listen])
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("the aiortc peer finished in time")
            .expect("the aiortc peer ran");
            let printed =
                String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
            assert_eq!(output.status.code(), Some(0), "the menu kept the call up\n{printed}");
            printed
        }
    };
    let state = async || database.voicemails(Some(owner)).await.expect("store").first().map(|m| m.state);

    // The owner's number in From alone (no P-Asserted-Identity) proves nothing: the menu asks
    // for the mailbox number, and `1` plays nothing.
    call(format!("sip:{owner}@gw.ringer.invalid;user=phone"), "1".into(), "15").await;
    assert_eq!(state().await, Some(MessageState::New), "a From claiming the owner opened the mailbox");

    // From another phone: number, PIN, `1`.
    let printed =
        call("sip:+4711111112@gw.ringer.invalid;user=phone".into(), format!("{}#2468#1", &owner[1..]), "20").await;
    assert_eq!(state().await, Some(MessageState::Heard), "played to its end after the PIN\n{printed}");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
