//! Audio in and out of one call, whatever carries it: plain RTP on a UDP socket (symmetric
//! RTP), or the tracks of a WebRTC connection. Decoding and encoding (G.711, Opus), RFC 4733
//! DTMF and 20 ms pacing are the same for both; the apps only see samples and keys.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;

use super::codec::{Codec, CodecError, Decoder, Encoder, FRAME};
use super::plain::{telephone_event, Negotiated};
use super::rtp::{Reception, ReceptionSummary, RtpStream};

/// What arrives on an audio channel.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// 20 ms (or whatever the peer packs) of linear audio.
    Audio(Vec<i16>),
    /// The end of an RFC 4733 telephone-event: the key pressed.
    Dtmf(char),
}

/// How packets travel.
enum Path {
    /// Plain RTP: a socket, and where the peer's packets come from.
    Udp { socket: UdpSocket, remote: SocketAddr, buffer: Vec<u8> },
    /// WebRTC: packets from the remote track, and ringer's own track (SRTP below both).
    WebRtc { incoming: mpsc::UnboundedReceiver<rtc::rtp::Packet>, track: Arc<TrackLocalStaticRTP> },
}

/// Audio in and out of one call.
pub struct AudioChannel {
    path: Path,
    codec: Codec,
    encoder: Encoder,
    decoder: Decoder,
    payload_type: u8,
    telephone_event: Option<u8>,
    rtp: RtpStream,
    /// The timestamp of the last DTMF event reported, so its three end packets count once.
    last_dtmf: Option<u32>,
    /// What arrived of the peer's audio and events, for the call's record.
    reception: Reception,
}

impl AudioChannel {
    /// Plain RTP on `socket` for the stream `agreed`.
    pub fn udp(socket: UdpSocket, agreed: Negotiated) -> Result<Self, CodecError> {
        Ok(Self {
            path: Path::Udp { socket, remote: agreed.remote, buffer: vec![0u8; 2048] },
            codec: agreed.codec,
            encoder: agreed.codec.encoder()?,
            decoder: agreed.codec.decoder()?,
            payload_type: agreed.payload_type,
            telephone_event: agreed.telephone_event,
            rtp: RtpStream::new(rand::random()),
            last_dtmf: None,
            reception: Reception::new(agreed.codec.clock_rate()),
        })
    }

    /// The tracks of a WebRTC connection: `incoming` from the peer's, `track` ringer's own
    /// (whose SSRC is `ssrc`), in `codec` as payload type `payload_type`, with telephone-events
    /// as `telephone_event`.
    pub fn webrtc(
        incoming: mpsc::UnboundedReceiver<rtc::rtp::Packet>,
        track: Arc<TrackLocalStaticRTP>,
        codec: Codec,
        payload_type: u8,
        telephone_event: Option<u8>,
        ssrc: u32,
    ) -> Result<Self, CodecError> {
        Ok(Self {
            path: Path::WebRtc { incoming, track },
            codec,
            encoder: codec.encoder()?,
            decoder: codec.decoder()?,
            payload_type,
            telephone_event,
            rtp: RtpStream::new(ssrc),
            last_dtmf: None,
            reception: Reception::new(codec.clock_rate()),
        })
    }

    /// The codec in use.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// What arrived of the peer's stream so far: packets, losses, jitter.
    pub fn reception(&self) -> ReceptionSummary {
        self.reception.summary()
    }

    /// Counts `packet` when it is of the call's stream (audio or telephone-events, which share
    /// its sequence numbers); audio read as it arrives (`timely`) feeds the jitter, a backlog
    /// read all at once does not.
    fn count(&mut self, packet: &rtc::rtp::Packet, timely: bool) {
        let header = &packet.header;
        let audio = header.payload_type == self.payload_type;
        if audio || Some(header.payload_type) == self.telephone_event {
            let timestamp = (audio && timely).then_some(header.timestamp);
            self.reception.on_packet(header.ssrc, header.sequence_number, timestamp, std::time::Instant::now());
        }
    }

    async fn next_packet(&mut self, deadline: tokio::time::Instant) -> Option<rtc::rtp::Packet> {
        match &mut self.path {
            Path::Udp { socket, remote, buffer } => loop {
                let (length, from) = match tokio::time::timeout_at(deadline, socket.recv_from(buffer)).await {
                    Err(_) => return None,
                    Ok(Err(error)) => {
                        debug!(%error, "RTP receive error");
                        continue;
                    }
                    Ok(Ok(pair)) => pair,
                };
                let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]) else { continue };
                if packet.header.version != 2 {
                    continue;
                }
                // Symmetric RTP: answer where the media comes from.
                *remote = from;
                return Some(packet);
            },
            Path::WebRtc { incoming, .. } => tokio::time::timeout_at(deadline, incoming.recv()).await.ok().flatten(),
        }
    }

    /// The next audio or DTMF from the peer; `None` after `timeout` without RTP.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Incoming> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let packet = self.next_packet(deadline).await?;
            self.count(&packet, true);
            let pt = packet.header.payload_type;
            if Some(pt) == self.telephone_event {
                if let Some((key, true)) = telephone_event(&packet.payload) {
                    if self.last_dtmf != Some(packet.header.timestamp) {
                        self.last_dtmf = Some(packet.header.timestamp);
                        return Some(Incoming::Dtmf(key));
                    }
                }
                continue;
            }
            if pt != self.payload_type {
                continue;
            }
            match self.decoder.decode(&packet.payload) {
                Ok(samples) => return Some(Incoming::Audio(samples)),
                // One bad packet is a lost packet, not the end of the call.
                Err(error) => debug!(%error, "undecodable audio payload"),
            }
        }
    }

    /// Drops whatever has arrived and not been read (still counted as received).
    pub fn discard_pending(&mut self) {
        let mut dropped = Vec::new();
        match &mut self.path {
            Path::Udp { socket, remote, buffer } => {
                while let Ok((length, from)) = socket.try_recv_from(buffer) {
                    *remote = from;
                    if let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]) {
                        dropped.push(packet);
                    }
                }
            }
            Path::WebRtc { incoming, .. } => {
                while let Ok(packet) = incoming.try_recv() {
                    dropped.push(packet);
                }
            }
        }
        for packet in &dropped {
            self.count(packet, false);
        }
    }

    /// Sends one frame of linear audio (up to [`FRAME`] samples) to the peer.
    pub async fn send(&mut self, samples: &[i16]) {
        let payload = match self.encoder.encode(samples) {
            Ok(payload) => payload,
            Err(error) => {
                debug!(%error, "could not encode a frame");
                return;
            }
        };
        let packet = self.rtp.packet(self.payload_type, false, payload);
        self.rtp.advance(self.encoder.ticks(samples.len()));
        match &self.path {
            Path::Udp { socket, remote, .. } => {
                if let Ok(bytes) = packet.marshal() {
                    let _ = socket.send_to(&bytes, *remote).await;
                }
            }
            Path::WebRtc { track, .. } => {
                let _ = track.write_rtp(packet).await;
            }
        }
    }

    /// Plays `samples` in real time, 20 ms a packet; returns early when `stop` fires.
    pub async fn play(&mut self, samples: &[i16], stop: &CancellationToken) -> bool {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for frame in samples.chunks(FRAME) {
            tokio::select! {
                () = stop.cancelled() => return false,
                _ = pace.tick() => self.send(frame).await,
            }
        }
        true
    }

    /// Plays `samples` as [`AudioChannel::play`] does, stopping at the first key the caller
    /// presses (barge-in), which is returned.
    pub async fn play_listening(&mut self, samples: &[i16], stop: &CancellationToken) -> Heard {
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for frame in samples.chunks(FRAME) {
            tokio::select! {
                () = stop.cancelled() => return Heard::Stopped,
                _ = pace.tick() => self.send(frame).await,
            }
            if let Some(key) = self.pending_key().await {
                return Heard::Key(key);
            }
        }
        Heard::Played
    }

    /// The first key among what has arrived and not been read (the audio is dropped).
    async fn pending_key(&mut self) -> Option<char> {
        loop {
            match self.recv(Duration::ZERO).await? {
                Incoming::Dtmf(key) => return Some(key),
                Incoming::Audio(_) => {}
            }
        }
    }

    /// The next key the caller presses within `timeout` (audio meanwhile dropped).
    pub async fn read_key(&mut self, timeout: Duration, stop: &CancellationToken) -> Heard {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            tokio::select! {
                () = stop.cancelled() => return Heard::Stopped,
                incoming = self.recv(left) => match incoming {
                    Some(Incoming::Dtmf(key)) => return Heard::Key(key),
                    Some(Incoming::Audio(_)) => {}
                    None => return Heard::Played,
                },
            }
        }
    }

    /// Keys up to `#` (not included) or `most` of them, starting with `first` when the caller
    /// already pressed one; `None` when the caller left, or pressed nothing within `timeout` of
    /// the last key.
    pub async fn read_digits(
        &mut self,
        first: Option<char>,
        most: usize,
        timeout: Duration,
        stop: &CancellationToken,
    ) -> Option<String> {
        let mut digits: String = first.into_iter().filter(|key| *key != '#').collect();
        if first == Some('#') {
            return Some(digits);
        }
        while digits.len() < most {
            match self.read_key(timeout, stop).await {
                Heard::Key('#') => break,
                Heard::Key(key) => digits.push(key),
                // Silence after some digits ends the entry, as on a phone; before any, nothing.
                Heard::Played if !digits.is_empty() => break,
                Heard::Played | Heard::Stopped => return None,
            }
        }
        Some(digits)
    }
}

/// How listening to the caller ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard {
    /// The audio played through, or the wait ended, without a key.
    Played,
    /// The caller pressed this key.
    Key(char),
    /// The call is ending.
    Stopped,
}

impl Heard {
    /// The key pressed, if any; `None` when the call is ending.
    pub fn pressed(self) -> Option<Option<char>> {
        match self {
            Heard::Played => Some(None),
            Heard::Key(key) => Some(Some(key)),
            Heard::Stopped => None,
        }
    }
}
