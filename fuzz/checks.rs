//! What must hold for any input to the parsers that read network input, shared by the fuzz
//! targets (`fuzz/fuzz_targets/`) and by the test that replays every input they ever found
//! (`tests/fuzz_regressions.rs`): no panic, and what is read and written back reads the same.
//! A failed check panics, which is how libFuzzer learns of it.

#![allow(dead_code)]

use sip::message::header::{CSeq, NameAddr, RAck, SessionExpires, Via};
use sip::message::{frame_stream, parse_datagram, parse_message, Framing, Message, Uri};

/// The message without its Content-Length, which writing recomputes from the body.
fn without_length(message: &Message) -> Message {
    let mut message = message.clone();
    match &mut message {
        Message::Request(request) => request.headers.remove("Content-Length"),
        Message::Response(response) => response.headers.remove("Content-Length"),
    }
    message
}

/// A UDP datagram: parsing never panics, nor does validating what parsed; a message that
/// parses is written in a form that parses to the same message.
pub(crate) fn datagram(data: &[u8]) {
    let Ok(message) = parse_datagram(data) else { return };
    match &message {
        Message::Request(request) => {
            let _ = sip::message::validate::validate_request(request);
        }
        Message::Response(response) => {
            let _ = sip::message::validate::validate_response(response);
        }
    }
    let written = message.to_bytes();
    match parse_datagram(&written) {
        Ok(again) => assert_eq!(without_length(&again), without_length(&message), "read back differently"),
        Err(error) => panic!("the written form does not parse ({error}):\n{}", String::from_utf8_lossy(&written)),
    }
}

/// A TCP or TLS byte stream: framing consumes at least one byte and never more than it has,
/// and each framed message parses without a panic.
pub(crate) fn stream(data: &[u8]) {
    let mut rest = data;
    loop {
        match frame_stream(rest) {
            Framing::Message(length) => {
                assert!(length > 0 && length <= rest.len(), "framed {length} of {} bytes", rest.len());
                let _ = parse_message(&rest[..length]);
                rest = &rest[length..];
            }
            Framing::KeepAlive { consumed, .. } => {
                assert!(consumed > 0 && consumed <= rest.len(), "keep-alive of {consumed} of {} bytes", rest.len());
                rest = &rest[consumed..];
            }
            Framing::Incomplete | Framing::Invalid(_) => return,
        }
    }
}

/// Header values and URIs: the first byte picks the parser, the rest is its input; what parses
/// is written in a form that parses to the same value.
pub(crate) fn header_values(data: &[u8]) {
    let Some((selector, rest)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(rest) else { return };
    match selector % 6 {
        0 => round_trip(text, Uri::parse),
        1 => round_trip(text, NameAddr::parse),
        2 => round_trip(text, Via::parse),
        3 => round_trip(text, CSeq::parse),
        4 => round_trip(text, RAck::parse),
        _ => round_trip(text, SessionExpires::parse),
    }
}

fn round_trip<T, E>(text: &str, parse: impl Fn(&str) -> Result<T, E>)
where
    T: std::fmt::Display + PartialEq + std::fmt::Debug,
    E: std::fmt::Display,
{
    let Ok(value) = parse(text) else { return };
    let written = value.to_string();
    match parse(&written) {
        Ok(again) => assert_eq!(again, value, "{text:?} written as {written:?}"),
        Err(error) => panic!("{text:?} written as {written:?}, which does not parse: {error}"),
    }
}

/// A session description: parsing never panics, and what parses is written back as a
/// description that parses to the same model.
pub(crate) fn session_description(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(description) = sdp::SessionDescription::parse(text) else { return };
    let written = description.to_string();
    match sdp::SessionDescription::parse(&written) {
        Ok(again) => assert_eq!(again, description, "{text:?} written as {written:?}"),
        Err(error) => panic!("{text:?} written as {written:?}, which does not parse: {error}"),
    }
    for media in &description.media {
        let _ = media.codecs();
        let _ = media.candidates();
    }
}
