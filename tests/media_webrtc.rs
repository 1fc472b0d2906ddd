//! WebRTC-style media: offers of every shape the operator warns of (SBC-style without mid,
//! BUNDLE, msid or SSRC lines; a browser's; `RTP/SAVP`; an ICE-lite agent's; Opus), made by an
//! independent `webrtc` peer ([`OfferingPeer`]) and answered by ringer, directly and through
//! the emulated core. Each completes ICE and DTLS on loopback and audio flows over SRTP.

mod common;

use std::time::Duration;

use common::audio::tone_share;
use common::lab::{subscriber, Lab};
use ringer::media::apps::tone;
use ringer::media::codec::Codec;
use ringer::media::peer::{OfferingPeer, PeerOptions};
use ringer::media::webrtc::{answer_echo, WebRtcOptions};

fn loopback() -> std::net::IpAddr {
    std::net::IpAddr::from([127, 0, 0, 1])
}

fn floats(samples: &[i16]) -> Vec<f64> {
    samples.iter().map(|s| f64::from(*s)).collect()
}

/// Offers as `options` say, has ringer's echo answer, and checks a second of a 1 kHz tone
/// comes back; returns the offer and the answer.
async fn echo_round_trip(options: PeerOptions) -> (String, String) {
    ringer::tls::install_crypto_provider();
    let (mut peer, offer) = OfferingPeer::offer(options).await.expect("offer");
    let answered = answer_echo(&offer, &WebRtcOptions::on(loopback())).await.expect("ringer answers");
    peer.accept(&answered.sdp, Duration::from_secs(10)).await.expect("ICE and DTLS complete");
    peer.play(&tone(1000.0, 1000, 12000.0)).await;
    let heard = peer.heard(Duration::from_millis(500)).await;
    assert!(heard.len() >= 8000 * 8 / 10, "the echo came back over SRTP: {} samples", heard.len());
    assert!(tone_share(&floats(&heard), 1000.0) > 0.5, "and it is the 1 kHz tone");
    peer.close().await;
    answered.session.close().await;
    (offer.to_string(), answered.sdp.to_string())
}

#[tokio::test]
async fn an_sbc_style_offer_is_answered_in_its_shape() {
    let (offer, answer) = echo_round_trip(PeerOptions::sbc(loopback())).await;
    for needed in ["a=fingerprint:", "a=setup:actpass", "a=ice-ufrag:", "a=rtcp-mux", "m=audio 9 UDP/TLS/RTP/SAVPF"] {
        assert!(offer.contains(needed), "{needed} in {offer}");
    }
    for absent in ["a=mid:", "a=group:BUNDLE", "a=msid", "a=ssrc"] {
        assert!(!offer.contains(absent), "{absent} in {offer}");
    }
    assert!(!answer.contains("a=mid:") && !answer.contains("a=group:BUNDLE"), "the offer's shape: {answer}");
    assert!(answer.contains("a=setup:active"), "active for an actpass offer: {answer}");
    for needed in ["a=fingerprint:sha-256 ", "a=candidate:", "a=rtcp-mux", "a=ice-ufrag:", "a=ice-pwd:"] {
        assert!(answer.contains(needed), "{needed} in {answer}");
    }
    let audio: Vec<&str> = answer.lines().filter(|line| line.starts_with("m=audio")).collect();
    assert_eq!(audio.len(), 1, "{answer}");
    assert!(audio[0].contains(" UDP/TLS/RTP/SAVPF 8"), "PCMA (and telephone-event): {answer}");
    let port: u16 = audio[0].split_whitespace().nth(1).and_then(|p| p.parse().ok()).expect("port");
    assert!(port != 0 && port != 9, "the stream is accepted on the default candidate's port: {answer}");
    assert!(answer.contains(&format!("127.0.0.1 {port} typ host")), "{answer}");
    assert!(answer.contains("c=IN IP4 127.0.0.1\r\n"), "{answer}");
    assert!(!answer.lines().any(|line| line.starts_with("c=") && line.contains("0.0.0.0")), "{answer}");
}

#[tokio::test]
async fn a_browser_offer_keeps_its_mids_and_bundle() {
    let options = PeerOptions { browser_shape: true, ..PeerOptions::sbc(loopback()) };
    let (offer, answer) = echo_round_trip(options).await;
    assert!(offer.contains("a=mid:") && offer.contains("a=group:BUNDLE"), "{offer}");
    assert!(answer.contains("a=mid:") && answer.contains("a=group:BUNDLE"), "{answer}");
}

#[tokio::test]
async fn a_savp_offer_gets_a_savp_answer() {
    let options = PeerOptions { savp: true, ..PeerOptions::sbc(loopback()) };
    let (offer, answer) = echo_round_trip(options).await;
    assert!(offer.contains("UDP/TLS/RTP/SAVP 8"), "{offer}");
    assert!(answer.contains("UDP/TLS/RTP/SAVP 8") && !answer.contains("SAVPF"), "{answer}");
}

#[tokio::test]
async fn an_ice_lite_offer_makes_ringer_the_controlling_agent() {
    let options = PeerOptions { ice_lite: true, ..PeerOptions::sbc(loopback()) };
    let (offer, answer) = echo_round_trip(options).await;
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(!answer.contains("a=ice-lite"), "ringer is a full agent: {answer}");
}

#[tokio::test]
async fn an_opus_offer_is_answered_with_opus() {
    let options = PeerOptions { codec: Codec::Opus, ..PeerOptions::sbc(loopback()) };
    let (offer, answer) = echo_round_trip(options).await;
    assert!(offer.contains("opus/48000/2"), "{offer}");
    assert!(answer.contains("opus/48000/2"), "{answer}");
}

#[tokio::test]
async fn the_public_address_is_the_candidate_offered() {
    ringer::tls::install_crypto_provider();
    let (peer, offer) = OfferingPeer::offer(PeerOptions::sbc(loopback())).await.expect("offer");
    let options = WebRtcOptions {
        public: Some("203.0.113.7".parse().expect("ip")),
        ports: Some(31000..=31009),
        ..WebRtcOptions::on(loopback())
    };
    let answered = answer_echo(&offer, &options).await.expect("ringer answers");
    let candidates: Vec<_> = answered.sdp.media.iter().flat_map(|media| media.candidates()).collect();
    assert!(!candidates.is_empty(), "{}", answered.sdp);
    for candidate in &candidates {
        assert_eq!(candidate.address, "203.0.113.7", "1:1 NAT address: {candidate}");
        assert!((31000..=31009).contains(&candidate.port), "from the configured range: {candidate}");
    }
    assert!(answered.sdp.to_string().contains("c=IN IP4 203.0.113.7\r\n"), "{}", answered.sdp);
    answered.session.close().await;
    peer.close().await;
}

#[tokio::test]
async fn an_offer_without_a_common_codec_is_refused() {
    ringer::tls::install_crypto_provider();
    let (peer, offer) =
        OfferingPeer::offer(PeerOptions { codec: Codec::Opus, ..PeerOptions::sbc(loopback()) }).await.expect("offer");
    let g711_only = WebRtcOptions { codecs: vec![Codec::Pcma, Codec::Pcmu], ..WebRtcOptions::on(loopback()) };
    let refused = answer_echo(&offer, &g711_only).await.err().expect("no common codec");
    assert!(refused.to_string().contains("PCMA, PCMU"), "{refused}");
    peer.close().await;
}

/// Alice calls `to` through the core with `options`' offer; returns the dialog and her media
/// once ICE and DTLS are up.
async fn call_through_core(lab: &Lab, to: &str, options: PeerOptions) -> (ringer::sip::call::CallHandle, OfferingPeer) {
    let access = lab.sbc().access.udp_addr.expect("SBC access");
    let (from, to) = (common::msisdn("+4711111111"), common::msisdn(to));
    let connected = lab.alice.dial(access, &from, &to, options, Duration::from_secs(10)).await.expect("connected");
    (connected.call, connected.peer)
}

#[tokio::test]
async fn a_webrtc_echo_call_through_the_core_survives_a_re_offer() {
    let lab = Lab::start(&[subscriber("+4799990007", "loop-mt", "", "27", "", "\"answer echo\"")], Vec::new()).await;
    let (dialog, mut peer) = call_through_core(&lab, "+4799990007", PeerOptions::sbc(loopback())).await;
    peer.play(&tone(1000.0, 500, 12000.0)).await;
    let before = peer.heard(Duration::from_millis(400)).await;
    assert!(before.len() >= 3000 && tone_share(&floats(&before), 1000.0) > 0.5, "echo: {} samples", before.len());
    // The core re-offers (a session refresh or a codec check): same connection, media goes on.
    let reoffer = peer.reoffer().await.expect("re-offer");
    let answer = dialog.reinvite(bytes::Bytes::from(reoffer.to_string())).await.expect("re-INVITE answered 200");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.contains("a=fingerprint:") && !answer.contains("a=mid:"), "{answer}");
    let answer = ringer::sdp::SessionDescription::parse(&answer).expect("SDP");
    peer.accept_reanswer(&answer).await.expect("re-answer taken");
    peer.play(&tone(600.0, 500, 12000.0)).await;
    let after = peer.heard(Duration::from_millis(400)).await;
    assert!(after.len() >= 3000, "media after the re-offer: {} samples", after.len());
    assert!(tone_share(&floats(&after), 600.0) > 0.5, "and it is the new tone");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    peer.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

/// The one message in `lab`'s mailbox, and its audio.
async fn the_message(lab: &Lab) -> (ringer::media::mailbox::MessageMeta, Vec<f64>) {
    let mailbox = ringer::media::mailbox::Mailbox::open(&lab.dir.path().join("voicemail")).expect("mailbox");
    assert!(common::poll_until(Duration::from_secs(5), || mailbox.list(None).is_ok_and(|m| m.len() == 1)).await);
    let message = mailbox.list(None).expect("list").remove(0);
    let samples: Vec<f64> = hound::WavReader::open(mailbox.audio(&message.id).expect("audio"))
        .expect("WAV")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    (message, samples)
}

#[tokio::test]
async fn voicemail_over_webrtc_greets_and_records() {
    let lab =
        Lab::start(&[subscriber("+4799990008", "loop-mt", "", "28", "", "\"answer voicemail\"")], Vec::new()).await;
    let (dialog, mut peer) = call_through_core(&lab, "+4799990008", PeerOptions::sbc(loopback())).await;
    let greeting = peer.heard(Duration::from_millis(500)).await;
    assert!(greeting.len() >= 8000, "greeting and beep over SRTP: {} samples", greeting.len());
    assert!(tone_share(&floats(&greeting[..2400]), 440.0) > 0.5, "the greeting's first note");
    peer.play(&tone(1000.0, 1000, 12000.0)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    let (message, samples) = the_message(&lab).await;
    assert!((700..=1300).contains(&message.duration_ms), "about a second: {message:?}");
    assert_eq!(message.codec, "PCMA");
    assert!(tone_share(&samples, 1000.0) > 0.5, "the stored audio is the tone sent over SRTP");
    peer.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn voicemail_over_webrtc_opus_ends_on_dtmf_hash() {
    let lab =
        Lab::start(&[subscriber("+4799990009", "loop-mt", "", "29", "", "\"answer voicemail\"")], Vec::new()).await;
    let options = PeerOptions { codec: Codec::Opus, ..PeerOptions::sbc(loopback()) };
    let (dialog, mut peer) = call_through_core(&lab, "+4799990009", options).await;
    let greeting = peer.heard(Duration::from_millis(500)).await;
    assert!(greeting.len() >= 8000, "greeting decoded from Opus: {} samples", greeting.len());
    peer.play(&tone(1000.0, 1500, 12000.0)).await;
    peer.send_dtmf('#').await;
    // `#` ends the recording and ringer hangs up.
    let reason = tokio::time::timeout(Duration::from_secs(5), dialog.ended()).await.expect("ringer hung up");
    assert!(reason.contains("BYE"), "{reason}");
    let (message, samples) = the_message(&lab).await;
    assert_eq!(message.codec, "opus");
    assert!((1200..=1900).contains(&message.duration_ms), "the tone, not more: {message:?}");
    assert!(tone_share(&samples, 1000.0) > 0.4, "the stored audio is the tone sent as Opus");
    peer.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn a_silent_webrtc_caller_is_hung_up_after_the_media_timeout() {
    let echo = subscriber("+4799990010", "loop-mt", "", "30", "", "\"answer echo\"");
    let second = Duration::from_secs(1);
    let lab = Lab::start_full(&[echo], Vec::new(), Duration::from_secs(30), Vec::new(), second).await;
    let (dialog, mut peer) = call_through_core(&lab, "+4799990010", PeerOptions::sbc(loopback())).await;
    // Some audio first: the timeout counts from the last packet, not from the answer.
    peer.play(&tone(1000.0, 600, 12000.0)).await;
    let started = tokio::time::Instant::now();
    let reason = tokio::time::timeout(Duration::from_secs(5), dialog.ended()).await.expect("ringer hangs up");
    assert!(reason.contains("BYE"), "{reason}");
    assert!(started.elapsed() >= Duration::from_millis(800), "not before the timeout: {:?}", started.elapsed());
    peer.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
