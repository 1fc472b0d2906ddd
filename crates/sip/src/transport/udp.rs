//! The UDP listener: one datagram, one message (RFC 3261 §18.3); responses leave from the same
//! socket to the datagram's source, as with rport (RFC 3581), so they cross NATs.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::policy::PeerPolicy;
use super::{refusal, Handler, Link};
use crate::message::parse_datagram;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Socket buffer asked for: bursts of thousands of calls a second overflow the kernel's
/// default (about 200 KiB) and every datagram dropped there costs a retransmission 500 ms
/// later. The kernel caps it at `net.core.rmem_max` / `wmem_max`.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;

/// A UDP socket bound to `addr` with large socket buffers.
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if let Err(error) = socket.set_recv_buffer_size(SOCKET_BUFFER) {
        debug!(%error, "UDP receive buffer left at the default");
    }
    if let Err(error) = socket.set_send_buffer_size(SOCKET_BUFFER) {
        debug!(%error, "UDP send buffer left at the default");
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// Reads datagrams until shut down.
pub async fn serve(
    socket: Arc<UdpSocket>,
    handler: Arc<dyn Handler>,
    policy: Arc<PeerPolicy>,
    shutdown: CancellationToken,
    mirror: Option<Arc<super::hep::HepMirror>>,
) {
    let local = match socket.local_addr() {
        Ok(local) => local,
        Err(error) => {
            warn!(%error, "UDP socket has no local address");
            return;
        }
    };
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let received = tokio::select! {
            received = socket.recv_from(&mut buffer) => received,
            () = shutdown.cancelled() => return,
        };
        let (length, peer) = match received {
            Ok(pair) => pair,
            // ICMP port unreachable from an earlier send surfaces here on Linux; keep serving.
            Err(error) => {
                debug!(%error, "UDP receive error");
                continue;
            }
        };
        if !policy.allows(peer.ip()) {
            debug!(%peer, "datagram from a peer outside the allowed networks dropped");
            continue;
        }
        let datagram = &buffer[..length];
        // Keep-alives (CRLF) and stray bytes below a start line are dropped silently.
        if datagram.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let link = Link::datagram(socket.clone(), local, peer).mirrored(mirror.as_ref());
        link.mirror_received(datagram);
        match parse_datagram(datagram) {
            Ok(message) => handler.on_message(message, &link),
            Err(error) => {
                info!(%peer, %error, "malformed datagram");
                crate::metrics::malformed();
                if let Some(response) = refusal(&error) {
                    crate::metrics::sent_response(response.status);
                    let _ = link.send(Bytes::from(response.to_bytes()));
                }
            }
        }
    }
}
