//! WebRTC-style media: an offer shaped like the operator SBC's (ICE, DTLS-SRTP, rtcp-mux, no
//! mid, BUNDLE, msid or SSRC lines) made by an independent `webrtc` peer, answered by ringer's
//! echo: directly, and through the emulated core and a SIP call. ICE and DTLS complete on
//! loopback and a 1 kHz tone comes back over SRTP.

mod common;

use common::audio::tone_share;
use common::lab::{final_of, subscriber, Lab};
use common::webrtc_peer::SbcPeer;
use ringer::media::webrtc::answer_echo;
use ringer::sip::uac::Progress;

#[tokio::test]
async fn an_sbc_style_offer_is_answered_and_the_tone_comes_back_over_srtp() {
    let (mut sbc, offer, _) = SbcPeer::offer().await;
    assert!(
        offer.contains("a=fingerprint:") && offer.contains("a=setup:actpass") && offer.contains("a=ice-ufrag:"),
        "{offer}"
    );
    assert!(!offer.contains("a=mid:"), "{offer}");
    let (answer, _session) = answer_echo(&offer, "127.0.0.1".parse().expect("ip")).await.expect("ringer answers");
    assert!(!answer.contains("a=mid:"), "the answer has the offer's shape: {answer}");
    assert!(answer.contains("a=setup:active"), "active for an actpass offer: {answer}");
    assert!(
        answer.contains("a=fingerprint:") && answer.contains("a=candidate:") && answer.contains("a=rtcp-mux"),
        "{answer}"
    );
    sbc.accept(&answer).await;
    sbc.send_tone().await;
    let received = sbc.heard().await;
    assert!(received.len() >= 160 * 40, "the echo came back over SRTP: {} samples", received.len());
    assert!(tone_share(&received, 1000.0) > 0.5, "and it is the 1 kHz tone");
    sbc.close().await;
}

#[tokio::test]
async fn a_browser_offer_with_mids_keeps_them_in_the_answer() {
    let (sbc, _, browser_offer) = SbcPeer::offer().await;
    assert!(browser_offer.contains("a=mid:"));
    let (answer, session) =
        answer_echo(&browser_offer, "127.0.0.1".parse().expect("ip")).await.expect("ringer answers");
    assert!(answer.contains("a=mid:"), "{answer}");
    session.close().await;
    sbc.close().await;
}

#[tokio::test]
async fn a_webrtc_echo_call_through_the_core() {
    let lab = Lab::start(&[subscriber("+4799990007", "loop-mt", "", "27", "", "\"answer echo\"")], Vec::new()).await;
    let (mut sbc, offer, _) = SbcPeer::offer().await;
    let mut call = lab.call_offering("+4711111111", "+4799990007", &offer);
    let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    sbc.accept(&String::from_utf8_lossy(&response.body)).await;
    sbc.send_tone().await;
    let received = sbc.heard().await;
    assert!(
        received.len() >= 160 * 40 && tone_share(&received, 1000.0) > 0.5,
        "echo over SRTP through SIP: {} samples",
        received.len()
    );
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    sbc.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn voicemail_over_webrtc_greets_and_records() {
    let lab =
        Lab::start(&[subscriber("+4799990008", "loop-mt", "", "28", "", "\"answer voicemail\"")], Vec::new()).await;
    let (mut sbc, offer, _) = SbcPeer::offer().await;
    let mut call = lab.call_offering("+4711111111", "+4799990008", &offer);
    let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    sbc.accept(&String::from_utf8_lossy(&response.body)).await;
    let greeting = sbc.heard().await;
    assert!(greeting.len() >= 8000, "greeting and beep over SRTP: {} samples", greeting.len());
    assert!(tone_share(&greeting[..2400], 440.0) > 0.5, "the greeting's first note");
    sbc.send_tone().await;
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    let mailbox = ringer::media::mailbox::Mailbox::open(&lab.dir.path().join("voicemail")).expect("mailbox");
    assert!(
        common::poll_until(std::time::Duration::from_secs(5), || mailbox.list(None).is_ok_and(|m| m.len() == 1)).await
    );
    let message = &mailbox.list(None).expect("list")[0];
    assert!((700..=1300).contains(&message.duration_ms), "about a second: {message:?}");
    let samples: Vec<f64> = hound::WavReader::open(mailbox.audio(&message.id).expect("audio"))
        .expect("WAV")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    assert!(tone_share(&samples, 1000.0) > 0.5, "the stored audio is the tone sent over SRTP");
    sbc.close().await;
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
