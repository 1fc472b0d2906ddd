//! WebRTC-style media: an offer shaped like the operator SBC's (ICE, DTLS-SRTP, rtcp-mux, no
//! mid, BUNDLE, msid or SSRC lines) made by an independent `webrtc` peer, answered by ringer's
//! echo; ICE and DTLS complete on loopback and a 1 kHz tone comes back over SRTP.

use std::sync::Arc;
use std::time::Duration;

use ringer::media::g711;
use ringer::media::webrtc::{answer_echo, normalise_offer};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_PCMA};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

struct Peer {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    heard: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Peer {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let heard = self.heard.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let _ = heard.send(packet.payload.to_vec());
                }
            }
        });
    }
}

fn pcma() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_PCMA.to_owned(),
        clock_rate: 8000,
        channels: 1,
        sdp_fmtp_line: String::new(),
        rtcp_feedback: vec![],
    }
}

/// Goertzel share of the energy at `frequency`.
fn tone_share(samples: &[f64], frequency: f64) -> f64 {
    let coefficient = 2.0 * (2.0 * std::f64::consts::PI * frequency / 8000.0).cos();
    let (mut previous, mut before) = (0.0, 0.0);
    for sample in samples {
        let current = sample + coefficient * previous - before;
        before = previous;
        previous = current;
    }
    let power = previous * previous + before * before - coefficient * previous * before;
    let total: f64 = samples.iter().map(|s| s * s).sum::<f64>() * samples.len() as f64 / 2.0;
    if total == 0.0 {
        0.0
    } else {
        power / total
    }
}

#[tokio::test]
async fn an_sbc_style_offer_is_answered_and_the_tone_comes_back_over_srtp() {
    ringer::tls::install_crypto_provider();
    let mut media_engine = MediaEngine::default();
    media_engine
        .register_codec(RTCRtpCodecParameters { rtp_codec: pcma(), payload_type: 8 }, RtpCodecKind::Audio)
        .expect("codec");
    let ssrc = rand::random::<u32>();
    let track = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "sbc".into(),
        "sbc-audio".into(),
        "sbc-audio".into(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: pcma(),
            ..Default::default()
        }],
    )));
    let (gathered, mut gathering) = mpsc::channel(1);
    let (state, mut states) = watch::channel(RTCPeerConnectionState::New);
    let (heard, mut hearing) = mpsc::unbounded_channel();
    let sbc = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_handler(Arc::new(Peer { gathered, state, heard }))
        .with_runtime(webrtc::runtime::default_runtime().expect("runtime"))
        .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
        .build()
        .await
        .expect("SBC peer");
    let as_local: Arc<dyn TrackLocal> = track.clone();
    sbc.add_track(as_local).await.expect("track");
    let offer = sbc.create_offer(None).await.expect("offer");
    sbc.set_local_description(offer).await.expect("local offer");
    tokio::time::timeout(Duration::from_secs(5), gathering.recv()).await.expect("gathered");
    let browser_offer = sbc.local_description().await.expect("offer").sdp;
    // What the SBC sends: no mid, BUNDLE, msid or SSRC lines.
    let sbc_offer: String = browser_offer
        .lines()
        .filter(|line| !["a=mid:", "a=group:", "a=msid", "a=ssrc"].iter().any(|p| line.starts_with(p)))
        .map(|line| format!("{line}\r\n"))
        .collect();
    assert!(
        sbc_offer.contains("a=fingerprint:")
            && sbc_offer.contains("a=setup:actpass")
            && sbc_offer.contains("a=ice-ufrag:"),
        "{sbc_offer}"
    );

    let (answer, _session) = answer_echo(&sbc_offer, "127.0.0.1".parse().expect("ip")).await.expect("ringer answers");
    assert!(!answer.contains("a=mid:"), "the answer has the offer's shape: {answer}");
    assert!(answer.contains("a=setup:active"), "active for an actpass offer: {answer}");
    assert!(
        answer.contains("a=fingerprint:") && answer.contains("a=candidate:") && answer.contains("a=rtcp-mux"),
        "{answer}"
    );

    let (answer_for_the_stack, _) = normalise_offer(&answer);
    sbc.set_remote_description(RTCSessionDescription::answer(answer_for_the_stack).expect("answer"))
        .await
        .expect("remote answer");
    tokio::time::timeout(Duration::from_secs(10), async {
        while *states.borrow() != RTCPeerConnectionState::Connected {
            states.changed().await.expect("state");
        }
    })
    .await
    .expect("ICE and DTLS completed");

    for n in 0..50u32 {
        let samples = ringer::media::apps::tone(1000.0, 20, 12000.0);
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 8,
                sequence_number: n as u16,
                timestamp: n * 160,
                ssrc,
                ..Default::default()
            },
            payload: samples.iter().map(|s| g711::alaw_encode(*s)).collect::<Vec<u8>>().into(),
        };
        track.write_rtp(packet).await.expect("RTP out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut received = Vec::new();
    while let Ok(Some(payload)) = tokio::time::timeout(Duration::from_millis(500), hearing.recv()).await {
        received.extend(payload.iter().map(|b| f64::from(g711::alaw_decode(*b))));
    }
    assert!(received.len() >= 160 * 40, "the echo came back over SRTP: {} samples", received.len());
    assert!(tone_share(&received, 1000.0) > 0.5, "and it is the 1 kHz tone");
    let _ = sbc.close().await;
}
