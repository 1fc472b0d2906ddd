//! Checks of a parsed message's headers against RFC 3261's rules, each failure naming its fault,
//! so that a request can be refused with a 400 whose reason tells the sender what to fix.

use super::header::{CSeq, NameAddr, Via};
use super::headers::Headers;
use super::status::StatusCode;
use super::types::{Request, Response};
use super::uri::Uri;

/// A refusal: the status and a reason phrase naming the fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The status code to answer with.
    pub status: StatusCode,
    /// The reason phrase.
    pub reason: String,
}

impl Rejection {
    fn bad(reason: impl Into<String>) -> Self {
        Self { status: StatusCode::BAD_REQUEST, reason: reason.into() }
    }
}

/// The headers counted in every message: the first five it must carry (RFC 3261 §8.1.1;
/// Max-Forwards is left out for RFC 2543 peers), and all but Via may appear once only.
const COUNTED: [&str; 8] = ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Type", "Expires"];
/// How many of [`COUNTED`] a message must carry.
const REQUIRED: usize = 5;

/// The typed headers every request carries, read once.
#[derive(Debug, Clone)]
pub struct Essentials {
    /// Every Via value, topmost first.
    pub vias: Vec<Via>,
    /// From.
    pub from: NameAddr,
    /// To.
    pub to: NameAddr,
    /// Call-ID.
    pub call_id: String,
    /// CSeq.
    pub cseq: CSeq,
}

fn common(headers: &Headers) -> Result<Essentials, Rejection> {
    // One pass over the lines, not one per name.
    let mut lines = [0usize; COUNTED.len()];
    for header in headers.iter() {
        if let Some(index) = COUNTED.iter().position(|name| header.name.is(name)) {
            lines[index] += 1;
        }
    }
    if let Some((name, _)) = COUNTED.iter().zip(lines).take(REQUIRED).find(|(_, count)| *count == 0) {
        return Err(Rejection::bad(format!("Missing {name} header")));
    }
    if let Some((name, _)) = COUNTED.iter().zip(lines).skip(1).find(|(_, count)| *count > 1) {
        return Err(Rejection::bad(format!("Multiple {name} headers")));
    }
    let vias = headers
        .values("Via")
        .into_iter()
        .map(Via::parse)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Rejection::bad(format!("Malformed Via header ({error})")))?;
    let name_addr = |name: &str| {
        NameAddr::parse(headers.get(name).unwrap_or_default())
            .map_err(|error| Rejection::bad(format!("Malformed {name} header ({error})")))
    };
    let from = name_addr("From")?;
    let to = name_addr("To")?;
    let call_id = headers.get("Call-ID").unwrap_or_default();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err(Rejection::bad("Malformed Call-ID header"));
    }
    let cseq = CSeq::parse(headers.get("CSeq").unwrap_or_default())
        .map_err(|error| Rejection::bad(format!("Malformed CSeq header ({error})")))?;
    Ok(Essentials { vias, from, to, call_id: call_id.to_owned(), cseq })
}

/// Checks a request; on success returns its typed essentials.
pub fn validate_request(request: &Request) -> Result<Essentials, Rejection> {
    let essentials = common(&request.headers)?;
    if essentials.cseq.method != request.method {
        return Err(Rejection::bad("CSeq method does not match the request method"));
    }
    if let Some(max_forwards) = request.headers.get("Max-Forwards") {
        // Leading zeros are allowed (`0068`); the value is at most 255.
        let valid = !max_forwards.is_empty()
            && max_forwards.bytes().all(|b| b.is_ascii_digit())
            && max_forwards.trim_start_matches('0').len() <= 3
            && max_forwards.parse::<u16>().is_ok_and(|n| n <= 255);
        if !valid {
            return Err(Rejection::bad("Malformed Max-Forwards header"));
        }
    }
    for contact in request.headers.values("Contact") {
        if contact == "*" {
            continue;
        }
        NameAddr::parse(contact).map_err(|error| Rejection::bad(format!("Malformed Contact header ({error})")))?;
    }
    if let Uri::Sip(sip) = &request.uri {
        if sip.headers.is_some() {
            return Err(Rejection::bad("Request-URI must not carry headers"));
        }
    }
    Ok(essentials)
}

/// Checks a response well enough to match it to a transaction.
pub fn validate_response(response: &Response) -> Result<Essentials, Rejection> {
    common(&response.headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{parse_datagram, Message};

    fn request(text: &str) -> Request {
        match parse_datagram(text.as_bytes()) {
            Ok(Message::Request(request)) => request,
            other => panic!("not a request: {other:?}"),
        }
    }

    #[test]
    fn faults_are_named() {
        let base = "OPTIONS sip:u@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:u@h>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\n";
        assert!(validate_request(&request(&format!("{base}l: 0\r\n\r\n"))).is_ok());
        let cases = [
            (format!("{base}CSeq: 2 OPTIONS\r\nl: 0\r\n\r\n"), "Multiple CSeq headers"),
            (format!("{base}Max-Forwards: 300\r\nl: 0\r\n\r\n"), "Malformed Max-Forwards header"),
            (format!("{base}Contact: sip:a@h?x=y\r\nl: 0\r\n\r\n"), "Malformed Contact header"),
            (base.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE") + "l: 0\r\n\r\n", "CSeq method does not match"),
            (base.replace("Call-ID: c\r\n", "") + "l: 0\r\n\r\n", "Missing Call-ID header"),
        ];
        for (text, reason) in cases {
            let rejection = validate_request(&request(&text)).unwrap_err();
            assert_eq!(rejection.status, 400);
            assert!(rejection.reason.starts_with(reason), "{} should start with {reason}", rejection.reason);
        }
    }
}
