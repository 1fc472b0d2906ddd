//! TCP and TLS connections: one task per connection reading framed messages (RFC 3261 §18.3),
//! answering CRLF keep-alives, and a writer task fed by the connection's send queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::policy::{ConnectionCounter, ConnectionSlot, PeerPolicy};
use super::{refusal, send_queue, Handler, Link, QueueReceiver, Transport};
use crate::message::{frame_stream, parse_message, Framing};

/// Timers of stream connections.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// A message begun but not finished within this is a stall: the connection is closed.
    pub message_timeout: Duration,
    /// A connection with nothing to read for this long is closed.
    pub idle_timeout: Duration,
    /// Time allowed for the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            message_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(15 * 60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What every connection of one listener shares.
#[derive(Clone)]
pub struct StreamContext {
    /// Where messages go.
    pub handler: Arc<dyn Handler>,
    /// Who may connect.
    pub policy: Arc<PeerPolicy>,
    /// Open connections.
    pub counter: Arc<ConnectionCounter>,
    /// Timers.
    pub limits: StreamLimits,
    /// Stops the listener and its connections.
    pub shutdown: CancellationToken,
    /// Where copies of the messages go (HEP), when anywhere.
    pub mirror: Option<Arc<super::hep::HepMirror>>,
}

/// Read buffer of a connection with nothing pending.
const IDLE_BUFFER: usize = 512;
/// Read buffer while messages are arriving.
const BUSY_BUFFER: usize = 16 * 1024;
/// Queued messages written together up to about this size (a TLS record holds 16 KiB).
const WRITE_BATCH: usize = 16 * 1024;

/// Accepts TCP connections (and, with `tls`, runs the TLS handshake) until shut down.
pub async fn serve(listener: TcpListener, tls: Option<TlsAcceptor>, context: StreamContext) {
    let transport = if tls.is_some() { Transport::Tls } else { Transport::Tcp };
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(error) => {
            warn!(%error, "listener has no local address");
            return;
        }
    };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = context.shutdown.cancelled() => return,
        };
        let (socket, peer) = match accepted {
            Ok(pair) => pair,
            Err(error) => {
                // Out of descriptors and the like: back off briefly instead of spinning.
                warn!(%error, %transport, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Refused peers are closed before any byte is read.
        let slot = match context.counter.admit(peer.ip(), &context.policy) {
            Ok(slot) => slot,
            Err(reason) => {
                warn!(%peer, %transport, %reason, "connection refused");
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        // The listener's address may be a wildcard; the connection's is the one used.
        let addresses = (local, socket.local_addr().unwrap_or(local));
        let context = context.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => run(socket, Transport::Tcp, addresses, peer, context, slot).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(context.limits.handshake_timeout, acceptor.accept(socket));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            crate::metrics::tls_handshake("in", "ok");
                            run(stream, Transport::Tls, addresses, peer, context, slot).await
                        }
                        Ok(Err(error)) => {
                            crate::metrics::tls_handshake("in", tls::verify::failure_reason(&error));
                            warn!(%peer, %error, "TLS handshake failed")
                        }
                        Err(_) => {
                            crate::metrics::tls_handshake("in", "timeout");
                            warn!(%peer, "TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
}

/// Runs an outgoing or accepted stream as a SIP connection; returns its link once set up.
pub fn spawn_connection<S>(
    stream: S,
    transport: Transport,
    local: SocketAddr,
    peer: SocketAddr,
    context: StreamContext,
) -> Link
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (link, queue) = new_link(transport, (local, local), peer, &context);
    tokio::spawn(connection_loop(stream, link.clone(), queue, context, None));
    link
}

fn new_link(
    transport: Transport,
    (local, seen_local): (SocketAddr, SocketAddr),
    peer: SocketAddr,
    context: &StreamContext,
) -> (Link, QueueReceiver) {
    let (sender, queue) = send_queue();
    (Link::stream(transport, local, peer, sender).mirrored_as(context.mirror.as_ref(), seen_local), queue)
}

/// `addresses`: the listener's (a wildcard, perhaps) and the connection's own.
async fn run<S>(
    stream: S,
    transport: Transport,
    addresses: (SocketAddr, SocketAddr),
    peer: SocketAddr,
    context: StreamContext,
    slot: ConnectionSlot,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (link, queue) = new_link(transport, addresses, peer, &context);
    connection_loop(stream, link, queue, context, Some(slot)).await;
}

async fn connection_loop<S>(
    stream: S,
    link: Link,
    queue: QueueReceiver,
    context: StreamContext,
    _slot: Option<ConnectionSlot>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = link.peer();
    let _open = crate::metrics::OpenConnection::new(link.transport());
    debug!(%peer, transport = %link.transport(), "connection open");
    let (mut reader, writer) = tokio::io::split(stream);
    let closing = CancellationToken::new();
    let writer = tokio::spawn(write_loop(writer, queue, closing.clone()));
    let reason = read_loop(&mut reader, &link, &context).await;
    debug!(%peer, reason, "connection closing");
    // The writer sends what is queued (such as a final 400), then closes the socket.
    closing.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut queue: QueueReceiver, closing: CancellationToken) {
    loop {
        let bytes = tokio::select! {
            bytes = queue.recv() => bytes,
            () = closing.cancelled() => {
                queue.close();
                queue.recv().await
            }
        };
        let Some(bytes) = bytes else { break };
        // What else is queued leaves in the same write: one TLS record and one system call for
        // a burst instead of one per message.
        let batch = match queue.try_recv() {
            None => bytes,
            Some(more) => {
                let mut batch = BytesMut::with_capacity(bytes.len() + more.len());
                batch.extend_from_slice(&bytes);
                batch.extend_from_slice(&more);
                while batch.len() < WRITE_BATCH {
                    let Some(more) = queue.try_recv() else { break };
                    batch.extend_from_slice(&more);
                }
                batch.freeze()
            }
        };
        if writer.write_all(&batch).await.is_err() || writer.flush().await.is_err() {
            return;
        }
    }
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
}

/// Reads and dispatches messages until the connection ends; returns why.
async fn read_loop<R: AsyncRead + Unpin>(reader: &mut R, link: &Link, context: &StreamContext) -> &'static str {
    let mut buffer = BytesMut::new();
    let mut busy = false;
    loop {
        loop {
            match frame_stream(&buffer) {
                Framing::Incomplete => break,
                Framing::KeepAlive { consumed, ping } => {
                    let _ = buffer.split_to(consumed);
                    if ping && link.send(Bytes::from_static(b"\r\n")).is_err() {
                        return "send queue closed";
                    }
                }
                Framing::Message(length) => {
                    let bytes = buffer.split_to(length).freeze();
                    link.mirror_received(&bytes);
                    match parse_message(&bytes) {
                        Ok(message) => context.handler.on_message(message, link),
                        Err(error) => {
                            info!(peer = %link.peer(), %error, "malformed message refused");
                            crate::metrics::malformed();
                            if let Some(response) = refusal(&error) {
                                crate::metrics::sent_response(response.status);
                                let _ = link.send(Bytes::from(response.to_bytes()));
                            }
                        }
                    }
                }
                Framing::Invalid(error) => {
                    // The stream cannot be resynchronised: answer if possible, then close.
                    warn!(peer = %link.peer(), %error, "unframeable stream; closing");
                    crate::metrics::malformed();
                    if let Some(response) = refusal(&error) {
                        crate::metrics::sent_response(response.status);
                        let _ = link.send(Bytes::from(response.to_bytes()));
                    }
                    return "unframeable input";
                }
            }
        }
        if link.is_congested() {
            warn!(peer = %link.peer(), "peer not reading its responses; closing");
            return "peer not reading";
        }
        // An idle connection keeps a small buffer (thousands of them wait on the core's few
        // peers); a partial message, or a read that filled the buffer, earns a large one.
        if buffer.is_empty() && !busy && buffer.capacity() > IDLE_BUFFER {
            buffer = BytesMut::new();
        }
        buffer.reserve(if buffer.is_empty() && !busy { IDLE_BUFFER } else { BUSY_BUFFER });
        let spare = buffer.capacity() - buffer.len();
        let limit = if buffer.is_empty() { context.limits.idle_timeout } else { context.limits.message_timeout };
        let read = tokio::select! {
            read = tokio::time::timeout(limit, reader.read_buf(&mut buffer)) => read,
            () = context.shutdown.cancelled() => return "shutdown",
        };
        match read {
            Ok(Ok(0)) => return "closed by peer",
            Ok(Ok(read)) => busy = read == spare,
            Ok(Err(_)) => return "read error",
            Err(_) if buffer.is_empty() => return "idle timeout",
            Err(_) => {
                warn!(peer = %link.peer(), buffered = buffer.len(), "partial message stalled; closing");
                return "stalled partial message";
            }
        }
    }
}

/// Connects to `peer` over TCP, or TLS when `tls` names the server to verify.
pub async fn connect(
    peer: SocketAddr,
    tls: Option<(tokio_rustls::TlsConnector, rustls::pki_types::ServerName<'static>)>,
    context: StreamContext,
    timeout: Duration,
) -> std::io::Result<Link> {
    let socket = tokio::time::timeout(timeout, TcpStream::connect(peer))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    socket.set_nodelay(true)?;
    let local = socket.local_addr()?;
    match tls {
        None => Ok(spawn_connection(socket, Transport::Tcp, local, peer, context)),
        Some((connector, name)) => {
            let handshake = tokio::time::timeout(timeout, connector.connect(name, socket)).await;
            let stream = match handshake {
                Ok(Ok(stream)) => stream,
                Ok(Err(error)) => {
                    crate::metrics::tls_handshake("out", tls::verify::failure_reason(&error));
                    return Err(error);
                }
                Err(_) => {
                    crate::metrics::tls_handshake("out", "timeout");
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out"));
                }
            };
            crate::metrics::tls_handshake("out", "ok");
            Ok(spawn_connection(stream, Transport::Tls, local, peer, context))
        }
    }
}
