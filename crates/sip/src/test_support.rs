//! What the unit tests of the timers share: a UDP link on loopback to a peer socket the test
//! reads, and the times (on tokio's clock, paused in these tests) at which messages reach it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::time::Instant;

use crate::message::{parse_datagram, Message, Request};
use crate::transport::Link;

/// A link from a local socket to `peer`, both bound on loopback.
pub(crate) async fn udp_link() -> (Link, UdpSocket) {
    let local = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let peer = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let local_addr = local.local_addr().unwrap();
    let peer_addr: SocketAddr = peer.local_addr().unwrap();
    (Link::datagram(local, local_addr, peer_addr), peer)
}

/// Every message reaching `peer` until `until` has passed since `start`, with when it came.
pub(crate) async fn arrivals(peer: &UdpSocket, start: Instant, until: Duration) -> Vec<(Duration, Message)> {
    let mut seen = Vec::new();
    let mut buffer = vec![0u8; 65_535];
    while let Ok(Ok((length, _))) = tokio::time::timeout_at(start + until, peer.recv_from(&mut buffer)).await {
        seen.push((start.elapsed(), parse_datagram(&buffer[..length]).unwrap()));
    }
    seen
}

/// The offsets in whole milliseconds, for comparing with the RFC's schedule.
pub(crate) fn millis(arrivals: &[(Duration, Message)]) -> Vec<u128> {
    arrivals.iter().map(|(at, _)| at.as_millis()).collect()
}

/// Each offset within a few milliseconds of the schedule (the clock only moves when every
/// task waits, but a datagram may still be on its way through the kernel).
pub(crate) fn assert_schedule(seen: &[u128], expected: &[u128]) {
    assert_eq!(seen.len(), expected.len(), "{seen:?} against {expected:?}");
    for (seen, expected) in seen.iter().zip(expected) {
        assert!(seen.abs_diff(*expected) <= 20, "{seen} ms against {expected} ms");
    }
}

/// A request as a peer would send it, `{branch}` and `{method}` filled in.
pub(crate) fn request(method: &str, branch: &str) -> Request {
    let text = format!(
        "{method} sip:bob@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5999;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@127.0.0.1>;tag=a1\r\n\
         To: <sip:bob@127.0.0.1>\r\n\
         Call-ID: timers@127.0.0.1\r\n\
         CSeq: 1 {method}\r\n\
         Content-Length: 0\r\n\r\n"
    );
    match parse_datagram(text.as_bytes()).unwrap() {
        Message::Request(request) => request,
        Message::Response(_) => unreachable!("a request line"),
    }
}
