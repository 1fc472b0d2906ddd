//! Plain RTP (RTP/AVP, RFC 3550/3551) for lab phones and SIPp: choosing the codec from an
//! offer, the answer, a UDP port from the configured range, and the loops the apps run on it.
//! Symmetric RTP: media goes back to where the peer's packets come from (RFC 4961), so a NAT
//! between does not matter; until the first packet, to the address in the offer.

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use bytes::Bytes;
use rtc::shared::marshal::{Marshal, Unmarshal};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::debug;

pub use super::codec::{Codec, FRAME};
use sdp::{Attribute, MediaDescription, SessionDescription};

/// What was agreed for one plain RTP audio stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Which `m=` section of the offer.
    pub media_index: usize,
    /// Where the offer asks media to go.
    pub remote: SocketAddr,
    /// The codec.
    pub codec: Codec,
    /// Its payload type in this session.
    pub payload_type: u8,
    /// RFC 4733 telephone-event's payload type, when offered.
    pub telephone_event: Option<u8>,
}

/// Why an offer has nothing ringer can answer with plain RTP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    /// No plain RTP audio stream (WebRTC-style offers come with their own session).
    #[error("no RTP/AVP audio stream in the offer")]
    NoPlainAudio,
    /// Audio offered, but in no codec ringer has.
    #[error("none of the offered codecs is supported (ringer has {0})")]
    NoCommonCodec(String),
    /// The stream has no address to send to.
    #[error("the audio stream has no connection address")]
    NoAddress,
}

/// Picks the first plain RTP audio stream of `offer` and the first codec of `preference` it
/// offers.
pub fn negotiate(offer: &SessionDescription, preference: &[Codec]) -> Result<Negotiated, NegotiationError> {
    let (media_index, media) = offer
        .media
        .iter()
        .enumerate()
        .find(|(_, m)| m.kind == "audio" && m.port != 0 && m.is_plain_rtp())
        .ok_or(NegotiationError::NoPlainAudio)?;
    let offered = media.codecs();
    let (codec, payload_type) = preference
        .iter()
        .find_map(|codec| {
            offered.iter().find(|(_, name, rate)| codec.matches(name, *rate)).map(|(pt, _, _)| (*codec, *pt))
        })
        .ok_or_else(|| {
            NegotiationError::NoCommonCodec(preference.iter().map(|c| c.name()).collect::<Vec<_>>().join(", "))
        })?;
    let telephone_event = telephone_event_type(&offered, codec.clock_rate());
    let address = media.connection().or(offer.connection()).ok_or(NegotiationError::NoAddress)?;
    Ok(Negotiated { media_index, remote: SocketAddr::new(address, media.port), codec, payload_type, telephone_event })
}

/// The answer to `offer`: the negotiated stream on `advertise`:`port`, every other stream
/// declined with port 0 (RFC 3264 §6). `version` is the `o=` version: 0 for the first answer,
/// one more for each later one in the same call (RFC 3264 §8).
pub fn answer(
    offer: &SessionDescription,
    agreed: &Negotiated,
    advertise: IpAddr,
    port: u16,
    session: u64,
    version: u64,
) -> SessionDescription {
    let mut sdp = sdp::new_session(session, version, advertise);
    for (index, media) in offer.media.iter().enumerate() {
        if index != agreed.media_index {
            sdp.media.push(media.declined());
            continue;
        }
        let (pt, codec, rate) = (agreed.payload_type, agreed.codec, agreed.codec.clock_rate());
        let rtpmap = match codec.channels() {
            1 => format!("{pt} {codec}/{rate}"),
            channels => format!("{pt} {codec}/{rate}/{channels}"),
        };
        let mut stream = MediaDescription {
            kind: "audio".into(),
            port,
            port_count: None,
            proto: media.proto.clone(),
            formats: vec![pt.to_string()],
            lines: Vec::new(),
        };
        stream.push_attribute(Attribute::new("rtpmap", rtpmap));
        if let Some(te) = agreed.telephone_event {
            stream.formats.push(te.to_string());
            stream.push_attribute(Attribute::new("rtpmap", format!("{te} telephone-event/{rate}")));
            stream.push_attribute(Attribute::new("fmtp", format!("{te} 0-16")));
        }
        // RFC 3264 §6.1: a stream on hold (sendonly) is answered recvonly, and so on.
        let direction = if media.attribute("sendonly").is_some() {
            "recvonly"
        } else if media.attribute("recvonly").is_some() {
            "sendonly"
        } else if media.attribute("inactive").is_some() {
            "inactive"
        } else {
            "sendrecv"
        };
        stream.push_attribute(Attribute::new("ptime", "20"));
        stream.push_attribute(Attribute::flag(direction));
        sdp.media.push(stream);
    }
    sdp
}

/// Where plain RTP sockets are opened.
#[derive(Debug, Clone)]
pub struct PortRange {
    /// The address to bind.
    pub bind: IpAddr,
    /// The ports to use (even ports are taken; RTCP, when not muxed, would be the next one).
    pub ports: RangeInclusive<u16>,
}

/// A UDP socket on a free even port of `range`, starting at a random place in it.
pub async fn bind(range: &PortRange) -> std::io::Result<UdpSocket> {
    let (low, high) = (*range.ports.start(), *range.ports.end());
    // The even ports are counted, not listed: a call must not build a list of the whole range.
    let first = low.saturating_add(low % 2);
    let count = match first <= high && first % 2 == 0 {
        true => usize::from((high - first) / 2) + 1,
        false => 0,
    };
    if count == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "the RTP port range has no even port"));
    }
    let start = rand::random_range(0..count);
    for offset in 0..count {
        let index = (start + offset) % count;
        // index < count, so the port is within first..=high.
        let port = first + 2 * u16::try_from(index).unwrap_or(0);
        if let Ok(socket) = UdpSocket::bind(SocketAddr::new(range.bind, port)).await {
            return Ok(socket);
        }
    }
    Err(std::io::Error::new(std::io::ErrorKind::AddrInUse, format!("no free RTP port in {low}-{high}")))
}

/// Why a media loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEnd {
    /// The call ended.
    Stopped,
    /// No RTP for the media timeout.
    TimedOut,
}

/// The echo app: every RTP packet goes back where it came from, under ringer's own SSRC, until
/// `stop` or `timeout` without a packet.
pub async fn echo(socket: UdpSocket, timeout: Duration, stop: CancellationToken) -> MediaEnd {
    let ssrc: u32 = rand::random();
    let mut buffer = vec![0u8; 2048];
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return MediaEnd::Stopped,
            received = tokio::time::timeout(timeout, socket.recv_from(&mut buffer)) => received,
        };
        let (length, from) = match received {
            Err(_) => return MediaEnd::TimedOut,
            Ok(Err(error)) => {
                debug!(%error, "RTP receive error");
                continue;
            }
            Ok(Ok(pair)) => pair,
        };
        let Ok(mut packet) = rtc::rtp::Packet::unmarshal(&mut &buffer[..length]) else { continue };
        if packet.header.version != 2 {
            continue;
        }
        packet.header.ssrc = ssrc;
        let out: Bytes = match packet.marshal() {
            Ok(bytes) => bytes.freeze(),
            Err(_) => continue,
        };
        let _ = socket.send_to(&out, from).await;
    }
}

/// The payload type of RFC 4733 telephone-event among `offered` at `clock_rate`, the audio
/// codec's (RFC 4733 §2.1).
pub fn telephone_event_type(offered: &[(u8, String, u32)], clock_rate: u32) -> Option<u8> {
    offered
        .iter()
        .find(|(_, name, rate)| name.eq_ignore_ascii_case("telephone-event") && *rate == clock_rate)
        .map(|(pt, _, _)| *pt)
}

/// A decoded RFC 4733 telephone-event payload: the key, and whether this packet ends it.
pub fn telephone_event(payload: &[u8]) -> Option<(char, bool)> {
    let event = *payload.first()?;
    let end = payload.get(1)? & 0x80 != 0;
    let key = match event {
        0..=9 => char::from(b'0' + event),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + event - 12),
        _ => return None,
    };
    Some((key, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
        m=video 5000 RTP/AVP 96\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

    #[tokio::test]
    async fn rtp_sockets_take_even_ports_of_the_range_until_none_is_free() {
        let localhost = IpAddr::from([127, 0, 0, 1]);
        let none = PortRange { bind: localhost, ports: 40_001..=40_001 };
        assert_eq!(bind(&none).await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        let top = PortRange { bind: localhost, ports: 65_535..=65_535 };
        assert_eq!(bind(&top).await.unwrap_err().kind(), std::io::ErrorKind::InvalidInput);
        // Odd ends: the even ports are 40012 and 40014, then none is free.
        let range = PortRange { bind: localhost, ports: 40_011..=40_015 };
        let mut sockets = Vec::new();
        for _ in 0..2 {
            sockets.push(bind(&range).await.expect("a free even port"));
        }
        let mut taken: Vec<u16> = sockets.iter().map(|socket| socket.local_addr().unwrap().port()).collect();
        taken.sort_unstable();
        assert_eq!(taken, [40_012, 40_014]);
        assert_eq!(bind(&range).await.unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn the_preferred_codec_is_chosen_and_the_rest_declined() {
        let offer = SessionDescription::parse(OFFER).unwrap();
        let agreed = negotiate(&offer, &[Codec::Pcma, Codec::Pcmu]).unwrap();
        assert_eq!(agreed.media_index, 1);
        assert_eq!((agreed.codec, agreed.payload_type, agreed.telephone_event), (Codec::Pcma, 8, Some(101)));
        assert_eq!(agreed.remote, "192.0.2.1:49170".parse::<SocketAddr>().unwrap());
        let sdp = answer(&offer, &agreed, "203.0.113.5".parse().unwrap(), 20000, 9, 0).to_string();
        assert!(sdp.contains("o=ringer 9 0 IN IP4 203.0.113.5\r\n"), "{sdp}");
        assert!(sdp.contains("a=sendrecv\r\n"), "{sdp}");
        assert!(sdp.contains("c=IN IP4 203.0.113.5\r\n"), "{sdp}");
        assert!(
            sdp.contains("m=video 0 RTP/AVP 96\r\nm=audio 20000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"),
            "{sdp}"
        );
        assert!(sdp.contains("a=rtpmap:101 telephone-event/8000\r\n"), "{sdp}");
        // The other preference order picks the other codec.
        assert_eq!(negotiate(&offer, &[Codec::Pcmu]).unwrap().payload_type, 0);
    }

    #[test]
    fn opus_and_hold_are_answered_in_kind() {
        let offer = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 RTP/AVP 96 101 8\r\na=rtpmap:96 opus/48000/2\r\n\
            a=rtpmap:101 telephone-event/48000\r\na=sendonly\r\n";
        let offer = SessionDescription::parse(offer).unwrap();
        let agreed = negotiate(&offer, &[Codec::Opus, Codec::Pcma]).unwrap();
        assert_eq!((agreed.codec, agreed.payload_type, agreed.telephone_event), (Codec::Opus, 96, Some(101)));
        let sdp = answer(&offer, &agreed, "192.0.2.9".parse().unwrap(), 20002, 7, 3).to_string();
        assert!(sdp.contains("o=ringer 7 3 IN IP4"), "{sdp}");
        assert!(sdp.contains("a=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n"), "{sdp}");
        assert!(sdp.contains("a=recvonly\r\n"), "held by the offerer: {sdp}");
        assert_eq!(
            negotiate(&offer, &[Codec::Pcma]).unwrap().telephone_event,
            None,
            "events at 48 kHz do not go with PCMA"
        );
    }

    #[test]
    fn telephone_events_decode_to_keys() {
        assert_eq!(telephone_event(&[11, 0x80, 0, 160]), Some(('#', true)));
        assert_eq!(telephone_event(&[5, 0x0a, 0, 160]), Some(('5', false)));
        assert_eq!(telephone_event(&[10, 0x80]), Some(('*', true)));
        assert_eq!(telephone_event(&[200, 0x80]), None);
        assert_eq!(telephone_event(&[1]), None);
    }

    #[test]
    fn offers_without_anything_usable_are_refused_with_a_reason() {
        let webrtc = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n";
        let g729 = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 9 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
        let nowhere = "v=0\r\nm=audio 9 RTP/AVP 8\r\n";
        let parse = |text| SessionDescription::parse(text).unwrap();
        assert_eq!(negotiate(&parse(webrtc), &[Codec::Pcma]), Err(NegotiationError::NoPlainAudio));
        assert!(matches!(negotiate(&parse(g729), &[Codec::Pcma]), Err(NegotiationError::NoCommonCodec(_))));
        assert_eq!(negotiate(&parse(nowhere), &[Codec::Pcma]), Err(NegotiationError::NoAddress));
    }
}
