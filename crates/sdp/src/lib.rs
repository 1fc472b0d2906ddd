//! SDP (RFC 4566) read, changed and written as a typed model, and the answers built from offers
//! (RFC 3264) that need no media engine. No SDP is handled as text anywhere else in ringer.

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod candidate;
mod model;

pub use candidate::{BadCandidate, Candidate};
pub use model::{Attribute, Connection, Line, MediaDescription, Origin, SdpError, SessionDescription};

use std::net::IpAddr;

/// An answer that declines every offered stream (port 0, one format each, RFC 3264 §6), from
/// `address`, or `None` when the offer has no media section.
pub fn decline_all(offer: &SessionDescription, session_id: u64, address: IpAddr) -> Option<SessionDescription> {
    if offer.media.is_empty() {
        return None;
    }
    let mut answer = new_session(session_id, session_id, address);
    answer.media = offer.media.iter().map(MediaDescription::declined).collect();
    Some(answer)
}

/// A description with no media yet: `v=0`, `o=ringer <id> <version>` from `address`, `s=-`,
/// `c=` with `address` and `t=0 0`.
pub fn new_session(session_id: u64, version: u64, address: IpAddr) -> SessionDescription {
    let connection = Connection::to_ip(address);
    let origin = Origin {
        username: "ringer".into(),
        session_id: session_id.to_string(),
        session_version: version.to_string(),
        net_type: connection.net_type.clone(),
        addr_type: connection.addr_type.clone(),
        address: connection.address.clone(),
    };
    SessionDescription {
        lines: vec![
            Line::Other { kind: 'v', value: "0".into() },
            Line::Origin(origin),
            Line::Other { kind: 's', value: "-".into() },
            Line::Connection(connection),
            Line::Other { kind: 't', value: "0 0".into() },
        ],
        media: Vec::new(),
    }
}

/// An offer as a desk phone makes one: plain RTP audio (RTP/AVP) on `address`:`port` in the
/// static payload types `formats` (RFC 3551: 0 PCMU, 8 PCMA), by preference.
pub fn plain_audio_offer(session_id: u64, address: IpAddr, port: u16, formats: &[u8]) -> SessionDescription {
    let mut offer = new_session(session_id, session_id, address);
    offer.media.push(MediaDescription {
        kind: "audio".into(),
        port,
        port_count: None,
        proto: "RTP/AVP".into(),
        formats: formats.iter().map(u8::to_string).collect(),
        lines: Vec::new(),
    });
    offer
}

/// `offer` with its first audio section offering only the payload types in `keep`. An answer
/// may only name what was offered (RFC 3264 §6.1), so narrowing the offer to what ringer chose
/// (one codec, and the telephone-event at that codec's clock, RFC 4733 §7.1.1) keeps a media
/// stack from pairing the codec with the wrong telephone-event or listing one twice.
pub fn keep_audio_formats(offer: &SessionDescription, keep: &[u8]) -> SessionDescription {
    let mut narrowed = offer.clone();
    if let Some(audio) = narrowed.audio_mut() {
        audio.retain_formats(keep);
    }
    narrowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> SessionDescription {
        SessionDescription::parse(text).unwrap()
    }

    #[test]
    fn every_stream_is_declined_in_order() {
        let offer = parse("v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\nm=video 51372 UDP/TLS/RTP/SAVPF 96\r\n");
        let answer = decline_all(&offer, 7, "127.0.0.1".parse().unwrap()).unwrap().to_string();
        assert!(answer.contains("m=audio 0 RTP/AVP 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n"), "{answer}");
        assert!(answer.starts_with("v=0\r\no=ringer 7 7 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"));
        assert_eq!(decline_all(&parse("v=0\r\n"), 1, "127.0.0.1".parse().unwrap()), None);
        let v6 = decline_all(&offer, 1, "2001:db8::1".parse().unwrap()).unwrap().to_string();
        assert!(v6.contains("c=IN IP6 2001:db8::1\r\n"), "{v6}");
    }

    #[test]
    fn a_desk_phone_offer_is_plain_audio() {
        let offer = plain_audio_offer(3, "192.0.2.8".parse().unwrap(), 40000, &[8, 0]);
        assert_eq!(
            offer.to_string(),
            "v=0\r\no=ringer 3 3 IN IP4 192.0.2.8\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\nm=audio 40000 RTP/AVP 8 0\r\n"
        );
        assert_eq!(offer.audio().map(MediaDescription::codecs).unwrap_or_default().len(), 2);
    }

    #[test]
    fn the_audio_section_is_narrowed_to_the_chosen_formats() {
        let offer = parse(
            "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 101 102\r\na=rtpmap:111 opus/48000/2\r\n\
             a=fmtp:111 minptime=10\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:* nack\r\n\
             a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
             a=rtpmap:101 telephone-event/48000\r\na=fmtp:101 0-16\r\n\
             a=rtpmap:102 telephone-event/8000\r\na=fmtp:102 0-16\r\na=sendrecv\r\n\
             m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n",
        );
        let narrowed = keep_audio_formats(&offer, &[8, 102]).to_string();
        assert!(narrowed.contains("m=audio 9 UDP/TLS/RTP/SAVPF 8 102\r\n"), "{narrowed}");
        for gone in ["opus", "G722", "PCMU", "telephone-event/48000", "a=fmtp:101", "transport-cc"] {
            assert!(!narrowed.split("m=audio 9 RTP/AVP").next().unwrap().contains(gone), "{gone} in {narrowed}");
        }
        for kept in [
            "a=rtpmap:8 PCMA/8000",
            "a=rtpmap:102 telephone-event/8000",
            "a=fmtp:102 0-16",
            "a=rtcp-fb:* nack",
            "a=sendrecv",
        ] {
            assert!(narrowed.contains(kept), "{kept} missing from {narrowed}");
        }
        // Only the first audio section is narrowed.
        assert!(narrowed.ends_with("m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"), "{narrowed}");
        // Each payload type once.
        let twice = keep_audio_formats(&parse("m=audio 1 RTP/AVP 8 8 101\r\n"), &[8]).to_string();
        assert!(twice.starts_with("m=audio 1 RTP/AVP 8\r\n"), "{twice}");
    }

    #[test]
    fn offers_are_read_with_their_attributes_and_static_payload_types() {
        let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
                     m=video 51372/2 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 198.51.100.7\r\na=rtcp-mux\r\n";
        let sdp = parse(offer);
        assert_eq!(sdp.connection(), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(sdp.origin().map(|o| o.session_version.as_str()), Some("1"));
        let audio = &sdp.media[0];
        assert!(audio.is_plain_rtp() && audio.port == 49170 && audio.formats == ["0", "8", "101"]);
        assert_eq!(audio.rtpmap(0), Some(("PCMU".into(), 8000)));
        assert_eq!(audio.rtpmap(101), Some(("telephone-event".into(), 8000)));
        assert_eq!(audio.attribute("sendrecv"), Some(""));
        let video = &sdp.media[1];
        assert!(!video.is_plain_rtp() && video.port == 51372 && video.port_count == Some(2));
        assert!(video.attribute("rtcp-mux").is_some());
        assert_eq!(video.connection(), Some("198.51.100.7".parse().unwrap()));
        // Written back as read.
        assert_eq!(sdp.to_string(), offer);
        for bad in ["m=audio\r\n", "m=audio x RTP/AVP 0\r\n", "c=IN IP4 nowhere\r\n", "garbage\r\n", "c=IN IP4\r\n"] {
            assert!(SessionDescription::parse(bad).is_err(), "{bad:?}");
        }
    }
}
