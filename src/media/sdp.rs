//! SDP (RFC 4566) answers built from offers (RFC 3264).

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
}
