//! Any message and header value the stack can hold is written in a form that reads back the
//! same (write → parse), for values generated at random; and any bytes are read or refused
//! without a panic.

use bytes::Bytes;
use proptest::prelude::*;
use sip::message::header::{CSeq, NameAddr, Via};
use sip::message::{parse_datagram, parse_message, Headers, Message, Method, Request, Response, StatusCode, Uri};

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,11}"
}

/// A header value: printable, no line break, no whitespace at either end.
fn value() -> impl Strategy<Value = String> {
    "[!-~]([ -~]{0,40}[!-~])?"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}(\\.[a-z][a-z0-9]{0,6}){0,3}",
        any::<[u8; 4]>().prop_map(|octets| std::net::Ipv4Addr::from(octets).to_string()),
        any::<[u16; 8]>().prop_map(|segments| format!("[{}]", std::net::Ipv6Addr::from(segments))),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        any::<bool>(),
        proptest::option::of("\\+?[a-zA-Z0-9_.!~*'()-]{1,12}"),
        host(),
        proptest::option::of(1u16..),
        prop::collection::vec((token(), proptest::option::of(token())), 0..3),
    )
        .prop_map(|(secure, user, host, port, params)| {
            let mut text = if secure { "sips:".to_owned() } else { "sip:".to_owned() };
            if let Some(user) = user {
                text += &format!("{user}@");
            }
            text += &host;
            if let Some(port) = port {
                text += &format!(":{port}");
            }
            for (name, value) in params {
                text += &match value {
                    Some(value) => format!(";{name}={value}"),
                    None => format!(";{name}"),
                };
            }
            Uri::parse(&text).unwrap_or_else(|error| panic!("generated {text}: {error}"))
        })
}

/// Header names: well-known ones (including compact forms) and extension tokens; never
/// Content-Length, which writing computes.
fn header_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "Via",
            "From",
            "To",
            "Call-ID",
            "CSeq",
            "Contact",
            "Route",
            "Supported",
            "v",
            "f",
            "i"
        ])
        .prop_map(str::to_owned),
        token().prop_filter("not Content-Length", |name| {
            !name.eq_ignore_ascii_case("Content-Length") && !name.eq_ignore_ascii_case("l")
        }),
    ]
}

fn headers() -> impl Strategy<Value = Headers> {
    prop::collection::vec((header_name(), value()), 0..12).prop_map(|pairs| {
        let mut headers = Headers::new();
        for (name, value) in pairs {
            headers.push(&name, value);
        }
        headers
    })
}

fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (token(), uri(), headers(), body()).prop_map(|(method, uri, headers, body)| {
            Message::Request(Request { method: Method::from_token(&method), uri, headers, body })
        }),
        (100u16..=699, "([!-~]([ -~]{0,20}[!-~])?)?", headers(), body()).prop_map(|(status, reason, headers, body)| {
            Message::Response(Response { status: StatusCode::new(status).expect("100-699"), reason, headers, body })
        }),
    ]
}

/// The message without its Content-Length, which writing recomputes.
fn without_length(mut message: Message) -> Message {
    match &mut message {
        Message::Request(request) => request.headers.remove("Content-Length"),
        Message::Response(response) => response.headers.remove("Content-Length"),
    }
    message
}

proptest! {
    #[test]
    fn messages_read_back_the_same_from_a_stream_and_a_datagram(message in message()) {
        let written = message.to_bytes();
        let from_stream = parse_message(&written).map(without_length);
        prop_assert_eq!(&from_stream, &Ok(message.clone()), "{}", String::from_utf8_lossy(&written));
        prop_assert_eq!(parse_datagram(&written).map(without_length), Ok(message));
    }

    #[test]
    fn name_addr_via_and_cseq_read_back_the_same(
        display in proptest::option::of("[a-zA-Z0-9 ]{0,12}[a-zA-Z0-9]"),
        uri in uri(),
        tag in token(),
        host in host(),
        port in proptest::option::of(1u16..),
        branch in token(),
        sequence in 0u32..(1 << 31),
        method in token(),
    ) {
        let name_addr = NameAddr::parse(&format!(
            "{}<{uri}>;tag={tag}",
            display.as_ref().map(|d| format!("\"{d}\" ")).unwrap_or_default()
        ))
        .expect("a generated name-addr");
        prop_assert_eq!(NameAddr::parse(&name_addr.to_string()), Ok(name_addr));
        let port = port.map(|port| format!(":{port}")).unwrap_or_default();
        let via = Via::parse(&format!("SIP/2.0/TLS {host}{port};branch=z9hG4bK{branch};rport")).expect("a generated Via");
        prop_assert_eq!(Via::parse(&via.to_string()), Ok(via));
        let cseq = CSeq::parse(&format!("{sequence} {method}")).expect("a generated CSeq");
        prop_assert_eq!(CSeq::parse(&cseq.to_string()), Ok(cseq));
    }

    #[test]
    fn any_bytes_are_read_or_refused_without_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = parse_datagram(&bytes);
        let _ = parse_message(&bytes);
        let _ = sip::message::frame_stream(&bytes);
    }
}
