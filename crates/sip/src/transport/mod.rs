//! SIP transports: UDP, TCP and TLS listeners, stream framing, connection limits and peer
//! policy. Parsed messages go up to a [`Handler`] with the [`Link`] to answer on; this module
//! knows nothing of transactions.

pub mod hep;
pub mod policy;
pub mod stream;
pub mod udp;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use super::message::{Headers, Message, ParseError, Response, StatusCode};

/// A SIP transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, retransmissions by the transaction layer.
    Udp,
    /// TCP.
    Tcp,
    /// TLS over TCP.
    Tls,
}

impl Transport {
    /// Reliable transports need no retransmissions (RFC 3261 §17).
    pub fn is_reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The IP protocol under it (17 UDP, 6 TCP), as captures record it.
    fn ip_protocol(self) -> u8 {
        match self {
            Transport::Udp => 17,
            Transport::Tcp | Transport::Tls => 6,
        }
    }

    /// The Via transport token.
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.via_name())
    }
}

/// Why bytes could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection is gone.
    #[error("connection closed")]
    Closed,
    /// The peer does not read fast enough; the connection is being closed.
    #[error("peer not reading: over {MAX_QUEUED_BYTES} bytes queued")]
    Full,
    /// The socket refused the datagram.
    #[error("send failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The way back to a peer: a UDP socket and address, or an open stream connection.
#[derive(Clone)]
pub struct Link {
    transport: Transport,
    local: SocketAddr,
    peer: SocketAddr,
    path: Path,
    /// Where copies of what crosses the link go (HEP), when anywhere, and our address as the
    /// copies show it (the connection's own, where `local` is a listener's wildcard).
    mirror: Option<(Arc<hep::HepMirror>, SocketAddr)>,
}

#[derive(Clone)]
enum Path {
    Datagram(Arc<UdpSocket>),
    Stream { queue: SendQueue },
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", self.transport, self.local, self.peer)
    }
}

impl Link {
    pub(crate) fn datagram(socket: Arc<UdpSocket>, local: SocketAddr, peer: SocketAddr) -> Self {
        Self { transport: Transport::Udp, local, peer, path: Path::Datagram(socket), mirror: None }
    }

    pub(crate) fn stream(transport: Transport, local: SocketAddr, peer: SocketAddr, queue: SendQueue) -> Self {
        Self { transport, local, peer, path: Path::Stream { queue }, mirror: None }
    }

    /// The link, with a copy of each message sent or received over it going to `mirror`.
    pub(crate) fn mirrored(self, mirror: Option<&Arc<hep::HepMirror>>) -> Self {
        let local = self.local;
        self.mirrored_as(mirror, local)
    }

    /// As [`Link::mirrored`], the copies showing our address as `seen_local`.
    pub(crate) fn mirrored_as(mut self, mirror: Option<&Arc<hep::HepMirror>>, seen_local: SocketAddr) -> Self {
        self.mirror = mirror.map(|mirror| (mirror.clone(), seen_local));
        self
    }

    /// Mirrors a message received over the link.
    pub(crate) fn mirror_received(&self, message: &[u8]) {
        if let Some((mirror, local)) = &self.mirror {
            mirror.mirror(self.transport.ip_protocol(), self.peer, *local, message);
        }
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// The peer's address (the packet's source: responses go back there, as with rport).
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Our address on this link.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// Whether the link can still carry bytes.
    pub fn is_open(&self) -> bool {
        match &self.path {
            Path::Datagram(_) => true,
            Path::Stream { queue, .. } => !queue.sender.is_closed(),
        }
    }

    /// Whether both are the same stream connection (never for datagram links, which have none).
    pub(crate) fn same_connection(&self, other: &Link) -> bool {
        match (&self.path, &other.path) {
            (Path::Stream { queue: ours }, Path::Stream { queue: theirs }) => ours.sender.same_channel(&theirs.sender),
            _ => false,
        }
    }

    /// Completes when a stream's connection has closed; never for a datagram link.
    pub async fn closed(&self) {
        match &self.path {
            Path::Stream { queue, .. } => queue.sender.closed().await,
            Path::Datagram(_) => std::future::pending().await,
        }
    }

    /// Whether the peer of a stream has stopped reading what we send.
    pub(crate) fn is_congested(&self) -> bool {
        match &self.path {
            Path::Stream { queue, .. } => queue.is_over_limit(),
            Path::Datagram(_) => false,
        }
    }

    /// Sends bytes without waiting: a datagram, or a place in the connection's send queue.
    pub fn send(&self, bytes: Bytes) -> Result<(), SendError> {
        let mirrored = self.mirror.as_ref().map(|(mirror, local)| (mirror.clone(), *local, bytes.clone()));
        let sent = self.send_unmirrored(bytes);
        // Only what left (or was queued to leave) is shown as sent.
        if let (Ok(()), Some((mirror, local, bytes))) = (&sent, mirrored) {
            mirror.mirror(self.transport.ip_protocol(), local, self.peer, &bytes);
        }
        sent
    }

    fn send_unmirrored(&self, bytes: Bytes) -> Result<(), SendError> {
        match &self.path {
            Path::Datagram(socket) => match socket.try_send_to(&bytes, self.peer) {
                Ok(_) => Ok(()),
                // Not known writable yet (or the buffer is full): send when it is.
                Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                    let (socket, peer) = (socket.clone(), self.peer);
                    tokio::spawn(async move {
                        let _ = socket.send_to(&bytes, peer).await;
                    });
                    Ok(())
                }
                Err(error) => Err(SendError::Io(error)),
            },
            Path::Stream { queue, .. } => queue.push(bytes),
        }
    }
}

/// Bytes queued to one connection before its peer counts as not reading; the connection is
/// then closed. Bursts far below this are normal: one read can carry hundreds of requests.
pub const MAX_QUEUED_BYTES: usize = 8 * 1024 * 1024;

/// A stream connection's send queue, bounded by bytes, never dropping what it accepted.
#[derive(Clone)]
pub(crate) struct SendQueue {
    sender: mpsc::UnboundedSender<Bytes>,
    queued: Arc<AtomicUsize>,
}

/// The writer's end of a [`SendQueue`].
pub(crate) struct QueueReceiver {
    receiver: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
}

pub(crate) fn send_queue() -> (SendQueue, QueueReceiver) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (SendQueue { sender, queued: queued.clone() }, QueueReceiver { receiver, queued })
}

impl SendQueue {
    fn push(&self, bytes: Bytes) -> Result<(), SendError> {
        let length = bytes.len();
        if self.queued.fetch_add(length, Ordering::AcqRel) + length > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(length, Ordering::AcqRel);
            return Err(SendError::Full);
        }
        self.sender.send(bytes).map_err(|_| {
            self.queued.fetch_sub(length, Ordering::AcqRel);
            SendError::Closed
        })
    }

    /// Whether the peer has stopped reading.
    pub(crate) fn is_over_limit(&self) -> bool {
        self.queued.load(Ordering::Acquire) >= MAX_QUEUED_BYTES
    }
}

impl QueueReceiver {
    pub(crate) async fn recv(&mut self) -> Option<Bytes> {
        let bytes = self.receiver.recv().await?;
        self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
        Some(bytes)
    }

    pub(crate) fn try_recv(&mut self) -> Option<Bytes> {
        let bytes = self.receiver.try_recv().ok()?;
        self.queued.fetch_sub(bytes.len(), Ordering::AcqRel);
        Some(bytes)
    }

    pub(crate) fn close(&mut self) {
        self.receiver.close();
    }
}

/// What the layer above does with what arrives.
pub trait Handler: Send + Sync + 'static {
    /// A well-framed, parsed message from `link`.
    fn on_message(&self, message: Message, link: &Link);
}

/// The response to a request that could not be parsed, when its headers can address one. An
/// ACK is never answered (RFC 3261 §17.1.1.3), however malformed.
pub fn refusal(error: &ParseError) -> Option<Response> {
    if !error.is_request {
        return None;
    }
    let headers = error.headers.as_ref()?;
    // Read loosely, not as a typed CSeq: a request refused for a malformed CSeq may still be
    // an ACK, and an ACK is never answered.
    let method = headers.get("CSeq").and_then(|cseq| cseq.split_whitespace().nth(1));
    if method.is_some_and(|method| method.eq_ignore_ascii_case("ACK")) {
        return None;
    }
    response_to(headers, error.status, &error.reason)
}

/// A response to a request with these headers: Via, From, To, Call-ID and CSeq copied
/// (RFC 3261 §8.2.6), as far as present. `None` without a Via, which is where it would go.
pub fn response_to(request: &Headers, status: StatusCode, reason: &str) -> Option<Response> {
    let mut headers = Headers::new();
    if headers.copy_from(request, "Via") == 0 {
        return None;
    }
    for name in ["From", "To", "Call-ID", "CSeq"] {
        if let Some(line) = request.first_line(name) {
            headers.push_line(line.clone());
        }
    }
    Some(Response { status, reason: reason.to_owned(), headers, body: Bytes::new() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_ack_gets_no_answer_but_a_malformed_invite_does() {
        let message = |method: &str| {
            format!(
                "{method}  SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n\
                 To: <sip:c@d>\r\nCall-ID: x\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
        };
        let error = |method: &str| {
            crate::message::parse_message(message(method).as_bytes()).expect_err("an empty Request-URI is malformed")
        };
        assert!(refusal(&error("ACK")).is_none());
        assert_eq!(refusal(&error("INVITE")).map(|response| response.status), Some(StatusCode::BAD_REQUEST));
    }
}
