//! A minimal SIP test peer over UDP, TCP and TLS: sends raw text, reads framed responses.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ringer::sip::message::{frame_stream, parse_datagram, parse_message, Framing, Message, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// An endpoint listening on UDP only, on loopback, with RFC 3261's timers and RFC 4028's
/// session timer defaults, calls handled by `handler`.
pub(crate) async fn udp_endpoint(handler: Arc<dyn ringer::sip::ua::SessionHandler>) -> ringer::sip::endpoint::Endpoint {
    endpoint_on(handler, None, Some("127.0.0.1:0".parse().expect("addr"))).await
}

/// As [`udp_endpoint`], listening on TCP only.
pub(crate) async fn tcp_endpoint(handler: Arc<dyn ringer::sip::ua::SessionHandler>) -> ringer::sip::endpoint::Endpoint {
    endpoint_on(handler, Some("127.0.0.1:0".parse().expect("addr")), None).await
}

async fn endpoint_on(
    handler: Arc<dyn ringer::sip::ua::SessionHandler>,
    tcp: Option<SocketAddr>,
    udp: Option<SocketAddr>,
) -> ringer::sip::endpoint::Endpoint {
    let config = ringer::sip::endpoint::EndpointConfig {
        hep: None,
        tls: None,
        tcp,
        udp,
        policy: Default::default(),
        limits: Default::default(),
        ua: ringer::sip::config::UaConfig::new("127.0.0.1", "ringer-test"),
        outbound: ringer::sip::outbound::OutboundSettings { tls: None, core: None, dns_server: None },
    };
    ringer::sip::endpoint::start(config, handler).await.expect("endpoint starts")
}

/// One side of a SIP conversation.
pub(crate) enum Peer {
    Udp { socket: UdpSocket, server: SocketAddr },
    Stream { stream: Box<dyn Io>, buffer: BytesMut, transport: &'static str },
}

pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Peer {
    pub(crate) async fn udp(server: SocketAddr) -> Self {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        Peer::Udp { socket, server }
    }

    pub(crate) async fn tcp(server: SocketAddr) -> Self {
        let stream = TcpStream::connect(server).await.expect("connect");
        Peer::Stream { stream: Box::new(stream), buffer: BytesMut::new(), transport: "TCP" }
    }

    /// A peer on a TCP connection accepted from ringer.
    pub(crate) fn from_tcp(stream: TcpStream) -> Self {
        Peer::Stream { stream: Box::new(stream), buffer: BytesMut::new(), transport: "TCP" }
    }

    pub(crate) async fn tls(server: SocketAddr, ca: &std::path::Path, name: &str) -> Self {
        let config = ringer::tls::client_config(Some(ca), None).expect("client config");
        let stream = tls_connect(server, config, name).await.expect("TLS handshake");
        Peer::Stream { stream: Box::new(stream), buffer: BytesMut::new(), transport: "TLS" }
    }

    pub(crate) fn transport(&self) -> &'static str {
        match self {
            Peer::Udp { .. } => "UDP",
            Peer::Stream { transport, .. } => transport,
        }
    }

    pub(crate) fn local(&self) -> String {
        match self {
            Peer::Udp { socket, .. } => socket.local_addr().expect("addr").to_string(),
            Peer::Stream { .. } => "127.0.0.1:5099".into(),
        }
    }

    pub(crate) async fn send(&mut self, bytes: &[u8]) {
        match self {
            Peer::Udp { socket, server } => {
                socket.send_to(bytes, *server).await.expect("send");
            }
            Peer::Stream { stream, .. } => stream.write_all(bytes).await.expect("write"),
        }
    }

    /// The next message, or `None` after `limit` (or when the connection closed).
    pub(crate) async fn recv_within(&mut self, limit: Duration) -> Option<Message> {
        match self {
            Peer::Udp { socket, .. } => {
                let mut buffer = vec![0u8; 65_535];
                let (length, _) = tokio::time::timeout(limit, socket.recv_from(&mut buffer)).await.ok()?.ok()?;
                Some(parse_datagram(&buffer[..length]).expect("ringer sends parseable messages"))
            }
            Peer::Stream { stream, buffer, .. } => loop {
                match frame_stream(buffer) {
                    Framing::Message(length) => {
                        let bytes = buffer.split_to(length);
                        return Some(parse_message(&bytes).expect("ringer sends parseable messages"));
                    }
                    Framing::KeepAlive { consumed, .. } => {
                        let _ = buffer.split_to(consumed);
                    }
                    Framing::Incomplete => {
                        let read = tokio::time::timeout(limit, stream.read_buf(buffer)).await.ok()?.ok()?;
                        if read == 0 {
                            return None;
                        }
                    }
                    Framing::Invalid(error) => panic!("ringer sent an unframeable stream: {error}"),
                }
            },
        }
    }

    /// The next response, skipping nothing.
    pub(crate) async fn response(&mut self) -> Response {
        match self.recv_within(WAIT).await {
            Some(Message::Response(response)) => response,
            other => panic!("expected a response, got {other:?}"),
        }
    }

    /// The next final response (skipping 1xx).
    pub(crate) async fn final_response(&mut self) -> Response {
        loop {
            let response = self.response().await;
            if response.status >= 200 {
                return response;
            }
        }
    }

    /// Raw bytes until `limit` passes or the connection closes; returns them and whether it closed.
    pub(crate) async fn read_raw(&mut self, limit: Duration) -> (Vec<u8>, bool) {
        let Peer::Stream { stream, buffer, .. } = self else { panic!("streams only") };
        let mut out = buffer.split().to_vec();
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
                Err(_) => return (out, false),
                Ok(Ok(0)) | Ok(Err(_)) => return (out, true),
                Ok(Ok(n)) => out.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

pub(crate) async fn tls_connect(
    server: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let socket = TcpStream::connect(server).await?;
    let name = rustls::pki_types::ServerName::try_from(name.to_owned()).expect("server name");
    tokio_rustls::TlsConnector::from(config).connect(name, socket).await
}

pub(crate) const SDP_OFFER: &str = "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 49170 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n";

/// A request's text; `extra` headers are added before Content-Length.
#[allow(clippy::too_many_arguments)]
pub(crate) fn request(
    method: &str,
    call_id: &str,
    cseq: u32,
    branch: &str,
    transport: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|tag| format!(";tag={tag}")).unwrap_or_default();
    let content_type = if body.is_empty() || extra.contains("Content-Type") {
        String::new()
    } else {
        "Content-Type: application/sdp\r\n".into()
    };
    format!(
        "{method} sip:+4799990000@127.0.0.1 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:5099;branch=z9hG4bK{branch}{transport};rport\r\n\
         Max-Forwards: 70\r\n\
         From: \"Alice\" <sip:+4711111111@127.0.0.1>;tag=alice1\r\n\
         To: <sip:+4799990000@127.0.0.1>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Contact: <sip:alice@127.0.0.1:5099>\r\n\
         {content_type}{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub(crate) fn to_tag(response: &Response) -> String {
    let to = response.headers.get("To").expect("To");
    ringer::sip::message::header::NameAddr::parse(to).expect("To").tag().expect("To tag").to_owned()
}

/// Whether header `name` of `headers` lists the option tag `tag`.
pub(crate) fn lists(headers: &ringer::sip::message::Headers, name: &str, tag: &str) -> bool {
    headers.values(name).iter().any(|value| value.eq_ignore_ascii_case(tag))
}

/// The core's side of an MT call answered by voicemail, over raw SIP on TCP and plain RTP
/// (PCMA): the INVITE to `number` with MT prefix `prefix`, the 200, then speech sent on.
pub(crate) struct VoicemailCall {
    pub(crate) peer: Peer,
    pub(crate) rtp: tokio::net::UdpSocket,
    pub(crate) remote: SocketAddr,
    call_id: String,
    to_tag: String,
}

impl VoicemailCall {
    /// Calls `number` at the TAS at `tas` and waits for the answer.
    pub(crate) async fn start(tas: SocketAddr, prefix: &str, number: &str, call_id: &str) -> Self {
        let rtp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("RTP");
        let sdp = format!(
            "v=0\r\no=core 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {} RTP/AVP 8\r\n",
            rtp.local_addr().expect("addr").port()
        );
        let digits = number.trim_start_matches('+');
        let invite = format!(
            "INVITE sip:+{prefix}{digits}@127.0.0.1;user=phone SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{call_id}\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+4711111111@core.test;user=phone>;tag=core1\r\nTo: <sip:{number}@core.test;user=phone>\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:127.0.0.1:5099;transport=tcp>\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let mut peer = Peer::tcp(tas).await;
        peer.send(invite.as_bytes()).await;
        let answer = loop {
            match peer.recv_within(Duration::from_secs(15)).await {
                Some(Message::Response(response)) if response.status == 200 => break response,
                Some(Message::Response(response)) if response.status < 200 => continue,
                other => panic!("expected 200, got {other:?}"),
            }
        };
        let to_tag = to_tag(&answer);
        let ack = format!(
            "ACK sip:{digits}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{call_id}-ack\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+4711111111@core.test;user=phone>;tag=core1\r\nTo: <sip:{number}@core.test;user=phone>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
        );
        peer.send(ack.as_bytes()).await;
        let sdp = ringer::sdp::SessionDescription::parse(&String::from_utf8_lossy(&answer.body)).expect("SDP");
        let remote = SocketAddr::new(sdp.connection().expect("c="), sdp.media[0].port);
        Self { peer, rtp, remote, call_id: call_id.to_owned(), to_tag }
    }

    /// Past the greeting and beep, `packets` of 20 ms tone.
    pub(crate) async fn speak(&self, packets: u32) {
        use rtc::shared::marshal::Marshal;
        tokio::time::sleep(Duration::from_millis(1800)).await;
        for n in 0..packets {
            let packet = super::audio::pcma_tone_packet(n, 7);
            self.rtp.send_to(&packet.marshal().expect("marshal"), self.remote).await.expect("RTP");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Hangs up with BYE and waits for its 200.
    pub(crate) async fn hang_up(mut self, number: &str) {
        let bye = format!(
            "BYE sip:{}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5099;branch=z9hG4bK-{}-bye\r\n\
             Max-Forwards: 70\r\nFrom: <sip:+4711111111@core.test;user=phone>;tag=core1\r\nTo: <sip:{number}@core.test;user=phone>;tag={}\r\n\
             Call-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            number.trim_start_matches('+'),
            self.call_id,
            self.to_tag,
            self.call_id
        );
        self.peer.send(bye.as_bytes()).await;
        loop {
            match self.peer.recv_within(Duration::from_secs(10)).await {
                Some(Message::Response(response)) if response.status == 200 => return,
                Some(_) => continue,
                None => panic!("no 200 for the BYE"),
            }
        }
    }
}
