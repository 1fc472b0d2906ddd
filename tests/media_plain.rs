//! Plain RTP on answered calls, end to end over real UDP through the emulated core: the echo
//! app returns a 1 kHz tone (checked by Goertzel, not by size), an offer with no usable codec
//! gets 488 with a Warning, and a call whose caller sends no RTP ends with BYE.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::audio::tone_share;
use common::lab::{final_of, subscriber, Lab};
use ringer::media::g711;
use ringer::sdp::SessionDescription;
use ringer::sip::uac::Progress;
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::net::UdpSocket;

const ALICE: &str = "+4711111111";
const ECHO: &str = "+4799990007";

fn offer(port: u16, formats: &str, rtpmaps: &str) -> String {
    format!(
        "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP {formats}\r\n{rtpmaps}"
    )
}

async fn echo_lab(timeout: Duration) -> Lab {
    Lab::start_full(
        &[subscriber(ECHO, "loop-mt", "", "27", "", "\"answer echo\"")],
        Vec::new(),
        Duration::from_secs(30),
        Vec::new(),
        timeout,
    )
    .await
}

#[tokio::test]
async fn echo_returns_a_tone_sent_over_pcma() {
    let lab = echo_lab(Duration::from_secs(30)).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let port = rtp.local_addr().expect("addr").port();
    let mut call = lab.call_offering(ALICE, ECHO, &offer(port, "0 8 101", "a=rtpmap:101 telephone-event/8000\r\n"));
    let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    let answer = SessionDescription::parse(&String::from_utf8_lossy(&response.body)).expect("SDP answer");
    let audio = &answer.media[0];
    assert_eq!(audio.formats, ["8", "101"], "PCMA preferred, telephone-event kept");
    let remote = SocketAddr::new(answer.connection().expect("c="), audio.port);

    // 50 packets of 20 ms: one second of a 1 kHz tone at 8 kHz, A-law.
    let mut sent = Vec::new();
    for n in 0..50u16 {
        let samples: Vec<i16> = (0..160)
            .map(|i| {
                let t = f64::from(u32::from(n) * 160 + i) / 8000.0;
                (12000.0 * (2.0 * std::f64::consts::PI * 1000.0 * t).sin()) as i16
            })
            .collect();
        sent.extend(samples.iter().map(|s| f64::from(*s)));
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 8,
                sequence_number: n,
                timestamp: u32::from(n) * 160,
                ssrc: 0xA11CE,
                ..Default::default()
            },
            payload: samples.iter().map(|s| g711::alaw_encode(*s)).collect::<Vec<u8>>().into(),
        };
        rtp.send_to(&packet.marshal().expect("marshal"), remote).await.expect("send RTP");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut received = Vec::new();
    let mut buffer = [0u8; 2048];
    while let Ok(Ok((length, _))) = tokio::time::timeout(Duration::from_millis(500), rtp.recv_from(&mut buffer)).await {
        let packet = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]).expect("RTP from ringer");
        assert_ne!(packet.header.ssrc, 0xA11CE, "ringer's own SSRC");
        assert_eq!(packet.header.payload_type, 8);
        received.extend(packet.payload.iter().map(|b| f64::from(g711::alaw_decode(*b))));
    }
    assert!(received.len() >= 160 * 45, "most of the second came back: {} samples", received.len());
    let at_tone = tone_share(&received, 1000.0);
    let elsewhere = tone_share(&received, 1700.0);
    assert!(at_tone > 0.5 && elsewhere < 0.05, "1 kHz share {at_tone:.3}, 1.7 kHz share {elsewhere:.3}");
    assert!(tone_share(&sent, 1000.0) > 0.5, "the check itself sees the tone sent");
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn no_usable_codec_gets_488_with_a_warning() {
    let lab = echo_lab(Duration::from_secs(30)).await;
    let mut call = lab.call_offering(ALICE, ECHO, &offer(40000, "18", "a=rtpmap:18 G729/8000\r\n"));
    let Progress::Failed(response) = final_of(&mut call).await else { panic!("expected a refusal") };
    assert_eq!(response.status.as_u16(), 488);
    let warning = response.headers.get("Warning").unwrap_or_default();
    assert!(warning.contains("PCMA"), "the Warning names what ringer has: {warning}");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn no_rtp_from_the_caller_ends_the_call_with_bye() {
    let lab = echo_lab(Duration::from_millis(600)).await;
    let mut call = lab.call_offering(ALICE, ECHO, &offer(40002, "8", ""));
    let Progress::Answered(dialog, _) = final_of(&mut call).await else { panic!("not answered") };
    dialog.ack(None).expect("ACK");
    let reason = tokio::time::timeout(Duration::from_secs(5), dialog.ended()).await.expect("the TAS hung up");
    assert_eq!(reason, "BYE from the peer");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

const VOICEMAIL: &str = "+4799990008";

async fn voicemail_lab() -> Lab {
    Lab::start_full(
        &[subscriber(VOICEMAIL, "loop-mt", "", "28", "", "\"answer voicemail\"")],
        Vec::new(),
        Duration::from_secs(30),
        Vec::new(),
        Duration::from_secs(30),
    )
    .await
}

/// Alice's side of a media call: her RTP socket and where ringer's media is.
struct Media {
    rtp: UdpSocket,
    remote: SocketAddr,
    sequence: u16,
}

impl Media {
    async fn answered(lab: &Lab, to: &str) -> (Media, ringer::sip::call::CallHandle) {
        let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
        let port = rtp.local_addr().expect("addr").port();
        let mut call = lab.call_offering(ALICE, to, &offer(port, "8 101", "a=rtpmap:101 telephone-event/8000\r\n"));
        let Progress::Answered(dialog, response) = final_of(&mut call).await else { panic!("not answered") };
        dialog.ack(None).expect("ACK");
        let answer = SessionDescription::parse(&String::from_utf8_lossy(&response.body)).expect("SDP answer");
        let remote = SocketAddr::new(answer.connection().expect("c="), answer.media[0].port);
        (Media { rtp, remote, sequence: 0 }, dialog)
    }

    async fn send(&mut self, payload_type: u8, marker: bool, timestamp: u32, payload: Vec<u8>) {
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type,
                marker,
                sequence_number: self.sequence,
                timestamp,
                ssrc: 0xA11CE,
                ..Default::default()
            },
            payload: payload.into(),
        };
        self.sequence = self.sequence.wrapping_add(1);
        self.rtp.send_to(&packet.marshal().expect("marshal"), self.remote).await.expect("send RTP");
    }

    /// Sends `seconds` of a 1 kHz tone in real time.
    async fn tone(&mut self, seconds: u32) {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for n in 0..seconds * 50 {
            pace.tick().await;
            self.send(8, false, n * 160, common::audio::pcma_tone_frame()).await;
        }
    }

    /// Decoded audio from ringer until `quiet` passes without a packet.
    async fn listen(&mut self, quiet: Duration) -> Vec<f64> {
        let mut audio = Vec::new();
        let mut buffer = [0u8; 2048];
        while let Ok(Ok((length, _))) = tokio::time::timeout(quiet, self.rtp.recv_from(&mut buffer)).await {
            let packet = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]).expect("RTP from ringer");
            audio.extend(packet.payload.iter().map(|b| f64::from(g711::alaw_decode(*b))));
        }
        audio
    }
}

fn messages(lab: &Lab) -> Vec<ringer::media::mailbox::MessageMeta> {
    let mailbox = ringer::media::mailbox::Mailbox::open(&lab.dir.path().join("voicemail")).expect("mailbox");
    mailbox.list(Some(VOICEMAIL)).expect("list")
}

#[tokio::test]
async fn voicemail_plays_the_greeting_and_stores_the_callers_tone() {
    let lab = voicemail_lab().await;
    let (mut media, dialog) = Media::answered(&lab, VOICEMAIL).await;
    // Greeting (three notes) and beep, then silence from ringer while it records.
    let heard = media.listen(Duration::from_millis(300)).await;
    assert!(heard.len() >= 8000, "about 1.6 s of greeting and beep: {} samples", heard.len());
    assert!(tone_share(&heard[..2400], 440.0) > 0.5, "the greeting's first note is A4");
    media.tone(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(dialog.hangup().await.expect("BYE"), 200);
    assert!(common::poll_until(Duration::from_secs(5), || messages(&lab).len() == 1).await, "a message was stored");
    let message = &messages(&lab)[0];
    assert!(!message.partial);
    assert!((2700..=3300).contains(&message.duration_ms), "about 3 s: {message:?}");
    assert_eq!(
        (message.caller.as_deref(), message.direction.as_deref(), message.codec.as_str()),
        (Some(ALICE), Some("MT"), "PCMA")
    );
    let mailbox = ringer::media::mailbox::Mailbox::open(&lab.dir.path().join("voicemail")).expect("mailbox");
    let samples: Vec<f64> = hound::WavReader::open(mailbox.audio(&message.id).expect("audio"))
        .expect("WAV")
        .samples::<i16>()
        .map(|s| f64::from(s.expect("sample")))
        .collect();
    assert!(tone_share(&samples, 1000.0) > 0.5, "the stored audio is the caller's 1 kHz tone");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn the_hash_key_ends_the_recording_and_ringer_hangs_up() {
    let lab = voicemail_lab().await;
    let (mut media, dialog) = Media::answered(&lab, VOICEMAIL).await;
    media.listen(Duration::from_millis(300)).await;
    media.tone(1).await;
    // RFC 4733: '#' (event 11), sent three times with the end bit, as phones do.
    for _ in 0..3 {
        media.send(101, false, 50 * 160, vec![11, 0x80 | 10, 0x03, 0x20]).await;
    }
    let reason = tokio::time::timeout(Duration::from_secs(5), dialog.ended()).await.expect("ringer hung up after #");
    assert_eq!(reason, "BYE from the peer");
    assert!(common::poll_until(Duration::from_secs(5), || messages(&lab).len() == 1).await, "a message was stored");
    let message = &messages(&lab)[0];
    assert!((700..=1300).contains(&message.duration_ms), "about 1 s: {message:?}");
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}

#[tokio::test]
async fn an_announcement_plays_as_early_media_before_the_refusal() {
    const GONE: &str = "+4799990044";
    let announce = "\"announce 410 Number not in service\"";
    let lab = Lab::start(&[subscriber(GONE, "loop-mt", "", "44", "", announce)], Vec::new()).await;
    let rtp = UdpSocket::bind("127.0.0.1:0").await.expect("RTP socket");
    let port = rtp.local_addr().expect("addr").port();
    let mut call = lab.call_offering(ALICE, GONE, &offer(port, "8", ""));
    let early = loop {
        match tokio::time::timeout(Duration::from_secs(10), call.next()).await.expect("a response") {
            Progress::Provisional(response) if response.status == 183 => break response,
            Progress::Provisional(_) => continue,
            _ => panic!("the announcement comes before the final response"),
        }
    };
    let answer = SessionDescription::parse(&String::from_utf8_lossy(&early.body)).expect("SDP in the 183");
    assert_eq!(answer.media[0].formats, ["8"]);
    let mut heard = Vec::new();
    let mut buffer = [0u8; 1500];
    while let Ok(Ok(length)) = tokio::time::timeout(Duration::from_millis(500), rtp.recv(&mut buffer)).await {
        let packet = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]).expect("RTP");
        heard.extend(packet.payload.iter().map(|b| f64::from(g711::alaw_decode(*b))));
    }
    assert!(heard.len() >= 8000, "the announcement as early media: {} samples", heard.len());
    assert!(tone_share(&heard[..2400], 440.0) > 0.5, "the default announcement's first note");
    let Progress::Failed(refusal) = final_of(&mut call).await else { panic!("refused after the announcement") };
    assert_eq!((refusal.status.as_u16(), refusal.reason.as_str()), (410, "Number not in service"));
    assert!(lab.settled().await, "left behind: {}", lab.leftovers());
}
