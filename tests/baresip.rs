//! Interop with an independent WebRTC-capable SIP client: Debian's `baresip` calls ringer over
//! TLS, as the core's SBC would (the MT prefix in the Request-URI), with ICE and DTLS-SRTP
//! (`mediaenc=dtls_srtp`, `medianat=ice`). It plays a 1 kHz sine (`ausine`) and its `sndfile`
//! module writes what it sent and what it heard to WAV files; the test checks audio went both
//! ways: ringer's greeting reached baresip, and the tone reached ringer's mailbox (voicemail),
//! or came back (echo).

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::audio::tone_share;
use common::lab::{subscriber, Lab};
use common::sipp::tool;

/// baresip's config folder: TLS trusting the lab's CA, no sound card (ausine in, aubridge
/// out), `sndfile` dumping both directions of the audio into `dumps`.
fn baresip_config(dir: &Path, ca: &Path, dumps: &Path, codec: &str) {
    let config = format!(
        "poll_method epoll\n\
         sip_listen 127.0.0.1:0\n\
         sip_cafile {ca}\n\
         audio_player alsa,null\n\
         audio_alert alsa,null\n\
         audio_source ausine,1000\n\
         ausrc_srate 48000\n\
         ausrc_channels 2\n\
         audio_level no\n\
         module_path /usr/lib/baresip/modules\n\
         module g711.so\n\
         module opus.so\n\
         module ausine.so\n\
         module alsa.so\n\
         module sndfile.so\n\
         module ice.so\n\
         module dtls_srtp.so\n\
         module_app account.so\n\
         module_app menu.so\n\
         net_interface 127.0.0.1\n\
         snd_path {dumps}\n",
        ca = ca.display(),
        dumps = dumps.display(),
    );
    std::fs::write(dir.join("config"), config).expect("config");
    let account =
        format!("<sip:alice@127.0.0.1;transport=tls>;regint=0;mediaenc=dtls_srtp;medianat=ice;audio_codecs={codec}\n");
    std::fs::write(dir.join("accounts"), account).expect("accounts");
    std::fs::write(dir.join("contacts"), "").expect("contacts");
}

/// This machine's address on its default route: baresip's ICE leaves loopback out, so ringer's
/// media must be reachable on an interface address.
fn interface_address() -> std::net::IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("UDP socket");
    // Connecting a UDP socket sends nothing; it only picks the route and the source address.
    socket.connect("192.0.2.1:9").expect("this machine needs a default route (an interface besides loopback)");
    socket.local_addr().expect("local address").ip()
}

/// A lab whose one subscriber `number` answers MT calls (prefix `prefix`) with `app`, its
/// media on the interface address.
async fn lab_answering(number: &str, prefix: &str, app: &str) -> Lab {
    let subscriber = subscriber(number, "loop-mt", "", prefix, "", &format!("\"answer {app}\""));
    let thirty = Duration::from_secs(30);
    Lab::start_media(&[subscriber], Vec::new(), thirty, Vec::new(), thirty, interface_address()).await
}

/// The samples of a WAV file baresip's `sndfile` wrote, mixed to mono and decimated to 8 kHz.
fn wav_at_8k(path: &Path) -> Vec<f64> {
    let mut reader = hound::WavReader::open(path).expect("WAV");
    let spec = reader.spec();
    let channels = usize::from(spec.channels.max(1));
    let step = (spec.sample_rate / 8000).max(1) as usize;
    let samples: Vec<i16> = reader.samples::<i16>().map(|s| s.expect("sample")).collect();
    let mono: Vec<f64> = samples
        .chunks(channels)
        .map(|frame| frame.iter().map(|s| f64::from(*s)).sum::<f64>() / channels as f64)
        .collect();
    mono.chunks(step).map(|group| group.iter().sum::<f64>() / group.len() as f64).collect()
}

/// What baresip did: its output, and the audio it heard and sent, mixed to 8 kHz mono.
struct BaresipCall {
    log: String,
    heard: Vec<f64>,
    sent: Vec<f64>,
}

/// Runs baresip for `seconds`, dialing `uri` offering `codec`.
async fn baresip_call(baresip: &Path, ca: &Path, uri: &str, codec: &str, seconds: u32) -> BaresipCall {
    let home = tempfile::tempdir().expect("temp dir");
    let dumps = home.path().join("dumps");
    std::fs::create_dir_all(&dumps).expect("dumps");
    baresip_config(home.path(), ca, &dumps, codec);
    let output = tokio::process::Command::new(baresip)
        .arg("-f")
        .arg(home.path())
        .args(["-v", "-e", &format!("/dial {uri}"), "-t", &seconds.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("baresip runs");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    let files: Vec<PathBuf> = std::fs::read_dir(&dumps).expect("dumps").map(|e| e.expect("entry").path()).collect();
    let find = |suffix: &str| {
        files
            .iter()
            .find(|path| path.to_string_lossy().ends_with(suffix))
            .cloned()
            .unwrap_or_else(|| panic!("no *{suffix} among {files:?}; baresip said:\n{log}"))
    };
    BaresipCall { heard: wav_at_8k(&find("-dec.wav")), sent: wav_at_8k(&find("-enc.wav")), log }
}

#[tokio::test]
async fn baresip_leaves_a_voicemail_over_tls_ice_and_dtls_srtp() {
    let Some(baresip) = tool(&["baresip"], "baresip-core") else { return };
    let lab = lab_answering("+4799990031", "31", "voicemail").await;
    let tls = lab.tas.endpoint.tls_addr.expect("TLS listener");
    let uri = format!("sip:+314799990031@127.0.0.1:{}", tls.port());
    let BaresipCall { log, heard, sent } = baresip_call(&baresip, &lab.certs.ca_cert, &uri, "PCMA", 7).await;
    for step in ["ice: audio: connectivity check is complete", "DTLS-SRTP complete", "Set audio decoder: PCMA"] {
        assert!(log.contains(step), "baresip logged {step:?}:\n{log}");
    }
    assert!(tone_share(&sent, 1000.0) > 0.5, "baresip sent its tone");
    let greeting_start = heard.iter().position(|s| s.abs() > 1000.0).unwrap_or_else(|| panic!("silence:\n{log}"));
    assert!(
        tone_share(&heard[greeting_start..greeting_start + 2000], 440.0) > 0.5,
        "baresip heard ringer's greeting (440 Hz first)"
    );
    let mailbox = ringer::media::mailbox::Mailbox::open(&lab.dir.path().join("voicemail")).expect("mailbox");
    assert!(
        common::poll_until(Duration::from_secs(5), || mailbox.list(None).is_ok_and(|m| m.len() == 1)).await,
        "a message was stored:\n{log}"
    );
    let message = mailbox.list(None).expect("list").remove(0);
    assert!(message.duration_ms >= 1500, "seconds of recording: {message:?}");
    let stored: Vec<f64> = hound::WavReader::open(mailbox.audio(&message.id).expect("audio"))
        .expect("WAV")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    assert!(tone_share(&stored, 1000.0) > 0.5, "ringer recorded baresip's tone");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
    // The call's record: what baresip sent, as ringer received it (loopback: nothing lost).
    let record = lab.call_records_when(1).await.remove(0);
    assert_eq!(
        (&record["codec"], &record["final_status"], &record["actions"]),
        (&serde_json::json!("PCMA"), &serde_json::json!(200), &serde_json::json!(["answer voicemail"])),
        "{record}"
    );
    let media = &record["media"];
    assert!(media["packets_received"].as_u64().is_some_and(|n| n > 100), "seconds of RTP counted: {record}");
    assert!(media["loss"].as_f64().is_some_and(|loss| loss < 0.01), "{record}");
    assert!(media["jitter_ms"].as_f64().is_some_and(|jitter| jitter < 40.0), "{record}");
    assert_eq!(record["ended_by"], "caller", "baresip hung up: {record}");
}

#[tokio::test]
async fn baresip_hears_its_tone_echoed_over_opus() {
    let Some(baresip) = tool(&["baresip"], "baresip-core") else { return };
    let lab = lab_answering("+4799990032", "32", "echo").await;
    let tls = lab.tas.endpoint.tls_addr.expect("TLS listener");
    let uri = format!("sip:+324799990032@127.0.0.1:{}", tls.port());
    let BaresipCall { log, heard, .. } = baresip_call(&baresip, &lab.certs.ca_cert, &uri, "opus/48000/2", 5).await;
    for step in ["DTLS-SRTP complete", "Set audio decoder: opus"] {
        assert!(log.contains(step), "baresip logged {step:?}:\n{log}");
    }
    let loud: Vec<f64> = heard.iter().copied().skip_while(|s| s.abs() < 1000.0).take(8000).collect();
    assert!(loud.len() >= 4000, "baresip heard the echo: {} loud samples\n{log}", loud.len());
    assert!(tone_share(&loud, 1000.0) > 0.5, "and it is its own tone");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
