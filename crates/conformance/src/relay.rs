//! A UDP relay between the TAS and the harness's media peer, to see what the TAS sends before
//! DTLS: the offer names the relay's TAS side, the answer given to the peer names its peer
//! side, and every datagram is classified by its first byte (RFC 7983: STUN 0-3, DTLS 20-63,
//! RTP/RTCP 128-191) on the way through. The TAS may send media only once the harness's
//! ChangeCipherSpec has passed: in either DTLS role it cannot have finished the handshake
//! before that flight reached it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use sdp::{Candidate, Connection, Line, MediaDescription, SessionDescription};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the relay saw first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Firsts {
    /// The first RTP or RTCP packet from the TAS.
    pub tas_rtp: Option<Instant>,
    /// The first DTLS record from the peer to the TAS.
    pub peer_dtls: Option<Instant>,
    /// The first ChangeCipherSpec (or protected record) from the peer to the TAS.
    pub peer_change_cipher: Option<Instant>,
}

/// When media from the TAS came too early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyMedia {
    /// Before the peer's first DTLS record: the handshake had not begun.
    BeforeHandshake,
    /// During the handshake, before the peer's ChangeCipherSpec.
    DuringHandshake,
}

impl Firsts {
    /// Whether the TAS sent RTP or RTCP before it could have finished DTLS.
    pub fn early_media(&self) -> Option<EarlyMedia> {
        let rtp = self.tas_rtp?;
        if self.peer_dtls.is_none_or(|dtls| rtp < dtls) {
            Some(EarlyMedia::BeforeHandshake)
        } else if self.peer_change_cipher.is_none_or(|change| rtp < change) {
            Some(EarlyMedia::DuringHandshake)
        } else {
            None
        }
    }
}

/// Whether a DTLS datagram carries a ChangeCipherSpec record or a record already protected
/// (epoch above 0): a datagram holds one or more records of 13-byte headers (RFC 6347 §4.1).
pub fn changes_cipher(datagram: &[u8]) -> bool {
    let mut rest = datagram;
    while rest.len() >= 13 {
        let content_type = rest[0];
        let epoch = u16::from_be_bytes([rest[3], rest[4]]);
        if content_type == 20 || epoch > 0 {
            return true;
        }
        let length = usize::from(u16::from_be_bytes([rest[11], rest[12]]));
        rest = rest.get(13 + length..).unwrap_or_default();
    }
    false
}

/// A running relay; it stops when dropped.
pub struct MediaRelay {
    tas_side: SocketAddr,
    peer_side: SocketAddr,
    tas: Arc<Mutex<Option<SocketAddr>>>,
    firsts: Arc<Mutex<Firsts>>,
    tasks: [JoinHandle<()>; 2],
}

impl MediaRelay {
    /// A relay on `bind` towards the peer's socket `peer`.
    pub async fn start(bind: IpAddr, peer: SocketAddr) -> std::io::Result<MediaRelay> {
        let tas_socket = Arc::new(UdpSocket::bind(SocketAddr::new(bind, 0)).await?);
        let peer_socket = Arc::new(UdpSocket::bind(SocketAddr::new(bind, 0)).await?);
        let (tas_side, peer_side) = (tas_socket.local_addr()?, peer_socket.local_addr()?);
        let tas = Arc::new(Mutex::new(None::<SocketAddr>));
        let firsts = Arc::new(Mutex::new(Firsts::default()));
        // TAS → peer.
        let from_tas = {
            let (inbound, outbound, tas, firsts) =
                (tas_socket.clone(), peer_socket.clone(), tas.clone(), firsts.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 2048];
                while let Ok((length, from)) = inbound.recv_from(&mut buffer).await {
                    match buffer.first() {
                        // ICE checks and DTLS say where the TAS's media really is.
                        Some(0..=3 | 20..=63) => *tas.lock() = Some(from),
                        Some(128..=191) => {
                            firsts.lock().tas_rtp.get_or_insert_with(Instant::now);
                        }
                        _ => {}
                    }
                    let _ = outbound.send_to(&buffer[..length], peer).await;
                }
            })
        };
        // Peer → TAS.
        let from_peer = {
            let (inbound, outbound, tas, firsts) = (peer_socket, tas_socket, tas.clone(), firsts.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 2048];
                while let Ok((length, _)) = inbound.recv_from(&mut buffer).await {
                    let Some(target) = *tas.lock() else { continue };
                    if buffer.first().is_some_and(|b| (20..=63).contains(b)) {
                        let now = Instant::now();
                        let mut firsts = firsts.lock();
                        firsts.peer_dtls.get_or_insert(now);
                        if changes_cipher(&buffer[..length]) {
                            firsts.peer_change_cipher.get_or_insert(now);
                        }
                    }
                    let _ = outbound.send_to(&buffer[..length], target).await;
                }
            })
        };
        Ok(MediaRelay { tas_side, peer_side, tas, firsts, tasks: [from_tas, from_peer] })
    }

    /// Where the TAS is told to send (in the offer).
    pub fn tas_side(&self) -> SocketAddr {
        self.tas_side
    }

    /// Where the peer is told the TAS is (in the answer it is given).
    pub fn peer_side(&self) -> SocketAddr {
        self.peer_side
    }

    /// Sets the TAS's address from its answer (until its own packets tell).
    pub fn set_tas(&self, tas: SocketAddr) {
        self.tas.lock().get_or_insert(tas);
    }

    /// What was seen first.
    pub fn firsts(&self) -> Firsts {
        *self.firsts.lock()
    }
}

impl Drop for MediaRelay {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The first component-1 candidate of `sdp`.
pub fn first_candidate(sdp: &SessionDescription) -> Option<SocketAddr> {
    sdp.media
        .iter()
        .flat_map(MediaDescription::candidates)
        .filter(|candidate| candidate.component == 1)
        .find_map(|candidate| Some(SocketAddr::new(candidate.ip()?, candidate.port)))
}

/// `sdp` with its component-1 candidates reduced to one, every candidate at `address`, and
/// `c=` and the audio port pointing there too (trickle placeholders `0.0.0.0` and 9 are left
/// alone).
pub fn through(sdp: &SessionDescription, address: SocketAddr) -> SessionDescription {
    let mut relayed = sdp.clone();
    for connection in relayed.connections_mut() {
        if connection.ip().is_some_and(|ip| !ip.is_unspecified()) {
            *connection = Connection::to_ip(address.ip());
        }
    }
    let mut candidate_written = false;
    for media in &mut relayed.media {
        if media.kind == "audio" && media.port != 9 && media.port != 0 {
            media.port = address.port();
        }
        media.lines.retain_mut(|line| {
            let Line::Attribute(attribute) = line else { return true };
            if !attribute.is("candidate") {
                return true;
            }
            let Some(Ok(mut candidate)) = attribute.value.as_deref().map(Candidate::parse) else { return true };
            if candidate.component == 1 && candidate_written {
                return false;
            }
            candidate_written |= candidate.component == 1;
            candidate.address = address.ip().to_string();
            candidate.port = address.port();
            attribute.value = Some(candidate.to_string());
            true
        });
    }
    relayed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A DTLS record header and body: `content_type`, DTLS 1.2, `epoch`.
    fn record(content_type: u8, epoch: u16, body: &[u8]) -> Vec<u8> {
        let mut record = vec![content_type, 0xfe, 0xfd];
        record.extend_from_slice(&epoch.to_be_bytes());
        record.extend_from_slice(&[0, 0, 0, 0, 0, 1]);
        record.extend_from_slice(&(body.len() as u16).to_be_bytes());
        record.extend_from_slice(body);
        record
    }

    #[test]
    fn change_cipher_spec_is_found_among_the_records_of_a_flight() {
        let handshake = record(22, 0, &[1; 40]);
        assert!(!changes_cipher(&handshake));
        let mut flight = handshake.clone();
        flight.extend(record(20, 0, &[1]));
        flight.extend(record(22, 1, &[9; 48]));
        assert!(changes_cipher(&flight));
        assert!(changes_cipher(&record(23, 1, &[0; 20])), "protected data");
        assert!(!changes_cipher(&handshake[..20]), "a truncated record is not read past");
        assert!(!changes_cipher(&[]));
    }

    /// Datagrams through a real relay: a TAS sending RTP after the peer's first handshake
    /// flight but before its ChangeCipherSpec is caught; RTP after it is not.
    #[tokio::test]
    async fn rtp_in_the_middle_of_the_handshake_is_caught() {
        let localhost = std::net::IpAddr::from([127, 0, 0, 1]);
        let peer = UdpSocket::bind((localhost, 0)).await.unwrap();
        let tas = UdpSocket::bind((localhost, 0)).await.unwrap();
        let relay = MediaRelay::start(localhost, peer.local_addr().unwrap()).await.unwrap();
        let mut buffer = [0u8; 2048];
        let rtp = [0x80u8, 8, 0, 1, 0, 0, 0, 160, 1, 2, 3, 4, 0xd5, 0xd5];
        // The TAS's ClientHello tells the relay where it is; the peer answers its flight.
        tas.send_to(&record(22, 0, &[1; 60]), relay.tas_side()).await.unwrap();
        peer.recv_from(&mut buffer).await.unwrap();
        peer.send_to(&record(22, 0, &[2; 80]), relay.peer_side()).await.unwrap();
        tas.recv_from(&mut buffer).await.unwrap();
        tas.send_to(&rtp, relay.tas_side()).await.unwrap();
        peer.recv_from(&mut buffer).await.unwrap();
        assert_eq!(relay.firsts().early_media(), Some(EarlyMedia::DuringHandshake));

        let relay = MediaRelay::start(localhost, peer.local_addr().unwrap()).await.unwrap();
        tas.send_to(&record(22, 0, &[1; 60]), relay.tas_side()).await.unwrap();
        peer.recv_from(&mut buffer).await.unwrap();
        let mut last_flight = record(20, 0, &[1]);
        last_flight.extend(record(22, 1, &[3; 48]));
        peer.send_to(&last_flight, relay.peer_side()).await.unwrap();
        tas.recv_from(&mut buffer).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        tas.send_to(&rtp, relay.tas_side()).await.unwrap();
        peer.recv_from(&mut buffer).await.unwrap();
        assert_eq!(relay.firsts().early_media(), None);
    }

    #[test]
    fn rtp_before_any_dtls_is_caught() {
        let now = Instant::now();
        let firsts = Firsts { tas_rtp: Some(now), peer_dtls: None, peer_change_cipher: None };
        assert_eq!(firsts.early_media(), Some(EarlyMedia::BeforeHandshake));
        assert_eq!(Firsts::default().early_media(), None, "no RTP at all is not early");
    }

    #[test]
    fn candidates_are_pointed_through_the_relay() {
        let sdp = SessionDescription::parse(
            "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 8\r\n\
            a=candidate:1 1 udp 2130706431 192.0.2.1 4000 typ host\r\na=candidate:1 2 udp 2130706431 192.0.2.1 4000 typ host\r\n\
            a=candidate:2 1 udp 2130706431 198.51.100.1 5000 typ host\r\n",
        )
        .unwrap();
        assert_eq!(first_candidate(&sdp), Some("192.0.2.1:4000".parse().unwrap()));
        let relayed = through(&sdp, "127.0.0.1:7000".parse().unwrap()).to_string();
        assert!(relayed.contains("c=IN IP4 127.0.0.1\r\nm=audio 7000 "), "{relayed}");
        assert!(relayed.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7000 typ host\r\n"), "{relayed}");
        assert!(!relayed.contains("198.51.100.1"), "one candidate only: {relayed}");
        assert!(relayed.contains("a=candidate:1 2 udp 2130706431 127.0.0.1 7000 typ host\r\n"), "{relayed}");
        let placeholders = SessionDescription::parse("c=IN IP4 0.0.0.0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 8\r\n").unwrap();
        assert_eq!(through(&placeholders, "127.0.0.1:7000".parse().unwrap()), placeholders);
    }
}
