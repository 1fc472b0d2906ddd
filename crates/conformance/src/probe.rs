//! A raw TLS connection to the TAS under test, as the core's SBC opens one: the handshake's
//! facts, and SIP messages written and read byte for byte (for OPTIONS, keep-alives and
//! malformed requests, which no well-behaved user agent would send).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use sip::message::{parse_message, Message, ParseError, Response};

/// How long a probe waits for an answer.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// What went wrong on a probe's connection, in the words the harness reports; the underlying
/// error is kept as the source.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The TAS's host is not a name a certificate can be checked against.
    #[error("{host} is not a valid TLS server name")]
    ServerName {
        /// The host.
        host: String,
        /// Why rustls refused it.
        #[source]
        source: rustls::pki_types::InvalidDnsNameError,
    },
    /// No TCP connection within [`PROBE_TIMEOUT`].
    #[error("TCP connect to {addr}: timed out")]
    ConnectTimeout {
        /// The TAS's address.
        addr: SocketAddr,
    },
    /// The TCP connection was refused or failed.
    #[error("TCP connect to {addr}: {source}")]
    Connect {
        /// The TAS's address.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The socket has no local address.
    #[error("local address: {0}")]
    LocalAddress(#[source] std::io::Error),
    /// No TLS handshake within [`PROBE_TIMEOUT`].
    #[error("TLS handshake: timed out")]
    HandshakeTimeout,
    /// The TLS handshake failed.
    #[error("{explained}")]
    Handshake {
        /// The failure in words a TAS vendor can act on (the certificate problem named).
        explained: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Writing to the TAS failed.
    #[error("write: {0}")]
    Write(#[source] std::io::Error),
    /// Reading from the TAS failed.
    #[error("read: {0}")]
    Read(#[source] std::io::Error),
    /// The TAS sent bytes that are not a SIP message.
    #[error("unreadable message: {0}")]
    Unreadable(#[source] ParseError),
    /// Nothing came in time.
    #[error("nothing within {} ms", .0.as_millis())]
    Silent(Duration),
    /// The TAS closed the connection.
    #[error("the TAS closed the connection")]
    Closed,
}

/// The harness's findings are text: a probe's failure becomes the finding's "got".
impl From<ProbeError> for String {
    fn from(error: ProbeError) -> String {
        error.to_string()
    }
}

/// An open TLS connection to the TAS.
pub struct Probe {
    stream: TlsStream<TcpStream>,
    buffer: Vec<u8>,
    /// The TLS version agreed (`TLSv1_3`...).
    pub version: String,
    /// The local address (for Via headers).
    pub local: SocketAddr,
}

impl Probe {
    /// Connects to `addr` and completes TLS, verifying the certificate for `host` with `config`.
    pub async fn connect(addr: SocketAddr, host: &str, config: Arc<rustls::ClientConfig>) -> Result<Probe, ProbeError> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|source| ProbeError::ServerName { host: host.to_owned(), source })?;
        let tcp = tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| ProbeError::ConnectTimeout { addr })?
            .map_err(|source| ProbeError::Connect { addr, source })?;
        let local = tcp.local_addr().map_err(ProbeError::LocalAddress)?;
        let stream = tokio::time::timeout(PROBE_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, tcp))
            .await
            .map_err(|_| ProbeError::HandshakeTimeout)?
            .map_err(|source| ProbeError::Handshake { explained: tls::verify::explain_io(&source), source })?;
        let version = stream.get_ref().1.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        Ok(Probe { stream, buffer: Vec::new(), version, local })
    }

    /// Writes `bytes` as they are.
    pub async fn send(&mut self, bytes: &[u8]) -> Result<(), ProbeError> {
        self.stream.write_all(bytes).await.map_err(ProbeError::Write)?;
        self.stream.flush().await.map_err(ProbeError::Write)
    }

    /// Bytes that arrive within `wait` (for keep-alive pongs).
    pub async fn read_raw(&mut self, wait: Duration) -> Vec<u8> {
        let mut chunk = [0u8; 4096];
        if let Ok(Ok(length)) = tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            self.buffer.extend_from_slice(&chunk[..length]);
        }
        std::mem::take(&mut self.buffer)
    }

    /// The next SIP message, skipping keep-alive CRLFs; `Err` on timeout, close or garbage.
    pub async fn next_message(&mut self, wait: Duration) -> Result<Message, ProbeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while self.buffer.starts_with(b"\r\n") {
                self.buffer.drain(..2);
            }
            if let Some(length) = framed_length(&self.buffer) {
                let bytes: Vec<u8> = self.buffer.drain(..length).collect();
                return parse_message(&bytes).map_err(ProbeError::Unreadable);
            }
            let mut chunk = [0u8; 16384];
            match tokio::time::timeout_at(deadline, self.stream.read(&mut chunk)).await {
                Err(_) => return Err(ProbeError::Silent(wait)),
                Ok(Ok(0)) => return Err(ProbeError::Closed),
                Ok(Ok(length)) => self.buffer.extend_from_slice(&chunk[..length]),
                Ok(Err(error)) => return Err(ProbeError::Read(error)),
            }
        }
    }

    /// The final response to the request sent last (provisional ones skipped).
    pub async fn final_response(&mut self, wait: Duration) -> Result<Response, ProbeError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_message(left).await? {
                Message::Response(response) if response.status >= 200 => return Ok(response),
                _ => continue,
            }
        }
    }
}

/// The length of the first whole message in `buffer` (headers and Content-Length body).
fn framed_length(buffer: &[u8]) -> Option<usize> {
    let end = buffer.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buffer[..end]).ok()?;
    let body: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let name = name.trim();
            (name.eq_ignore_ascii_case("Content-Length") || name == "l").then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    (buffer.len() >= end + body).then_some(end + body)
}

/// An OPTIONS request from the core's SBC, over TLS from `local`.
pub fn options(target: &str, local: SocketAddr, tag: &str) -> String {
    format!(
        "OPTIONS {target} SIP/2.0\r\nVia: SIP/2.0/TLS {local};branch=z9hG4bK{tag};rport\r\nMax-Forwards: 70\r\n\
         From: <sip:conformance@core.ringer.invalid>;tag={tag}\r\nTo: <{target}>\r\nCall-ID: {tag}@conformance\r\n\
         CSeq: 1 OPTIONS\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_framed_by_content_length() {
        assert_eq!(framed_length(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\nrest"), Some(37));
        assert_eq!(framed_length(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nab"), None);
        assert_eq!(framed_length(b"SIP/2.0 200 OK\r\nl: 3\r\n\r\nabc"), Some(27));
        assert_eq!(framed_length(b"SIP/2.0 200 OK\r\n"), None);
    }
}
