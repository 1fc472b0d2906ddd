//! SIP requests and responses, and their wire form.

use std::fmt::{self, Write as _};

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
fn wire_form(start_line: fmt::Arguments<'_>, headers: &Headers, body: &[u8]) -> Vec<u8> {
    let mut head = String::with_capacity(512);
    let _ = write!(head, "{start_line}\r\n");
    for header in headers.iter().filter(|h| !h.name.is("Content-Length")) {
        let _ = write!(head, "{}: {}\r\n", header.name.as_str(), header.value);
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    let mut bytes = head.into_bytes();
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
            if NameAddr::parse(to).is_ok_and(|to| to.tag().is_none()) {
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
