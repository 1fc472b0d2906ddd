//! SIP text to [`Message`]: start line, unfolded header lines, body by Content-Length; and the
//! stream framing of RFC 3261 §18.3 (TCP and TLS) with RFC 5626 CRLF keep-alives.
//!
//! Structure is checked here; the meaning of individual headers is checked by [`super::validate`].
//! An error keeps whatever headers were read, so a 400 can still be addressed to the sender.

use bytes::Bytes;
use bytestring::ByteString;

use super::grammar::{split_byte, split_once_byte};
use super::headers::Headers;
use super::method::Method;
use super::status::StatusCode;
use super::types::{Message, Request, Response};
use super::uri::Uri;

/// The largest message accepted (header section and body).
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024;

/// A message that cannot be used, with the status to answer it and what is known of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 400, 505 (version) or 513 (too large).
    pub status: StatusCode,
    /// A reason phrase naming the fault.
    pub reason: String,
    /// Whether the start line looked like a request (only requests are answered).
    pub is_request: bool,
    /// The header lines, when they could be read.
    pub headers: Option<Headers>,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.reason)
    }
}

impl std::error::Error for ParseError {}

impl ParseError {
    fn new(status: StatusCode, reason: impl Into<String>, is_request: bool, headers: Option<Headers>) -> Self {
        Self { status, reason: reason.into(), is_request, headers }
    }
}

/// What a stream buffer holds at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Framing {
    /// More bytes are needed.
    Incomplete,
    /// A whole message of this many bytes.
    Message(usize),
    /// A keep-alive of this many bytes; `ping` asks for a CRLF pong (RFC 5626 §3.5.1).
    KeepAlive {
        /// Bytes to drop.
        consumed: usize,
        /// A double-CRLF ping that wants an answer.
        ping: bool,
    },
    /// The stream cannot be read further: answer if possible and close.
    Invalid(ParseError),
}

/// Where the header section ends (after its empty line). memmem's vector search: comparing
/// every window of four bytes cost a few per cent of a relayed call's instructions on a TLS
/// leg, where each read's partial message is looked at again.
fn find_header_end(buf: &[u8]) -> Option<usize> {
    memchr::memmem::find(buf, b"\r\n\r\n").map(|p| p + 4)
}

/// Finds where the first message in a stream buffer ends.
pub fn frame_stream(buf: &[u8]) -> Framing {
    if buf.starts_with(b"\r\n\r\n") {
        return Framing::KeepAlive { consumed: 4, ping: true };
    }
    if buf.starts_with(b"\r\n") {
        return match buf.get(2) {
            None | Some(b'\r') => Framing::Incomplete,
            Some(_) => Framing::KeepAlive { consumed: 2, ping: false },
        };
    }
    let Some(header_end) = find_header_end(&buf[..buf.len().min(MAX_MESSAGE_SIZE)]) else {
        if buf.len() >= MAX_MESSAGE_SIZE {
            return Framing::Invalid(ParseError::new(
                StatusCode::MESSAGE_TOO_LARGE,
                "Message Too Large",
                looks_like_request(buf),
                None,
            ));
        }
        return Framing::Incomplete;
    };
    let head = &buf[..header_end];
    let is_request = looks_like_request(buf);
    // Most messages carry one plain Content-Length: found without reading every header (the
    // message is parsed in full once framed). Anything else is read in full here, to say why
    // the stream cannot be framed.
    let content_length = match plain_content_length(head) {
        Some(length) => length,
        None => {
            let headers = match headers_of(head, is_request) {
                Ok(headers) => headers,
                Err(error) => return Framing::Invalid(error),
            };
            match content_length(&headers) {
                Ok(Some(length)) => length,
                Ok(None) => {
                    return Framing::Invalid(ParseError::new(
                        StatusCode::BAD_REQUEST,
                        "Missing Content-Length on a stream transport",
                        is_request,
                        Some(headers),
                    ))
                }
                Err(reason) => {
                    return Framing::Invalid(ParseError::new(
                        StatusCode::BAD_REQUEST,
                        reason,
                        is_request,
                        Some(headers),
                    ))
                }
            }
        }
    };
    match header_end.checked_add(content_length) {
        Some(total) if total <= MAX_MESSAGE_SIZE => {
            if buf.len() >= total {
                Framing::Message(total)
            } else {
                Framing::Incomplete
            }
        }
        _ => Framing::Invalid(ParseError::new(
            StatusCode::MESSAGE_TOO_LARGE,
            "Message Too Large",
            is_request,
            headers_of(head, is_request).ok(),
        )),
    }
}

/// The Content-Length of `head` when it has exactly one such line (full or compact name), not
/// folded, with a value [`content_length`] accepts; `None` for anything else, which the full
/// reading then judges. Other lines are not checked: a message with a malformed header but a
/// plain length is framed, then refused by the full parse, and the stream stays in step.
/// Allocates nothing.
fn plain_content_length(head: &[u8]) -> Option<usize> {
    let mut found = None;
    let mut last_was_length = false;
    // Lines found with memchr, and a name compared only when its first letter can begin
    // "Content-Length" or "l": this runs on every read of a stream with a message in it.
    let mut start = 0;
    let lines = memchr::memchr_iter(b'\n', head).map(move |end| {
        let line = &head[start..end];
        start = end + 1;
        line
    });
    for line in lines.skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if last_was_length {
                return None;
            }
            continue;
        }
        let colon = memchr::memchr(b':', line)?;
        let name = line[..colon].trim_ascii_end();
        last_was_length = matches!(name.first(), Some(b'C' | b'c' | b'L' | b'l'))
            && (name.eq_ignore_ascii_case(b"Content-Length") || name.eq_ignore_ascii_case(b"l"));
        if !last_was_length {
            continue;
        }
        let value = line[colon + 1..].trim_ascii();
        if found.is_some() || value.is_empty() || value.len() > 9 || !value.iter().all(u8::is_ascii_digit) {
            return None;
        }
        found = Some(value.iter().fold(0, |length, digit| length * 10 + usize::from(digit - b'0')));
    }
    found
}

fn looks_like_request(buf: &[u8]) -> bool {
    !buf.starts_with(b"SIP/")
}

/// Parses one message from a stream, exactly as framed by [`frame_stream`].
pub fn parse_message(bytes: &[u8]) -> Result<Message, ParseError> {
    parse(bytes, false)
}

/// Parses a UDP datagram: a missing Content-Length means the rest of the datagram; octets
/// beyond Content-Length are discarded (RFC 3261 §18.3).
pub fn parse_datagram(bytes: &[u8]) -> Result<Message, ParseError> {
    parse(bytes, true)
}

fn parse(bytes: &[u8], datagram: bool) -> Result<Message, ParseError> {
    // RFC 3261 §7.5: CRLFs before the start line are ignored.
    let start = bytes.iter().position(|b| *b != b'\r' && *b != b'\n').unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let is_request = looks_like_request(bytes);
    if bytes.len() > MAX_MESSAGE_SIZE {
        return Err(ParseError::new(StatusCode::MESSAGE_TOO_LARGE, "Message Too Large", is_request, None));
    }
    // The message is copied once; its header values and body are slices of that copy.
    let bytes = Bytes::copy_from_slice(bytes);
    let bytes = &bytes;
    // A datagram's end also ends its header section when the empty line is missing.
    let header_end = match find_header_end(bytes) {
        Some(end) => end,
        None if datagram => bytes.len(),
        None => {
            return Err(ParseError::new(
                StatusCode::BAD_REQUEST,
                "Header section not terminated by an empty line",
                is_request,
                None,
            ))
        }
    };
    let head = text_of(bytes.slice(..header_end), is_request)?;
    let (start_line, headers) = read_head(&head, is_request)?;
    let available = bytes.slice(header_end..);
    let body = match content_length(&headers) {
        Err(reason) => return Err(ParseError::new(StatusCode::BAD_REQUEST, reason, is_request, Some(headers))),
        Ok(Some(length)) if length > available.len() => {
            return Err(ParseError::new(
                StatusCode::BAD_REQUEST,
                "Content-Length exceeds the message",
                is_request,
                Some(headers),
            ))
        }
        Ok(Some(length)) => available.slice(..length),
        Ok(None) if datagram => available,
        Ok(None) => {
            return Err(ParseError::new(
                StatusCode::BAD_REQUEST,
                "Missing Content-Length on a stream transport",
                is_request,
                Some(headers),
            ))
        }
    };
    if is_request {
        let (method, uri) = request_line(start_line)
            .map_err(|(status, reason)| ParseError::new(status, reason, true, Some(headers.clone())))?;
        Ok(Message::Request(Request { method, uri, headers, body }))
    } else {
        let (status, reason) = status_line(start_line).ok_or_else(|| {
            ParseError::new(StatusCode::BAD_REQUEST, "Malformed Status-Line", false, Some(headers.clone()))
        })?;
        Ok(Message::Response(Response { status, reason: reason.to_owned(), headers, body }))
    }
}

/// Splits the head (start line and headers, up to and including the empty line).
fn read_head(head: &ByteString, is_request: bool) -> Result<(&str, Headers), ParseError> {
    let text: &str = head;
    let mut lines = split_byte(text, b'\n').map(|line| line.strip_suffix('\r').unwrap_or(line));
    let start_line = lines.next().unwrap_or_default();
    let mut headers = Headers::new();
    // The header being read: borrowed from the head unless folded lines were joined to it.
    let mut current: Option<(&str, std::borrow::Cow<'_, str>)> = None;
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            // Folded continuation (RFC 3261 §7.3.1): one SP stands for the line break.
            let (_, value) = current.as_mut().ok_or_else(|| {
                ParseError::new(
                    StatusCode::BAD_REQUEST,
                    "Header section starts with a continuation line",
                    is_request,
                    None,
                )
            })?;
            let value = value.to_mut();
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        if let Some((name, value)) = current.take() {
            push_value(&mut headers, head, name, value);
        }
        let Some((name, value)) = split_once_byte(line, b':') else {
            return Err(ParseError::new(StatusCode::BAD_REQUEST, "Malformed header line (no colon)", is_request, None));
        };
        let name = name.trim_end_matches([' ', '\t']);
        if !super::grammar::is_token(name) {
            return Err(ParseError::new(StatusCode::BAD_REQUEST, "Malformed header name", is_request, None));
        }
        current = Some((name, std::borrow::Cow::Borrowed(value.trim())));
    }
    if let Some((name, value)) = current {
        push_value(&mut headers, head, name, value);
    }
    Ok((start_line, headers))
}

/// The head as text, refused when it is not UTF-8.
fn text_of(head: Bytes, is_request: bool) -> Result<ByteString, ParseError> {
    ByteString::try_from(head)
        .map_err(|_| ParseError::new(StatusCode::BAD_REQUEST, "Header section is not UTF-8", is_request, None))
}

/// The headers of a head not yet framed into a message (a copy, read to say why it cannot be).
fn headers_of(head: &[u8], is_request: bool) -> Result<Headers, ParseError> {
    let head = text_of(Bytes::copy_from_slice(head), is_request)?;
    read_head(&head, is_request).map(|(_, headers)| headers)
}

/// Appends a header read from `head`: a value on one line is a slice of the head, a folded one
/// (joined from several lines) its own text.
fn push_value(headers: &mut Headers, head: &ByteString, name: &str, value: std::borrow::Cow<'_, str>) {
    match value {
        std::borrow::Cow::Borrowed(value) => headers.push_shared(name, head.slice_ref(value)),
        // A value begun on a continuation line would otherwise keep that line's space.
        std::borrow::Cow::Owned(value) => headers.push(name, value.trim()),
    }
}

/// The Content-Length, if there is exactly one well-formed header.
fn content_length(headers: &Headers) -> Result<Option<usize>, &'static str> {
    let mut values = headers.get_all("Content-Length");
    let Some(first) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err("Multiple Content-Length headers");
    }
    if first.is_empty() || first.len() > 9 || !first.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Malformed Content-Length header");
    }
    first.parse().map(Some).map_err(|_| "Malformed Content-Length header")
}

/// `Method SP Request-URI SP SIP-Version`, single spaces exactly (RFC 3261 §7.1).
fn request_line(line: &str) -> Result<(Method, Uri), (StatusCode, &'static str)> {
    let mut parts = split_byte(line, b' ');
    let (Some(method), Some(uri), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err((StatusCode::BAD_REQUEST, "Malformed Request-Line"));
    };
    if !super::grammar::is_token(method) {
        return Err((StatusCode::BAD_REQUEST, "Malformed method"));
    }
    check_version(version)?;
    let uri = Uri::parse(uri).map_err(|_| (StatusCode::BAD_REQUEST, "Malformed Request-URI"))?;
    Ok((Method::from_token(method), uri))
}

fn check_version(version: &str) -> Result<(), (StatusCode, &'static str)> {
    let Some(number) = version.get(..4).filter(|p| p.eq_ignore_ascii_case("SIP/")).map(|_| &version[4..]) else {
        return Err((StatusCode::BAD_REQUEST, "Malformed SIP-Version"));
    };
    let well_formed = number.split_once('.').is_some_and(|(major, minor)| {
        [major, minor].iter().all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    match (well_formed, number) {
        (true, "2.0") => Ok(()),
        (true, _) => Err((StatusCode::VERSION_NOT_SUPPORTED, "Version Not Supported")),
        (false, _) => Err((StatusCode::BAD_REQUEST, "Malformed SIP-Version")),
    }
}

/// `SIP-Version SP Status-Code SP Reason-Phrase`.
fn status_line(line: &str) -> Option<(StatusCode, &str)> {
    let (version, rest) = split_once_byte(line, b' ')?;
    check_version(version).ok()?;
    let (code, reason) = split_once_byte(rest, b' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let status = StatusCode::new(code.parse().ok()?).ok()?;
    Some((status, reason))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &[u8] = b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 5\r\n\r\nhello";

    #[test]
    fn values_on_one_line_share_the_message_and_folded_ones_are_joined() {
        let text = b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nSubject: one\r\n  two\r\nTo: <sip:u@h>\r\nFrom: <sip:a@h>;tag=1\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
        let Ok(Message::Request(request)) = parse_datagram(text) else { panic!("parses") };
        let folded: Vec<_> =
            request.headers.iter().filter(|h| !h.value.is_shared()).map(|h| h.value.as_str()).collect();
        assert_eq!(folded, ["one two"], "only the folded value is a copy");
        assert_eq!(request.headers.get("Via"), Some("SIP/2.0/UDP h;branch=z9hG4bK1"));
        let Some(response) = crate::transport::response_to(&request.headers, StatusCode::OK, "OK") else {
            panic!("a response")
        };
        let copied: Vec<_> = response.headers.iter().map(|h| (h.name.as_str(), h.value.is_shared())).collect();
        assert_eq!(
            copied,
            [("Via", true), ("From", true), ("To", true), ("Call-ID", true), ("CSeq", true)],
            "the response shares the request's values"
        );
    }

    #[test]
    fn stream_framing() {
        assert_eq!(frame_stream(OPTIONS), Framing::Message(OPTIONS.len()));
        assert_eq!(frame_stream(&OPTIONS[..OPTIONS.len() - 1]), Framing::Incomplete);
        assert_eq!(frame_stream(&OPTIONS[..10]), Framing::Incomplete);
        let mut two = OPTIONS.to_vec();
        two.extend_from_slice(OPTIONS);
        assert_eq!(frame_stream(&two), Framing::Message(OPTIONS.len()));
        assert_eq!(frame_stream(b"\r\n\r\nOPT"), Framing::KeepAlive { consumed: 4, ping: true });
        assert_eq!(frame_stream(b"\r\nOPT"), Framing::KeepAlive { consumed: 2, ping: false });
        assert_eq!(frame_stream(b"\r\n"), Framing::Incomplete);
        let no_length = b"OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n";
        assert!(matches!(
            frame_stream(no_length),
            Framing::Invalid(ParseError { status: StatusCode::BAD_REQUEST, .. })
        ));
        let huge = b"OPTIONS sip:u@h SIP/2.0\r\nContent-Length: 70000\r\n\r\n";
        assert!(matches!(
            frame_stream(huge),
            Framing::Invalid(ParseError { status: StatusCode::MESSAGE_TOO_LARGE, .. })
        ));
        let endless = vec![b'a'; MAX_MESSAGE_SIZE + 1];
        assert!(matches!(
            frame_stream(&endless),
            Framing::Invalid(ParseError { status: StatusCode::MESSAGE_TOO_LARGE, .. })
        ));
    }

    /// What the full reading makes of `head`'s Content-Length.
    fn fully_read_length(head: &[u8]) -> Option<usize> {
        headers_of(head, true).ok().and_then(|headers| content_length(&headers).ok().flatten())
    }

    #[test]
    fn the_quick_content_length_agrees_with_the_full_reading() {
        let start = "INVITE sip:u@h SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n";
        for (lines, quick) in [
            ("Content-Length: 12\r\n", Some(12)),
            ("l: 0\r\n", Some(0)),
            ("content-length  :\t7 \r\n", Some(7)),
            ("L:3\r\nSubject: x\r\n", Some(3)),
            ("Content-Length: 999999999\r\n", Some(999_999_999)),
            // Left to the full reading:
            ("Content-Length: 1\r\nl: 1\r\n", None),
            ("Content-Length: 1\r\n 0\r\n", None),
            ("Content-Length:\r\n 5\r\n", None),
            ("Content-Length: 1000000000\r\n", None),
            ("Content-Length: -1\r\n", None),
            ("Content-Length: 1 2\r\n", None),
            ("Subject: no length\r\n", None),
            ("Broken line\r\nContent-Length: 5\r\n", None),
        ] {
            let head = format!("{start}{lines}\r\n");
            assert_eq!(plain_content_length(head.as_bytes()), quick, "{lines:?}");
            if quick.is_some() {
                assert_eq!(fully_read_length(head.as_bytes()), quick, "{lines:?}");
            }
        }
        // A body line after the head is not a header.
        assert_eq!(plain_content_length(b"OPTIONS sip:u@h SIP/2.0\r\nl: 2\r\n\r\nl: 3\r\n"), Some(2));
    }

    proptest::proptest! {
        #[test]
        fn a_quick_content_length_is_always_the_full_readings(
            lines in proptest::collection::vec(
                proptest::sample::select(vec![
                    "Content-Length: 5", "l: 7", "content-length:\t12", "Content-Length : 3", "L:0",
                    "Content-Length: x", "Content-Length:", " 4", "\t9", "Via: SIP/2.0/TCP h", "Broken",
                    "Bad Name: 1", "Subject: l: 5", "", "Content-Length: 0000000001",
                ]),
                0..8,
            ),
        ) {
            let head = format!("INVITE sip:u@h SIP/2.0\r\n{}\r\n\r\n", lines.join("\r\n"));
            // A head whose other lines are malformed is framed by its length all the same,
            // then refused whole by the full parse (the stream stays in step).
            if let (Some(length), Ok(headers)) = (plain_content_length(head.as_bytes()), headers_of(head.as_bytes(), true)) {
                proptest::prop_assert_eq!(content_length(&headers), Ok(Some(length)), "{:?}", head);
            }
        }
    }

    #[test]
    fn folding_and_compact_forms() {
        let text = b"INVITE sip:u@h SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\n ,SIP/2.0/UDP b\r\nf: <sip:a@b>;tag=1\r\nl: 0\r\n\r\n";
        let Ok(Message::Request(request)) = parse_datagram(text) else { panic!("parses") };
        assert_eq!(request.headers.values("Via").len(), 2);
        assert_eq!(request.headers.get("from"), Some("<sip:a@b>;tag=1"));
    }

    #[test]
    fn start_lines() {
        assert!(parse_datagram(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").is_ok());
        assert!(parse_datagram(b"SIP/2.0 4294967301 big\r\nl: 0\r\n\r\n").is_err());
        let version = parse_datagram(b"OPTIONS sip:u@h SIP/7.0\r\nl: 0\r\n\r\n").unwrap_err();
        assert_eq!(version.status, 505);
        for bad in [
            &b"INVITE  sip:u@h  SIP/2.0\r\nl: 0\r\n\r\n"[..],
            b"INVITE sip:u@h SIP/2.0  \r\nl: 0\r\n\r\n",
            b"INVITE <sip:u@h> SIP/2.0\r\nl: 0\r\n\r\n",
            b"INVITE sip:u@h\r\nl: 0\r\n\r\n",
        ] {
            assert_eq!(parse_datagram(bad).unwrap_err().status, 400);
        }
    }
}
