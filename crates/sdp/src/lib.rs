//! SDP (RFC 4566) answers built from offers (RFC 3264).

// Outside tests nothing is unwrapped: errors are handled or explained (tests may unwrap).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::fmt::Write as _;

/// An answer that declines every offered stream (port 0, RFC 3264 §6), or `None` when the
/// offer has no media line.
pub fn decline_all(offer: &str, session_id: u64, address: &str) -> Option<String> {
    let media: Vec<&str> = offer.lines().map(str::trim_end).filter(|line| line.starts_with("m=")).collect();
    if media.is_empty() {
        return None;
    }
    let family = if address.contains(':') { "IP6" } else { "IP4" };
    let mut answer = String::with_capacity(128 + 40 * media.len());
    let _ = write!(answer, "v=0\r\no=ringer {session_id} {session_id} IN {family} {address}\r\ns=-\r\nc=IN {family} {address}\r\nt=0 0\r\n");
    for line in media {
        // m=<media> <port> <proto> <fmt> ...: keep media and proto, port 0, one format.
        let mut fields = line[2..].split_whitespace();
        let (Some(kind), Some(_port), Some(proto)) = (fields.next(), fields.next(), fields.next()) else {
            return None;
        };
        let format = fields.next().unwrap_or("0");
        let _ = write!(answer, "m={kind} 0 {proto} {format}\r\n");
    }
    Some(answer)
}

/// `sdp` with its first audio section offering only the payload types in `keep` (their
/// `a=rtpmap`, `a=fmtp` and `a=rtcp-fb` lines kept, the others' dropped), each once. An answer
/// may only name what was offered (RFC 3264 §6.1), so narrowing the offer to what ringer chose
/// (one codec, and the telephone-event at that codec's clock, RFC 4733 §7.1.1) keeps a stack
/// from pairing the codec with the wrong telephone-event or listing one twice.
pub fn keep_audio_formats(sdp: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut in_audio = false;
    let mut audio_seen = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            in_audio = !audio_seen && media.starts_with("audio ") && !media.starts_with("audio 0 ");
            audio_seen |= in_audio;
            if in_audio {
                let fields: Vec<&str> = media.split_whitespace().collect();
                let mut formats: Vec<&str> = Vec::new();
                for format in fields.iter().skip(3) {
                    let kept = format.parse::<u8>().is_ok_and(|pt| keep.contains(&pt));
                    if kept && !formats.contains(format) {
                        formats.push(format);
                    }
                }
                out.push_str(&format!(
                    "m={}\r\n",
                    fields[..3.min(fields.len())].iter().chain(&formats).copied().collect::<Vec<_>>().join(" ")
                ));
                continue;
            }
        } else if in_audio {
            let payload_type = ["a=rtpmap:", "a=fmtp:", "a=rtcp-fb:"]
                .iter()
                .find_map(|prefix| line.strip_prefix(prefix))
                .map(|rest| rest.split_whitespace().next().unwrap_or_default());
            if let Some(payload_type) = payload_type {
                // `a=rtcp-fb:*` applies to every format and stays.
                let kept = payload_type == "*" || payload_type.parse::<u8>().is_ok_and(|pt| keep.contains(&pt));
                if !kept {
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out
}

/// An SDP body, as far as ringer reads it (RFC 4566).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// The session-level `c=` address.
    pub connection: Option<std::net::IpAddr>,
    /// The `m=` sections, in order.
    pub media: Vec<MediaDescription>,
}

/// One `m=` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`...
    pub kind: String,
    /// The port (0: declined).
    pub port: u16,
    /// `RTP/AVP`, `UDP/TLS/RTP/SAVPF`...
    pub proto: String,
    /// The formats (payload types for RTP).
    pub formats: Vec<String>,
    /// The media-level `c=` address.
    pub connection: Option<std::net::IpAddr>,
    /// `a=` lines: name and value.
    pub attributes: Vec<(String, Option<String>)>,
}

/// Why an SDP body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed SDP: {0}")]
pub struct SdpError(pub String);

impl SessionDescription {
    /// Parses `text`; unknown lines are skipped, a malformed `m=` or `c=` line is an error.
    pub fn parse(text: &str) -> Result<Self, SdpError> {
        let mut description = SessionDescription { connection: None, media: Vec::new() };
        for line in text.lines().map(str::trim_end) {
            let Some((kind, value)) = line.split_once('=') else { continue };
            match kind {
                "m" => {
                    let mut fields = value.split_whitespace();
                    let (Some(media), Some(port), Some(proto)) = (fields.next(), fields.next(), fields.next()) else {
                        return Err(SdpError(format!("m= line {value:?}")));
                    };
                    // "port/count" counts ports; the first is what matters here.
                    let port = port.split('/').next().unwrap_or_default();
                    let port = port.parse().map_err(|_| SdpError(format!("port in m= line {value:?}")))?;
                    description.media.push(MediaDescription {
                        kind: media.to_owned(),
                        port,
                        proto: proto.to_owned(),
                        formats: fields.map(str::to_owned).collect(),
                        connection: None,
                        attributes: Vec::new(),
                    });
                }
                "c" => {
                    let address = value.split_whitespace().nth(2).and_then(|a| a.split('/').next()).unwrap_or_default();
                    let address = address.parse().map_err(|_| SdpError(format!("c= line {value:?}")))?;
                    match description.media.last_mut() {
                        Some(media) => media.connection = Some(address),
                        None => description.connection = Some(address),
                    }
                }
                "a" => {
                    if let Some(media) = description.media.last_mut() {
                        let (name, value) = match value.split_once(':') {
                            Some((name, value)) => (name, Some(value.to_owned())),
                            None => (value, None),
                        };
                        media.attributes.push((name.to_owned(), value));
                    }
                }
                _ => {}
            }
        }
        Ok(description)
    }
}

impl MediaDescription {
    /// The first value of attribute `name` (`Some("")` for a flag).
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_deref().unwrap_or(""))
    }

    /// The encoding name and clock rate of payload type `pt`: from `a=rtpmap`, else the static
    /// table of RFC 3551 for the types ringer knows.
    pub fn rtpmap(&self, pt: u8) -> Option<(String, u32)> {
        let mapped = self.attributes.iter().filter(|(n, _)| n.eq_ignore_ascii_case("rtpmap")).find_map(|(_, v)| {
            let (number, encoding) = v.as_deref()?.split_once(' ')?;
            (number.trim().parse::<u8>().ok()? == pt).then_some(encoding.trim())
        });
        match mapped {
            Some(encoding) => {
                let mut parts = encoding.split('/');
                let name = parts.next()?.to_owned();
                let rate = parts.next()?.parse().ok()?;
                Some((name, rate))
            }
            None => match pt {
                0 => Some(("PCMU".into(), 8000)),
                8 => Some(("PCMA".into(), 8000)),
                _ => None,
            },
        }
    }

    /// The `a=fmtp` parameters of payload type `pt`.
    pub fn fmtp(&self, pt: u8) -> Option<&str> {
        self.attributes.iter().filter(|(n, _)| n.eq_ignore_ascii_case("fmtp")).find_map(|(_, v)| {
            let (number, parameters) = v.as_deref()?.split_once(' ')?;
            (number.trim().parse::<u8>().ok()? == pt).then_some(parameters.trim())
        })
    }

    /// The offered RTP payload types with a known encoding: (payload type, name, clock rate).
    pub fn codecs(&self) -> Vec<(u8, String, u32)> {
        self.formats
            .iter()
            .filter_map(|format| format.parse::<u8>().ok())
            .filter_map(|pt| self.rtpmap(pt).map(|(name, rate)| (pt, name, rate)))
            .collect()
    }

    /// Plain RTP (RTP/AVP, RTP/AVPF), as desk phones and SIPp offer.
    pub fn is_plain_rtp(&self) -> bool {
        self.proto.eq_ignore_ascii_case("RTP/AVP") || self.proto.eq_ignore_ascii_case("RTP/AVPF")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_is_declined_in_order() {
        let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8\r\nm=video 51372 UDP/TLS/RTP/SAVPF 96\r\n";
        let answer = decline_all(offer, 7, "127.0.0.1").unwrap();
        assert!(answer.contains("m=audio 0 RTP/AVP 0\r\nm=video 0 UDP/TLS/RTP/SAVPF 96\r\n"), "{answer}");
        assert!(answer.starts_with("v=0\r\no=ringer 7 7 IN IP4 127.0.0.1\r\n"));
        assert_eq!(decline_all("v=0\r\n", 1, "127.0.0.1"), None);
        assert_eq!(decline_all("m=audio\r\n", 1, "127.0.0.1"), None);
    }

    #[test]
    fn the_audio_section_is_narrowed_to_the_chosen_formats() {
        let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n\
                     m=audio 9 UDP/TLS/RTP/SAVPF 111 9 0 8 101 102\r\na=rtpmap:111 opus/48000/2\r\n\
                     a=fmtp:111 minptime=10\r\na=rtcp-fb:111 transport-cc\r\na=rtcp-fb:* nack\r\n\
                     a=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n\
                     a=rtpmap:101 telephone-event/48000\r\na=fmtp:101 0-16\r\n\
                     a=rtpmap:102 telephone-event/8000\r\na=fmtp:102 0-16\r\na=sendrecv\r\n\
                     m=audio 9 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n";
        let narrowed = keep_audio_formats(offer, &[8, 102]);
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
        assert!(keep_audio_formats("m=audio 1 RTP/AVP 8 8 101\r\n", &[8]).starts_with("m=audio 1 RTP/AVP 8\r\n"));
    }

    #[test]
    fn offers_are_read_with_their_attributes_and_static_payload_types() {
        let offer = "v=0\r\no=a 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
                     m=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n\
                     m=video 51372/2 UDP/TLS/RTP/SAVPF 96\r\nc=IN IP4 198.51.100.7\r\na=rtcp-mux\r\n";
        let sdp = SessionDescription::parse(offer).unwrap();
        assert_eq!(sdp.connection, Some("192.0.2.1".parse().unwrap()));
        let audio = &sdp.media[0];
        assert!(audio.is_plain_rtp() && audio.port == 49170 && audio.formats == ["0", "8", "101"]);
        assert_eq!(audio.rtpmap(0), Some(("PCMU".into(), 8000)));
        assert_eq!(audio.rtpmap(101), Some(("telephone-event".into(), 8000)));
        assert_eq!(audio.attribute("sendrecv"), Some(""));
        let video = &sdp.media[1];
        assert!(!video.is_plain_rtp() && video.port == 51372 && video.attribute("rtcp-mux").is_some());
        assert_eq!(video.connection, Some("198.51.100.7".parse().unwrap()));
        for bad in ["m=audio\r\n", "m=audio x RTP/AVP 0\r\n", "c=IN IP4 nowhere\r\n"] {
            assert!(SessionDescription::parse(bad).is_err(), "{bad:?}");
        }
    }
}
