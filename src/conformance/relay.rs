//! A UDP relay between the TAS and the harness's media peer, to see what the TAS sends before
//! DTLS: the offer names the relay's TAS side, the answer given to the peer names its peer
//! side, and every datagram is classified by its first byte (RFC 7983: STUN 0-3, DTLS 20-63,
//! RTP/RTCP 128-191) on the way through.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// What the relay saw first.
#[derive(Debug, Default, Clone, Copy)]
pub struct Firsts {
    /// The first RTP or RTCP packet from the TAS.
    pub tas_rtp: Option<Instant>,
    /// The first DTLS record from the peer to the TAS.
    pub peer_dtls: Option<Instant>,
}

/// A running relay; it stops when dropped.
pub struct MediaRelay {
    tas_side: SocketAddr,
    peer_side: SocketAddr,
    tas: Arc<Mutex<Option<SocketAddr>>>,
    firsts: Arc<Mutex<Firsts>>,
    tasks: [JoinHandle<()>; 2],
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
                        Some(0..=3 | 20..=63) => *lock(&tas) = Some(from),
                        Some(128..=191) => {
                            lock(&firsts).tas_rtp.get_or_insert_with(Instant::now);
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
                    let Some(target) = *lock(&tas) else { continue };
                    if buffer.first().is_some_and(|b| (20..=63).contains(b)) {
                        lock(&firsts).peer_dtls.get_or_insert_with(Instant::now);
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
        lock(&self.tas).get_or_insert(tas);
    }

    /// What was seen first.
    pub fn firsts(&self) -> Firsts {
        *lock(&self.firsts)
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
pub fn first_candidate(sdp: &str) -> Option<SocketAddr> {
    sdp.lines().find_map(|line| {
        let fields: Vec<&str> = line.trim_end().strip_prefix("a=candidate:")?.split_whitespace().collect();
        if fields.get(1) != Some(&"1") {
            return None;
        }
        Some(SocketAddr::new(fields.get(4)?.parse().ok()?, fields.get(5)?.parse().ok()?))
    })
}

/// `sdp` with its candidates reduced to one, at `address`, and `c=` and the `m=` port
/// pointing there too (trickle placeholders `0.0.0.0` and 9 are left alone).
pub fn through(sdp: &str, address: SocketAddr) -> String {
    let mut out = String::with_capacity(sdp.len());
    let mut candidate_written = false;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(rest) = line.strip_prefix("a=candidate:") {
            let mut fields: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
            let component = fields.get(1).cloned().unwrap_or_default();
            if candidate_written && component == "1" {
                continue;
            }
            if fields.len() > 5 {
                fields[4] = address.ip().to_string();
                fields[5] = address.port().to_string();
            }
            candidate_written |= component == "1";
            out.push_str("a=candidate:");
            out.push_str(&fields.join(" "));
        } else if line.starts_with("c=IN IP4 ") && !line.ends_with(" 0.0.0.0") {
            out.push_str(&format!("c=IN IP4 {}", address.ip()));
        } else if let Some(media) = line.strip_prefix("m=audio ") {
            let mut fields: Vec<&str> = media.split(' ').collect();
            let port = address.port().to_string();
            if fields.first().is_some_and(|p| *p != "9" && *p != "0") {
                fields[0] = &port;
            }
            out.push_str("m=audio ");
            out.push_str(&fields.join(" "));
        } else {
            out.push_str(line);
        }
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_are_pointed_through_the_relay() {
        let sdp = "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000 UDP/TLS/RTP/SAVPF 8\r\n\
            a=candidate:1 1 udp 2130706431 192.0.2.1 4000 typ host\r\na=candidate:1 2 udp 2130706431 192.0.2.1 4000 typ host\r\n\
            a=candidate:2 1 udp 2130706431 198.51.100.1 5000 typ host\r\n";
        assert_eq!(first_candidate(sdp), Some("192.0.2.1:4000".parse().unwrap()));
        let relayed = through(sdp, "127.0.0.1:7000".parse().unwrap());
        assert!(relayed.contains("c=IN IP4 127.0.0.1\r\nm=audio 7000 "), "{relayed}");
        assert!(relayed.contains("a=candidate:1 1 udp 2130706431 127.0.0.1 7000 typ host\r\n"), "{relayed}");
        assert!(!relayed.contains("198.51.100.1"), "one candidate only: {relayed}");
    }
}
