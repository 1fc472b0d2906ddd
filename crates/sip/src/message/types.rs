//! SIP requests and responses, and their wire form.

use std::fmt;
use std::io::Write as _;

use bytes::Bytes;

use super::header::NameAddr;
use super::headers::Headers;
use super::method::Method;
use super::status::StatusCode;
use super::uri::Uri;

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: Uri,
    /// The header fields.
    pub headers: Headers,
    /// The body (as many octets as Content-Length says).
    pub body: Bytes,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: StatusCode,
    /// The reason phrase (may be empty).
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
    /// The body.
    pub body: Bytes,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// The wire form of a message: start line, headers, Content-Length from the body, body.
///
/// Sized once and written byte by byte: formatting each header line through `write!` and
/// growing the buffer as it went cost a few per cent of an answered call's instructions.
fn wire_form(start_line: fmt::Arguments<'_>, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let lines = || headers.iter().filter(|h| !h.name.is("Content-Length"));
    let size = 64 + lines().map(|h| h.name.as_str().len() + h.value.as_str().len() + 4).sum::<usize>();
    let mut bytes = Vec::with_capacity(size + body.len() + 32);
    let _ = write!(bytes, "{start_line}\r\n");
    for header in lines() {
        bytes.extend_from_slice(header.name.as_str().as_bytes());
        bytes.extend_from_slice(b": ");
        bytes.extend_from_slice(header.value.as_str().as_bytes());
        bytes.extend_from_slice(b"\r\n");
    }
    let _ = write!(bytes, "Content-Length: {}\r\n\r\n", body.len());
    bytes.extend_from_slice(body);
    bytes
}

impl Request {
    /// The wire form; Content-Length always written, from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire_form(format_args!("{} {} SIP/2.0", self.method, self.uri), &self.headers, &self.body)
    }
}

impl Response {
    /// The wire form; Content-Length always written, from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        wire_form(format_args!("SIP/2.0 {} {}", self.status, self.reason), &self.headers, &self.body)
    }
}

/// A tag for To or From: random, 10 characters (RFC 3261 §19.3 asks for 32 bits of randomness).
pub fn new_tag() -> String {
    use rand::distr::{Alphanumeric, SampleString};
    Alphanumeric.sample_string(&mut rand::rng(), 10)
}

impl Response {
    /// Adds `tag` to the To header unless it has one; a 100 Trying carries none.
    pub fn add_to_tag(&mut self, tag: &str) {
        if self.status == StatusCode::TRYING {
            return;
        }
        if let Some(to) = self.headers.get("To") {
            if NameAddr::params_of(to).is_some_and(|params| params.get("tag").flatten().is_none()) {
                let tagged = format!("{to};tag={tag}");
                self.headers.set("To", tagged);
            }
        }
    }
}

impl Message {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        match self {
            Message::Request(request) => request.to_bytes(),
            Message::Response(response) => response.to_bytes(),
        }
    }
}
