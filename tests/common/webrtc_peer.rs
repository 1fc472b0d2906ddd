//! A WebRTC peer made with the `webrtc` crate, offering the way the operator's SBC does (ICE,
//! DTLS-SRTP, rtcp-mux, no mid, BUNDLE, msid or SSRC lines), sending a tone and keeping what
//! it hears.

use std::sync::Arc;
use std::time::Duration;

use ringer::media::g711;
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

struct Handler {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
    heard: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
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

/// The SBC's side of a WebRTC call.
pub struct SbcPeer {
    connection: Box<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    states: watch::Receiver<RTCPeerConnectionState>,
    hearing: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl SbcPeer {
    /// A peer and its offer as the SBC sends it, and the offer the stack made (with mids).
    pub async fn offer() -> (SbcPeer, String, String) {
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
        let (state, states) = watch::channel(RTCPeerConnectionState::New);
        let (heard, hearing) = mpsc::unbounded_channel();
        let connection = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_handler(Arc::new(Handler { gathered, state, heard }))
            .with_runtime(webrtc::runtime::default_runtime().expect("runtime"))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build()
            .await
            .expect("SBC peer");
        let as_local: Arc<dyn TrackLocal> = track.clone();
        connection.add_track(as_local).await.expect("track");
        let offer = connection.create_offer(None).await.expect("offer");
        connection.set_local_description(offer).await.expect("local offer");
        tokio::time::timeout(Duration::from_secs(5), gathering.recv()).await.expect("gathered");
        let browser_offer = connection.local_description().await.expect("offer").sdp;
        let sbc_offer: String = browser_offer
            .lines()
            .filter(|line| !["a=mid:", "a=group:", "a=msid", "a=ssrc"].iter().any(|p| line.starts_with(p)))
            .map(|line| format!("{line}\r\n"))
            .collect();
        (SbcPeer { connection: Box::new(connection), track, ssrc, states, hearing }, sbc_offer, browser_offer)
    }

    /// Takes ringer's answer (given the mid the stack wants back) and waits for ICE and DTLS.
    pub async fn accept(&mut self, answer: &str) {
        let (answer, _) = ringer::media::webrtc::normalise_offer(answer);
        self.connection
            .set_remote_description(RTCSessionDescription::answer(answer).expect("answer"))
            .await
            .expect("remote answer");
        tokio::time::timeout(Duration::from_secs(10), async {
            while *self.states.borrow() != RTCPeerConnectionState::Connected {
                self.states.changed().await.expect("state");
            }
        })
        .await
        .expect("ICE and DTLS completed");
    }

    /// Sends one second of a 1 kHz tone, PCMA, in real time.
    pub async fn send_tone(&self) {
        for n in 0..50u32 {
            self.track.write_rtp(super::audio::pcma_tone_packet(n, self.ssrc)).await.expect("RTP out");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// What came back, decoded, until half a second of quiet.
    pub async fn heard(&mut self) -> Vec<f64> {
        let mut received = Vec::new();
        while let Ok(Some(payload)) = tokio::time::timeout(Duration::from_millis(500), self.hearing.recv()).await {
            received.extend(payload.iter().map(|b| f64::from(g711::alaw_decode(*b))));
        }
        received
    }

    /// Ends the peer.
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}
