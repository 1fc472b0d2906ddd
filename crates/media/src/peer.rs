//! The offering side of a WebRTC-style call, as the operator's SBC presents a handset to a TAS:
//! ICE, DTLS-SRTP (`setup:actpass`), rtcp-mux, one audio section; by default without `a=mid`,
//! BUNDLE, msid or SSRC lines, as SIP offers come. The emulated core places calls with it, and
//! it plays audio (a tone, a file, DTMF) and keeps what it hears, so both directions of a call
//! can be checked.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionState,
};

use super::codec::{Codec, Encoder, FRAME};
use super::rtp::RtpStream;
use super::webrtc::{connection_events, stack, until_connected, ConnectionEvents, WebRtcError};
use sdp::{Attribute, SessionDescription};

/// How the offer looks.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    /// The address to bind and offer.
    pub bind: IpAddr,
    /// The audio codec offered (with telephone-event at its clock rate).
    pub codec: Codec,
    /// Keep `a=mid`, BUNDLE, msid and SSRC lines, as a browser's offer has them.
    pub browser_shape: bool,
    /// `RTP/SAVP` instead of `RTP/SAVPF` after `UDP/TLS/`.
    pub savp: bool,
    /// Offer as an ICE-lite agent (RFC 8445 §2.5), as many SBCs are.
    pub ice_lite: bool,
}

impl PeerOptions {
    /// An SBC-style PCMA offer on `bind`.
    pub fn sbc(bind: IpAddr) -> Self {
        Self { bind, codec: Codec::Pcma, browser_shape: false, savp: false, ice_lite: false }
    }
}

/// The payload type offered for telephone-event.
const TELEPHONE_EVENT: u8 = 101;

/// What the peer hears: audio payloads and DTMF events, in arrival order.
struct Heard {
    payload_type: u8,
    payload: Vec<u8>,
}

struct Handler {
    events: ConnectionEvents,
    heard: mpsc::UnboundedSender<Heard>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.events.gathering(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        self.events.changed(state);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let heard = self.heard.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    let heard_packet =
                        Heard { payload_type: packet.header.payload_type, payload: packet.payload.to_vec() };
                    if heard.send(heard_packet).is_err() {
                        break;
                    }
                }
            }
        });
    }
}

/// `codec` with the parameters browsers and SBCs offer it with.
fn rtp_codec(codec: Codec) -> RTCRtpCodec {
    let fmtp = match codec {
        Codec::Opus => "minptime=10;useinbandfec=1",
        _ => "",
    };
    super::webrtc::audio_codec(codec, fmtp)
}

/// One side of a WebRTC-style call that offers.
pub struct OfferingPeer {
    connection: Box<dyn PeerConnection>,
    track: Arc<TrackLocalStaticRTP>,
    codec: Codec,
    payload_type: u8,
    encoder: Encoder,
    rtp: RtpStream,
    states: watch::Receiver<RTCPeerConnectionState>,
    listener: Listener,
    options: PeerOptions,
}

/// The receiving half of an [`OfferingPeer`]: what it hears, decoded to 8 kHz.
pub struct Listener {
    hearing: mpsc::UnboundedReceiver<Heard>,
    /// The decoder of the offered codec (kept across calls: Opus has state).
    decoder: Option<super::codec::Decoder>,
    payload_type: u8,
}

impl Listener {
    fn new(hearing: mpsc::UnboundedReceiver<Heard>, codec: Codec, payload_type: u8) -> Self {
        Self { hearing, decoder: codec.decoder().ok(), payload_type }
    }

    /// What arrived, decoded to 8 kHz, until `quiet` passes with nothing.
    pub async fn heard(&mut self, quiet: Duration) -> Vec<i16> {
        let mut samples = Vec::new();
        while let Some(packet) = self.next(quiet).await {
            samples.extend(packet);
        }
        samples
    }

    /// Whether the connection has gone (nothing more will be heard).
    pub fn is_closed(&self) -> bool {
        self.hearing.is_closed()
    }

    /// The next audio packet, decoded; `None` after `timeout` without one, or when the
    /// connection has gone.
    pub async fn next(&mut self, timeout: Duration) -> Option<Vec<i16>> {
        let payload = self.next_payload(timeout).await?;
        Some(self.decoder.as_mut().and_then(|decoder| decoder.decode(&payload).ok()).unwrap_or_default())
    }

    /// The next audio packet's payload as it came (not decoded: for counting under load).
    pub async fn next_payload(&mut self, timeout: Duration) -> Option<Vec<u8>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let heard = tokio::time::timeout_at(deadline, self.hearing.recv()).await.ok()??;
            if heard.payload_type == self.payload_type {
                return Some(heard.payload);
            }
        }
    }
}

impl OfferingPeer {
    /// A peer and its offer, shaped as `options` say.
    pub async fn offer(options: PeerOptions) -> Result<(OfferingPeer, SessionDescription), WebRtcError> {
        let codec = options.codec;
        let payload_type = codec.static_payload_type().unwrap_or(111);
        let audio = RTCRtpCodecParameters { rtp_codec: rtp_codec(codec), payload_type };
        let events = RTCRtpCodecParameters {
            rtp_codec: super::webrtc::telephone_event_codec(codec.clock_rate(), "0-16"),
            payload_type: TELEPHONE_EVENT,
        };
        let mut media_engine = MediaEngine::default();
        for parameters in [&audio, &events] {
            media_engine.register_codec(parameters.clone(), RtpCodecKind::Audio).map_err(stack)?;
        }
        let ssrc = rand::random::<u32>();
        let track = super::webrtc::audio_track(format!("peer-{ssrc}"), "peer-audio", ssrc, rtp_codec(codec));
        let (reports, mut watch) = connection_events();
        let (heard, hearing) = mpsc::unbounded_channel();
        let connection = PeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_media_engine(media_engine)
            .with_setting_engine(super::webrtc::ice_settings().with_lite(options.ice_lite).build())
            .with_handler(Arc::new(Handler { events: reports, heard }))
            .with_runtime(crate::runtime::runtime())
            .with_udp_addrs(vec![format!("{}", std::net::SocketAddr::new(options.bind, 0))])
            .build()
            .await
            .map_err(stack)?;
        let as_local: Arc<dyn TrackLocal> = track.clone();
        // A transceiver of its own, so that the offer lists telephone-event beside the codec.
        let transceiver = connection.add_transceiver_from_track(as_local, None).await.map_err(stack)?;
        transceiver.set_codec_preferences(vec![audio, events]).await.map_err(stack)?;
        let offer = connection.create_offer(None).await.map_err(stack)?;
        connection.set_local_description(offer).await.map_err(stack)?;
        watch.gathered().await;
        let made = connection.local_description().await.ok_or_else(|| stack("no offer"))?.sdp;
        let peer = OfferingPeer {
            connection: Box::new(connection),
            track,
            codec,
            payload_type,
            encoder: codec.encoder().map_err(stack)?,
            rtp: RtpStream::new(ssrc),
            states: watch.state,
            listener: Listener::new(hearing, codec, payload_type),
            options,
        };
        let offer = peer.shape(&made)?;
        Ok((peer, offer))
    }

    /// The stack's SDP in the shape the options ask for.
    fn shape(&self, sdp: &str) -> Result<SessionDescription, WebRtcError> {
        let mut shaped = SessionDescription::parse(sdp).map_err(stack)?;
        if !self.options.browser_shape {
            let browser_only = |attribute: &Attribute| {
                ["mid", "group", "msid", "msid-semantic", "ssrc", "ssrc-group"].iter().any(|name| attribute.is(name))
            };
            shaped.retain_attributes(|attribute| !browser_only(attribute));
            for media in &mut shaped.media {
                media.retain_attributes(|attribute| !browser_only(attribute));
            }
        }
        if self.options.savp {
            for media in &mut shaped.media {
                if media.proto == "UDP/TLS/RTP/SAVPF" {
                    media.proto = "UDP/TLS/RTP/SAVP".into();
                }
            }
        }
        Ok(shaped)
    }

    /// Takes the answer and waits (up to `timeout`) for ICE and DTLS to complete.
    pub async fn accept(&mut self, answer: &SessionDescription, timeout: Duration) -> Result<(), WebRtcError> {
        let answer = super::webrtc::normalise_offer(answer).to_string();
        let remote = RTCSessionDescription::answer(answer).map_err(stack)?;
        self.connection.set_remote_description(remote).await.map_err(stack)?;
        self.connected(timeout).await
    }

    /// Waits for the connection to be up.
    async fn connected(&mut self, timeout: Duration) -> Result<(), WebRtcError> {
        match tokio::time::timeout(timeout, until_connected(&mut self.states)).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(stack("ICE or DTLS failed, or the connection closed")),
            Err(_) => Err(stack("ICE and DTLS did not complete in time")),
        }
    }

    /// Whether ICE and DTLS are up now.
    pub fn is_connected(&self) -> bool {
        *self.states.borrow() == RTCPeerConnectionState::Connected
    }

    /// A new offer within the call (as the core sends in a re-INVITE), same shape.
    pub async fn reoffer(&mut self) -> Result<SessionDescription, WebRtcError> {
        let offer = self.connection.create_offer(None).await.map_err(stack)?;
        self.connection.set_local_description(offer).await.map_err(stack)?;
        let made = self.connection.local_description().await.ok_or_else(|| stack("no offer"))?.sdp;
        self.shape(&made)
    }

    /// Takes the answer to a [`reoffer`](Self::reoffer).
    pub async fn accept_reanswer(&mut self, answer: &SessionDescription) -> Result<(), WebRtcError> {
        let answer = super::webrtc::normalise_offer(answer).to_string();
        let remote = RTCSessionDescription::answer(answer).map_err(stack)?;
        self.connection.set_remote_description(remote).await.map_err(stack)
    }

    /// The codec offered.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    async fn send_payload(&mut self, payload_type: u8, payload: Vec<u8>, ticks: u32, marker: bool) {
        let packet = self.rtp.packet(payload_type, marker, payload);
        self.rtp.advance(ticks);
        let _ = self.track.write_rtp(packet).await;
    }

    /// Plays 8 kHz `samples` in real time, 20 ms a packet.
    pub async fn play(&mut self, samples: &[i16]) {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for frame in samples.chunks(FRAME) {
            pace.tick().await;
            let Ok(payload) = self.encoder.encode(frame) else { continue };
            let ticks = self.encoder.ticks(frame.len());
            self.send_payload(self.payload_type, payload, ticks, false).await;
        }
    }

    /// Sends frames already encoded in this peer's codec (20 ms each) in real time: a load
    /// test that encodes once measures the far end, not the caller's encoder.
    pub async fn play_encoded(&mut self, frames: &[Vec<u8>]) {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        let ticks = self.encoder.ticks(FRAME);
        for payload in frames {
            pace.tick().await;
            self.send_payload(self.payload_type, payload.clone(), ticks, false).await;
        }
    }

    /// Sends `key` as an RFC 4733 event of 100 ms (with its three end packets).
    pub async fn send_dtmf(&mut self, key: char) {
        let event = match key {
            '0'..='9' => key as u8 - b'0',
            '*' => 10,
            '#' => 11,
            'A'..='D' => key as u8 - b'A' + 12,
            _ => return,
        };
        let scale = self.codec.clock_rate() / 8000;
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for step in 1..=5u16 {
            pace.tick().await;
            let duration = (step * 160) as u32 * scale;
            let end = step == 5;
            let flags = if end { 0x80 | 10 } else { 10 };
            let payload = vec![event, flags, (duration >> 8) as u8, duration as u8];
            for _ in 0..if end { 3 } else { 1 } {
                self.send_payload(TELEPHONE_EVENT, payload.clone(), 0, step == 1).await;
            }
        }
        // The next audio starts after the event.
        self.rtp.advance(800 * scale);
    }

    /// What arrived, decoded to 8 kHz, until `quiet` passes with nothing.
    pub async fn heard(&mut self, quiet: Duration) -> Vec<i16> {
        self.listener.heard(quiet).await
    }

    /// Takes the receiving half, to listen while playing; [`heard`](Self::heard) then hears
    /// nothing.
    pub fn take_listener(&mut self) -> Listener {
        let (_, closed) = mpsc::unbounded_channel();
        let empty = Listener::new(closed, self.codec, self.payload_type);
        std::mem::replace(&mut self.listener, empty)
    }

    /// Ends the peer.
    pub async fn close(self) {
        let _ = self.connection.close().await;
    }
}
