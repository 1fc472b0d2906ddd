//! HEP v3 mirroring (the Homer Encapsulation Protocol, as Homer, heplify-server and sngrep
//! receive it): a copy of every SIP message sent and received, with its addresses, transport
//! and time, in one UDP datagram to a capture server. Best effort, never in the way of the
//! call: a datagram the socket cannot take at once is dropped and counted
//! (`ringer_hep_dropped_total`).

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::{SystemTime, UNIX_EPOCH};

/// HEP's chunk types (vendor 0, "generic"), of those ringer sends.
mod chunk {
    pub(super) const IP_FAMILY: u16 = 0x0001;
    pub(super) const IP_PROTOCOL: u16 = 0x0002;
    pub(super) const IPV4_SOURCE: u16 = 0x0003;
    pub(super) const IPV4_DESTINATION: u16 = 0x0004;
    pub(super) const IPV6_SOURCE: u16 = 0x0005;
    pub(super) const IPV6_DESTINATION: u16 = 0x0006;
    pub(super) const SOURCE_PORT: u16 = 0x0007;
    pub(super) const DESTINATION_PORT: u16 = 0x0008;
    pub(super) const SECONDS: u16 = 0x0009;
    pub(super) const MICROSECONDS: u16 = 0x000a;
    pub(super) const PROTOCOL_TYPE: u16 = 0x000b;
    pub(super) const AGENT_ID: u16 = 0x000c;
    pub(super) const AUTH_KEY: u16 = 0x000e;
    pub(super) const PAYLOAD: u16 = 0x000f;
    pub(super) const CORRELATION_ID: u16 = 0x0011;
}

/// HEP's protocol type for SIP.
const PROTOCOL_SIP: u8 = 1;
/// The largest UDP payload; bigger messages are not mirrored.
const MAX_DATAGRAM: usize = 65_507;

/// Where copies go and how they are marked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HepSettings {
    /// The capture server (Homer's heplify-server listens on 9060).
    pub server: SocketAddr,
    /// This node's capture agent id, to tell the nodes apart in Homer.
    pub agent_id: u32,
    /// The capture server's password, sent in each datagram when set.
    pub password: Option<String>,
}

/// Sends the copies.
#[derive(Debug)]
pub struct HepMirror {
    socket: UdpSocket,
    settings: HepSettings,
}

impl HepMirror {
    /// A mirror sending from an ephemeral port of the capture server's family.
    pub fn new(settings: HepSettings) -> std::io::Result<Self> {
        let bind: SocketAddr = match settings.server {
            SocketAddr::V4(_) => (IpAddr::from([0, 0, 0, 0]), 0).into(),
            SocketAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
        };
        let socket = UdpSocket::bind(bind)?;
        socket.set_nonblocking(true)?;
        Ok(Self { socket, settings })
    }

    /// Mirrors `message`, which went from `source` to `destination` over IP protocol
    /// `ip_protocol` (17 UDP, 6 TCP).
    pub(crate) fn mirror(&self, ip_protocol: u8, source: SocketAddr, destination: SocketAddr, message: &[u8]) {
        // Keep-alives (CRLF) are not SIP messages.
        if message.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let packet =
            encode(&Captured { ip_protocol, source, destination, time: SystemTime::now(), message }, &self.settings);
        if packet.len() > MAX_DATAGRAM || self.socket.send_to(&packet, self.settings.server).is_err() {
            metrics::counter!("ringer_hep_dropped_total").increment(1);
        }
    }
}

/// One message as captured.
pub(crate) struct Captured<'a> {
    /// 17 (UDP) or 6 (TCP, TLS).
    pub(crate) ip_protocol: u8,
    pub(crate) source: SocketAddr,
    pub(crate) destination: SocketAddr,
    pub(crate) time: SystemTime,
    pub(crate) message: &'a [u8],
}

/// The HEP v3 datagram for `captured`.
pub(crate) fn encode(captured: &Captured<'_>, settings: &HepSettings) -> Vec<u8> {
    let mut out = Vec::with_capacity(captured.message.len() + 128);
    out.extend_from_slice(b"HEP3");
    out.extend_from_slice(&[0, 0]);
    let mut put = |kind: u16, value: &[u8]| {
        // The caller keeps every chunk under 64 KiB (the message is checked against MAX_DATAGRAM).
        let length = u16::try_from(value.len() + 6).unwrap_or(u16::MAX);
        out.extend_from_slice(&0u16.to_be_bytes());
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(value);
    };
    // Both addresses in one family: an IPv4 peer of an IPv6 socket shows as IPv4-mapped.
    match (captured.source.ip(), captured.destination.ip()) {
        (IpAddr::V4(source), IpAddr::V4(destination)) => {
            put(chunk::IP_FAMILY, &[2]);
            put(chunk::IPV4_SOURCE, &source.octets());
            put(chunk::IPV4_DESTINATION, &destination.octets());
        }
        (source, destination) => {
            let v6 = |ip: IpAddr| match ip {
                IpAddr::V4(ip) => ip.to_ipv6_mapped(),
                IpAddr::V6(ip) => ip,
            };
            put(chunk::IP_FAMILY, &[10]);
            put(chunk::IPV6_SOURCE, &v6(source).octets());
            put(chunk::IPV6_DESTINATION, &v6(destination).octets());
        }
    }
    put(chunk::IP_PROTOCOL, &[captured.ip_protocol]);
    put(chunk::SOURCE_PORT, &captured.source.port().to_be_bytes());
    put(chunk::DESTINATION_PORT, &captured.destination.port().to_be_bytes());
    let since = captured.time.duration_since(UNIX_EPOCH).unwrap_or_default();
    put(chunk::SECONDS, &u32::try_from(since.as_secs()).unwrap_or(u32::MAX).to_be_bytes());
    put(chunk::MICROSECONDS, &since.subsec_micros().to_be_bytes());
    put(chunk::PROTOCOL_TYPE, &[PROTOCOL_SIP]);
    put(chunk::AGENT_ID, &settings.agent_id.to_be_bytes());
    if let Some(password) = &settings.password {
        put(chunk::AUTH_KEY, password.as_bytes());
    }
    if let Some(call_id) = call_id(captured.message) {
        put(chunk::CORRELATION_ID, call_id);
    }
    put(chunk::PAYLOAD, captured.message);
    let total = u16::try_from(out.len()).unwrap_or(u16::MAX).to_be_bytes();
    out[4..6].copy_from_slice(&total);
    out
}

/// The Call-ID of a message (long or compact form), as Homer correlates by it.
fn call_id(message: &[u8]) -> Option<&[u8]> {
    let end = message.windows(4).position(|window| window == b"\r\n\r\n").unwrap_or(message.len());
    message[..end].split(|byte| *byte == b'\n').find_map(|line| {
        let (name, value) = line.split_at(line.iter().position(|byte| *byte == b':')?);
        let name = name.trim_ascii();
        (name.eq_ignore_ascii_case(b"call-id") || name.eq_ignore_ascii_case(b"i")).then(|| value[1..].trim_ascii())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(packet: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut chunks = Vec::new();
        let mut at = 6;
        while at < packet.len() {
            let kind = u16::from_be_bytes([packet[at + 2], packet[at + 3]]);
            let length = usize::from(u16::from_be_bytes([packet[at + 4], packet[at + 5]]));
            chunks.push((kind, packet[at + 6..at + length].to_vec()));
            at += length;
        }
        chunks
    }

    #[test]
    fn a_message_is_framed_with_its_addresses_time_and_call_id() {
        let message = b"BYE sip:a@b SIP/2.0\r\ni: abc@host\r\nContent-Length: 0\r\n\r\n";
        let settings =
            HepSettings { server: "127.0.0.1:9060".parse().unwrap(), agent_id: 7, password: Some("pw".into()) };
        let captured = Captured {
            ip_protocol: 6,
            source: "192.0.2.1:5061".parse().unwrap(),
            destination: "[2001:db8::2]:40000".parse().unwrap(),
            time: UNIX_EPOCH + std::time::Duration::from_micros(1_700_000_000_123_456),
            message,
        };
        let packet = encode(&captured, &settings);
        assert_eq!(&packet[..4], b"HEP3");
        assert_eq!(usize::from(u16::from_be_bytes([packet[4], packet[5]])), packet.len());
        let chunks = chunks(&packet);
        let get = |kind: u16| chunks.iter().find(|(k, _)| *k == kind).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get(chunk::IP_FAMILY), [10], "mixed families go as IPv6");
        assert_eq!(get(chunk::IPV6_SOURCE), "::ffff:192.0.2.1".parse::<std::net::Ipv6Addr>().unwrap().octets());
        assert_eq!(get(chunk::IP_PROTOCOL), [6]);
        assert_eq!(get(chunk::SOURCE_PORT), 5061u16.to_be_bytes());
        assert_eq!(get(chunk::DESTINATION_PORT), 40000u16.to_be_bytes());
        assert_eq!(get(chunk::SECONDS), 1_700_000_000u32.to_be_bytes());
        assert_eq!(get(chunk::MICROSECONDS), 123_456u32.to_be_bytes());
        assert_eq!(get(chunk::AGENT_ID), 7u32.to_be_bytes());
        assert_eq!(get(chunk::AUTH_KEY), b"pw");
        assert_eq!(get(chunk::CORRELATION_ID), b"abc@host");
        assert_eq!(chunks.last().unwrap(), &(chunk::PAYLOAD, message.to_vec()), "the payload last, byte for byte");
    }
}
