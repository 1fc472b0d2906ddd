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

use super::plain::Codec;
use super::sdp::SessionDescription;

/// Why a WebRTC answer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// No audio stream in a codec ringer has (for apps that play and record: PCMA or PCMU).
    #[error("no audio stream in a codec ringer has (PCMA, PCMU; Opus for echo)")]
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

/// The audio codec of the offer ringer answers with: PCMA, then PCMU, then (unless the app
/// needs to decode) Opus; with the G.711 codec when it is one.
fn choose_codec(offer: &SessionDescription, g711_only: bool) -> Option<(RTCRtpCodecParameters, Option<Codec>)> {
    let audio = offer.media.iter().find(|m| m.kind == "audio" && m.port != 0)?;
    let offered = audio.codecs();
    let choices = [
        (MIME_TYPE_PCMA, "PCMA", 8000, 1, Some(Codec::Pcma)),
        (MIME_TYPE_PCMU, "PCMU", 8000, 1, Some(Codec::Pcmu)),
        (MIME_TYPE_OPUS, "opus", 48000, 2, None),
    ];
    for (mime, name, rate, channels, g711) in choices {
        if g711_only && g711.is_none() {
            continue;
        }
        if let Some((pt, _, _)) = offered.iter().find(|(_, n, r)| n.eq_ignore_ascii_case(name) && *r == rate) {
            let parameters = RTCRtpCodecParameters {
                rtp_codec: RTCRtpCodec {
                    mime_type: mime.to_owned(),
                    clock_rate: rate,
                    channels,
                    sdp_fmtp_line: String::new(),
                    rtcp_feedback: vec![],
                },
                payload_type: *pt,
            };
            return Some((parameters, g711));
        }
    }
    None
}

/// Where the peer's audio goes.
enum Sink {
    /// Straight back on ringer's track (the echo app).
    Echo(Arc<TrackLocalStaticRTP>),
    /// To the app, through an [`AudioChannel`](super::channel::AudioChannel).
    App(mpsc::UnboundedSender<rtc::rtp::Packet>),
}

struct Handler {
    sink: Sink,
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
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
        match &self.sink {
            Sink::Echo(output) => {
                let output = output.clone();
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
            Sink::App(sender) => {
                let sender = sender.clone();
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                            if sender.send(packet).is_err() {
                                break;
                            }
                        }
                    }
                });
            }
        }
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

    /// Resolves when ICE and DTLS have completed (`true`), or failed (`false`). Apps wait for
    /// this before they send: no media leaves before DTLS is up.
    pub async fn connected(&mut self) -> bool {
        loop {
            match *self.state.borrow_and_update() {
                RTCPeerConnectionState::Connected => return true,
                RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return false,
                _ => {}
            }
            if self.state.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Ends the media.
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}

/// What an app gets of a WebRTC call's audio.
pub struct WebRtcAudio {
    /// The peer's RTP (decrypted).
    pub incoming: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
    /// Ringer's track.
    pub track: Arc<TrackLocalStaticRTP>,
    /// Its codec.
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// Its SSRC.
    pub ssrc: u32,
}

/// Answers a WebRTC-style `offer` with the echo app on `bind`: what arrives on the audio
/// track goes back on ringer's own. Returns the answer in the offer's shape.
pub async fn answer_echo(offer: &str, bind: IpAddr) -> Result<(String, WebRtcSession), WebRtcError> {
    let (answer, session, _) = answer(offer, bind, false).await?;
    Ok((answer, session))
}

/// Answers a WebRTC-style `offer` for an app that plays and listens (G.711 only: the app
/// decodes); returns the answer, the session and the audio.
pub async fn answer_for_app(offer: &str, bind: IpAddr) -> Result<(String, WebRtcSession, WebRtcAudio), WebRtcError> {
    let (answer, session, audio) = answer(offer, bind, true).await?;
    let audio = audio.ok_or(WebRtcError::NoCodec)?;
    Ok((answer, session, audio))
}

async fn answer(
    offer: &str,
    bind: IpAddr,
    for_app: bool,
) -> Result<(String, WebRtcSession, Option<WebRtcAudio>), WebRtcError> {
    let parsed = SessionDescription::parse(offer).map_err(|error| WebRtcError::Offer(error.to_string()))?;
    let (codec, g711) = choose_codec(&parsed, for_app).ok_or(WebRtcError::NoCodec)?;
    let ssrc = rand::random::<u32>();
    let (normalised, had_mid) = normalise_offer(offer);
    let mut media_engine = MediaEngine::default();
    media_engine.register_codec(codec.clone(), RtpCodecKind::Audio).map_err(stack)?;
    let output = Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        format!("ringer-{}", rand::random::<u32>()),
        "ringer-audio".to_owned(),
        "ringer-audio".to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: codec.rtp_codec.clone(),
            ..Default::default()
        }],
    )));
    let (gathered, mut gathering) = mpsc::channel(1);
    let (state, state_changes) = watch::channel(RTCPeerConnectionState::New);
    let (sink, audio) = match (for_app, g711) {
        (true, Some(g711)) => {
            let (sender, incoming) = mpsc::unbounded_channel();
            let audio =
                WebRtcAudio { incoming, track: output.clone(), codec: g711, payload_type: codec.payload_type, ssrc };
            (Sink::App(sender), Some(audio))
        }
        _ => (Sink::Echo(output.clone()), None),
    };
    let handler = Arc::new(Handler { sink, gathered, state });
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
    Ok((shape_answer(&local.sdp, had_mid), session, audio))
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
