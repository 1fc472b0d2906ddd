//! WebRTC-style media (ICE, DTLS-SRTP, RTP/RTCP multiplexed) through the `webrtc` crate, for
//! the offers the operator's SBC sends.
//!
//! SIP offers are not browser offers: they may have no `a=mid` (and no BUNDLE, msid or SSRC
//! lines), and the crate refuses a media section without `a=mid`. [`normalise_offer`] is the
//! one place that adds what the crate needs; [`shape_answer`] takes it out of the answer again
//! when the offer had none, so the answer has the shape of the offer.

use std::net::IpAddr;
use std::sync::Arc;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_PCMA, MIME_TYPE_PCMU};
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tokio::sync::{mpsc, watch};
use tracing::debug;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::Track;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use super::sdp::SessionDescription;

/// Why a WebRTC answer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// No audio stream in a codec ringer has.
    #[error("no audio stream with opus, PCMA or PCMU")]
    NoCodec,
    /// The offer could not be read.
    #[error("offer: {0}")]
    Offer(String),
    /// The WebRTC stack refused.
    #[error("WebRTC: {0}")]
    Stack(String),
}

fn stack(error: impl std::fmt::Display) -> WebRtcError {
    WebRtcError::Stack(error.to_string())
}

/// An offer with `a=mid` on every media section, and whether the original had them.
pub fn normalise_offer(offer: &str) -> (String, bool) {
    let had_mid = offer.lines().any(|line| line.trim_end().starts_with("a=mid:"));
    if had_mid {
        return (offer.to_owned(), true);
    }
    let mut out = String::with_capacity(offer.len() + 64);
    let mut index = 0;
    for line in offer.lines() {
        out.push_str(line.trim_end());
        out.push_str("\r\n");
        if line.starts_with("m=") {
            out.push_str(&format!("a=mid:{index}\r\n"));
            index += 1;
        }
    }
    (out, false)
}

/// The answer in the offer's shape: without `a=mid` and BUNDLE when the offer had no mid.
pub fn shape_answer(answer: &str, offer_had_mid: bool) -> String {
    if offer_had_mid {
        return answer.to_owned();
    }
    answer
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.starts_with("a=mid:") && !line.starts_with("a=group:BUNDLE"))
        .map(|line| format!("{line}\r\n"))
        .collect()
}

/// The audio codec of the offer ringer answers with: PCMA, then PCMU, then Opus.
fn choose_codec(offer: &SessionDescription) -> Option<RTCRtpCodecParameters> {
    let audio = offer.media.iter().find(|m| m.kind == "audio" && m.port != 0)?;
    let offered: Vec<(u8, String, u32)> = audio
        .formats
        .iter()
        .filter_map(|f| f.parse::<u8>().ok())
        .filter_map(|pt| audio.rtpmap(pt).map(|(name, rate)| (pt, name, rate)))
        .collect();
    for (mime, name, rate, channels) in
        [(MIME_TYPE_PCMA, "PCMA", 8000, 1), (MIME_TYPE_PCMU, "PCMU", 8000, 1), (MIME_TYPE_OPUS, "opus", 48000, 2)]
    {
        if let Some((pt, _, _)) = offered.iter().find(|(_, n, r)| n.eq_ignore_ascii_case(name) && *r == rate) {
            return Some(RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: rate,
                    channels,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                payload_type: *pt,
            });
        }
    }
    None
}

struct EchoHandler {
    output: Arc<TrackLocalStaticRTP>,
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for EchoHandler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        debug!(%state, "WebRTC connection state");
        let _ = self.state.send(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let output = self.output.clone();
        tokio::spawn(async move {
            let ssrc = output.ssrcs().await.first().copied().unwrap_or_default();
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(mut packet) = event {
                    packet.header.ssrc = ssrc;
                    if output.write_rtp(packet).await.is_err() {
                        break;
                    }
                }
            }
        });
    }
}

/// A WebRTC call's media, alive until closed.
pub struct WebRtcSession {
    connection: Box<dyn PeerConnection>,
    state: watch::Receiver<RTCPeerConnectionState>,
}

impl WebRtcSession {
    /// Resolves when ICE and DTLS fail or the connection closes.
    pub async fn failed(&mut self) {
        while self.state.changed().await.is_ok() {
            if matches!(*self.state.borrow(), RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
                return;
            }
        }
        std::future::pending::<()>().await
    }

    /// Ends the media.
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// Answers a WebRTC-style `offer` with the echo app on `bind`: what arrives on the audio
/// track goes back on ringer's own. Returns the answer in the offer's shape.
pub async fn answer_echo(offer: &str, bind: IpAddr) -> Result<(String, WebRtcSession), WebRtcError> {
    let parsed = SessionDescription::parse(offer).map_err(|error| WebRtcError::Offer(error.to_string()))?;
    let codec = choose_codec(&parsed).ok_or(WebRtcError::NoCodec)?;
    let (normalised, had_mid) = normalise_offer(offer);
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(codec.clone(), RtpCodecKind::Audio).map_err(stack)?;
    let output = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("ringer-{}", rand::random::<u32>()),
        "ringer-audio".to_owned(),
        "ringer-audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(rand::random::<u32>()), ..Default::default() },
            codec: codec.rtp_codec.clone(),
            ..Default::default()
        }],
    )));
    let (gathered, mut gathering) = mpsc::channel(1);
    let (state, state_changes) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(EchoHandler { output: output.clone(), gathered, state });
    let runtime = webrtc::runtime::default_runtime().ok_or_else(|| stack("no async runtime"))?;
    let connection = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(media_engine)
        .with_handler(handler)
        .with_runtime(runtime)
        .with_udp_addrs(vec![format!("{bind}:0")])
        .build()
        .await
        .map_err(stack)?;
    let output: Arc<dyn TrackLocal> = output;
    connection.add_track(output).await.map_err(stack)?;
    connection.set_remote_description(RTCSessionDescription::offer(normalised).map_err(stack)?).await.map_err(stack)?;
    let answer = connection.create_answer(None).await.map_err(stack)?;
    connection.set_local_description(answer).await.map_err(stack)?;
    // No trickle ICE over SIP: the answer carries every candidate.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), gathering.recv()).await;
    let local = connection.local_description().await.ok_or_else(|| stack("no local description"))?;
    let session = WebRtcSession { connection: Box::new(connection), state: state_changes };
    Ok((shape_answer(&local.sdp, had_mid), session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mids_are_added_for_the_stack_and_taken_out_of_the_answer() {
        let offer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=rtcp-mux\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n";
        let (normalised, had_mid) = normalise_offer(offer);
        assert!(!had_mid);
        assert!(normalised.contains("m=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=mid:0\r\n"), "{normalised}");
        assert!(normalised.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"), "{normalised}");
        let answer = "v=0\r\na=group:BUNDLE 0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 8\r\na=mid:0\r\na=rtcp-mux\r\n";
        assert_eq!(shape_answer(answer, false), "v=0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 8\r\na=rtcp-mux\r\n");
        assert_eq!(shape_answer(answer, true), answer);
        let browser = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio\r\n";
        assert_eq!(normalise_offer(browser), (browser.to_owned(), true));
    }
}
