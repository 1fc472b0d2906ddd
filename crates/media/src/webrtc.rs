//! WebRTC-style media (ICE, DTLS-SRTP, RTP/RTCP multiplexed) through the `webrtc` crate, for
//! the offers the operator's SBC sends.
//!
//! SIP offers are not browser offers: they may have no `a=mid`, BUNDLE, msid or SSRC lines, use
//! `SAVP`, write hash names in capitals or leave out rtcp-mux, and SIP peers read `c=` and the
//! `m=` port that browsers ignore. [`normalise_offer`] is the one place that turns an offer into
//! what the crate takes, and [`shape_answer`] the one place that gives the crate's answer the
//! shape of the offer.

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
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

use super::codec::Codec;
use sdp::{keep_audio_formats, Attribute, Candidate, Connection, Line, MediaDescription, SessionDescription};

/// Why a WebRTC answer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebRtcError {
    /// No audio stream in a codec ringer is configured for.
    #[error("no audio stream in a codec ringer has (configured: {0})")]
    NoCodec(String),
    /// The offer could not be read.
    #[error("offer: {0}")]
    Offer(String),
    /// The WebRTC stack refused.
    #[error("WebRTC: {0}")]
    Stack(String),
}

pub(super) fn stack(error: impl std::fmt::Display) -> WebRtcError {
    WebRtcError::Stack(error.to_string())
}

/// `codec` as the stack names it, with its `a=fmtp` parameters.
pub(super) fn audio_codec(codec: Codec, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: format!("audio/{}", codec.name()),
        clock_rate: codec.clock_rate(),
        channels: codec.channels(),
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// RFC 4733 telephone-event at `clock_rate`, with its events (`0-16`).
pub(super) fn telephone_event_codec(clock_rate: u32, fmtp: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: "audio/telephone-event".into(),
        clock_rate,
        channels: 1,
        sdp_fmtp_line: fmtp.to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A local audio track sending `codec` as SSRC `ssrc`.
pub(super) fn audio_track(id: String, label: &str, ssrc: u32, codec: RTCRtpCodec) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        id,
        label.to_owned(),
        label.to_owned(),
        RtpCodecKind::Audio,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec,
            ..Default::default()
        }],
    )))
}

/// Where and how ringer's side of WebRTC calls runs.
#[derive(Debug, Clone)]
pub struct WebRtcOptions {
    /// The local address ICE binds (and offers as its host candidate).
    pub bind: IpAddr,
    /// The public address of a 1:1 NAT in front of `bind`, offered instead of it.
    pub public: Option<IpAddr>,
    /// The UDP ports to bind in; `None`: any free port.
    pub ports: Option<RangeInclusive<u16>>,
    /// Audio codecs by preference.
    pub codecs: Vec<Codec>,
}

impl WebRtcOptions {
    /// Any free port on `bind`, the codecs in ringer's default order.
    pub fn on(bind: IpAddr) -> Self {
        Self { bind, public: None, ports: None, codecs: Codec::ALL.to_vec() }
    }
}

/// The offer as the stack takes it: `a=mid` on every media section when it has none, a BUNDLE
/// group when it has none (without one the stack answers every section with port 0), and
/// `SAVPF` for `SAVP` (the stack rejects the plain profile; RTCP feedback stays unused unless
/// the offer lists some), and fingerprint hash names in lower case (they are case-insensitive,
/// RFC 8122 §5, but the stack matches `sha-256` only: baresip writes `SHA-256`). Used for
/// answers too: the crate reads them the same way.
pub fn normalise_offer(offer: &SessionDescription) -> SessionDescription {
    let mut normalised = offer.clone();
    let had_mid = offer.media.iter().any(|media| media.attribute("mid").is_some());
    let had_bundle = offer.attributes().any(is_bundle);
    let mids: Vec<String> = match had_mid {
        true => offer.media.iter().filter_map(|media| media.attribute("mid")).map(str::to_owned).collect(),
        false => (0..offer.media.len()).map(|index| index.to_string()).collect(),
    };
    if !had_bundle && !offer.media.is_empty() {
        normalised.push_attribute(Attribute::new("group", format!("BUNDLE {}", mids.join(" "))));
    }
    for (index, media) in normalised.media.iter_mut().enumerate() {
        if media.proto.ends_with("/SAVP") {
            media.proto.push('F');
        }
        if !had_mid {
            media.insert_attribute_first(Attribute::new("mid", index.to_string()));
        }
    }
    for line in normalised.lines_mut() {
        if let Line::Attribute(Attribute { name, value: Some(value) }) = line {
            if name.as_str() == "fingerprint" {
                if let Some((hash, fingerprint)) = value.split_once(' ') {
                    *value = format!("{} {fingerprint}", hash.to_ascii_lowercase());
                }
            }
        }
    }
    normalised
}

fn is_bundle(attribute: &Attribute) -> bool {
    attribute.is("group") && attribute.value.as_deref().is_some_and(|group| group.starts_with("BUNDLE"))
}

/// `sdp` with `public` in place of `bind` in its candidates, connection and `a=rtcp` lines:
/// ringer behind a 1:1 NAT (the stack does not rewrite them itself).
pub fn with_public_address(sdp: &mut SessionDescription, bind: IpAddr, public: IpAddr) {
    if bind == public {
        return;
    }
    for line in sdp.lines_mut() {
        match line {
            Line::Connection(connection) if connection.ip() == Some(bind) => *connection = Connection::to_ip(public),
            Line::Attribute(attribute @ Attribute { value: Some(_), .. }) if attribute.is("candidate") => {
                let Some(Ok(mut candidate)) = attribute.value.as_deref().map(Candidate::parse) else { continue };
                if candidate.ip() == Some(bind) {
                    candidate.address = public.to_string();
                    attribute.value = Some(candidate.to_string());
                }
            }
            Line::Attribute(Attribute { name, value: Some(value) }) if name.as_str() == "rtcp" => {
                // `port IN IP4 address` (RFC 3605).
                let mut fields: Vec<String> = value.split_whitespace().map(str::to_owned).collect();
                if let [_, _, family, address] = fields.as_mut_slice() {
                    if address.parse() == Ok(bind) {
                        *family = if public.is_ipv6() { "IP6" } else { "IP4" }.into();
                        *address = public.to_string();
                        *value = fields.join(" ");
                    }
                }
            }
            _ => {}
        }
    }
}

/// The answer in the offer's shape:
/// - without `a=mid` or BUNDLE when the offer had none;
/// - each `m=` line with the transport profile its offer used (the stack always writes SAVPF; an
///   `RTP/SAVP` offer gets `RTP/SAVP` back, RFC 3264 §6);
/// - without `a=rtcp-mux` when the offer did not ask for it (RFC 5761 §5.1.1), but with
///   `a=rtcp:` naming the port RTCP really uses (RFC 3605): ICE peers check that the default
///   RTCP address is among the component 2 candidates;
/// - the default candidate in `c=` and the `m=` port (RFC 8839 §4.2.1.1) instead of the
///   stack's trickle-ICE placeholders `0.0.0.0` and 9: SIP peers read them.
pub fn shape_answer(answer: &SessionDescription, offer: &SessionDescription) -> SessionDescription {
    let had_mid = offer.media.iter().any(|media| media.attribute("mid").is_some());
    let had_bundle = offer.attributes().any(is_bundle);
    let had_mux = offer.all_attributes().any(|attribute| attribute.is("rtcp-mux"));
    let candidates: Vec<Candidate> = answer.media.iter().flat_map(MediaDescription::candidates).collect();
    let candidate = |component: u16| candidates.iter().find(|candidate| candidate.component == component);
    let default_candidate = candidate(1).and_then(|candidate| Some((candidate.ip()?, candidate.port)));
    let rtcp_candidate = candidate(2).and_then(|candidate| Some((candidate.ip()?, candidate.port)));
    let shape = |lines: &[Line]| -> Vec<Line> {
        lines
            .iter()
            .filter_map(|line| match line {
                Line::Attribute(attribute) if !had_mid && attribute.is("mid") => None,
                Line::Attribute(attribute) if !had_bundle && is_bundle(attribute) => None,
                Line::Attribute(attribute) if !had_mux && attribute.is("rtcp-mux") => {
                    let (address, port) = rtcp_candidate.or(default_candidate)?;
                    let family = if address.is_ipv6() { "IP6" } else { "IP4" };
                    Some(Line::Attribute(Attribute::new("rtcp", format!("{port} IN {family} {address}"))))
                }
                Line::Connection(connection) if connection.address == "0.0.0.0" => match default_candidate {
                    Some((address, _)) => Some(Line::Connection(Connection::to_ip(address))),
                    None => Some(line.clone()),
                },
                _ => Some(line.clone()),
            })
            .collect()
    };
    let mut shaped = SessionDescription { lines: shape(&answer.lines), media: Vec::new() };
    for (index, media) in answer.media.iter().enumerate() {
        let mut media = MediaDescription { lines: shape(&media.lines), ..media.clone() };
        if let Some(offered) = offer.media.get(index) {
            if offered.proto.contains("SAVP") {
                media.proto.clone_from(&offered.proto);
            }
        }
        if let (Some((_, port)), 9) = (default_candidate, media.port) {
            media.port = port;
        }
        shaped.media.push(media);
    }
    shaped
}

/// The audio ringer answers with: the codec, and telephone-event when offered.
#[derive(Debug, Clone)]
struct Chosen {
    codec: Codec,
    payload_type: u8,
    fmtp: String,
    /// telephone-event's payload type, clock rate and fmtp.
    telephone_event: Option<(u8, u32, String)>,
}

/// The first audio section's codec, first of `preference` that it offers.
fn choose_codec(offer: &SessionDescription, preference: &[Codec]) -> Option<Chosen> {
    let audio = offer.media.iter().find(|m| m.kind == "audio" && m.port != 0)?;
    let offered = audio.codecs();
    let (codec, payload_type) = preference.iter().find_map(|codec| {
        offered.iter().find(|(_, name, rate)| codec.matches(name, *rate)).map(|(pt, _, _)| (*codec, *pt))
    })?;
    let telephone_event = super::plain::telephone_event_type(&offered, codec.clock_rate()).map(|pt| {
        let rate = audio.rtpmap(pt).map(|(_, rate)| rate).unwrap_or(8000);
        (pt, rate, audio.fmtp(pt).unwrap_or("0-16").to_owned())
    });
    let fmtp = audio.fmtp(payload_type).unwrap_or_default().to_owned();
    Some(Chosen { codec, payload_type, fmtp, telephone_event })
}

impl Chosen {
    /// The payload types answered: the codec's, then telephone-event's.
    fn payload_types(&self) -> Vec<u8> {
        std::iter::once(self.payload_type).chain(self.telephone_event.as_ref().map(|(pt, _, _)| *pt)).collect()
    }

    fn rtp_codec(&self) -> RTCRtpCodec {
        audio_codec(self.codec, &self.fmtp)
    }

    /// The chosen codec, then telephone-event when offered.
    fn codec_parameters(&self) -> Vec<RTCRtpCodecParameters> {
        let mut parameters =
            vec![RTCRtpCodecParameters { rtp_codec: self.rtp_codec(), payload_type: self.payload_type }];
        if let Some((payload_type, clock_rate, fmtp)) = &self.telephone_event {
            let events = telephone_event_codec(*clock_rate, fmtp);
            parameters.push(RTCRtpCodecParameters { rtp_codec: events, payload_type: *payload_type });
        }
        parameters
    }

    /// A media engine that knows exactly the chosen codec and telephone-event.
    fn media_engine(&self) -> Result<MediaEngine, WebRtcError> {
        let mut engine = MediaEngine::default();
        for parameters in self.codec_parameters() {
            engine.register_codec(parameters, RtpCodecKind::Audio).map_err(stack)?;
        }
        Ok(engine)
    }
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
    events: ConnectionEvents,
    activity: Activity,
}

/// What a connection's event handler passes on besides tracks: ICE gathering done, and each
/// connection state. Ringer's answering side and the emulated core's offering peer share it.
pub(crate) struct ConnectionEvents {
    gathered: mpsc::Sender<()>,
    state: watch::Sender<RTCPeerConnectionState>,
}

/// Where those events arrive.
pub(crate) struct ConnectionWatch {
    gathering: mpsc::Receiver<()>,
    /// The connection's state, as it changes.
    pub(crate) state: watch::Receiver<RTCPeerConnectionState>,
}

/// A new pair of [`ConnectionEvents`] and [`ConnectionWatch`].
pub(crate) fn connection_events() -> (ConnectionEvents, ConnectionWatch) {
    let (gathered, gathering) = mpsc::channel(1);
    let (state, states) = watch::channel(RTCPeerConnectionState::New);
    (ConnectionEvents { gathered, state }, ConnectionWatch { gathering, state: states })
}

impl ConnectionEvents {
    /// For `on_ice_gathering_state_change`.
    pub(crate) fn gathering(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.try_send(());
        }
    }

    /// For `on_connection_state_change`.
    pub(crate) fn changed(&self, state: RTCPeerConnectionState) {
        debug!(%state, "WebRTC connection state");
        let _ = self.state.send(state);
    }
}

impl ConnectionWatch {
    /// Waits up to 5 s for ICE gathering to complete: no trickle ICE over SIP, so the
    /// description carries every candidate.
    pub(crate) async fn gathered(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.gathering.recv()).await;
    }
}

/// Resolves when ICE and DTLS have completed (`true`), or failed, the connection closed or
/// went away (`false`).
pub(crate) async fn until_connected(state: &mut watch::Receiver<RTCPeerConnectionState>) -> bool {
    loop {
        match *state.borrow_and_update() {
            RTCPeerConnectionState::Connected => return true,
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => return false,
            _ => {}
        }
        if state.changed().await.is_err() {
            return false;
        }
    }
}

/// When RTP last came from the peer, for the media timeout of calls whose app does not read
/// the packets itself (echo).
#[derive(Clone)]
pub struct Activity {
    since: std::time::Instant,
    /// Milliseconds after `since` of the last packet.
    last: Arc<std::sync::atomic::AtomicU64>,
}

impl Activity {
    fn new() -> Self {
        Self { since: std::time::Instant::now(), last: Arc::new(std::sync::atomic::AtomicU64::new(0)) }
    }

    fn touch(&self) {
        let now = self.since.elapsed().as_millis() as u64;
        self.last.store(now, std::sync::atomic::Ordering::Relaxed);
    }

    /// How long since the last packet (or since the session began, before any).
    pub fn idle_for(&self) -> std::time::Duration {
        let last = std::time::Duration::from_millis(self.last.load(std::sync::atomic::Ordering::Relaxed));
        self.since.elapsed().saturating_sub(last)
    }
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
        match &self.sink {
            Sink::Echo(output) => {
                let output = output.clone();
                let activity = self.activity.clone();
                tokio::spawn(async move {
                    let ssrc = output.ssrcs().await.first().copied().unwrap_or_default();
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(mut packet) = event {
                            activity.touch();
                            packet.header.ssrc = ssrc;
                            // Header extensions were not negotiated for ringer's own track.
                            packet.header.extension = false;
                            packet.header.extensions.clear();
                            if output.write_rtp(packet).await.is_err() {
                                break;
                            }
                        }
                    }
                });
            }
            Sink::App(sender) => {
                let sender = sender.clone();
                let activity = self.activity.clone();
                tokio::spawn(async move {
                    while let Some(event) = track.poll().await {
                        if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                            activity.touch();
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
    /// The bound address and the public one written in its place.
    public: Option<(IpAddr, IpAddr)>,
    activity: Activity,
    /// The codec of the first answer: re-offers are answered with it.
    codec: Codec,
}

impl WebRtcSession {
    /// Resolves when ICE and DTLS fail or the connection closes.
    pub async fn failed(&self) {
        let mut state = self.state.clone();
        loop {
            if matches!(*state.borrow_and_update(), RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed) {
                return;
            }
            if state.changed().await.is_err() {
                return std::future::pending::<()>().await;
            }
        }
    }

    /// Resolves when ICE and DTLS have completed (`true`), or failed (`false`). Apps wait for
    /// this before they send: no media leaves before DTLS is up.
    pub async fn connected(&self) -> bool {
        until_connected(&mut self.state.clone()).await
    }

    /// Answers a new offer within the call (a re-INVITE or UPDATE from the core) on the same
    /// connection: the same ICE agent, DTLS association and tracks, so the media goes on.
    pub async fn reanswer(&self, offer: &SessionDescription) -> Result<SessionDescription, WebRtcError> {
        let chosen =
            choose_codec(offer, &[self.codec]).ok_or_else(|| WebRtcError::NoCodec(self.codec.name().into()))?;
        let normalised = normalise_offer(&keep_audio_formats(offer, &chosen.payload_types()));
        let remote = RTCSessionDescription::offer(normalised.to_string()).map_err(stack)?;
        self.connection.set_remote_description(remote).await.map_err(stack)?;
        let answer = self.connection.create_answer(None).await.map_err(stack)?;
        self.connection.set_local_description(answer).await.map_err(stack)?;
        self.local_answer(offer).await
    }

    /// The connection's local description, in the shape of `offer` and with the public
    /// address.
    async fn local_answer(&self, offer: &SessionDescription) -> Result<SessionDescription, WebRtcError> {
        let local = self.connection.local_description().await.ok_or_else(|| stack("no local description"))?;
        let local = SessionDescription::parse(&local.sdp).map_err(stack)?;
        let mut sdp = shape_answer(&local, offer);
        if let Some((bind, public)) = self.public {
            with_public_address(&mut sdp, bind, public);
        }
        Ok(sdp)
    }

    /// When RTP last came from the peer.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
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
    /// RFC 4733 telephone-event's payload type, when negotiated.
    pub telephone_event: Option<u8>,
    /// Its SSRC.
    pub ssrc: u32,
}

/// A WebRTC answer: the SDP (in the offer's shape), the session, and the audio for an app
/// (`None` for echo, which the stack reflects itself).
pub struct Answered {
    /// The SDP answer.
    pub sdp: SessionDescription,
    /// The media session.
    pub session: WebRtcSession,
    /// The codec answered with.
    pub codec: Codec,
    /// The audio, for apps that play and listen.
    pub audio: Option<WebRtcAudio>,
}

/// Answers a WebRTC-style `offer` with the echo app: what arrives on the audio track goes back
/// on ringer's own.
pub async fn answer_echo(offer: &SessionDescription, options: &WebRtcOptions) -> Result<Answered, WebRtcError> {
    answer(offer, options, false).await
}

/// Answers a WebRTC-style `offer` for an app that plays and listens.
pub async fn answer_for_app(offer: &SessionDescription, options: &WebRtcOptions) -> Result<Answered, WebRtcError> {
    answer(offer, options, true).await
}

/// ICE pacing: a check every 50 ms (RFC 8445's Ta) rather than the stack's 200 ms, for the same
/// 1.4 s per candidate pair; media starts that much sooner after the answer.
pub(super) fn ice_settings() -> SettingEngineBuilder {
    SettingEngineBuilder::new().with_ice_connection_attempts(Some(std::time::Duration::from_millis(50)), Some(28))
}

/// Tries to build a connection to each port of the range in turn from a random place, as the
/// stack binds when it is built.
async fn build_connection(
    options: &WebRtcOptions,
    chosen: &Chosen,
    handler: Arc<Handler>,
) -> Result<Box<dyn PeerConnection>, WebRtcError> {
    let ports: Vec<u16> = match &options.ports {
        None => vec![0],
        // Up to 16 ports tried from a random place in the range, counted rather than listed:
        // a call must not build a list of the whole range.
        Some(range) => {
            let (low, high) = (*range.start(), *range.end());
            let count = if low <= high { usize::from(high - low) + 1 } else { 0 };
            let start = rand::random_range(0..count.max(1));
            (0..count.min(16)).map(|offset| low + u16::try_from((start + offset) % count).unwrap_or(0)).collect()
        }
    };
    let mut last_error = stack("no free UDP port in media.rtp_ports");
    for port in ports {
        // A port another socket holds would make the stack log an error before we move on.
        if port != 0 && std::net::UdpSocket::bind(std::net::SocketAddr::new(options.bind, port)).is_err() {
            continue;
        }
        let runtime = crate::runtime::runtime();
        // Boxed: building is a 20 KiB future, which would otherwise sit inline in every call's
        // task (a refused or relayed call included) for the call's whole life.
        let built = Box::pin(
            PeerConnectionBuilder::new()
                .with_configuration(RTCConfigurationBuilder::new().build())
                .with_media_engine(chosen.media_engine()?)
                .with_setting_engine(ice_settings().build())
                .with_handler(handler.clone())
                .with_runtime(runtime)
                .with_udp_addrs(vec![format!("{}", std::net::SocketAddr::new(options.bind, port))])
                .build(),
        )
        .await;
        match built {
            Ok(connection) => return Ok(Box::new(connection)),
            Err(error) => {
                debug!(port, %error, "WebRTC could not bind");
                last_error = stack(error);
            }
        }
    }
    Err(last_error)
}

async fn answer(offer: &SessionDescription, options: &WebRtcOptions, for_app: bool) -> Result<Answered, WebRtcError> {
    let chosen = choose_codec(offer, &options.codecs)
        .ok_or_else(|| WebRtcError::NoCodec(options.codecs.iter().map(|c| c.name()).collect::<Vec<_>>().join(", ")))?;
    let ssrc = rand::random::<u32>();
    let normalised = normalise_offer(&keep_audio_formats(offer, &chosen.payload_types()));
    let output = audio_track(format!("ringer-{}", rand::random::<u32>()), "ringer-audio", ssrc, chosen.rtp_codec());
    let (events, mut watch) = connection_events();
    let (sink, audio) = if for_app {
        let (sender, incoming) = mpsc::unbounded_channel();
        let audio = WebRtcAudio {
            incoming,
            track: output.clone(),
            codec: chosen.codec,
            payload_type: chosen.payload_type,
            telephone_event: chosen.telephone_event.as_ref().map(|(pt, _, _)| *pt),
            ssrc,
        };
        (Sink::App(sender), Some(audio))
    } else {
        (Sink::Echo(output.clone()), None)
    };
    let activity = Activity::new();
    let handler = Arc::new(Handler { sink, events, activity: activity.clone() });
    let connection = build_connection(options, &chosen, handler).await?;
    let output: Arc<dyn TrackLocal> = output;
    // The track's transceiver takes the offer's audio section; it answers with the chosen codec
    // and telephone-event, not only the track's codec.
    let transceiver = connection.add_transceiver_from_track(output, None).await.map_err(stack)?;
    transceiver.set_codec_preferences(chosen.codec_parameters()).await.map_err(stack)?;
    let remote = RTCSessionDescription::offer(normalised.to_string()).map_err(stack)?;
    connection.set_remote_description(remote).await.map_err(stack)?;
    let answer = connection.create_answer(None).await.map_err(stack)?;
    connection.set_local_description(answer).await.map_err(stack)?;
    watch.gathered().await;
    let public = options.public.map(|public| (options.bind, public));
    let session = WebRtcSession { connection, state: watch.state, public, activity, codec: chosen.codec };
    let sdp = session.local_answer(offer).await?;
    Ok(Answered { sdp, session, codec: chosen.codec, audio })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text).unwrap()
    }

    #[test]
    fn mids_and_bundle_are_added_for_the_stack_and_taken_out_of_the_answer() {
        let offer =
            parse("v=0\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=rtcp-mux\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n");
        let normalised = normalise_offer(&offer);
        let text = normalised.to_string();
        assert!(text.contains("t=0 0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\na=mid:0\r\n"), "{text}");
        assert!(text.contains("m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\n"), "{text}");
        let answer = parse(
            "v=0\r\na=group:BUNDLE 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtcp-mux\r\n\
            a=candidate:1 1 udp 2130706431 192.0.2.4 5000 typ host\r\n",
        );
        assert_eq!(
            shape_answer(&answer, &offer).to_string(),
            "v=0\r\nm=audio 5000 UDP/TLS/RTP/SAVPF 8\r\nc=IN IP4 192.0.2.4\r\na=rtcp-mux\r\n\
             a=candidate:1 1 udp 2130706431 192.0.2.4 5000 typ host\r\n"
        );
        let shaped = shape_answer(&answer, &normalised).to_string();
        assert!(shaped.contains("a=mid:0\r\n") && shaped.contains("a=group:BUNDLE 0\r\n"), "{shaped}");
        let savp = parse("v=0\r\nm=audio 9 RTP/SAVP 8\r\na=mid:0\r\n");
        let shaped = shape_answer(&answer, &savp).to_string();
        assert!(shaped.contains("m=audio 5000 RTP/SAVP 8\r\n") && !shaped.contains("a=rtcp-mux"), "{shaped}");
        assert!(shaped.contains("a=rtcp:5000 IN IP4 192.0.2.4\r\n"), "RTCP on the same port: {shaped}");
        let browser = "v=0\r\na=group:BUNDLE audio\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:audio\r\n";
        assert_eq!(normalise_offer(&parse(browser)).to_string(), browser);
        let savp = "v=0\r\na=group:BUNDLE audio\r\nm=audio 9 UDP/TLS/RTP/SAVP 111\r\na=mid:audio\r\n";
        assert_eq!(normalise_offer(&parse(savp)).to_string(), browser);
        let upper = "v=0\r\na=fingerprint:SHA-256 AB:CD\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        assert!(normalise_offer(&parse(upper)).to_string().contains("a=fingerprint:sha-256 AB:CD\r\n"));
        let mids_only = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:a1\r\n";
        assert!(normalise_offer(&parse(mids_only)).to_string().contains("a=group:BUNDLE a1\r\nm=audio"));
    }

    #[test]
    fn the_public_address_replaces_the_bound_one() {
        let mut sdp = parse(
            "c=IN IP4 10.0.0.5\r\nm=audio 40000 UDP/TLS/RTP/SAVP 8\r\na=candidate:1 1 udp 2130706431 10.0.0.5 40000 typ host\r\n\
             a=candidate:2 1 udp 1 10.0.0.6 40002 typ host\r\na=rtcp:40001 IN IP4 10.0.0.5\r\na=ice-ufrag:x\r\n",
        );
        with_public_address(&mut sdp, "10.0.0.5".parse().unwrap(), "203.0.113.9".parse().unwrap());
        assert_eq!(
            sdp.to_string(),
            "c=IN IP4 203.0.113.9\r\nm=audio 40000 UDP/TLS/RTP/SAVP 8\r\n\
             a=candidate:1 1 udp 2130706431 203.0.113.9 40000 typ host\r\n\
             a=candidate:2 1 udp 1 10.0.0.6 40002 typ host\r\na=rtcp:40001 IN IP4 203.0.113.9\r\na=ice-ufrag:x\r\n"
        );
    }
}
