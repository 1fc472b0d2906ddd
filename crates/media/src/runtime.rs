//! The runtime the WebRTC stack runs on: tokio's, except for its UDP sockets, which receive one
//! datagram at a time without UDP GRO.
//!
//! With GRO on (the stack's tokio runtime enables it wherever the kernel has it) the stack sizes
//! every receive buffer for 64 coalesced datagrams: 96 KiB per socket, and as much again for
//! its burst buffer, for each call. A voice call receives 50 small packets a second, which GRO
//! never has anything to coalesce for; heaptrack put these buffers at most of a WebRTC call's
//! memory. Without GRO the stack asks for 2,000 bytes per buffer.

use std::fmt;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::ReadBuf;
use webrtc::runtime::{
    AsyncInterval, AsyncTcpListener, AsyncTcpStream, AsyncUdpSocket, JoinHandle, RecvMeta, Runtime, TokioRuntime,
    Transmit,
};

/// The runtime for ringer's peer connections (see the module's documentation).
pub(crate) fn runtime() -> Arc<dyn Runtime> {
    Arc::new(PlainUdpRuntime(TokioRuntime))
}

/// Tokio's runtime with [`PlainUdpSocket`]s.
#[derive(Debug)]
struct PlainUdpRuntime(TokioRuntime);

impl Runtime for PlainUdpRuntime {
    fn spawn(&self, future: Pin<Box<dyn Future<Output = ()> + Send>>) -> Box<dyn JoinHandle> {
        self.0.spawn(future)
    }

    fn spawn_reactor(
        &self,
        reactor_pool_size: usize,
        future: Pin<Box<dyn Future<Output = ()> + Send>>,
    ) -> Box<dyn JoinHandle> {
        self.0.spawn_reactor(reactor_pool_size, future)
    }

    fn wrap_udp_socket(&self, socket: std::net::UdpSocket) -> io::Result<Arc<dyn AsyncUdpSocket>> {
        socket.set_nonblocking(true)?;
        Ok(Arc::new(PlainUdpSocket(tokio::net::UdpSocket::from_std(socket)?)))
    }

    fn wrap_tcp_listener(&self, listener: std::net::TcpListener) -> io::Result<Arc<dyn AsyncTcpListener>> {
        self.0.wrap_tcp_listener(listener)
    }

    fn connect_tcp<'a>(
        &'a self,
        remote_addr: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = io::Result<Arc<dyn AsyncTcpStream>>> + Send + 'a>> {
        self.0.connect_tcp(remote_addr)
    }

    fn resolve_host<'a>(
        &'a self,
        host: &'a str,
    ) -> Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send + 'a>> {
        self.0.resolve_host(host)
    }

    fn now(&self) -> Instant {
        self.0.now()
    }

    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.sleep(duration)
    }

    fn interval(&self, period: Duration) -> Box<dyn AsyncInterval> {
        self.0.interval(period)
    }

    fn block_on(&self, future: Pin<Box<dyn Future<Output = ()> + '_>>) {
        self.0.block_on(future)
    }

    fn yield_now(&self) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        self.0.yield_now()
    }

    fn name(&self) -> &'static str {
        "tokio, plain UDP"
    }
}

/// A UDP socket that sends and receives one datagram per call: no GSO, no GRO (so the stack
/// never asks for more than one datagram's buffer).
struct PlainUdpSocket(tokio::net::UdpSocket);

impl fmt::Debug for PlainUdpSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PlainUdpSocket").field(&self.0.local_addr().ok()).finish()
    }
}

impl AsyncUdpSocket for PlainUdpSocket {
    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.0.local_addr()
    }

    fn poll_send(&self, cx: &mut Context<'_>, transmit: &Transmit<'_>) -> Poll<io::Result<usize>> {
        // One datagram: with `max_gso_segments` at 1 the stack never sets a segment size.
        self.0.poll_send_to(cx, transmit.contents, transmit.destination)
    }

    fn poll_recv(
        &self,
        cx: &mut Context<'_>,
        bufs: &mut [IoSliceMut<'_>],
        meta: &mut [RecvMeta],
    ) -> Poll<io::Result<usize>> {
        let (Some(buf), Some(first)) = (bufs.first_mut(), meta.first_mut()) else {
            return Poll::Ready(Ok(0));
        };
        let mut read = ReadBuf::new(buf);
        match self.0.poll_recv_from(cx, &mut read) {
            Poll::Ready(Ok(from)) => {
                let len = read.filled().len();
                // `RecvMeta` is non-exhaustive: set its fields on a default one.
                *first = RecvMeta::default();
                first.len = len;
                // One datagram per message; at least 1, since the stack divides by it.
                first.stride = len.max(1);
                first.addr = from;
                Poll::Ready(Ok(1))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => Poll::Pending,
        }
    }

    fn max_gso_segments(&self) -> usize {
        1
    }

    fn max_gro_segments(&self) -> usize {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_plain_socket_carries_one_datagram_each_way_and_asks_for_no_coalescing() {
        let runtime = runtime();
        let socket = runtime.wrap_udp_socket(std::net::UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        assert_eq!((socket.max_gro_segments(), socket.max_gso_segments()), (1, 1));
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let here = socket.local_addr().unwrap();

        peer.send_to(b"first", here).await.unwrap();
        peer.send_to(b"", here).await.unwrap();
        let mut buf = [0u8; 2000];
        let (len, from) = socket.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], from), (&b"first"[..], peer.local_addr().unwrap()));
        // An empty datagram still has a stride of one (the stack divides by it).
        let mut meta = [RecvMeta::default()];
        let received =
            std::future::poll_fn(|cx| socket.poll_recv(cx, &mut [IoSliceMut::new(&mut buf)], &mut meta)).await.unwrap();
        assert_eq!((received, meta[0].len, meta[0].stride), (1, 0, 1));

        let sent = socket.send_to(b"back", peer.local_addr().unwrap()).await.unwrap();
        assert_eq!(sent, 4);
        let (len, from) = peer.recv_from(&mut buf).await.unwrap();
        assert_eq!((&buf[..len], from), (&b"back"[..], here));
    }
}
